"""Batch jobs killed with SIGKILL restart where they stopped: `generate` on a folder and `preprocess mead` are killed
during an atomic write (PROBTALK3D_FAULT=write:N, io.py: the temporary file is complete, the rename has not happened),
every file that looks finished is complete and equal to an uninterrupted run's, and a rerun skips the finished
outputs, writes only the rest and ends with the same files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from helpers.mead import make_hdf5, make_m4a
from helpers.reliability import tone
from probtalk3d_cli.io import TMP_MARK


def _run(args, fault=None):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("PROBTALK3D_FAULT", None)
    if fault:
        env["PROBTALK3D_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "probtalk3d_cli", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=300)


def _finished(folder: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file that looks finished (no temporary marker)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and TMP_MARK not in p.name}


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if TMP_MARK in p.name]


def test_generate_folder_killed_then_rerun(bad_inputs, tmp_path):
    src = tmp_path / "speech"
    src.mkdir()
    for i in range(5):
        sf.write(src / f"clip{i}.wav", tone(0.6 + 0.1 * i, freq=180.0 + 20 * i), 16000, subtype="PCM_16")
    args = ["-q", "generate", "-m", bad_inputs.pred, src, "--emotion", "happy", "--seed", "7", "--device", "cpu"]
    ref = tmp_path / "ref"
    r = _run(args + ["-o", ref])
    assert r.returncode == 0, r.stderr
    reference = _finished(ref)
    assert len(reference) == 10  # a params file and a sidecar per clip

    out = tmp_path / "out"
    r = _run(args + ["-o", out], fault="write:5")  # the 3rd clip's params file, temporary written, not renamed
    assert r.returncode == -signal.SIGKILL
    done = _finished(out)
    assert sorted(done) == sorted(reference)[:4]  # clips 0 and 1: params + sidecar
    for name, data in done.items():  # what looks finished is finished
        assert data == reference[name], name
    assert len(_temporaries(out)) == 1  # the killed write's hidden temporary, never taken for an output

    r = _run(args + ["-o", out])
    assert r.returncode == 0, r.stderr
    assert _finished(out) == reference
    assert not _temporaries(out)  # rewriting that output removed the stale temporary


def test_generate_rerun_reports_skipped_jobs(bad_inputs, tmp_path):
    src = tmp_path / "speech"
    src.mkdir()
    for i in range(3):
        sf.write(src / f"c{i}.wav", tone(0.6), 16000, subtype="PCM_16")
    args = ["generate", "-m", bad_inputs.pred, src, "-o", tmp_path / "out", "--device", "cpu"]
    r = _run(args, fault="write:3")
    assert r.returncode == -signal.SIGKILL
    r = _run(args)
    assert r.returncode == 0, r.stderr
    assert "(1 job(s) already done" in r.stdout + r.stderr


@pytest.fixture()
def mead_tree(tmp_path):
    a_root, m_root = tmp_path / "EMICA-MEAD_flame2020", tmp_path / "MEAD"
    for i, (emo, level, sent) in enumerate([("neutral", 1, "001"), ("neutral", 1, "002"), ("happy", 2, "003"),
                                            ("angry", 3, "004")]):
        make_hdf5(a_root / "M003" / "front" / emo / f"level_{level}" / sent / "shape_pose_cam.hdf5", 12 + i, i)
        make_m4a(m_root / "M003" / "audio" / emo / f"level_{level}" / f"{sent}.m4a", seconds=0.5, freq=300 + 50 * i)
    return a_root, m_root


def test_preprocess_mead_killed_then_rerun(mead_tree, tmp_path):
    a_root, m_root = mead_tree
    args = ["-q", "preprocess", "mead", "--animation-dir", a_root, "--audio-dir", m_root, "--workers", "1"]
    ref = tmp_path / "ref"
    r = _run(args + ["--out", ref])
    assert r.returncode == 0, r.stderr
    reference = _finished(ref)
    reference.pop("preprocess_report.json")
    assert len(reference) == 8  # param + wav per clip

    out = tmp_path / "out"
    r = _run(args + ["--out", out], fault="write:4")
    assert r.returncode == -signal.SIGKILL
    done = _finished(out)
    assert 0 < len(done) < len(reference)
    for name, data in done.items():
        assert data == reference[name], name
    assert len(_temporaries(out)) == 1

    r = _run(args + ["--out", out])
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "preprocess_report.json").read_text())
    final = _finished(out)
    final.pop("preprocess_report.json")
    assert final == reference
    counts = report["counts"]
    assert counts["skipped_existing"] >= 1 and counts["written"] >= 1
    assert counts["skipped_existing"] + counts["written"] == 4
    assert not _temporaries(out)
