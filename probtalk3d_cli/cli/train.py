"""`probtalk3d train-prior` and `probtalk3d train-pred`: the two training stages."""

from __future__ import annotations

from pathlib import Path

import typer
from typing_extensions import Annotated

from probtalk3d_cli.cli import app
from probtalk3d_cli.cli._common import ConfigOpt, DeviceOpt, SetOpt, not_built


@app.command("train-prior")
def train_prior(
    data: Annotated[Path, typer.Option("--data", help="DATA folder written by `preprocess`.")],
    out: Annotated[Path, typer.Option("--out", help="Run directory (config.yaml, last.pt, best.pt, metrics.jsonl).")],
    vae: Annotated[bool, typer.Option("--vae", help="Train the VAE variant instead of the VQ-VAE.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/last.pt.")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Stage 1: train the motion prior (VQ-VAE by default) on motion only.

    Example: probtalk3d train-prior --data data/synth --out runs/prior --config configs/tiny.yaml
    """
    not_built("train-prior")


@app.command("train-pred")
def train_pred(
    data: Annotated[Path, typer.Option("--data", help="DATA folder written by `preprocess`.")],
    out: Annotated[Path, typer.Option("--out", help="Run directory.")],
    prior: Annotated[Path, typer.Option("--prior", help="Stage-1 run directory or checkpoint.")] = None,
    vae: Annotated[bool, typer.Option("--vae", help="Train the VAE-variant predictor.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/last.pt.")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Stage 2: train the speech- and style-conditioned predictor on top of a frozen prior.

    Example: probtalk3d train-pred --data data/synth --prior runs/prior --out runs/pred --config configs/tiny.yaml
    """
    not_built("train-pred")
