"""FaceDiffuser end to end on the synthetic corpus with the demo head: preprocess vertices, train-pred --model
facediffuser (tiny), generate vertex files, render them, and evaluate it in one table with ProbTalk3D and its VAE
variant (reference §8.6, §10)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from helpers.models import save_untrained_vae_predictor
from probtalk3d_cli.config import EvalConfig, load_config
from probtalk3d_cli.data.schema import EMOTIONS, INTENSITIES, motion_frames_for_audio

SEED = 1234


@pytest.fixture(scope="module")
def fd_data(synthetic_data, tmp_path_factory):
    """The session corpus (param/, wav/, splits.json linked, not copied) plus its vertex data (demo head)."""
    from probtalk3d_cli.data.vertices_data import preprocess_vertices
    from probtalk3d_cli.flame import load_flame

    root = tmp_path_factory.mktemp("fd") / "data"
    root.mkdir()
    for name in ("param", "wav"):
        (root / name).symlink_to(synthetic_data / name, target_is_directory=True)
    shutil.copy(synthetic_data / "splits.json", root / "splits.json")
    report = preprocess_vertices(root, load_flame("demo"))
    assert report["written"] == report["clips"] == 134
    return root


@pytest.fixture(scope="module")
def fd_run(fd_data, tmp_path_factory):
    """Two epochs of the tiny FaceDiffuser (configs/tiny.yaml)."""
    from probtalk3d_cli.training.stages import train_facediffuser

    out = tmp_path_factory.mktemp("fdrun") / "run"
    cfg = load_config(["configs/tiny.yaml"], ["data.cache=false"])
    result = train_facediffuser(cfg, fd_data, out, torch.device("cpu"))
    return out, result


@pytest.fixture(scope="module")
def split3(fd_data, tmp_path_factory):
    """Three test clips (neutral, and two emotions at different intensities)."""
    from probtalk3d_cli.evaluation.evaluate import resolve_split

    keys, _ = resolve_split(fd_data, "test")
    chosen = [keys[0], keys[9], keys[30]]
    p = tmp_path_factory.mktemp("split") / "three.txt"
    p.write_text("\n".join(str(k) for k in chosen) + "\n")
    return p, chosen


def _job(key) -> str:
    return f"{key}_{key.subject}_{EMOTIONS[key.emotion]}_{INTENSITIES[key.intensity]}"


# --------------------------------------------------------------------------------------------------------
# preprocess vertices / training
# --------------------------------------------------------------------------------------------------------


def test_preprocess_vertices_cli_resumes(cli, fd_data):
    r = cli("preprocess", "vertices", "--data", fd_data, "--flame-model", "demo", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert "134 clips (0 written, 134 already done)" in r.stdout and "2 subject templates" in r.stdout


def test_shape_removed_vertex_gt_matches_the_zero_shape_protocol(fd_data):
    """Comparable data: vertex GT - template + zero face equals ProbTalk3D's zero-shape GT up to the identity's
    effect on the jaw (the synthetic clips use no expression coefficients beyond 50)."""
    from probtalk3d_cli.data.vertices_data import load_clip_vertices, load_vertex_templates
    from probtalk3d_cli.evaluation.evaluate import resolve_split
    from probtalk3d_cli.flame import FlameConverter, load_flame

    conv = FlameConverter(load_flame("demo"))
    tpl = load_vertex_templates(fd_data)
    zero = conv.neutral().numpy()
    keys, _ = resolve_split(fd_data, "test")
    for key in keys[::11]:
        p = np.load(fd_data / "param" / f"{key}.npy")[0].astype(np.float64)
        gt0 = conv.vertices(p[:, 300:350], p[:, 400:])
        rel = load_clip_vertices(fd_data, key) - tpl.template(key.subject) + zero
        gap = np.linalg.norm(rel - gt0, axis=-1)
        assert 0 < gap.mean() < 2e-5  # < 0.02 mm, against about 1 mm of motion
        assert np.linalg.norm(tpl.template(key.subject) - zero, axis=-1).mean() > 1e-3  # identity is there


def test_training_run_layout_checkpoint_and_learning(fd_run, fd_data):
    from probtalk3d_cli.checkpoint import load_checkpoint

    out, result = fd_run
    for name in ("config.yaml", "last.pt", "best.pt", "metrics.jsonl", "loss_curve.png"):
        assert (out / name).is_file(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2] and result.steps == 24  # 46 training clips, batches of 4
    assert rows[-1]["val"]["mse"] < 0.8 * rows[0]["val"]["mse"]  # epoch 0 = the untrained model (the templates)
    payload = load_checkpoint(out / "best.pt", expect="facediffuser")
    meta = payload["meta"]
    assert meta["identities"] == ["M001", "W001"] and meta["num_vertices"] == 4999
    assert meta["diffusion"]["steps"] == 1000 and meta["diffusion"]["beta_schedule"] == "cosine"
    assert meta["vertex_data"]["flame_model"] == "demo" and "hubert_config" in meta
    assert payload["config"]["facediffuser"]["feature_dim"] == 16
    assert "train_state" in load_checkpoint(out / "last.pt") and "train_state" not in payload


def test_train_cli_errors_and_smoke(cli, synthetic_data, fd_data, tmp_path):
    r = cli("train-pred", "--model", "facediffuser", "--data", synthetic_data, "--out", tmp_path / "x",
            "--config", "configs/tiny.yaml", "--device", "cpu")
    assert r.exit_code == 1 and "preprocess vertices --data" in r.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "x").exists()
    r = cli("train-pred", "--model", "facediffuser", "--data", fd_data, "--out", tmp_path / "y", "--prior", "p")
    assert r.exit_code == 1 and "FaceDiffuser trains without a prior" in r.stderr
    r = cli("train-pred", "--model", "diffusion", "--data", fd_data, "--out", tmp_path / "y")
    assert r.exit_code == 1 and "probtalk3d or facediffuser" in r.stderr
    r = cli("train-pred", "--model", "facediffuser", "--data", fd_data, "--out", tmp_path / "z", "--config",
            "configs/tiny.yaml", "--set", "train_facediffuser.max_steps=1", "--set", "data.cache=false",
            "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert "trained 1 epochs, 1 steps" in r.stdout and (tmp_path / "z" / "best.pt").is_file()


def test_resume_is_exact(fd_data, tmp_path):
    """One epoch, stop, resume to two == two epochs in one go (timesteps and noise come from the saved RNG state).
    A four-clip DATA folder (two training, two validation clips, linked from fd_data) keeps it fast."""
    from probtalk3d_cli.checkpoint import load_checkpoint
    from probtalk3d_cli.training.stages import train_facediffuser

    micro = tmp_path / "micro"
    for sub in ("param", "wav", "vertex"):
        (micro / sub).mkdir(parents=True)
    for key in ("M001_001_0_0", "W001_001_0_0", "M001_003_0_0", "W001_003_0_0"):  # neutral 1 = train, 3 = val
        for sub, ext in (("param", "npy"), ("wav", "wav"), ("vertex", "npy")):
            (micro / sub / f"{key}.{ext}").symlink_to(fd_data / sub / f"{key}.{ext}")
    for name in ("splits.json", "templates_vert.npz", "vertex_info.json"):
        shutil.copy(fd_data / name, micro / name)

    def cfg(epochs):
        return load_config(["configs/tiny.yaml"], [f"train_facediffuser.epochs={epochs}",
                                                   "train_facediffuser.batch_size=1"])

    train_facediffuser(cfg(2), micro, tmp_path / "a", torch.device("cpu"))
    train_facediffuser(cfg(1), micro, tmp_path / "b", torch.device("cpu"))
    train_facediffuser(cfg(2), micro, tmp_path / "b", torch.device("cpu"), resume=True)
    a, b = (load_checkpoint(tmp_path / r / "last.pt") for r in ("a", "b"))
    assert a["train_state"]["step"] == b["train_state"]["step"] == 4
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert [r["val"] for r in a["train_state"]["history"]] == [r["val"] for r in b["train_state"]["history"]]


# --------------------------------------------------------------------------------------------------------
# generate / render
# --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated(fd_run, fd_data, tmp_path_factory):
    from probtalk3d_cli.config import FaceDiffuserConfig, GenerateConfig
    from probtalk3d_cli.generation import generate

    out = tmp_path_factory.mktemp("fdgen")
    wav = fd_data / "wav" / "W001_003_4_1.wav"
    res = generate(fd_run[0] / "best.pt", [wav], out, subject="W001", emotion="fear", intensity="medium",
                   settings=GenerateConfig(num_samples=2, precision="fp32"),
                   facediffuser=FaceDiffuserConfig(sample_steps=10))
    return res, out, wav


def test_generate_writes_vertex_files_equal_to_the_in_memory_api(generated, fd_run):
    from probtalk3d_cli.generation import DiffusionSampling, generate_vertices, job_generator, load_model
    from probtalk3d_cli.io import load_audio

    res, out, wav = generated
    names = sorted(p.name for p in out.iterdir())
    stem = "W001_003_4_1_W001_fear_medium"
    assert names == [f"{stem}_s1.json", f"{stem}_s1.npy", f"{stem}_s2.json", f"{stem}_s2.npy"]
    audio = load_audio(wav)
    t = motion_frames_for_audio(len(audio))  # floor(A / 2); the official script would give int(S/640) - 1
    side = json.loads((out / f"{stem}_s1.json").read_text())
    assert side["format"] == "vertices" and side["shape"] == [t, 4999, 3] and side["dtype"] == "float32"
    assert side["sampling"] == {"kind": "facediffuser", "sampler": "ddim", "sample_steps": 10,
                                "skip_timesteps": 990, "eta": 0.0}
    assert side["checkpoint"]["kind"] == "facediffuser" and "int(samples / 16000 * 25) - 1" in side["frame_rule"]
    s1, s2 = (np.load(out / f"{stem}_s{k}.npy") for k in (1, 2))
    assert s1.shape == (t, 4999, 3) and s1.dtype == np.float32 and not np.array_equal(s1, s2)
    model, _ = load_model(fd_run[0] / "best.pt")
    want = generate_vertices(model, audio, "W001", "fear", "medium", 2, sampling=DiffusionSampling(sample_steps=10),
                             generator=job_generator(SEED, stem))
    np.testing.assert_array_equal(np.stack([s1, s2]), want)
    # identity included: the samples sit on W001's template (motion of millimetres), not on the zero face
    assert np.abs(s1 - model.templates[1].view(-1, 3).numpy()).mean() < 5e-3


def test_generate_rerun_skips_and_format_errors(generated, fd_run, cli, tiny_pred_run):
    res, out, wav = generated
    args = ["--checkpoint", fd_run[0] / "best.pt", wav, "--out", out, "--subject", "W001", "--emotion", "fear",
            "--intensity", "medium", "-n", "2", "--precision", "fp32", "--set", "facediffuser.sample_steps=10"]
    r = cli("generate", *args)
    assert r.exit_code == 0 and "wrote 0 file(s)" in r.stdout and "1 job(s) already done" in r.stdout, r.output
    r = cli("generate", *args, "--format", "params")
    assert r.exit_code == 1 and "does not apply to a FaceDiffuser checkpoint" in r.stderr
    r = cli("generate", *args[:-2], "--set", "facediffuser.sample_steps=5")
    assert r.exit_code == 1 and "other settings" in r.stderr and "--overwrite" in r.stderr
    r = cli("generate", "--checkpoint", tiny_pred_run / "best.pt", wav, "--out", out / "p", "--format", "vertices")
    assert r.exit_code == 1 and "--format vertices is for FaceDiffuser checkpoints" in r.stderr


def test_render_accepts_the_vertex_files(generated):
    from probtalk3d_cli.flame import load_flame
    from probtalk3d_cli.render import render

    res, out, wav = generated
    f = out / "W001_003_4_1_W001_fear_medium_s1.npy"
    r = render([f], out / "v.mp4", load_flame("demo"), size=64)
    assert r.frames == np.load(f).shape[0] and r.audio == wav.resolve()  # the sidecar names the audio


# --------------------------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vae_ckpt(tmp_path_factory):
    """An (untrained) VAE-variant predictor for the synthetic identities: a third row of the table."""
    return save_untrained_vae_predictor(tmp_path_factory.mktemp("vae") / "vae.pt", ["M001", "W001"])


def test_evaluate_puts_the_three_models_in_one_table(fd_run, fd_data, tiny_pred_run, vae_ckpt, split3, tmp_path):
    from probtalk3d_cli.config import FaceDiffuserConfig
    from probtalk3d_cli.data.dataset import load_clip_audio
    from probtalk3d_cli.data.vertices_data import load_clip_vertices
    from probtalk3d_cli.evaluation.evaluate import evaluate
    from probtalk3d_cli.flame import load_flame
    from probtalk3d_cli.generation import DiffusionSampling, generate_vertices, job_generator, load_model

    settings = EvalConfig(split=str(split3[0]), num_samples=2, precision="fp32")
    fdc = FaceDiffuserConfig(sample_steps=5)
    ckpts = [f"probtalk3d={tiny_pred_run / 'best.pt'}", f"vae={vae_ckpt}", f"facediffuser={fd_run[0] / 'best.pt'}"]
    res = evaluate(fd_data, ckpts, settings=settings, flame="demo", out=tmp_path / "ev", facediffuser=fdc)
    assert [s.name for s in res.systems] == ["probtalk3d", "vae", "facediffuser"]
    report = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    fd = report["systems"][2]
    assert fd["protocol"]["fdd_reference"].startswith("the subject's template")
    assert fd["sampling"]["sample_steps"] == 5 and any("FaceDiffuser protocol" in n for n in report["notes"])
    assert all(s["metrics"]["clips"] == 3 for s in report["systems"])

    # the FaceDiffuser row, recomputed with numpy from the in-memory API and the vertex ground truth
    flame = load_flame("demo")
    model, _ = load_model(fd_run[0] / "best.pt")
    mve_sum, frames, fdd = 0.0, 0, []
    for key in split3[1]:
        samples = generate_vertices(model, load_clip_audio(fd_data, key), key.subject, key.emotion, key.intensity, 2,
                                    sampling=DiffusionSampling(sample_steps=5), generator=job_generator(SEED, _job(key)))
        gt = load_clip_vertices(fd_data, key).astype(np.float64)
        p = samples[0].astype(np.float64)[: len(gt)]
        gt = gt[: len(p)]
        mve_sum += np.linalg.norm(gt - p, axis=-1).mean(1).sum()  # frames pooled over clips
        frames += len(p)
        ref = model.templates[model.identities.index(key.subject)].view(-1, 3).numpy().astype(np.float64)
        up = flame.upper_idx

        def s(v):
            return ((v[:, up] - ref[up]) ** 2).sum(-1).std(0).mean()

        fdd.append(s(gt) - s(p))
    assert fd["metrics"]["mve"] == pytest.approx(mve_sum / frames, rel=1e-5)
    assert fd["metrics"]["fdd"] == pytest.approx(np.mean(fdd), rel=1e-4, abs=1e-12)

    # adding FaceDiffuser changes nothing for the ProbTalk3D row (same clips, same per-clip seeds)
    alone = evaluate(fd_data, [str(tiny_pred_run / "best.pt")], settings=settings, flame="demo")
    assert alone.systems[0].overall == res.systems[0].overall


def test_evaluate_cli_table_and_errors(cli, fd_run, fd_data, synthetic_data, tiny_pred_run, split3, tmp_path):
    args = ["--checkpoint", tiny_pred_run / "best.pt", "--checkpoint", f"FD={fd_run[0] / 'best.pt'}", "--split",
            split3[0], "--flame-model", "demo", "-n", "2", "--precision", "fp32", "--set",
            "facediffuser.sample_steps=3", "--device", "cpu"]
    r = cli("evaluate", *args, "--data", fd_data, "--out", tmp_path / "ev")
    assert r.exit_code == 0, r.output
    assert "FD" in r.stdout and "pred" in r.stdout and "FaceDiffuser protocol" in r.stdout
    r = cli("evaluate", *args, "--data", synthetic_data, "--out", tmp_path / "no")  # no vertex data there
    assert r.exit_code == 1 and "preprocess vertices" in r.stderr and not (tmp_path / "no").exists()
