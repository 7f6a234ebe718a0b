"""Options and helpers shared by the subcommand modules (Typer only; no training or model code here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer
from typing_extensions import Annotated

from probtalk3d_cli.device import DEVICE_HELP

ConfigOpt = Annotated[
    Optional[List[Path]],
    typer.Option("--config", "-c", help="YAML config file(s) applied over the defaults (repeatable).",
                 show_default=False),
]
SetOpt = Annotated[
    Optional[List[str]],
    typer.Option("--set", help="Override one config key: section.key=value (repeatable), e.g. train_prior.lr=3e-4.",
                 show_default=False),
]
DeviceOpt = Annotated[str, typer.Option("--device", help=DEVICE_HELP)]

EXIT_NOT_BUILT = 2


def not_built(command: str) -> None:
    """Say in one line that a subcommand's capability is not built yet and exit 2 (never invent output)."""
    typer.echo(f"probtalk3d {command}: not built yet in this version; no output was written.", err=True)
    raise typer.Exit(EXIT_NOT_BUILT)


def resolve(config: Optional[List[Path]], overrides: Optional[List[str]], flags: dict[str, Any]):
    """Load the Config by precedence: defaults < --config < --set < explicit flags."""
    from probtalk3d_cli.config import load_config

    return load_config([str(c) for c in (config or [])], list(overrides or []), flags)


def say(message: str) -> None:
    """Print a result line on stdout unless --quiet."""
    from probtalk3d_cli.ui import is_quiet

    if not is_quiet():
        typer.echo(message)
