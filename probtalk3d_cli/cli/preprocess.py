"""`probtalk3d preprocess ...`: turn source data into the DATA layout (param/*.npy, wav/*.wav, splits)."""

from __future__ import annotations

from pathlib import Path

import typer
from typing_extensions import Annotated

from probtalk3d_cli.cli import app
from probtalk3d_cli.cli._common import not_built

preprocess_app = typer.Typer(
    help="Prepare data: 3DMEAD/EMOTE + MEAD audio, or a synthetic corpus, into DATA/param and DATA/wav.\n\n"
    "Example: probtalk3d preprocess synthetic --out data/synth",
    no_args_is_help=True,
)
app.add_typer(preprocess_app, name="preprocess")


@preprocess_app.command("mead")
def mead(
    animation_dir: Annotated[Path, typer.Option("--animation-dir", help="EMOTE EMICA-MEAD_flame2020 folder.")],
    audio_dir: Annotated[Path, typer.Option("--audio-dir", help="MEAD audio folder (<subject>/audio/...).")],
    out: Annotated[Path, typer.Option("--out", help="DATA folder to write.")],
) -> None:
    """3DMEAD (EMOTE HDF5) + MEAD m4a audio -> DATA/param/KEY.npy and DATA/wav/KEY.wav.

    Example: probtalk3d preprocess mead --animation-dir EMICA-MEAD_flame2020 --audio-dir MEAD --out data/mead
    """
    not_built("preprocess mead")


@preprocess_app.command("synthetic")
def synthetic(
    out: Annotated[Path, typer.Option("--out", help="DATA folder to write.")],
) -> None:
    """Write a synthetic MEAD-shaped corpus (procedural speech-like audio + motion).

    Example: probtalk3d preprocess synthetic --out data/synth --subjects 4 --sentences 12
    """
    not_built("preprocess synthetic")
