"""Offscreen rendering of the demo head to mp4: frames, size, audio, colours, the mouth, side by side, GL backends."""

from __future__ import annotations

import ctypes.util
import json
import math
import os

import numpy as np
import pytest

from probtalk3d_cli.demo_head import MOUTH_Y
from probtalk3d_cli.flame import FlameConverter, load_flame
from probtalk3d_cli.io import load_audio, save_wav
from probtalk3d_cli.render import (
    YFOV,
    MeshRenderer,
    choose_gl_backend,
    find_sidecar_audio,
    fit_audio,
    frame_camera,
    probe_gl_backends,
    render,
    render_video,
    vertex_normals,
)

SIZE = 128


@pytest.fixture(scope="module")
def flame():
    return load_flame("demo")


@pytest.fixture(scope="module")
def conv(flame):
    return FlameConverter(flame)


def read_video(path):
    """(frames [N, H, W, 3] uint8, metadata) decoded by the ffmpeg that imageio-ffmpeg ships."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    frames = np.stack([np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader])
    return frames, meta


def talking(conv, t=10):
    """Closed mouth on even frames, open (jaw + exp0) on odd frames."""
    exp = np.zeros((t, 100))
    jaw = np.zeros((t, 3))
    exp[1::2, 0] = 2.0
    jaw[1::2, 0] = 0.25
    return conv.vertices(exp, jaw)


def project(point, cam_pose, size):
    """Pixel (row, col) of a world point for the renderer's camera (yfov = YFOV, square image)."""
    p = cam_pose[:3, :3].T @ (np.asarray(point, dtype=np.float64) - cam_pose[:3, 3])  # camera coordinates
    f = (size / 2) / math.tan(YFOV / 2)
    return int(round(size / 2 - f * p[1] / -p[2])), int(round(size / 2 + f * p[0] / -p[2]))


def test_video_frames_size_codec_and_audio(tmp_path, conv):
    wav = tmp_path / "speech.wav"
    sr = 16000
    save_wav(wav, 0.3 * np.sin(2 * np.pi * 220 * np.arange(int(0.6 * sr)) / sr), sr)  # 0.6 s for 0.4 s of video
    out = tmp_path / "video.mp4"
    res = render_video([talking(conv)], conv.faces, out, fps=25, size=SIZE, audio=wav)
    assert res.frames == 10 and (res.width, res.height) == (SIZE, SIZE) and "trimmed" in res.audio_note
    frames, meta = read_video(out)
    assert frames.shape == (10, SIZE, SIZE, 3)
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p") and meta["fps"] == 25
    assert meta["audio_codec"] == "aac"
    audio = load_audio(out, sample_rate=16000)
    assert abs(len(audio) / 16000 - 0.4) < 0.03
    assert [p.name for p in tmp_path.iterdir() if p.name != "speech.wav"] == ["video.mp4"]  # no temporary files


def test_short_audio_is_padded(tmp_path, conv):
    wav = tmp_path / "short.wav"
    save_wav(wav, np.full(3200, 0.1, dtype=np.float32), 16000)  # 0.2 s
    res = render_video([talking(conv, 10)], conv.faces, tmp_path / "v.mp4", size=64, audio=wav)
    assert "padded" in res.audio_note
    assert abs(len(load_audio(tmp_path / "v.mp4", 16000)) / 16000 - 0.4) < 0.03


def test_fit_audio_exact_lengths():
    a = np.ones(1000, dtype=np.float32)
    trimmed, note = fit_audio(a, 100, frames=5, fps=1)  # 5 s at 100 Hz = 500 samples
    assert len(trimmed) == 500 and "trimmed by 5.000 s" in note
    padded, note = fit_audio(a[:300], 100, frames=5, fps=1)
    assert len(padded) == 500 and padded[300:].sum() == 0 and "padded with 2.000 s" in note
    same, note = fit_audio(a[:500], 100, frames=5, fps=1)
    assert len(same) == 500 and "matches" in note


