"""`probtalk3d render`: an mp4 with audio from params/motion/vertex files, side by side, flags and errors."""

from __future__ import annotations

import numpy as np
import pytest

from probtalk3d_cli.flame import FlameConverter, load_flame
from probtalk3d_cli.io import save_wav


def _video(path):
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    return sum(1 for _ in reader), meta


@pytest.fixture()
def files(tmp_path):
    motion = np.zeros((6, 53), dtype=np.float32)
    motion[1::2, 0] = 2.0
    np.save(tmp_path / "motion.npy", motion)
    params = np.zeros((1, 6, 403))
    params[0, :, 300:350] = motion[:, :50]
    np.save(tmp_path / "params.npy", params)
    verts = FlameConverter(load_flame("demo")).vertices(motion[:, :50], motion[:, 50:])
    np.save(tmp_path / "verts.npy", verts)
    save_wav(tmp_path / "speech.wav", np.zeros(8000, np.float32), 16000)
    return tmp_path


def test_render_motion_with_audio(cli, files):
    out = files / "video.mp4"
    r = cli("render", files / "motion.npy", "--out", out, "--flame-model", "demo", "--size", "64", "--audio",
            files / "speech.wav", "--fps", "25", "--color", "0.8,0.6,0.5", "--backend", "auto")
    assert r.exit_code == 0, r.output
    assert "6 frames, 64x64, 25 fps" in r.stdout and "speech.wav" in r.stdout
    n, meta = _video(out)
    assert n == 6 and meta["size"] == (64, 64) and meta["audio_codec"] == "aac"


def test_side_by_side_of_params_motion_and_vertices(cli, files):
    out = files / "sbs.mp4"
    r = cli("render", files / "params.npy", "--side-by-side", files / "motion.npy", "--side-by-side",
            files / "verts.npy", "--labels", "params,motion,verts", "--out", out, "--flame-model", "demo", "--size",
            "48", "--camera-distance", "0.9")
    assert r.exit_code == 0, r.output
    n, meta = _video(out)
    assert n == 6 and meta["size"] == (144, 48) and meta.get("audio_codec") is None  # no --audio, no sidecar


def test_render_errors(cli, files):
    r = cli("render", files / "motion.npy", "--out", files / "a.mp4", "--flame-model", "demo", "--size", "65")
    assert r.exit_code == 1 and "even" in r.stderr
    r = cli("render", files / "motion.npy", "--out", files / "a.mp4", "--flame-model", "demo", "--audio",
            files / "nope.wav")
    assert r.exit_code == 1 and "nope.wav" in r.stderr
    r = cli("render", files / "motion.npy", "--out", files / "a.mp4", "--flame-model", "demo", "--color", "1,2")
    assert r.exit_code == 2
    r = cli("render", files / "motion.npy", "--out", files / "a.mp4", "--flame-model", "demo", "--camera", "10,95")
    assert r.exit_code == 2 and "YAW,PITCH" in r.output
    r = cli("render", files / "motion.npy", "--out", files / "a.mp4", "--flame-model", "demo", "--set",
            "render.camera=[1]")
    assert r.exit_code == 1 and "render.camera" in r.stderr
    r = cli("render", files / "motion.npy", "--out", files / "a.mp4", "--flame-model", "demo", "--backend", "wgl")
    assert r.exit_code == 1 and "render.backend" in r.stderr
    np.save(files / "bad.npy", np.zeros((6, 7), dtype=np.float32))
    r = cli("render", files / "bad.npy", "--out", files / "a.mp4", "--flame-model", "demo")
    assert r.exit_code == 1 and "bad.npy" in r.stderr
    assert not list(files.glob("*.mp4")) and not list(files.glob(".*"))


def _first_frame(path):
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    return np.frombuffer(next(reader), np.uint8).reshape(h, w, 3).astype(np.int16)


def test_camera_views(cli, files):
    frames = {}
    for view in ("front", "left", "30,20"):
        out = files / f"view_{view.replace(',', '_')}.mp4"
        r = cli("render", files / "motion.npy", "--out", out, "--flame-model", "demo", "--size", "64", "--camera", view)
        assert r.exit_code == 0, r.output
        frames[view] = _first_frame(out)
    for view, img in frames.items():
        assert (np.abs(img - 255).sum(axis=2) > 30).mean() > 0.05, view  # the head is in the picture
    assert np.abs(frames["front"] - frames["left"]).mean() > 5  # a different view, not the same picture
    assert np.abs(frames["left"] - frames["30,20"]).mean() > 2
