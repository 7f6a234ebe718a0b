"""One training loop for both stages: deterministic batches, exact resume, per-epoch validation, early stopping,
best/last checkpoints, metrics.jsonl and a loss-curve PNG, optional DistributedDataParallel.

Exact resume: the batch order of an epoch is a function of (seed, epoch) (DistributedSampler), random crops of
(seed, epoch, index), and the RNG states (torch, numpy, python) are captured at the start of every optimiser step.
`last.pt` always describes an optimiser-step boundary, so a run killed at any moment and resumed replays the same
steps with the same random numbers as an uninterrupted run.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from probtalk3d_cli.config import Config, TrainConfig
from probtalk3d_cli.io import atomic_path, atomic_write_text
from probtalk3d_cli.ui import progress

log = logging.getLogger(__name__)

# Test-only fault injection (documented in tests/integration/test_resume.py): "step:N" SIGKILLs the process right
# after optimiser step N; "save:N" SIGKILLs it while writing the N-th checkpoint (after the temporary file is written,
# before it is renamed into place); "slow:S" sleeps S seconds after every step.
FAULT_ENV = "PROBTALK3D_FAULT"


@dataclass
class StageSpec:
    """Everything the loop needs to know about one stage."""

    name: str  # "prior" | "pred" (names the run in logs)
    kind: str  # checkpoint kind: "prior" | "predictor"
    cfg: Config
    tcfg: TrainConfig
    model: object  # torch.nn.Module; its trainable parameters are optimised
    train_set: object  # Dataset with set_epoch(epoch)
    val_set: object
    collate: Callable
    loss_fn: Callable  # (model, batch) -> dict of 0-dim tensors incl. "total" and "frames"
    meta: dict = field(default_factory=dict)
    # validation step: (model, batch) -> (loss terms like loss_fn, {metric: (sum, count)}); default: loss_fn only
    val_fn: Optional[Callable] = None
    state_fn: Optional[Callable] = None  # () -> state_dict to store (default: model.state_dict())


@dataclass
class TrainResult:
    run_dir: Path
    best_path: Optional[Path]
    last_path: Path
    epochs: int
    steps: int
    best_val: Optional[float]
    stopped_early: bool
    history: list


# --------------------------------------------------------------------------------------------------------
# RNG state capture (plain types only, so checkpoints load with weights_only=True)
# --------------------------------------------------------------------------------------------------------


def capture_rng() -> dict:
    import torch

    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "python": _py_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng(state: dict) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    random.setstate(_plain_to_py_state(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _py_state_to_plain(st):
    version, internal, gauss = st
    return {"version": version, "internal": list(internal), "gauss": gauss}


def _plain_to_py_state(d):
    return (d["version"], tuple(d["internal"]), d["gauss"])


# --------------------------------------------------------------------------------------------------------
# Distributed helpers (torchrun sets WORLD_SIZE / RANK / LOCAL_RANK)
# --------------------------------------------------------------------------------------------------------


@dataclass
class DistInfo:
    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    return DistInfo(int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0")),
                    int(os.environ.get("LOCAL_RANK", "0")))


def init_distributed(device) -> DistInfo:
    """Join the process group when launched by torchrun (NCCL on CUDA, gloo on CPU)."""
    info = dist_info()
    if not info.enabled:
        return info
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        log.info("distributed: rank %d of %d (%s)", info.rank, info.world, backend)
    return info


def shutdown_distributed(info: DistInfo, device) -> None:
    """Final barrier, destroy the process group; on CPU/gloo exit hard afterwards (see `finish_process`)."""
    if not info.enabled:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _all_reduce_sums(values: dict[str, float], info: DistInfo, device) -> dict[str, float]:
    if not info.enabled:
        return values
    import torch
    import torch.distributed as dist

    names = sorted(values)
    t = torch.tensor([values[n] for n in names], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(names, t.tolist()))


# --------------------------------------------------------------------------------------------------------
# Fault injection (tests only)
# --------------------------------------------------------------------------------------------------------


def _fault(kind: str, count: int) -> None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    want_kind, _, n = spec.partition(":")
    if want_kind == "slow" and kind == "step":  # "slow:S": sleep S seconds after every step (signal tests)
        time.sleep(float(n))
        return
    if want_kind == kind and n.isdigit() and int(n) == count:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


# --------------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------------


def _loss_module_class():
    import torch

    class LossModule(torch.nn.Module):
        """Wraps model + loss function so that one forward call is one training step's loss."""

        def __init__(self, model, loss_fn):
            super().__init__()
            self.model = model
            self.loss_fn = loss_fn

        def forward(self, batch):
            return self.loss_fn(self.model, batch)

    return LossModule


