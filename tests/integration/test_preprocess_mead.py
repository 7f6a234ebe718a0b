"""`preprocess mead` on a tiny fake EMOTE/MEAD tree: outputs, report, missing/corrupt files, resume, workers."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import soundfile as sf

from helpers.mead import make_hdf5, make_m4a
from probtalk3d_cli.data.mead import REPORT_FILE, preprocess_mead


def anim(root, subj, emo, level, sent):
    return root / subj / "front" / emo / f"level_{level}" / sent / "shape_pose_cam.hdf5"


def audio(root, subj, emo, level, sent):
    return root / subj / "audio" / emo / f"level_{level}" / f"{sent}.m4a"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    base = tmp_path_factory.mktemp("emote")
    a_root, m_root = base / "EMICA-MEAD_flame2020", base / "MEAD"
    expected = {}
    make_m4a(audio(m_root, "M003", "neutral", 1, "001"))
    good_m4a = audio(m_root, "M003", "neutral", 1, "001").read_bytes()

    def m4a(*where):
        p = audio(m_root, *where)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(good_m4a)

    expected["M003_001_0_0"] = make_hdf5(anim(a_root, "M003", "neutral", 1, "001"), 12, 0)
    expected["M003_003_1_1"] = make_hdf5(anim(a_root, "M003", "happy", 2, "003"), 7, 1)
    m4a("M003", "happy", 2, "003")
    expected["M003_030_6_2"] = make_hdf5(anim(a_root, "M003", "angry", 3, "030"), 5, 2)  # no audio
    m4a("M003", "sad", 1, "002")  # no animation
    bad_h5 = anim(a_root, "M003", "fear", 1, "001")
    bad_h5.parent.mkdir(parents=True)
    bad_h5.write_bytes(b"this is not an HDF5 file at all")
    m4a("M003", "fear", 1, "001")
    expected["W009_005_0_0"] = make_hdf5(anim(a_root, "W009", "neutral", 1, "005"), 9, 3)
    bad_m4a = audio(m_root, "W009", "neutral", 1, "005")
    bad_m4a.parent.mkdir(parents=True)
    bad_m4a.write_bytes(b"\x00\x01garbage, not AAC")
    # a wrongly shaped file, and folders outside the layout (listed as ignored)
    wrong = anim(a_root, "W009", "sad", 2, "004")
    wrong.parent.mkdir(parents=True)
    with h5py.File(wrong, "w") as fh:
        fh.create_dataset("shape", data=np.zeros((1, 4, 300), np.float32))
        fh.create_dataset("exp", data=np.zeros((1, 5, 100), np.float32))
        fh.create_dataset("jaw", data=np.zeros((1, 4, 3), np.float32))
    (a_root / "M003" / "front" / "bored" / "level_1" / "001").mkdir(parents=True)
    (m_root / "W009" / "audio" / "neutral" / "level_1" / "notes.txt").write_text("x")
    return a_root, m_root, expected


@pytest.fixture(scope="module")
def first_run(tree, tmp_path_factory):
    a_root, m_root, expected = tree
    out = tmp_path_factory.mktemp("data")
    report = preprocess_mead(a_root, m_root, out, workers=1)
    return out, report


def test_outputs(tree, first_run):
    _, _, expected = tree
    out, _ = first_run
    for key in ("M003_001_0_0", "M003_003_1_1", "M003_030_6_2", "W009_005_0_0"):
        arr = np.load(out / "param" / f"{key}.npy")
        assert arr.dtype == np.float32 and arr.shape == expected[key].shape
        np.testing.assert_array_equal(arr, expected[key])  # shape | exp | jaw, unchanged values
    assert sorted(p.name for p in (out / "param").iterdir()) == [
        "M003_001_0_0.npy", "M003_003_1_1.npy", "M003_030_6_2.npy", "W009_005_0_0.npy"]
    assert sorted(p.name for p in (out / "wav").iterdir()) == [
        "M003_001_0_0.wav", "M003_001_4_0.wav", "M003_002_2_0.wav", "M003_003_1_1.wav"]  # each source on its own
    info = sf.info(str(out / "wav" / "M003_001_0_0.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert abs(info.frames - 8000) < 1100  # 0.5 s (+ AAC priming/padding)
    data, _ = sf.read(str(out / "wav" / "M003_001_0_0.wav"))
    spec = np.abs(np.fft.rfft(data))
    assert abs(np.argmax(spec) * 16000 / data.size - 440) < 5  # still the 440 Hz tone after resampling


def test_report(first_run):
    out, report = first_run
    on_disk = json.loads((out / REPORT_FILE).read_text())
    assert on_disk == {k: v for k, v in report.items() if k != "report_path"}
    assert report["written"] == ["M003_001_0_0", "M003_003_1_1"]
    assert report["skipped_existing"] == []
    assert report["missing_audio"] == ["M003_030_6_2"]
    assert report["missing_animation"] == ["M003_002_2_0"]
    bad = {e["key"]: e for e in report["unreadable"]}
    assert sorted(bad) == ["M003_001_4_0", "W009_004_2_1", "W009_005_0_0"]
    assert bad["M003_001_4_0"]["file"].endswith("fear/level_1/001/shape_pose_cam.hdf5")
    assert "HDF5" in bad["M003_001_4_0"]["reason"]
    assert bad["W009_005_0_0"]["file"].endswith(".m4a") and "could not be decoded" in bad["W009_005_0_0"]["reason"]
    assert "different frame counts" in bad["W009_004_2_1"]["reason"]
    assert report["counts"] == {"clips": 7, "written": 2, "skipped_existing": 0, "missing_audio": 1,
                                "missing_animation": 1, "unreadable": 3, "with_param": 4, "with_wav": 4}
    assert any("bored" in i for i in report["ignored"]) and any("notes.txt" in i for i in report["ignored"])
    assert report["summary"].startswith("preprocess mead: 7 clips: 2 written, 0 already done, 1 missing audio, "
                                         "1 missing animation, 3 unreadable")


def test_rerun_skips_existing_and_redoes_damaged(tree, first_run, tmp_path):
    import shutil

    a_root, m_root, expected = tree
    src, _ = first_run
    out = tmp_path / "data"
    shutil.copytree(src, out)
    stamp = {p.name: p.stat().st_mtime_ns for p in (out / "param").iterdir()}
    report = preprocess_mead(a_root, m_root, out, workers=1)
    assert report["written"] == [] and report["skipped_existing"] == ["M003_001_0_0", "M003_003_1_1"]
    assert report["missing_audio"] == ["M003_030_6_2"] and report["counts"]["unreadable"] == 3
    assert {p.name: p.stat().st_mtime_ns for p in (out / "param").iterdir()} == stamp
    # a truncated param file and a wav of the wrong rate are redone
    p = out / "param" / "M003_003_1_1.npy"
    p.write_bytes(p.read_bytes()[:200])
    sf.write(str(out / "wav" / "M003_001_0_0.wav"), np.zeros(100), 8000)
    report = preprocess_mead(a_root, m_root, out, workers=1)
    assert report["written"] == ["M003_001_0_0", "M003_003_1_1"]
    np.testing.assert_array_equal(np.load(p), expected["M003_003_1_1"])
    assert sf.info(str(out / "wav" / "M003_001_0_0.wav")).samplerate == 16000
    assert not [f for f in out.rglob("*") if ".tmp-" in f.name]


def test_two_workers_give_identical_files(tree, first_run, tmp_path):
    a_root, m_root, _ = tree
    ref, ref_report = first_run
    report = preprocess_mead(a_root, m_root, tmp_path, workers=2)
    for sub in ("param", "wav"):
        names = sorted(p.name for p in (ref / sub).iterdir())
        assert names == sorted(p.name for p in (tmp_path / sub).iterdir())
        for n in names:
            assert (ref / sub / n).read_bytes() == (tmp_path / sub / n).read_bytes(), n
    for k in ("written", "missing_audio", "missing_animation", "unreadable", "counts"):
        assert report[k] == ref_report[k]


def test_subject_filter_and_fatal_errors(tree, tmp_path):
    a_root, m_root, _ = tree
    report = preprocess_mead(a_root, m_root, tmp_path / "w", workers=1, subjects=["W009"])
    assert report["counts"]["clips"] == 2 and report["written"] == []
    with pytest.raises(ValueError, match=r"subject\(s\) M999 have no folder"):
        preprocess_mead(a_root, m_root, tmp_path / "x", subjects=["M999"])
    with pytest.raises(FileNotFoundError, match="--animation-dir .* does not exist"):
        preprocess_mead(tmp_path / "nope", m_root, tmp_path / "y")
    with pytest.raises(FileNotFoundError, match="--audio-dir .* does not exist"):
        preprocess_mead(a_root, tmp_path / "nope", tmp_path / "y")
    (tmp_path / "empty_a").mkdir()
    (tmp_path / "empty_m").mkdir()
    with pytest.raises(ValueError, match="no clips found"):
        preprocess_mead(tmp_path / "empty_a", tmp_path / "empty_m", tmp_path / "z")
    with pytest.raises(ValueError, match="--workers must be at least 1"):
        preprocess_mead(a_root, m_root, tmp_path / "z", workers=0)
