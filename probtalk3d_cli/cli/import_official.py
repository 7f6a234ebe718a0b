"""`probtalk3d import-official`."""

from __future__ import annotations

from typing import List, Optional

import typer
from typing_extensions import Annotated

from probtalk3d_cli.cli import app
from probtalk3d_cli.cli._common import not_built


@app.command("import-official", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def import_official_cmd_command(
    args: Annotated[Optional[List[str]], typer.Argument(help="Inputs and options (see the README).")] = None,
) -> None:
    """Convert official ProbTalk3D Lightning checkpoints into probtalk3d checkpoints.

    Example: probtalk3d import-official --stage pred model_weights/ProbTalk3D/stage_2/last.ckpt --out probtalk3d_official.pt
    """
    not_built("import-official")