def _LossModule(model, loss_fn):  # noqa: N802 - factory keeps torch out of module import time
    return _loss_module_class()(model, loss_fn)


class Trainer:
    """Runs one stage. Construct, then `fit()`; use `Trainer.resume_state(path)` to continue a run."""

    def __init__(self, spec: StageSpec, run_dir: Path, device, resume: bool = False):
        import torch

        self.spec = spec
        self.t = spec.tcfg
        self.run_dir = Path(run_dir)
        self.device = device
        self.dist = init_distributed(device)
        self.resume = resume
        self.model = spec.model.to(device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        if not self.params:
            raise RuntimeError(f"stage {spec.name}: the model has no trainable parameters")
        self.optimizer = self._make_optimizer()
        # The loss is computed inside a module's forward so DistributedDataParallel sees the whole step.
        self.loss_module = _LossModule(self.model, spec.loss_fn)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [device.index] if device.type == "cuda" else None
            # stage 2: HuBERT's LayerDrop and SpecAugment leave some parameters without gradient in some steps
            self.loss_module = DDP(self.loss_module, device_ids=ids,
                                   find_unused_parameters=spec.kind != "prior")
        self.saves = 0
        # progress state
        self.epoch = 0
        self.batch_pos = 0  # batches of the current epoch already consumed
        self.step = 0
        self.best_val: Optional[float] = None
        self.bad_epochs = 0
        self.history: list[dict] = []
        self.epoch_sums: dict[str, float] = {}
        self.stopped_early = False
        self.finished = False
        self.torch = torch

    # ---- set-up ----------------------------------------------------------------------------------------

    def _make_optimizer(self):
        import torch

        t = self.t
        kw = dict(lr=t.lr, betas=tuple(t.betas), eps=t.eps, weight_decay=t.weight_decay)
        cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
        if self.device.type in ("cpu", "cuda"):
            try:  # the fused kernel updates all parameters in one pass (same maths, less time on 82 M params)
                return cls(self.params, fused=True, **kw)
            except (RuntimeError, TypeError):
                pass
        return cls(self.params, **kw)

    def _batches(self, epoch: int) -> list[list[int]]:
        """Index batches of an epoch for this rank: DistributedSampler order from (seed, epoch), then chunks."""
        from torch.utils.data import DistributedSampler

        sampler = DistributedSampler(self.spec.train_set, num_replicas=self.dist.world, rank=self.dist.rank,
                                     shuffle=True, seed=self.t.seed, drop_last=False)
        sampler.set_epoch(epoch)
        order = list(sampler)
        bs = self.t.batch_size
        return [order[i:i + bs] for i in range(0, len(order), bs)]

    def _to_device(self, batch: dict) -> dict:
        out = {}
        for k, v in batch.items():
            out[k] = v.to(self.device, non_blocking=True) if hasattr(v, "to") else v
        return out

    # ---- checkpoints -----------------------------------------------------------------------------------

    def _train_state(self, rng: dict) -> dict:
        return {
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "batch_pos": self.batch_pos,
            "step": self.step,
            "rng": rng,
            "best_val": self.best_val,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "epoch_sums": dict(self.epoch_sums),
            "stopped_early": self.stopped_early,
            "finished": self.finished,
            "world": self.dist.world,
        }

    def _model_state(self) -> dict:
        return self.spec.state_fn() if self.spec.state_fn else self.model.state_dict()

    def _save(self, name: str, rng: Optional[dict], with_state: bool = True) -> Path:
        from probtalk3d_cli.checkpoint import save_checkpoint

        path = self.run_dir / name
        if not self.dist.is_main:
            return path
        self.saves += 1
        meta = dict(self.spec.meta)
        meta.update({"stage": self.spec.name, "epoch": self.epoch, "step": self.step, "best_val": self.best_val})
        train_state = self._train_state(rng) if with_state else None
        if os.environ.get(FAULT_ENV, "").startswith("save:"):
            import probtalk3d_cli.checkpoint as ckmod

            orig = ckmod.atomic_path
            count = self.saves

            from contextlib import contextmanager

            @contextmanager
            def faulty(p):
                with orig(p) as tmp:
                    yield tmp
                    _fault("save", count)  # the temporary file is complete but not yet renamed

            ckmod.atomic_path = faulty
            try:
                save_checkpoint(path, self.spec.kind, self.spec.cfg.to_dict(), self._model_state(), meta, train_state)
            finally:
                ckmod.atomic_path = orig
        else:
            save_checkpoint(path, self.spec.kind, self.spec.cfg.to_dict(), self._model_state(), meta, train_state)
        return path

    def load_state(self, payload: dict) -> dict:
        """Restore model, optimiser and progress from a `last.pt` payload; returns the saved RNG state."""
        from probtalk3d_cli.models.layers import load_state_strict

        load_state_strict(self.model, payload["model"], payload.get("path", "last.pt"))
        ts = payload.get("train_state")
        if not ts:
            raise ValueError(f"{payload.get('path')} holds no training state; it cannot be resumed")
        if ts.get("world", 1) != self.dist.world:
            raise ValueError(f"the run was trained with {ts.get('world')} processes; resume it with the same number")
        self.optimizer.load_state_dict(ts["optimizer"])
        self.epoch, self.batch_pos, self.step = ts["epoch"], ts["batch_pos"], ts["step"]
        self.best_val, self.bad_epochs = ts["best_val"], ts["bad_epochs"]
        self.history = list(ts["history"])
        self.epoch_sums = dict(ts["epoch_sums"])
        self.stopped_early, self.finished = ts["stopped_early"], ts["finished"]
        return ts["rng"]

    # ---- logging ---------------------------------------------------------------------------------------

    def _write_logs(self) -> None:
        if not self.dist.is_main:
            return
        import json

        lines = "".join(json.dumps(row) + "\n" for row in self.history)
        atomic_write_text(self.run_dir / "metrics.jsonl", lines)
        try:
            plot_loss_curves(self.history, self.run_dir / "loss_curve.png", title=f"{self.spec.name} training")
        except Exception as exc:  # a plotting problem must never stop training
            log.warning("could not draw loss_curve.png (%s)", exc)

    # ---- validation ------------------------------------------------------------------------------------

    def validate(self) -> dict[str, float]:
        import torch

        from probtalk3d_cli.device import autocast

        ds = self.spec.val_set
        if ds is None or len(ds) == 0:
            return {}
        idx = list(range(self.dist.rank, len(ds), self.dist.world))
        bs = self.t.batch_size
        sums: dict[str, float] = {}
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            for i in range(0, len(idx), bs):
                batch = self._to_device(self.spec.collate([ds[j] for j in idx[i:i + bs]]))
                with autocast(self.device, self.t.precision == "bf16"):
                    if self.spec.val_fn is not None:
                        terms, extra = self.spec.val_fn(self.model, batch)
                    else:
                        terms, extra = self.spec.loss_fn(self.model, batch), {}
                frames = float(terms["frames"])
                for k, v in terms.items():
                    if k != "frames":
                        sums[k] = sums.get(k, 0.0) + float(v) * frames
                sums["frames"] = sums.get("frames", 0.0) + frames
                for k, (s, c) in extra.items():
                    sums[f"{k}__sum"] = sums.get(f"{k}__sum", 0.0) + s
                    sums[f"{k}__count"] = sums.get(f"{k}__count", 0.0) + c
        self.model.train(was_training)
        sums = _all_reduce_sums(sums, self.dist, self.device)
        frames = max(sums.pop("frames", 0.0), 1.0)
        out = {}
        for k, v in sums.items():
            if k.endswith("__sum"):
                name = k[:-5]
                out[name] = v / max(sums[f"{name}__count"], 1.0)
            elif not k.endswith("__count"):
                out[k] = v / frames
        return out

    # ---- main loop -------------------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        import torch

        from probtalk3d_cli.device import autocast
        from probtalk3d_cli.signals import Terminated, deferred_signals

        t = self.t
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.resume:
            from probtalk3d_cli.checkpoint import load_checkpoint

            payload = load_checkpoint(self.run_dir / "last.pt", expect=self.spec.kind)
            rng = self.load_state(payload)
            restore_rng(rng)
            log.info("resuming %s at epoch %d, batch %d, step %d", self.spec.name, self.epoch, self.batch_pos,
                     self.step)
        if self.stopped_early or self.epoch >= t.epochs or self._reached_max_steps():
            if not self.finished:  # stopped between the last epoch and the final save
                self.finished = True
                self._save("last.pt", self._rng_for_finish())
            log.info("run %s already finished; nothing to do (raise train_*.epochs or max_steps to continue)",
                     self.run_dir)
            return self._result()
        self.finished = False

        accum = t.grad_accum
        if not self.history:  # epoch 0: validation of the untrained model, the reference for "it learns"
            val = self.validate()
            self.history.append({"epoch": 0, "step": 0, "partial": False, "lr": self.optimizer.param_groups[0]["lr"],
                                 "seconds": 0.0, "train": {}, "val": val})
            if val:
                log.info("%s before training: val %.5g", self.spec.name, val.get("total", float("nan")))
        self._mark_boundary()
        self.model.train()
        try:
            while self.epoch < t.epochs and not self._reached_max_steps():
                epoch_start = time.time()
                self.spec.train_set.set_epoch(self.epoch)
                batches = self._batches(self.epoch)
                bar = progress(range(self.batch_pos, len(batches)), total=len(batches) - self.batch_pos,
                               desc=f"{self.spec.name} epoch {self.epoch + 1}/{t.epochs}", unit="batch", leave=False)
                for bi in bar:
                    batch = self._to_device(self.spec.collate([self.spec.train_set[j] for j in batches[bi]]))
                    with autocast(self.device, t.precision == "bf16"):
                        terms = self.loss_module(batch)
                    loss = terms["total"].float() / accum
                    if not torch.isfinite(loss):
                        raise RuntimeError(
                            f"stage {self.spec.name}: the loss became {float(loss)} at step {self.step}; lower the "
                            f"learning rate (--set train_{self.spec.name}.lr=...) or use precision fp32")
                    loss.backward()
                    frames = float(terms["frames"])
                    for k, v in terms.items():
                        if k != "frames":
                            self.epoch_sums[k] = self.epoch_sums.get(k, 0.0) + float(v.detach()) * frames
                    self.epoch_sums["frames"] = self.epoch_sums.get("frames", 0.0) + frames
                    if (bi + 1) % accum == 0 or bi + 1 == len(batches):
                        with deferred_signals():  # never leave a half-applied optimiser step
                            if t.grad_clip > 0:
                                torch.nn.utils.clip_grad_norm_(self.params, t.grad_clip)
                            self.optimizer.step()
                            self.optimizer.zero_grad(set_to_none=True)
                            self.step += 1
                            self.batch_pos = bi + 1
                            self._mark_boundary()
                        if hasattr(bar, "set_postfix"):
                            bar.set_postfix(loss=f"{float(terms['total'].detach()):.4g}", step=self.step)
                        _fault("step", self.step)
                        if t.save_every_steps and self.step % t.save_every_steps == 0 and bi + 1 < len(batches):
                            self._save("last.pt", self._boundary_rng)
                        if self._reached_max_steps():
                            break
                if hasattr(bar, "close"):
                    bar.close()
                partial = self.batch_pos < len(batches)
                self._end_epoch(epoch_start, partial=partial)
                self._save("last.pt", self._boundary_rng)
                if self.stopped_early or partial:
                    break
            self.finished = True
            self._save("last.pt", self._boundary_rng)
        except (KeyboardInterrupt, Terminated):
            # Save at the last optimiser-step boundary: model and optimiser are exactly as after that step;
            # replaying from there with the captured RNG state reproduces the interrupted work.
            self.epoch_sums = dict(self._boundary_sums)
            self.optimizer.zero_grad(set_to_none=True)
            path = self._save("last.pt", self._boundary_rng)
            log.warning("interrupted: saved a resumable checkpoint to %s; continue with --resume", path)
            raise
        finally:
            shutdown_distributed(self.dist, self.device)
        return self._result()

    def _rng_for_finish(self) -> dict:
        return capture_rng()

    def _mark_boundary(self) -> None:
        """Remember the RNG state and epoch sums of the current optimiser-step boundary (what last.pt describes)."""
        self._boundary_rng = capture_rng()
        self._boundary_sums = dict(self.epoch_sums)

    def _reached_max_steps(self) -> bool:
        return self.t.max_steps is not None and self.step >= self.t.max_steps

    def _end_epoch(self, started: float, partial: bool = False) -> None:
        from probtalk3d_cli.signals import deferred_signals

        sums = _all_reduce_sums(dict(self.epoch_sums), self.dist, self.device)
        frames = max(sums.pop("frames", 0.0), 1.0)
        train = {k: v / frames for k, v in sums.items()}
        do_val = (self.epoch + 1) % self.t.val_every == 0 or partial or self.epoch + 1 == self.t.epochs
        val = self.validate() if do_val else {}
        row = {"epoch": self.epoch + 1, "step": self.step, "partial": partial,
               "lr": self.optimizer.param_groups[0]["lr"], "seconds": round(time.time() - started, 3),
               "train": train, "val": val}
        monitor = val.get("total")
        improved = monitor is not None and (self.best_val is None or monitor < self.best_val)
        with deferred_signals():  # the epoch's bookkeeping changes all together or not at all
            self.history.append(row)
            if improved:
                self.best_val = monitor
                self.bad_epochs = 0
            elif monitor is not None:
                self.bad_epochs += 1
            self.epoch += 1
            self.batch_pos = 0
            self.epoch_sums = {}
            self._mark_boundary()
            if improved or monitor is None:
                self._save("best.pt", None, with_state=False)
        if self.t.patience and self.bad_epochs >= self.t.patience:
            self.stopped_early = True
            log.info("early stopping: validation loss did not improve for %d epochs", self.bad_epochs)
        self._write_logs()
        msg = f"{self.spec.name} epoch {row['epoch']}: train {train.get('total', float('nan')):.5g}"
        if monitor is not None:
            msg += f"  val {monitor:.5g}{'  (best)' if improved else ''}"
        log.info(msg)

    def _result(self) -> TrainResult:
        best = self.run_dir / "best.pt"
        return TrainResult(self.run_dir, best if best.exists() else None, self.run_dir / "last.pt", self.epoch,
                           self.step, self.best_val, self.stopped_early, self.history)


def finish_process(info: Optional[DistInfo] = None) -> None:
    """After a distributed CPU (gloo) run, exit hard: gloo can abort during interpreter shutdown."""
    info = info or dist_info()
    if info.enabled and os.environ.get("PROBTALK3D_NO_HARD_EXIT") != "1":
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def plot_loss_curves(history: list[dict], path: Path, title: str = "training") -> Path:
    """Per-epoch train/validation loss terms on a log scale (matplotlib, Agg), written atomically."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    names = sorted({k for r in history for k in r["train"]} | {k for r in history for k in r["val"]})
    names = ["total"] + [n for n in names if n != "total"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, split in zip(axes, ("train", "val")):
        for n in names:
            ys = [r[split].get(n) for r in history]
            if any(y is not None and y > 0 and math.isfinite(y) for y in ys):
                ax.plot(epochs, [y if y is not None else float("nan") for y in ys], marker=".",
                        label=n, linewidth=2 if n == "total" else 1)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(f"{title}: {split}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return Path(path)
