"""Exact resume: a run killed at any moment (SIGKILL after chosen steps, during checkpoint saves, SIGTERM, SIGINT)
and resumed with --resume ends with the same weights and metrics as an uninterrupted run.

Kill points are injected with the test-only environment variable PROBTALK3D_FAULT (training/trainer.py):
"step:N" SIGKILLs right after optimiser step N, "save:N" during the N-th checkpoint write of the process (temporary
file complete, not yet renamed). Kill points are chained: each resumed process is killed again at a later point.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

STEPS = ("train_prior:\n  epochs: 2\n  save_every_steps: 3\n  batch_size: 6\n  val_every: 5\n"
         "train_pred:\n  epochs: 1\n  max_steps: 6\n  save_every_steps: 2\n  batch_size: 4\n"
         "data:\n  max_seconds: 1.5\n")  # random crops must also be reproduced on resume


def _cmd(stage, data, out, cfgs, extra=()):
    cmd = [sys.executable, "-m", "probtalk3d_cli", "-q", stage, "--data", str(data), "--out", str(out), "--device",
           "cpu"]
    for c in cfgs:
        cmd += ["--config", str(c)]
    return cmd + list(extra)


def _env():
    env = dict(os.environ)
    env.pop("PROBTALK3D_FAULT", None)
    env["OMP_NUM_THREADS"] = "1"  # tiny models: threads only add contention
    return env


def _run(cmd, fault=None, timeout=300):
    env = _env()
    if fault:
        env["PROBTALK3D_FAULT"] = fault
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _state(run: Path):
    ck = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    return ck["model"], ck["train_state"]


def _history(run: Path):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("seconds")
    return rows


def _assert_same(run_a: Path, run_b: Path):
    ma, ta = _state(run_a)
    mb, tb = _state(run_b)
    assert ma.keys() == mb.keys()
    for k in ma:
        torch.testing.assert_close(ma[k], mb[k], rtol=1e-6, atol=1e-7, msg=f"tensor {k} differs after resume")
    assert (ta["epoch"], ta["step"], ta["finished"]) == (tb["epoch"], tb["step"], tb["finished"])
    ha, hb = _history(run_a), _history(run_b)
    assert len(ha) == len(hb)
    for ra, rb in zip(ha, hb):
        assert ra.keys() == rb.keys()
        for split in ("train", "val"):
            assert ra[split].keys() == rb[split].keys()
            for k in ra[split]:
                assert ra[split][k] == pytest.approx(rb[split][k], rel=1e-6, abs=1e-9), (split, k)


def _complete_files_load(run: Path) -> int:
    """Every file that looks complete (no temporary marker) loads; returns the number of partial-looking files."""
    for name in ("last.pt", "best.pt"):
        if (run / name).exists():
            torch.load(run / name, map_location="cpu", weights_only=True)
    if (run / "metrics.jsonl").exists():
        _history(run)
    return sum(1 for p in run.iterdir() if ".tmp-" not in p.name and p.stat().st_size == 0)


@pytest.fixture(scope="module")
def cfgs(tmp_path_factory, tiny_config_path):
    p = tmp_path_factory.mktemp("cfg") / "steps.yaml"
    p.write_text(STEPS)
    return [tiny_config_path, p]


@pytest.fixture(scope="module")
def reference_run(synthetic_data, cfgs, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    r = _run(_cmd("train-prior", synthetic_data, out, cfgs))
    assert r.returncode == 0, r.stderr
    return out


def test_chained_sigkills_then_resume_match(synthetic_data, cfgs, reference_run, tmp_path):
    spe = [json.loads(line) for line in (reference_run / "metrics.jsonl").read_text().splitlines()][1]["step"]
    assert spe >= 6
    # after step 2 (before any checkpoint), mid-epoch during a save, exactly at the epoch end, during the epoch-end
    # save, and early in the second epoch
    faults = ["step:2", "save:1", f"step:{spe}", "save:1", f"step:{spe + 2}"]
    out = tmp_path / "run"
    partial_found = 0
    for i, fault in enumerate(faults):
        r = _run(_cmd("train-prior", synthetic_data, out, cfgs, ["--resume"] if i else []), fault=fault)
        assert r.returncode == -signal.SIGKILL, (fault, r.returncode, r.stderr[-800:])
        partial_found += _complete_files_load(out)
    r = _run(_cmd("train-prior", synthetic_data, out, cfgs, ["--resume"]))
    assert r.returncode == 0, r.stderr[-2000:]
    assert partial_found == 0
    assert not list(out.glob(".*.tmp-*"))  # stale temporaries of killed saves were cleared on resume
    _assert_same(reference_run, out)


def _wait_for_new(path: Path, proc, after: float, timeout=120):
    """Wait until `path` exists with a modification time later than `after` (the process has made progress)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if path.exists() and path.stat().st_mtime > after:
            return
        time.sleep(0.05)


def test_sigterm_and_sigint_save_then_resume_match(synthetic_data, cfgs, reference_run, tmp_path):
    out = tmp_path / "run"
    env = _env()
    env["PROBTALK3D_FAULT"] = "slow:0.4"  # keep the run going long enough for the signals to land mid-training
    for i, (sig, code) in enumerate([(signal.SIGTERM, 143), (signal.SIGINT, 130)]):
        before = _state(out)[1]["step"] if (out / "last.pt").exists() else 0
        started = time.time()
        proc = subprocess.Popen(_cmd("train-prior", synthetic_data, out, cfgs, ["--resume"] if i else []), env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_for_new(out / "last.pt", proc, started)  # a mid-epoch checkpoint every 3 steps
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == code, err[-1000:]
        assert "--resume" in err and "Traceback" not in err
        assert _state(out)[1]["step"] > before
        assert not _state(out)[1]["finished"]
    r = _run(_cmd("train-prior", synthetic_data, out, cfgs, ["--resume"]))
    assert r.returncode == 0, r.stderr[-2000:]
    _assert_same(reference_run, out)


def test_stage2_sigkill_then_resume_match(synthetic_data, tiny_prior_run, cfgs, tmp_path):
    ref = tmp_path / "ref"
    extra = ["--prior", str(tiny_prior_run)]
    r = _run(_cmd("train-pred", synthetic_data, ref, cfgs, extra))
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "run"
    killed = _run(_cmd("train-pred", synthetic_data, out, cfgs, extra), fault="step:3")
    assert killed.returncode == -signal.SIGKILL
    r = _run(_cmd("train-pred", synthetic_data, out, cfgs, ["--resume"]))
    assert r.returncode == 0, r.stderr[-2000:]
    _assert_same(ref, out)
