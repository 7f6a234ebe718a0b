"""Valid but unusual inputs must succeed: silent audio, 8/24/32-bit float PCM, 8-48 kHz, stereo and 6 channels,
mp3/flac/ogg/m4a, a 10-minute file, file names with spaces and non-ASCII characters (generate, to-vertices, render,
export), one-frame animations."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import soundfile as sf

from helpers.reliability import tone
from probtalk3d_cli.data.schema import motion_frames_for_audio
from probtalk3d_cli.io import ffmpeg_exe

ODD_NAME = "with space ünïcødé 声"
LOSSY = ("mp3", "m4a", "ogg")


def _frames(seconds: float) -> int:
    return motion_frames_for_audio(int(round(seconds * 16000)))


@pytest.fixture(scope="module")
def unusual_audio(tmp_path_factory):
    """name -> expected frame count; every file lasts 1.3 s."""
    root = tmp_path_factory.mktemp("unusual_audio")
    sec = 1.3
    x16 = np.round(tone(sec) * 32767) / 32767
    files = {
        "silent": lambda p: sf.write(p, np.zeros(int(sec * 16000)), 16000, subtype="PCM_16"),
        "pcm16": lambda p: sf.write(p, x16, 16000, subtype="PCM_16"),
        "stereo_same_channels": lambda p: sf.write(p, np.stack([x16, x16], 1), 16000, subtype="PCM_16"),
        "u8": lambda p: sf.write(p, tone(sec), 16000, subtype="PCM_U8"),
        "pcm24": lambda p: sf.write(p, tone(sec), 16000, subtype="PCM_24"),
        "six_channels": lambda p: sf.write(p, tone(sec, channels=6), 16000, subtype="PCM_16"),
    }
    for sr in (8000, 11025, 22050, 32000, 44100, 48000):
        files[f"rate_{sr}"] = lambda p, sr=sr: sf.write(p, tone(sec, sr), sr, subtype="PCM_16")
    for name, write in files.items():
        write(root / f"{name}.wav")
    decoded, _ = sf.read(root / "pcm16.wav", dtype="float32")  # the same samples as 32-bit float PCM
    sf.write(root / "float32_same_samples.wav", decoded, 16000, subtype="FLOAT")
    sf.write(root / "fmt_flac.flac", tone(sec, 44100), 44100, subtype="PCM_16")
    sf.write(root / "fmt_ogg.ogg", tone(sec, 44100), 44100)
    src = root / "src.wav"
    sf.write(src, tone(sec, 44100, channels=2), 44100, subtype="PCM_16")
    for ext, codec in (("mp3", "libmp3lame"), ("m4a", "aac")):
        subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(src), "-c:a", codec, str(root / f"fmt_{ext}.{ext}")],
                       check=True)
    src.unlink()
    sf.write(root / f"{ODD_NAME}.wav", tone(sec), 16000, subtype="PCM_16")
    return root, _frames(sec)


def test_unusual_audio_generates(unusual_audio, bad_inputs, cli, tmp_path):
    root, frames = unusual_audio
    out = tmp_path / "out"
    r = cli("-q", "generate", "-m", bad_inputs.pred, root, "-o", out, "--deterministic", "--device", "cpu")
    assert r.exit_code == 0, r.output
    names = sorted(p.stem for p in root.iterdir())
    assert len(names) == 18
    subject = json.loads(next(out.glob("*.json")).read_text())["subject"]
    results = {}
    for n in names:
        f = out / f"{n}_{subject}_neutral_low.npy"
        a = np.load(f)
        assert a.dtype == np.float64 and a.ndim == 3 and a.shape[0] == 1 and a.shape[2] == 403, n
        lossy = n.split("_")[-1] in LOSSY
        assert abs(a.shape[1] - frames) <= (1 if lossy else 0), (n, a.shape, frames)
        assert np.isfinite(a).all() and np.abs(a).max() > 0, n
        results[n] = a
        meta = json.loads(f.with_suffix(".json").read_text())
        assert meta["frames"] == a.shape[1]
    # same samples in another container or layout give the same animation (deterministic sampling)
    np.testing.assert_array_equal(results["float32_same_samples"], results["pcm16"])
    np.testing.assert_array_equal(results["stereo_same_channels"], results["pcm16"])
    sidecar = json.loads((out / f"rate_8000_{subject}_neutral_low.json").read_text())
    assert sidecar["audio_sample_rate"] == 8000


def test_odd_file_names_through_every_command(unusual_audio, bad_inputs, cli, tmp_path):
    root, frames = unusual_audio
    src = tmp_path / "ïn pút"
    src.mkdir()
    wav = src / f"{ODD_NAME}.wav"
    wav.write_bytes((root / f"{ODD_NAME}.wav").read_bytes())
    out = tmp_path / "öut dir"
    r = cli("-q", "generate", "-m", bad_inputs.pred, wav, "-o", out, "--emotion", "happy", "--device", "cpu")
    assert r.exit_code == 0, r.output
    params = next(out.glob("*.npy"))
    assert params.name.startswith(ODD_NAME) and np.load(params).shape == (1, frames, 403)
    r = cli("-q", "to-vertices", params, "--out", out / "vérts", "--flame-model", "demo", "--device", "cpu")
    assert r.exit_code == 0, r.output
    verts = np.load(out / "vérts" / f"{params.stem}_verts.npy")
    assert verts.shape[0] == frames and verts.shape[2] == 3
    r = cli("-q", "render", params, "--out", out / f"{ODD_NAME}.mp4", "--flame-model", "demo", "--size", "64",
            "--device", "cpu")
    assert r.exit_code == 0, r.output
    video = out / f"{ODD_NAME}.mp4"
    assert video.stat().st_size > 1000
    probe = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(video)], capture_output=True, text=True)
    assert "Audio: aac" in probe.stderr and "Video: h264" in probe.stderr  # the sidecar's audio was found
    for suffix in (".glb", ".csv"):
        target = out / f"{ODD_NAME} ëxport {suffix[1:]}{suffix}"  # one sidecar per export stem
        r = cli("-q", "export", params, "--out", target, "--flame-model", "demo")
        assert r.exit_code == 0, r.output
        assert target.stat().st_size > 100
    rows = (out / f"{ODD_NAME} ëxport csv.csv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == frames + 1
    side = json.loads((out / f"{ODD_NAME} ëxport glb.json").read_text(encoding="utf-8"))
    assert side["audio_name"] == wav.name


def test_ten_minute_file(bad_inputs, cli, tmp_path):
    """10 minutes of audio through the windowed path (memory is the benchmark's job; this checks it works)."""
    rng = np.random.default_rng(0)
    seconds = 600
    wav = tmp_path / "long.wav"
    speechish = tone(seconds) * (1 + 0.2 * rng.standard_normal(seconds * 16000))
    sf.write(wav, np.clip(speechish, -1, 1), 16000, subtype="PCM_16")
    r = cli("-q", "generate", "-m", bad_inputs.pred, wav, "-o", tmp_path / "out", "--format", "motion",
            "--device", "cpu")
    assert r.exit_code == 0, r.output
    a = np.load(next((tmp_path / "out").glob("*.npy")))
    assert a.shape == (_frames(seconds), 53) == (14999, 53)
    assert np.isfinite(a).all()
    meta = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    assert meta["windows"] > 1


def test_one_frame_animations(cli, tmp_path):
    """The shortest animations (1 frame of params or motion) convert and export."""
    p = tmp_path / "one.npy"
    np.save(p, np.zeros((1, 1, 403), np.float64))
    m = tmp_path / "one_motion.npy"
    np.save(m, np.zeros((1, 53), np.float32))
    r = cli("-q", "to-vertices", p, m, "--out", tmp_path / "v", "--flame-model", "demo", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert np.load(tmp_path / "v" / "one_verts.npy").shape[0] == 1
    for target in ("one_glb.glb", "one_csv.csv"):
        r = cli("-q", "export", m, "--out", tmp_path / "e" / target, "--flame-model", "demo")
        assert r.exit_code == 0, r.output
    assert len((tmp_path / "e" / "one_csv.csv").read_text().splitlines()) == 2
