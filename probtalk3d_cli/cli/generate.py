"""`probtalk3d generate`."""

from __future__ import annotations

from typing import List, Optional

import typer
from typing_extensions import Annotated

from probtalk3d_cli.cli import app
from probtalk3d_cli.cli._common import not_built


@app.command("generate", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def generate_command(
    args: Annotated[Optional[List[str]], typer.Argument(help="Inputs and options (see the README).")] = None,
) -> None:
    """Audio -> motion with a trained or imported predictor.

    Example: probtalk3d generate --checkpoint demo speech.wav --out out/ --emotion happy
    """
    not_built("generate")
