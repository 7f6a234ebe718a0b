"""`probtalk3d to-vertices`."""

from __future__ import annotations

from typing import List, Optional

import typer
from typing_extensions import Annotated

from probtalk3d_cli.cli import app
from probtalk3d_cli.cli._common import not_built


@app.command("to-vertices", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def to_vertices_command(
    args: Annotated[Optional[List[str]], typer.Argument(help="Inputs and options (see the README).")] = None,
) -> None:
    """Convert params or motion files to FLAME vertices or mesh sequences.

    Example: probtalk3d to-vertices out/*.npy --out verts/ --flame-model demo
    """
    not_built("to-vertices")