def test_open_mouth_differs_from_closed_in_the_mouth_area(tmp_path, conv, flame):
    seq = talking(conv, 2)
    out = tmp_path / "mouth.mp4"
    render_video([seq], conv.faces, out, size=SIZE)
    frames, _ = read_video(out)
    cam = frame_camera(seq[:1])
    front_z = flame.v_template[:, 2].max() - 0.02
    my, mx = project((0.0, MOUTH_Y, front_z), cam, SIZE)
    fy, fx = project((0.0, 0.07, front_z), cam, SIZE)  # forehead
    diff = np.abs(frames[1].astype(int) - frames[0].astype(int)).mean(-1)
    mouth = diff[my - 6:my + 7, mx - 10:mx + 11]
    forehead = diff[fy - 6:fy + 7, fx - 10:fx + 11]
    assert mouth.mean() > 25 and forehead.mean() < 3
    closed, opened = frames[0][my - 3:my + 4, mx - 4:mx + 5], frames[1][my - 3:my + 4, mx - 4:mx + 5]
    assert opened.mean() < closed.mean() - 40  # the open mouth shows the dark cavity


def test_colours_are_rgb_and_shading_is_smooth(conv, flame):
    v = conv.vertices(np.zeros((1, 100)), np.zeros((1, 3)))[0]
    cam = frame_camera(v[None])
    with MeshRenderer(conv.faces, len(v), cam, size=(96, 96), color=(0.9, 0.15, 0.1)) as r:
        img = r.render(v).astype(int)
    assert img.shape == (96, 96, 3)
    assert tuple(img[0, 0]) == (255, 255, 255)  # white background
    face = img[48 - 8:48 + 8, 48 - 8:48 + 8]
    assert (face[..., 0] > face[..., 2] + 60).all() and (face[..., 0] > face[..., 1] + 60).all()  # red, not blue
    row = img[48, 30:66, 0]
    assert np.abs(np.diff(row)).max() < 40  # no faceting steps across the cheek


def test_in_place_updates_equal_rebuilding_the_mesh(conv):
    seq = talking(conv, 3)
    cam = frame_camera(seq[:1])
    with MeshRenderer(conv.faces, conv.num_vertices, cam, size=(64, 64)) as fast:
        in_place = [fast.render(v) for v in seq]
    with MeshRenderer(conv.faces, conv.num_vertices, cam, size=(64, 64)) as slow:
        slow.render(seq[0])
        slow._primitive._buffers = []  # as if pyrender had no buffer handle: the renderer rebuilds the mesh instead
        rebuilt = [in_place[0]] + [slow.render(v) for v in seq[1:]]
        assert not slow._in_place
    for a, b in zip(in_place, rebuilt):
        np.testing.assert_array_equal(a, b)
    assert np.abs(in_place[1].astype(int) - in_place[0].astype(int)).max() > 50  # the frames really differ


def test_side_by_side_width_labels_and_held_frames(tmp_path, conv):
    a = talking(conv, 6)
    b = talking(conv, 4)
    out = tmp_path / "sbs.mp4"
    res = render_video([a, b], conv.faces, out, size=64, labels=["gt", "sample"])
    frames, _ = read_video(out)
    assert frames.shape == (6, 64, 128, 3) and res.panels == 2 and res.notes
    assert np.abs(frames[5][:, 64:].astype(int) - frames[3][:, 64:].astype(int)).mean() < 1.5  # last frame held
    plain = tmp_path / "plain.mp4"
    render_video([a, b], conv.faces, plain, size=64)
    labelled, unlabelled = read_video(out)[0][0], read_video(plain)[0][0]
    corner = (slice(0, 14), slice(0, 30))
    assert labelled[corner].mean() < unlabelled[corner].mean() - 10  # dark text on the white background
    with pytest.raises(ValueError, match="one per panel"):
        render_video([a, b], conv.faces, tmp_path / "x.mp4", size=64, labels=["only one"])


def test_render_from_files_uses_sidecar_audio(tmp_path, conv, flame):
    motion = np.zeros((8, 53), dtype=np.float32)
    motion[::2, 0] = 1.5
    np.save(tmp_path / "clip.npy", motion)
    save_wav(tmp_path / "clip_audio.wav", np.zeros(16000, np.float32), 16000)
    (tmp_path / "clip.json").write_text(json.dumps({"audio": "clip_audio.wav"}))
    assert find_sidecar_audio(tmp_path / "clip.npy") == tmp_path / "clip_audio.wav"
    res = render([tmp_path / "clip.npy"], tmp_path / "clip.mp4", flame, size=64)
    assert res.audio == tmp_path / "clip_audio.wav" and "trimmed" in res.audio_note
    frames, meta = read_video(tmp_path / "clip.mp4")
    assert frames.shape[0] == 8 and meta["audio_codec"] == "aac"
    (tmp_path / "clip.json").write_text(json.dumps({"audio": "missing.wav"}))
    assert find_sidecar_audio(tmp_path / "clip.npy") is None


