"""The same training command under `torchrun --nproc_per_node=2` (gloo on CPU): DistributedDataParallel, sharded
batches, one writer, clean shutdown without hanging."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch


def _torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "torch.distributed.run"]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_two_cpu_processes_gloo(synthetic_data, tiny_config_path, tmp_path):
    steps = tmp_path / "steps.yaml"
    steps.write_text("train_prior:\n  epochs: 2\n  batch_size: 6\n")
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = _torchrun() + ["--standalone", "--nproc_per_node=2", "-m", "probtalk3d_cli", "train-prior", "--data",
                         str(synthetic_data), "--out", str(out), "--config", str(tiny_config_path), "--config",
                         str(steps), "--device", "cpu"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("trained 2 epochs") == 1  # only rank 0 reports
    hist = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    n_train = hist and torch.load(out / "best.pt", weights_only=True)["meta"]["data"]["train_clips"]
    per_rank = -(-n_train // 2)
    assert hist[1]["step"] == -(-per_rank // 6)  # each rank sees half of the clips per epoch
    assert hist[-1]["val"]["total"] < hist[0]["val"]["total"]
    ck = torch.load(out / "last.pt", weights_only=True)
    assert ck["train_state"]["world"] == 2 and ck["train_state"]["finished"]
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "config.yaml", "last.pt", "loss_curve.png",
                                                      "metrics.jsonl"]
    # resuming with a different number of processes is refused with a clear message
    r2 = subprocess.run([sys.executable, "-m", "probtalk3d_cli", "train-prior", "--data", str(synthetic_data),
                         "--out", str(out), "--config", str(tiny_config_path), "--config", str(steps), "--resume",
                         "--set", "train_prior.epochs=3", "--device", "cpu"], env=env, capture_output=True, text=True,
                        timeout=300)
    assert r2.returncode == 1 and "same number" in r2.stderr
