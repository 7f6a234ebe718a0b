"""`probtalk3d export`."""

from __future__ import annotations

from typing import List, Optional

import typer
from typing_extensions import Annotated

from probtalk3d_cli.cli import app
from probtalk3d_cli.cli._common import not_built


@app.command("export", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def export_command(
    args: Annotated[Optional[List[str]], typer.Argument(help="Inputs and options (see the README).")] = None,
) -> None:
    """Export animation to glTF/GLB, CSV or an OBJ sequence for Blender, Unity, Unreal and web viewers.

    Example: probtalk3d export out/speech_M003_happy_medium.npy --out speech.glb --flame-model demo
    """
    not_built("export")
