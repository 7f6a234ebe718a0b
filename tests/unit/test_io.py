"""Atomic writes, safe output paths, audio decoding and array checks."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from probtalk3d_cli.io import atomic_path, atomic_save_npy, load_audio, load_npy, safe_join


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.npy"
    atomic_save_npy(target, np.arange(3))
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert np.array_equal(np.load(target), np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["out.npy"]


def test_atomic_path_keeps_suffix(tmp_path):
    with atomic_path(tmp_path / "video.mp4") as tmp:
        assert tmp.suffix == ".mp4" and tmp.parent == tmp_path and tmp.name.startswith(".")
        tmp.write_bytes(b"x")
    assert (tmp_path / "video.mp4").read_bytes() == b"x"


def test_safe_join_refuses_escapes(tmp_path):
    assert safe_join(tmp_path, "a/b.npy") == (tmp_path / "a" / "b.npy").resolve()
    with pytest.raises(ValueError, match="escapes"):
        safe_join(tmp_path, "../x.npy")
    with pytest.raises(ValueError, match="absolute"):
        safe_join(tmp_path, "/etc/passwd")


@pytest.mark.parametrize("subtype, sr, channels", [("PCM_16", 16000, 1), ("PCM_24", 44100, 2), ("FLOAT", 8000, 1),
                                                    ("PCM_U8", 22050, 1), ("PCM_16", 48000, 6)])
def test_load_audio_formats(tmp_path, subtype, sr, channels):
    t = np.arange(int(sr * 0.5)) / sr
    x = 0.5 * np.sin(2 * np.pi * 220 * t)
    data = np.stack([x] * channels, axis=1)
    p = tmp_path / "a.wav"
    sf.write(p, data, sr, subtype=subtype)
    y = load_audio(p)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 8000) <= 2
    assert 0.4 < np.abs(y).max() < 0.6


def test_load_audio_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_audio(tmp_path / "missing.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        load_audio(tmp_path / "empty.wav")
    (tmp_path / "text.wav").write_text("this is not audio at all " * 20)
    with pytest.raises(ValueError, match="could not be decoded"):
        load_audio(tmp_path / "text.wav")
    with pytest.raises(ValueError, match="directory"):
        load_audio(tmp_path)


def test_load_audio_nan(tmp_path):
    x = np.zeros(1600, dtype=np.float32)
    x[10] = np.nan
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(ValueError, match="NaN"):
        load_audio(tmp_path / "nan.wav")


def test_load_npy_checks(tmp_path):
    np.save(tmp_path / "ok.npy", np.ones((2, 3)))
    assert load_npy(tmp_path / "ok.npy").shape == (2, 3)
    np.save(tmp_path / "inf.npy", np.array([1.0, np.inf]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        load_npy(tmp_path / "inf.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="plain .npy"):
        load_npy(tmp_path / "obj.npy")
    (tmp_path / "trunc.npy").write_bytes((tmp_path / "ok.npy").read_bytes()[:60])
    with pytest.raises(ValueError):
        load_npy(tmp_path / "trunc.npy")


def test_outputs_get_normal_permissions(tmp_path):
    import os
    import stat

    p = atomic_save_npy(tmp_path / "x.npy", np.zeros(2))
    mode = stat.S_IMODE(os.stat(p).st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask
