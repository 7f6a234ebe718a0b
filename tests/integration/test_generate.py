"""generate() end to end on the tiny trained predictor: files, sidecars, reproducibility, windows, resume, failures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers.models import save_untrained_vae_predictor
from probtalk3d_cli.config import GenerateConfig
from probtalk3d_cli.data.schema import denormalise_motion, motion_frames_for_audio, params_to_motion
from probtalk3d_cli.generation import Sampling, generate, generate_motion, job_generator, load_model
from probtalk3d_cli.io import save_wav

SR = 16000


def _speechish(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3.1 * t + seed)
    return (0.3 * env * np.sin(2 * np.pi * (140 + 20 * seed) * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def ckpt(tiny_pred_run):
    return tiny_pred_run / "best.pt"


@pytest.fixture(scope="module")
def model(ckpt):
    return load_model(ckpt)[0]


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    save_wav(root / "alpha.wav", _speechish(2.3, 1))
    save_wav(root / "sub" / "beta.wav", _speechish(1.7, 2))
    save_wav(root / "gamma.wav", _speechish(3.1, 3))
    return root


def _cfg(**kw) -> GenerateConfig:
    """Generate settings as configs/tiny.yaml has them (windows of 20 s, 1 s overlap) plus overrides; fp32 unless
    asked, because these tests compare results across batchings and APIs (bf16 would add its own rounding)."""
    return GenerateConfig(**{"window_seconds": 20.0, "overlap_seconds": 1.0, "precision": "fp32", **kw})


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_outputs_names_shapes_and_sidecars(ckpt, model, audio_dir, tmp_path):
    out = tmp_path / "out"
    res = generate(ckpt, [audio_dir], out, emotion="happy", settings=_cfg(num_samples=2))
    subj = model.identities[0]
    names = [f"{k}_{subj}_happy_medium_s{s}.{ext}" for k in ("alpha", "gamma", "sub/beta") for s in (1, 2)
             for ext in ("json", "npy")]
    assert _files(out) == sorted(names)
    assert res.jobs == 3 and not res.failures and len(res.written) == 6
    for name, seconds in (("alpha", 2.3), ("sub/beta", 1.7)):
        params = np.load(out / f"{name}_{subj}_happy_medium_s1.npy")
        frames = motion_frames_for_audio(int(seconds * SR))  # T = floor(A / 2)
        assert params.shape == (1, frames, 403) and params.dtype == np.float64
        assert not params[0, :, :300].any() and not params[0, :, 350:400].any()
        assert np.abs(params[0, :, 300:350]).max() > 0
        meta = json.loads((out / f"{name}_{subj}_happy_medium_s1.json").read_text())
        assert meta["audio"] == str((audio_dir / f"{name}.wav").resolve())
        assert meta["frames"] == frames and meta["fps"] == 25 and meta["format"] == "params"
        assert (meta["subject"], meta["emotion"], meta["intensity"]) == (subj, "happy", "medium")
        assert (meta["sample"], meta["num_samples"], meta["seed"]) == (1, 2, 1234)
        assert meta["sampling"] == {"kind": "vq", "mode": "temperature", "temperature": 0.2, "k": 1}
        assert meta["audio_duration_s"] == pytest.approx(seconds) and meta["audio_sample_rate"] == SR
        assert meta["checkpoint"]["path"] == str(ckpt.resolve()) and len(meta["checkpoint"]["sha256"]) == 64
        assert meta["probtalk3d_version"]


def test_motion_format_equals_the_params_content(ckpt, audio_dir, tmp_path):
    a = generate(ckpt, [audio_dir / "alpha.wav"], tmp_path / "p", emotion="sad", settings=_cfg())
    b = generate(ckpt, [audio_dir / "alpha.wav"], tmp_path / "m", emotion="sad", settings=_cfg(format="motion"))
    params, motion = np.load(a.outputs[0].path), np.load(b.outputs[0].path)
    assert motion.dtype == np.float32 and motion.shape == (params.shape[1], 53)
    np.testing.assert_allclose(params_to_motion(params), motion, atol=1e-6)


def test_seed_reproducibility_and_sample_diversity(ckpt, audio_dir, tmp_path):
    cfg = _cfg(num_samples=3)
    r1 = generate(ckpt, [audio_dir / "alpha.wav"], tmp_path / "a", settings=cfg)
    r2 = generate(ckpt, [audio_dir / "alpha.wav"], tmp_path / "b", settings=cfg)
    r3 = generate(ckpt, [audio_dir / "alpha.wav"], tmp_path / "c", settings=_cfg(num_samples=3, seed=99))
    x1 = [np.load(o.path) for o in r1.outputs]
    assert all(o1.path.read_bytes() == o2.path.read_bytes() for o1, o2 in zip(r1.outputs, r2.outputs))
    assert not np.array_equal(x1[0], x1[1]) and not np.array_equal(x1[1], x1[2])
    assert not np.array_equal(x1[0], np.load(r3.outputs[0].path))


def test_a_job_is_identical_alone_in_a_batch_and_in_any_shard(ckpt, audio_dir, tmp_path):
    cfg = _cfg(num_samples=2)
    full = generate(ckpt, [audio_dir], tmp_path / "full", emotion="angry,happy", settings=cfg)
    alone = generate(ckpt, [audio_dir / "alpha.wav"], tmp_path / "alone", emotion="happy", settings=cfg)
    shards = [generate(ckpt, [audio_dir], tmp_path / "shards", emotion="happy,angry", settings=cfg, shard=f"{k}/4")
              for k in range(4)]
    assert sum(s.jobs for s in shards) == 6 and all(s.jobs_other_shards == 6 - s.jobs for s in shards)
    assert _files(tmp_path / "full") == _files(tmp_path / "shards")
    for o in full.outputs:
        rel = o.path.relative_to(tmp_path / "full")
        assert o.path.read_bytes() == (tmp_path / "shards" / rel).read_bytes(), rel
    assert len(alone.outputs) == 2
    for o in alone.outputs:  # the job alpha_<ID>_happy_medium run on its own
        assert o.path.read_bytes() == (tmp_path / "full" / o.path.name).read_bytes()
    same = generate(ckpt, [audio_dir], tmp_path / "again", emotion="happy", settings=cfg)
    for o in same.outputs:
        assert o.path.read_bytes() == (tmp_path / "full" / o.path.relative_to(tmp_path / "again")).read_bytes()


def test_padded_batches_match_single_jobs_to_rounding(ckpt, audio_dir, tmp_path):
    cfg1, cfg4 = _cfg(deterministic=True, format="motion"), _cfg(deterministic=True, format="motion", batch_size=4)
    one = generate(ckpt, [audio_dir], tmp_path / "one", emotion="fear,sad", settings=cfg1)
    four = generate(ckpt, [audio_dir], tmp_path / "four", emotion="fear,sad", settings=cfg4)
    assert [o.path.name for o in one.outputs] == [o.path.name for o in four.outputs]
    for a, b in zip(one.outputs, four.outputs):
        np.testing.assert_allclose(np.load(a.path), np.load(b.path), atol=2e-3)


def test_generate_motion_encodes_once_and_equals_the_model_api(model):
    audio = _speechish(2.0, 4)
    calls = []
    original = model.encode_audio

    def counting(*a, **k):
        calls.append(1)
        return original(*a, **k)

    model.encode_audio = counting
    try:
        got = generate_motion(model, audio, 0, "happy", "high", num_samples=5, generator=torch.Generator().manual_seed(3),
                              denormalise=False)
    finally:
        del model.encode_audio
    assert len(calls) == 1 and got.shape == (5, motion_frames_for_audio(audio.size), 53)
    with torch.no_grad():
        feats, _ = model.encode_audio(torch.from_numpy(audio)[None], torch.tensor([audio.size]))
        z = model.predict_latent(feats, None, torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
        ref = model.decode(z, None, num_samples=5, generator=torch.Generator().manual_seed(3))[0]
    np.testing.assert_array_equal(got, ref.numpy())
    denorm = generate_motion(model, audio, model.identities[0], 1, 2, 5, generator=torch.Generator().manual_seed(3))
    np.testing.assert_allclose(denorm, denormalise_motion(ref.numpy()), rtol=1e-6, atol=1e-6)


def test_long_audio_windows(model):
    audio = _speechish(25.0, 5)
    det = Sampling(deterministic=True)
    windowed = generate_motion(model, audio, 0, "sad", num_samples=1, sampling=det, window_seconds=10.0,
                               overlap_seconds=1.0)
    assert windowed.shape == (1, motion_frames_for_audio(audio.size), 53) == (1, 624, 53)
    # windows [0, 250), [225, 475), [374, 624): outside the overlaps each equals its window processed alone
    first = generate_motion(model, audio[:160080], 0, "sad", sampling=det, window_seconds=40.0)
    last = generate_motion(model, audio[239360:399440], 0, "sad", sampling=det, window_seconds=40.0)
    np.testing.assert_array_equal(windowed[0, :225], first[0, :225])
    np.testing.assert_array_equal(windowed[0, 475:], last[0, 101:])
    ramp = np.arange(1, 26, dtype=np.float32) / 26  # overlap of window 0 and 1 is frames 225..249
    mid = generate_motion(model, audio[144000:304080], 0, "sad", sampling=det, window_seconds=40.0)
    np.testing.assert_allclose(windowed[0, 225:250], first[0, 225:250] * (1 - ramp[:, None]) + mid[0, :25] * ramp[:, None],
                               rtol=1e-5, atol=1e-5)
    # shorter than one window: exactly the unwindowed result
    short = audio[: 8 * SR]
    np.testing.assert_array_equal(generate_motion(model, short, 0, "sad", sampling=det, window_seconds=10.0),
                                  generate_motion(model, short, 0, "sad", sampling=det, window_seconds=40.0))


def test_reruns_skip_finished_outputs_and_refuse_other_settings(ckpt, audio_dir, tmp_path):
    out = tmp_path / "out"
    first = generate(ckpt, [audio_dir], out, settings=_cfg())
    stamps = {o.path: o.path.stat().st_mtime_ns for o in first.outputs}
    again = generate(ckpt, [audio_dir], out, settings=_cfg())
    assert again.jobs_skipped == 3 and not again.written
    assert all(o.path.stat().st_mtime_ns == stamps[o.path] for o in again.outputs)
    victim = first.outputs[0].path
    good = victim.read_bytes()
    victim.write_bytes(good[:-100])  # truncated: not done
    (first.outputs[1].sidecar).unlink()  # npy without sidecar: not done
    fixed = generate(ckpt, [audio_dir], out, settings=_cfg())
    assert fixed.jobs_skipped == 1 and len(fixed.written) == 2 and victim.read_bytes() == good
    with pytest.raises(ValueError, match=r"exists from a run with other settings \(sampling .*--overwrite"):
        generate(ckpt, [audio_dir], out, settings=_cfg(temperature=0.5))
    redo = generate(ckpt, [audio_dir], out, settings=_cfg(temperature=0.5), overwrite=True)
    assert len(redo.written) == 3 and json.loads(redo.outputs[0].sidecar.read_text())["sampling"]["temperature"] == 0.5


def test_bad_files_are_reported_and_the_rest_is_written(ckpt, audio_dir, tmp_path):
    folder = tmp_path / "mixed"
    save_wav(folder / "ok.wav", _speechish(1.0, 6))
    save_wav(folder / "tiny.wav", _speechish(0.05, 7))  # 800 samples: no 2 motion frames
    (folder / "broken.wav").write_bytes(b"RIFF not really a wav file")
    res = generate(ckpt, [folder], tmp_path / "out", settings=_cfg())
    assert [f.input.rsplit("/", 1)[1] for f in res.failures] == ["broken.wav", "tiny.wav"]
    assert "could not be decoded" in res.failures[0].message
    assert "0.050 s long; at least 0.085 s" in res.failures[1].message
    assert [o.path.name.split("_")[0] for o in res.written] == ["ok"]


def test_style_errors_come_before_any_output(ckpt, audio_dir, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="unknown subject 'Z999'; this checkpoint knows"):
        generate(ckpt, [audio_dir], out, subject="Z999")
    with pytest.raises(ValueError, match="neutral with intensity high"):
        generate(ckpt, [audio_dir], out, emotion="happy,neutral", intensity="high")
    assert not out.exists() or _files(out) == []
    res = generate(ckpt, [audio_dir / "alpha.wav"], out, emotion="neutral", intensity="high", allow_unseen_styles=True,
                   settings=_cfg())
    assert res.outputs[0].path.name.endswith("_neutral_high.npy")


def test_stdin_csv_and_random_styles(ckpt, audio_dir, tmp_path):
    out = tmp_path / "out"
    wav = (audio_dir / "alpha.wav").read_bytes()
    det = _cfg(deterministic=True)
    res = generate(ckpt, ["-"], out, stdin_audio=wav, subject="random", emotion="random", settings=det)
    meta = json.loads(res.outputs[0].sidecar.read_text())
    assert res.outputs[0].path.name.startswith("stdin_") and meta["audio"] == str((out / "stdin.wav").resolve())
    assert (out / "stdin.wav").read_bytes() == wav  # 16-bit PCM in, the same 16-bit PCM kept for `render`
    from_file = generate(ckpt, [audio_dir / "alpha.wav"], tmp_path / "f", subject=meta["subject"],
                         emotion=meta["emotion"], intensity=meta["intensity"], settings=det)
    np.testing.assert_array_equal(np.load(res.outputs[0].path), np.load(from_file.outputs[0].path))
    again = generate(ckpt, ["-"], tmp_path / "again", stdin_audio=wav, subject="random", emotion="random",
                     settings=det)
    assert again.outputs[0].path.name == res.outputs[0].path.name  # random styles come from the seed
    styles = tmp_path / "jobs.csv"
    styles.write_text(f"audio,subject,emotion,intensity,name\n{audio_dir}/alpha.wav,,angry,high,takes/a1\n"
                      "sub_missing.wav,,,,\n")
    with pytest.raises(FileNotFoundError, match="jobs.csv line 3"):
        generate(ckpt, [], out, styles_csv=styles)
    styles.write_text(f"audio,emotion,intensity,name\n{audio_dir}/alpha.wav,angry,high,takes/a1\n"
                      f"{audio_dir}/sub/beta.wav,,,\n")
    csv_res = generate(ckpt, [], tmp_path / "csv", styles_csv=styles, emotion="sad", settings=_cfg())
    subj = load_model(ckpt)[0].identities[0]
    assert [o.path.relative_to(tmp_path / "csv").as_posix() for o in csv_res.outputs] == [
        f"beta_{subj}_sad_medium.npy", f"takes/a1_{subj}_angry_high.npy"]


def test_other_formats_and_rates(ckpt, tmp_path):
    import soundfile as sf

    stereo = np.stack([_speechish(1.5, 8), _speechish(1.5, 9)], axis=1)
    stereo44 = np.stack([np.interp(np.arange(int(1.5 * 44100)) / 44100, np.arange(stereo.shape[0]) / SR, stereo[:, c])
                         for c in range(2)], axis=1).astype(np.float32)
    sf.write(tmp_path / "clip.flac", stereo44, 44100)
    res = generate(ckpt, [tmp_path / "clip.flac"], tmp_path / "out", settings=_cfg())
    meta = json.loads(res.outputs[0].sidecar.read_text())
    assert meta["audio_sample_rate"] == 44100 and meta["frames"] == motion_frames_for_audio(int(1.5 * SR))


@pytest.fixture(scope="module")
def vae_ckpt(tmp_path_factory):
    return save_untrained_vae_predictor(tmp_path_factory.mktemp("vae") / "vae.pt", ["S1", "S2"])


def test_vae_mean_is_deterministic_and_fact_scales_the_noise(vae_ckpt, audio_dir, tmp_path):
    model = load_model(vae_ckpt)[0]
    audio = _speechish(2.0, 10)
    m1 = generate_motion(model, audio, "S2", "happy", num_samples=2, sampling=Sampling(mean=True),
                         generator=torch.Generator().manual_seed(1))
    m2 = generate_motion(model, audio, "S2", "happy", num_samples=2, sampling=Sampling(mean=True),
                         generator=torch.Generator().manual_seed(2))
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(m1[0], m1[1])
    f0 = generate_motion(model, audio, "S2", "happy", sampling=Sampling(fact=0.0), generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(f0, m1[:1], atol=1e-6)  # fact 0 -> mu
    f20 = generate_motion(model, audio, "S2", "happy", sampling=Sampling(fact=20.0),
                          generator=torch.Generator().manual_seed(1))
    assert np.abs(f20 - m1[:1]).mean() > 10 * np.abs(f0 - m1[:1]).mean()
    res = generate(vae_ckpt, [audio_dir / "alpha.wav"], tmp_path / "out", settings=_cfg(mean=True, temperature=0.7),
                   given=["temperature"])
    assert res.warnings == ["--temperature applies only to VQ checkpoints; this checkpoint's prior is VAE, so it is "
                            "ignored"]
    assert json.loads(res.outputs[0].sidecar.read_text())["sampling"] == {"kind": "vae", "mode": "mean"}


def test_job_generator_matches_the_files(ckpt, model, audio_dir, tmp_path):
    """The in-memory API with job_generator reproduces what generate() wrote (evaluate relies on this)."""
    res = generate(ckpt, [audio_dir / "gamma.wav"], tmp_path / "out", emotion="surprised", settings=_cfg(num_samples=2,
                   format="motion"))
    from probtalk3d_cli.io import load_audio

    job = res.outputs[0].job
    got = generate_motion(model, load_audio(audio_dir / "gamma.wav"), model.identities[0], "surprised", "medium", 2,
                          generator=job_generator(1234, job), window_seconds=20.0, overlap_seconds=1.0)
    for k, o in enumerate(res.outputs):
        np.testing.assert_array_equal(np.load(o.path), got[k])
