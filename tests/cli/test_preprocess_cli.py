"""`probtalk3d preprocess mead|synthetic` through the CLI: exit codes, summary lines, one-line errors."""

from __future__ import annotations

import subprocess

import h5py
import numpy as np
import soundfile as sf

from probtalk3d_cli.io import ffmpeg_exe


def _tree(tmp_path):
    a = tmp_path / "anim" / "M003" / "front" / "happy" / "level_2" / "004"
    a.mkdir(parents=True)
    with h5py.File(a / "shape_pose_cam.hdf5", "w") as fh:
        fh.create_dataset("shape", data=np.ones((1, 6, 300), np.float32))
        fh.create_dataset("exp", data=np.full((1, 6, 100), 0.5, np.float32))
        fh.create_dataset("jaw", data=np.full((1, 6, 3), 0.1, np.float32))
    m = tmp_path / "audio" / "M003" / "audio" / "happy" / "level_2"
    m.mkdir(parents=True)
    sf.write(str(tmp_path / "src.wav"), 0.2 * np.sin(np.arange(8000) / 5.0), 16000)
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(tmp_path / "src.wav"), "-c:a", "aac",
                    str(m / "004.m4a")], check=True)
    # a second subject with animation only: counted as missing audio, not fatal
    b = tmp_path / "anim" / "W009" / "front" / "neutral" / "level_1" / "001"
    b.mkdir(parents=True)
    (b / "shape_pose_cam.hdf5").write_bytes((a / "shape_pose_cam.hdf5").read_bytes())
    return tmp_path / "anim", tmp_path / "audio"


def test_mead_summary_and_report(cli, tmp_path):
    anim, audio = _tree(tmp_path)
    out = tmp_path / "data"
    r = cli("preprocess", "mead", "--animation-dir", anim, "--audio-dir", audio, "--out", out, "--workers", "1")
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("preprocess mead: 2 clips: 1 written, 0 already done, 1 missing audio, "
                               "0 missing animation, 0 unreadable")
    assert lines[1] == f"report: {out / 'preprocess_report.json'}"
    assert np.load(out / "param" / "M003_004_1_1.npy").shape == (1, 6, 403)
    assert (out / "wav" / "M003_004_1_1.wav").is_file() and (out / "param" / "W009_001_0_0.npy").is_file()
    r = cli("--quiet", "preprocess", "mead", "--animation-dir", anim, "--audio-dir", audio, "--out", out,
            "--subjects", "M003")
    assert r.exit_code == 0 and r.stdout == ""
    import json

    rep = json.loads((out / "preprocess_report.json").read_text())
    assert rep["skipped_existing"] == ["M003_004_1_1"] and rep["counts"]["clips"] == 1


def test_mead_fatal_errors_are_one_line(cli, tmp_path):
    anim, audio = _tree(tmp_path)
    r = cli("preprocess", "mead", "--animation-dir", tmp_path / "missing", "--audio-dir", audio, "--out",
            tmp_path / "d")
    assert r.exit_code == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: --animation-dir")
    assert "does not exist" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "afile").write_text("x")
    r = cli("preprocess", "mead", "--animation-dir", anim, "--audio-dir", audio, "--out", tmp_path / "afile")
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and "is a file, not a folder" in r.stderr
    r = cli("preprocess", "mead", "--animation-dir", anim, "--audio-dir", audio, "--out", tmp_path / "d",
            "--subjects", "M003,X1")
    assert r.exit_code == 1 and "X1 have no folder" in r.stderr
    r = cli("preprocess", "mead", "--animation-dir", anim, "--audio-dir", audio, "--out", tmp_path / "d",
            "--workers", "0")
    assert r.exit_code == 2  # usage error from the option range


def test_synthetic_cli(cli, tmp_path):
    out = tmp_path / "synth"
    r = cli("preprocess", "synthetic", "--out", out, "--subjects", "1", "--sentences", "3", "--seed", "3")
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("preprocess synthetic: 67 clips of 1 subjects, ")
    assert "stage-2 train/val/test 23/22/22 clips" in lines[0]
    assert lines[1] == f"splits: {out / 'splits.json'}"
    assert len(list((out / "param").glob("*.npy"))) == 67 == len(list((out / "wav").glob("*.wav")))
    before = (out / "wav" / "M001_002_3_1.wav").read_bytes()
    r = cli("-q", "preprocess", "synthetic", "--out", out, "--subjects", "1", "--sentences", "3", "--seed", "3")
    assert r.exit_code == 0 and r.stdout == ""  # the same corpus again: allowed, identical
    assert (out / "wav" / "M001_002_3_1.wav").read_bytes() == before
    r = cli("preprocess", "synthetic", "--out", out, "--subjects", "2", "--sentences", "3")
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and "other settings" in r.stderr
    r = cli("preprocess", "synthetic", "--out", tmp_path / "x", "--sentences", "2")
    assert r.exit_code == 2


def test_help_examples(cli):
    for sub in ("mead", "synthetic"):
        r = cli("preprocess", sub, "--help")
        assert r.exit_code == 0 and f"Example: probtalk3d preprocess {sub} --" in r.stdout
