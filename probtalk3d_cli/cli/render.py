"""`probtalk3d render`."""

from __future__ import annotations

from typing import List, Optional

import typer
from typing_extensions import Annotated

from probtalk3d_cli.cli import app
from probtalk3d_cli.cli._common import not_built


@app.command("render", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def render_command(
    args: Annotated[Optional[List[str]], typer.Argument(help="Inputs and options (see the README).")] = None,
) -> None:
    """Render params, motion or vertex files to an mp4 video with audio (offscreen).

    Example: probtalk3d render out/speech_M003_happy_medium.npy --out happy.mp4 --flame-model demo
    """
    not_built("render")
