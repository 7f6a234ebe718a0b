"""The bundled demo model and `probtalk3d demo` / `demo-train`: the checkpoint loads with its recorded provenance and
figures, its deterministic output matches the stored golden slice, `demo` renders labelled videos with audio, and a
second `demo-train` run reuses every finished stage and writes the same bundle."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def _golden_module():
    spec = importlib.util.spec_from_file_location("demo_slice", GOLDEN / "demo_slice.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def payload():
    from probtalk3d_cli.checkpoint import load_checkpoint

    return load_checkpoint("demo", expect="predictor")


def test_bundled_checkpoint_is_small_and_carries_its_provenance(payload):
    from probtalk3d_cli.checkpoint import demo_checkpoint_path
    from probtalk3d_cli.data.synthetic import GENERATOR_VERSION

    assert demo_checkpoint_path().stat().st_size < 5 * 2**20
    assert payload["kind"] == "predictor" and "train_state" not in payload
    cfg, meta = payload["config"], payload["meta"]
    # a small HuBERT trained from scratch: nothing frozen, nothing downloaded
    assert cfg["audio"]["model"] == "tiny"
    assert not cfg["audio"]["freeze_feature_encoder"] and not cfg["audio"]["freeze_projection"]
    assert cfg["audio"]["freeze_layers"] == 0 and cfg["data"]["root"] is None
    assert meta["identities"] == ["M001", "M002", "W001", "W002"]
    demo = meta["demo"]
    assert demo["corpus"] == {"generator": "probtalk3d preprocess synthetic", "generator_version": GENERATOR_VERSION,
                              "subjects": 4, "sentences": 4, "seed": 0}
    assert demo["seeds"] == {"corpus": 0, "train_prior": cfg["train_prior"]["seed"],
                             "train_pred": cfg["train_pred"]["seed"], "evaluate": cfg["eval"]["seed"]}
    assert meta["data"]["train_clips"] == 184 and meta["data"]["val_clips"] == 88
    # validation figures: training helped (stage 2's total includes the latent term against codes of a prior that
    # only approximates the motion, so it falls less; its motion terms are what the LVE check below measures)
    for stage, factor in (("prior", 0.1), ("pred", 0.7)):
        v = demo["validation"][stage]
        assert v["best_val"]["total"] < factor * v["untrained_val"]["total"], (stage, v)
    ev = demo["evaluation"]
    assert ev["clips"] == 88 and ev["split"]["name"] == "test" and ev["flame_model"] == "demo"
    lve = {name: s["lve"] for name, s in ev["systems"].items()}
    assert ev["lve_ratio_vs_mean_baseline"] == pytest.approx(lve["demo"] / lve["baseline: mean motion"], abs=1e-4)
    assert ev["lve_ratio_vs_mean_baseline"] <= 0.6


def test_bundled_model_rebuilds_offline(payload):
    from probtalk3d_cli.generation import load_model

    model, info = load_model("demo")
    assert model.kind == "vq" and model.config.prior.token_layout == "per_frame"
    assert info["sha256"] and Path(info["path"]).name == "demo_model.pt"
    # windows fit the positional-encoding tables, as configs/demo.yaml sets them
    limit = min(model.config.prior.max_len, model.config.predictor.max_len)
    assert model.config.generate.window_seconds * 25 <= limit


def test_bundled_model_output_matches_golden_slice():
    module = _golden_module()
    with np.load(module.GOLDEN_FILE, allow_pickle=False) as f:
        expected = {k: f[k] for k in f.files}
    actual = module.compute()
    if str(actual["checkpoint_sha256"]) != str(expected["checkpoint_sha256"]):
        pytest.fail("probtalk3d_cli/assets/demo_model.pt changed; regenerate the golden slice on purpose with "
                    ".venv/bin/python tests/golden/demo_slice.py")
    assert int(actual["frames"]) == int(expected["frames"])
    import torch

    torch.testing.assert_close(torch.from_numpy(actual["motion"]), torch.from_numpy(expected["motion"]),
                               atol=1e-5, rtol=1e-4)


def test_demo_speech_is_unseen_synthetic_speech(tmp_path):
    from probtalk3d_cli.data.schema import parse_key
    from probtalk3d_cli.data.synthetic import neutral_sentence_count, synthesize_clip
    from probtalk3d_cli.demo import DEMO_SENTENCES, write_demo_clip
    from probtalk3d_cli.io import load_audio

    keys = [parse_key(k) for k in DEMO_SENTENCES]
    assert all(k.emotion == 0 and k.sentence > neutral_sentence_count(4) for k in keys)  # not in the corpus
    wav = write_demo_clip(tmp_path)
    audio = np.concatenate([synthesize_clip(k, seed=0)[1] for k in keys])
    np.testing.assert_allclose(load_audio(wav), audio, atol=1 / 32768)  # 16-bit PCM rounding only
    assert 5.0 < len(audio) / 16000 < 10.0


def _short_wav(path: Path, seconds: float = 1.2) -> Path:
    from probtalk3d_cli.data.schema import parse_key
    from probtalk3d_cli.data.synthetic import synthesize_clip
    from probtalk3d_cli.io import save_wav

    _, audio = synthesize_clip(parse_key("W001_005_0_0"), seed=0)
    return save_wav(path, audio[: int(seconds * 16000)])


def test_demo_command_renders_three_emotions_with_audio(cli, tmp_path):
    import imageio_ffmpeg

    wav = _short_wav(tmp_path / "my speech.wav")
    out = tmp_path / "demo"
    r = cli("demo", "--out", out, "--audio", wav, "--size", "64", "--subject", "W001")
    assert r.exit_code == 0, r.output
    assert f"side by side: {out / 'my speech_side_by_side.mp4'}" in r.stdout
    assert "as W001, happy, sad, angry (high)" in r.stdout
    frames = 29  # floor(A/2) for 1.2 s of audio
    for name, width in (("happy", 64), ("sad", 64), ("angry", 64), ("side_by_side", 192)):
        video = out / f"my speech_{name}.mp4"
        assert f"{video}" in r.stdout
        reader = imageio_ffmpeg.read_frames(str(video))
        meta = next(reader)
        n = sum(1 for _ in reader)
        assert meta["size"] == (width, 64) and meta["audio_codec"] == "aac" and n == frames, (name, meta, n)
    for emotion in ("happy", "sad", "angry"):
        side = json.loads((out / "motion" / f"my speech_W001_{emotion}_high.json").read_text())
        assert side["frames"] == frames and side["emotion"] == emotion and Path(side["audio"]) == wav.resolve()
    assert not list(out.rglob("*.tmp*"))


def test_demo_rejects_bad_requests_before_writing(cli, tmp_path):
    out = tmp_path / "demo"
    r = cli("demo", "--out", out, "--emotions", "happy,bored", "--size", "64")
    errors = [line for line in r.stderr.splitlines() if line.startswith("error")]
    assert r.exit_code == 1 and len(errors) == 1 and "bored" in errors[0] and "Traceback" not in r.stderr
    r = cli("demo", "--out", out, "--audio", tmp_path / "missing.wav", "--size", "64")
    assert r.exit_code == 1 and "missing.wav" in r.stderr
    r = cli("demo", "--out", out, "--subject", "M999", "--audio", _short_wav(tmp_path / "a.wav"), "--size", "64")
    assert r.exit_code == 1 and "M999" in r.stderr
    assert not out.exists() or not list(out.rglob("*.mp4"))


def test_demo_train_reuses_finished_stages(tmp_path, tiny_config_path):
    """Tiny sizes and a small corpus: the first run does every stage, the second reuses all of them and writes the
    same bundle bytes; the bundle carries the figures of the run."""
    import torch

    from probtalk3d_cli.checkpoint import load_checkpoint
    from probtalk3d_cli.demo import demo_config, demo_train

    cfg = demo_config([tiny_config_path], ["train_prior.epochs=1", "train_pred.epochs=1", "eval.num_samples=2"])
    work, bundle = tmp_path / "work", tmp_path / "bundle.pt"
    first = demo_train(work, cfg, torch.device("cpu"), bundle=bundle, subjects=2, sentences=3)
    assert [s.name for s in first.stages] == ["corpus", "train-prior", "train-pred", "evaluate", "bundle"]
    assert not any(s.skipped for s in first.stages)
    data_before = bundle.read_bytes()
    second = demo_train(work, cfg, torch.device("cpu"), bundle=bundle, subjects=2, sentences=3)
    assert [s.skipped for s in second.stages] == [True, True, True, True, False]
    assert bundle.read_bytes() == data_before
    meta = load_checkpoint(bundle, expect="predictor")["meta"]
    assert meta["demo"]["corpus"]["subjects"] == 2 and meta["data"]["root"] == "data"
    assert meta["demo"]["evaluation"] == second.evaluation
    report = json.loads((work / "demo_train.json").read_text())
    assert [s["name"] for s in report["stages"]] == [s.name for s in second.stages]
    # a run folder made with other settings is an error naming the fix, not a crash inside torch
    other = demo_config([tiny_config_path], ["prior.d_model=16", "predictor.d_model=16"])
    with pytest.raises(ValueError, match="other settings"):
        demo_train(work, other, torch.device("cpu"), bundle=tmp_path / "b2.pt", subjects=2, sentences=3)