def test_bad_inputs_leave_nothing(tmp_path, conv):
    seq = talking(conv, 3)
    for kwargs, msg in (({"size": 63}, "even"), ({"color": (2, 0, 0)}, "color"), ({"fps": 0}, "fps")):
        with pytest.raises(ValueError, match=msg):
            render_video([seq], conv.faces, tmp_path / "bad.mp4", **kwargs)
    bad = seq.copy()
    bad[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        render_video([bad], conv.faces, tmp_path / "bad.mp4", size=64)
    with pytest.raises(ValueError, match=".mp4"):
        render_video([seq], conv.faces, tmp_path / "bad.avi", size=64)
    assert list(tmp_path.iterdir()) == []


def test_vertex_normals_and_camera_framing():
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=np.float32)
    faces = np.array([[0, 1, 2], [1, 3, 2]])
    np.testing.assert_allclose(vertex_normals(verts, faces), np.tile([0, 0, 1], (4, 1)), atol=1e-7)
    cube = np.array([[x, y, z] for x in (-1, 1) for y in (-2, 2) for z in (-1, 1)], dtype=np.float64)
    pose = frame_camera(cube, drop_bottom=0.0)
    assert pose[0, 3] == 0 and pose[1, 3] == 0
    for c in cube:  # every corner lands inside the picture
        row, col = project(c, pose, 100)
        assert 0 <= row < 100 and 0 <= col < 100
    assert frame_camera(cube, distance=3.0)[2, 3] == 3.0
    # orbiting (hand-computed): yaw 90 puts the camera on +x looking along -x; pitch 30 lifts it by d sin 30
    side = frame_camera(cube, distance=3.0, yaw=90.0, drop_bottom=0.0)
    np.testing.assert_allclose(side[:3, 3], [3.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(side[:3, :3] @ [0, 0, -1], [-1.0, 0.0, 0.0], atol=1e-12)
    up = frame_camera(cube, distance=2.0, pitch=30.0, drop_bottom=0.0)
    np.testing.assert_allclose(up[:3, 3], [0.0, 1.0, 3 ** 0.5], atol=1e-12)
    np.testing.assert_allclose(up[:3, :3] @ [0, 0, -1], -up[:3, 3] / 2.0, atol=1e-12)  # looks at the centre
    np.testing.assert_allclose(up[:3, :3] @ up[:3, :3].T, np.eye(3), atol=1e-12)
    for c in cube:  # an automatic distance still frames the cube from the side
        row, col = project(c, frame_camera(cube, drop_bottom=0.0, yaw=-45.0, pitch=10.0), 100)
        assert 0 <= row < 100 and 0 <= col < 100


def test_backend_choice(monkeypatch):
    monkeypatch.setenv("PYOPENGL_PLATFORM", "egl")
    assert choose_gl_backend("auto") == "egl"
    assert choose_gl_backend("osmesa") == "osmesa"  # an explicit request wins over the environment
    monkeypatch.delenv("PYOPENGL_PLATFORM")
    assert choose_gl_backend("auto") in ("egl", "osmesa")
    with pytest.raises(ValueError, match="auto, egl or osmesa"):
        choose_gl_backend("wgl")


def test_cannot_switch_platform_after_opengl_is_loaded(conv):
    import sys

    from probtalk3d_cli.render import activate_gl_backend

    MeshRenderer(conv.faces, conv.num_vertices, np.eye(4), size=(16, 16)).close()  # loads OpenGL
    assert "OpenGL.platform" in sys.modules
    current = os.environ["PYOPENGL_PLATFORM"]
    other = "egl" if current == "osmesa" else "osmesa"
    with pytest.raises(RuntimeError, match="already initialised"):
        activate_gl_backend(other)
    assert activate_gl_backend("auto") == current == activate_gl_backend(current)


@pytest.mark.skipif(ctypes.util.find_library("OSMesa") is None, reason="libOSMesa is not installed")
def test_probe_reports_osmesa():
    report = probe_gl_backends()
    assert report["osmesa"]["ok"] is True and report["osmesa"]["renderer"]
    assert set(report) >= {"egl", "osmesa", "auto", "env"}
    assert report["auto"] in ("egl", "osmesa")
