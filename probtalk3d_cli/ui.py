"""Terminal output shared by the library and the CLI: quiet mode, progress bars, logging set-up.

The CLI sets the mode once (`configure`); library code only calls `progress()` and `logging`.
"""

from __future__ import annotations

import logging
import sys
from typing import Iterable, Optional, TypeVar

T = TypeVar("T")

_STATE = {"quiet": False, "debug": False}


def configure(quiet: bool = False, debug: bool = False) -> None:
    """Set quiet/debug mode and route `logging` to stderr (rich formatting when available).

    Under torchrun only rank 0 talks: other ranks are quiet (errors and warnings still show).
    """
    import os

    if os.environ.get("RANK", "0").isdigit() and int(os.environ.get("RANK", "0")) > 0:
        quiet = True
    _STATE["quiet"] = quiet
    _STATE["debug"] = debug
    level = logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)
    root = logging.getLogger("probtalk3d_cli")
    root.setLevel(level)
    for h in list(root.handlers):
        root.removeHandler(h)
    try:
        from rich.console import Console
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(
            console=Console(stderr=True), show_time=False, show_path=debug, markup=False, rich_tracebacks=False
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
    except ImportError:  # pragma: no cover
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root.addHandler(handler)
    root.propagate = False


def is_quiet() -> bool:
    return _STATE["quiet"]


def is_debug() -> bool:
    return _STATE["debug"]


def progress(iterable: Iterable[T], total: Optional[int] = None, desc: str = "", unit: str = "it", leave: bool = True):
    """A tqdm progress bar on stderr, silent under --quiet."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, disable=_STATE["quiet"],
                file=sys.stderr, dynamic_ncols=True)
