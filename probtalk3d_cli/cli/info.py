"""`probtalk3d info`: versions, devices, offscreen GL backends and where assets were looked for."""

from __future__ import annotations

import typer
from typing_extensions import Annotated

from probtalk3d_cli.cli import app
from probtalk3d_cli.cli._common import not_built


@app.command("info")
def info(
    json_: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Show versions, devices, GL backends and asset locations.

    Example: probtalk3d info --json
    """
    not_built("info")
