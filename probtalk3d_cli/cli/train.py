"""`probtalk3d train-prior` and `probtalk3d train-pred`: the two training stages."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from probtalk3d_cli.cli import app
from probtalk3d_cli.cli._common import ConfigOpt, DeviceOpt, SetOpt, resolve, say

DataOpt = Annotated[Path, typer.Option("--data", help="DATA folder written by `probtalk3d preprocess`.")]
OutOpt = Annotated[Path, typer.Option("--out", help="Run directory: config.yaml, last.pt, best.pt, metrics.jsonl, "
                                                    "loss_curve.png.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue the run in --out exactly where it stopped.")]
VaeOpt = Annotated[bool, typer.Option("--vae", help="Train the VAE comparison variant instead of the VQ-VAE.")]
EpochsOpt = Annotated[Optional[int], typer.Option("--epochs", help="Maximum epochs (train_*.epochs).")]
BatchOpt = Annotated[Optional[int], typer.Option("--batch-size", help="Clips per batch (train_*.batch_size).")]
PrecisionOpt = Annotated[Optional[str], typer.Option("--precision", help="fp32 | bf16 (train_*.precision).")]


def _config(section: str, out: Path, resume: bool, config, set_, flags):
    files = [out / "config.yaml"] if resume and (out / "config.yaml").exists() else []
    return resolve(files + list(config or []), set_, {f"{section}.{k}": v for k, v in flags.items()})


def _report(result) -> None:
    from probtalk3d_cli.training.trainer import finish_process

    best = f"{result.best_path} (validation loss {result.best_val:.5g})" if result.best_val is not None else \
        str(result.best_path)
    say(f"trained {result.epochs} epochs, {result.steps} steps{' (early stop)' if result.stopped_early else ''}")
    say(f"best: {best}")
    say(f"last: {result.last_path}")
    finish_process()


@app.command("train-prior")
def train_prior(
    data: DataOpt,
    out: OutOpt,
    vae: VaeOpt = False,
    resume: ResumeOpt = False,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = None,
    precision: PrecisionOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Stage 1: train the motion prior (VQ-VAE by default) on motion only.

    Ctrl-C or SIGTERM saves a resumable last.pt; run again with --resume. Under `torchrun --nproc_per_node=N`
    the same command trains with DistributedDataParallel.

    Example: probtalk3d train-prior --data data/synth --out runs/prior --config configs/tiny.yaml
    """
    from probtalk3d_cli.device import resolve_device
    from probtalk3d_cli.training.stages import train_prior as run

    cfg = _config("train_prior", out, resume, config, set_,
                  {"epochs": epochs, "batch_size": batch_size, "precision": precision})
    if vae:
        cfg.prior.kind = "vae"
    _report(run(cfg, data, out, resolve_device(device), resume=resume))


@app.command("train-pred")
def train_pred(
    data: DataOpt,
    out: OutOpt,
    model: Annotated[str, typer.Option("--model", help="probtalk3d (stage 2 on a frozen prior) | facediffuser (the "
                                       "vertex-space comparison model; needs `preprocess vertices`).")] = "probtalk3d",
    prior: Annotated[Optional[Path], typer.Option("--prior", help="Stage-1 run directory or prior checkpoint "
                                                                  "(not needed with --resume).")] = None,
    vae: Annotated[bool, typer.Option("--vae", help="Expect a VAE prior (the predictor follows the prior's kind).")]
    = False,
    resume: ResumeOpt = False,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = None,
    precision: PrecisionOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Stage 2: train the speech- and style-conditioned predictor on top of a frozen prior (or, with --model
    facediffuser, the FaceDiffuser comparison model in vertex space; settings train_facediffuser.* and facediffuser.*).

    The result (best.pt) is self-contained: prior, HuBERT and predictor weights, style vocabulary and normalisation,
    so `generate` needs only that file.

    Example: probtalk3d train-pred --data data/synth --prior runs/prior --out runs/pred --config configs/tiny.yaml
    """
    from probtalk3d_cli.device import resolve_device

    if model not in ("probtalk3d", "facediffuser"):
        raise ValueError(f"--model {model!r} is not known; use probtalk3d or facediffuser")
    if model == "facediffuser":
        from probtalk3d_cli.training.stages import train_facediffuser

        if prior is not None or vae:
            raise ValueError("--prior and --vae belong to ProbTalk3D; FaceDiffuser trains without a prior (drop them)")
        cfg = _config("train_facediffuser", out, resume, config, set_,
                      {"epochs": epochs, "batch_size": batch_size, "precision": precision})
        _report(train_facediffuser(cfg, data, out, resolve_device(device), resume=resume))
        return
    from probtalk3d_cli.training.stages import train_pred as run

    cfg = _config("train_pred", out, resume, config, set_,
                  {"epochs": epochs, "batch_size": batch_size, "precision": precision})
    result = run(cfg, data, out, resolve_device(device), prior=prior, resume=resume, expect_vae=vae)
    _report(result)
