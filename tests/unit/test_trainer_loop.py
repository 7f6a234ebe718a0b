"""The training loop's bookkeeping on a toy stage whose losses are known in advance: per-epoch means restart every
epoch (the official running sums never did, reference §11.3), metrics.jsonl rows carry lr and seconds, and early
stopping counts epochs without a better validation loss."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from probtalk3d_cli.config import Config, TrainConfig
from probtalk3d_cli.training.trainer import StageSpec, Trainer


class EpochShiftedValues:
    """Item i of epoch e is i + 100 e, so every epoch has its own mean."""

    def __init__(self, n: int):
        self.n, self.epoch = n, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> float:
        return float(i) + 100.0 * self.epoch


def _collate(items):
    return {"x": torch.tensor(items, dtype=torch.float32)}


def _loss(model, batch):
    # the value is the batch mean of x (weighted by its frame count = batch size); the model only provides a gradient
    x = batch["x"]
    return {"total": x.mean() + 0.0 * model.weight.sum(), "frames": torch.tensor(float(len(x)))}


def _stage(tcfg: TrainConfig, val_fn=None) -> StageSpec:
    model = nn.Linear(1, 1, bias=False)
    return StageSpec(name="prior", kind="prior", cfg=Config(), tcfg=tcfg, model=model,
                     train_set=EpochShiftedValues(5), val_set=EpochShiftedValues(3), collate=_collate,
                     loss_fn=_loss, val_fn=val_fn)


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_epoch_means_restart_and_rows_carry_lr_and_seconds(tmp_path):
    tcfg = TrainConfig(epochs=3, batch_size=2, lr=0.01, patience=0, seed=0, save_every_steps=0)
    result = Trainer(_stage(tcfg), tmp_path / "run", torch.device("cpu")).fit()
    assert result.epochs == 3 and result.steps == 9 and not result.stopped_early  # ceil(5 / 2) = 3 steps an epoch
    rows = _rows(tmp_path / "run")
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    # items 0..4 (+100 e): frame-weighted mean over the epoch = 2 + 100 e; cumulative sums would give 2, 52, 102
    for e, r in enumerate(rows[1:]):
        assert r["train"]["total"] == pytest.approx(2.0 + 100.0 * e)
        assert r["lr"] == pytest.approx(0.01)
        assert isinstance(r["seconds"], float) and 0.0 < r["seconds"] < 60.0
        assert r["val"]["total"] == pytest.approx(1.0)  # validation items 0..2, epoch 0 of the val set
    assert rows[0]["train"] == {} and rows[0]["seconds"] == 0.0 and rows[0]["lr"] == pytest.approx(0.01)


def test_early_stopping_counts_epochs_without_improvement(tmp_path):
    """A validation loss that never improves after epoch 1: with patience 2 the run stops after epoch 3 of 50."""
    def flat_val(model, batch):
        return _loss(model, {"x": torch.ones(len(batch["x"]))}), {}

    tcfg = TrainConfig(epochs=50, batch_size=2, lr=0.01, patience=2, seed=0, save_every_steps=0)
    result = Trainer(_stage(tcfg, val_fn=flat_val), tmp_path / "run", torch.device("cpu")).fit()
    # epoch 1 sets the best (the untrained epoch-0 row is only a reference); epochs 2 and 3 do not beat it
    assert result.stopped_early and result.epochs == 3 and result.best_val == pytest.approx(1.0)
    assert len(_rows(tmp_path / "run")) == 4
    assert (tmp_path / "run" / "best.pt").exists() and (tmp_path / "run" / "last.pt").exists()
    # resuming a run that stopped early does nothing more
    again = Trainer(_stage(tcfg, val_fn=flat_val), tmp_path / "run", torch.device("cpu"), resume=True).fit()
    assert again.epochs == 3 and again.steps == result.steps


def test_patience_zero_never_stops(tmp_path):
    def flat_val(model, batch):
        return _loss(model, {"x": torch.ones(len(batch["x"]))}), {}

    tcfg = TrainConfig(epochs=6, batch_size=5, lr=0.01, patience=0, seed=0, save_every_steps=0)
    result = Trainer(_stage(tcfg, val_fn=flat_val), tmp_path / "run", torch.device("cpu")).fit()
    assert not result.stopped_early and result.epochs == 6
