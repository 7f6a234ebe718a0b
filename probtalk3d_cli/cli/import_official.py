"""`probtalk3d import-official`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from probtalk3d_cli.cli import app
from probtalk3d_cli.cli._common import say


@app.command("import-official")
def import_official_command(
    ckpt: Annotated[Path, typer.Argument(metavar="CKPT", help="Official Lightning checkpoint (.ckpt).",
                                         show_default=False)],
    stage: Annotated[str, typer.Option("--stage", help="prior (stage 1) | pred (stage 2).", show_default=False)] = ...,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output probtalk3d checkpoint (.pt).")] = ...,
    variant: Annotated[Optional[str], typer.Option(
        "--variant", help="vq | vae: insist on a variant (default: detected from the keys).", show_default=False)] = None,
    prior: Annotated[Optional[Path], typer.Option(
        "--prior", help="Stage 2 only, optional: the official stage-1 .ckpt, checked against the prior inside CKPT.",
        show_default=False)] = None,
) -> None:
    """Convert official ProbTalk3D Lightning checkpoints into probtalk3d checkpoints (no network needed).

    Example: probtalk3d import-official --stage pred model_weights/ProbTalk3D/stage_2/last.ckpt --out official.pt
    """
    from probtalk3d_cli.official import import_official

    res = import_official(ckpt, out, stage, variant=variant, prior=prior)
    what = "prior" if res.stage == "prior" else "predictor"
    trained = f", epoch {res.epoch}" if res.epoch is not None else ""
    say(f"wrote {res.path}: {res.kind.upper()} {what} checkpoint, {res.tensors} tensors, {res.parameters:,} parameters "
        f"(official {ckpt.name}{trained}, sha256 {res.source_sha256[:12]})")
    if res.prior_check:
        say(f"checked --prior: {res.prior_check}")
