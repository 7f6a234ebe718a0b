"""`probtalk3d evaluate`."""

from __future__ import annotations

from typing import List, Optional

import typer
from typing_extensions import Annotated

from probtalk3d_cli.cli import app
from probtalk3d_cli.cli._common import not_built


@app.command("evaluate", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def evaluate_command(
    args: Annotated[Optional[List[str]], typer.Argument(help="Inputs and options (see the README).")] = None,
) -> None:
    """Compute MVE, LVE, MEE, CE, FDD and Diversity on a data split.

    Example: probtalk3d evaluate --checkpoint demo --data data/synth --flame-model demo --out eval/
    """
    not_built("evaluate")
