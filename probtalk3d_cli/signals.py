"""Turn SIGTERM into an exception so long jobs can save a resumable state and exit with code 143."""

from __future__ import annotations

import signal
import threading


class Terminated(BaseException):
    """Raised in the main thread when the process receives SIGTERM (exit code 143)."""


def _raise_terminated(signum, frame):
    raise Terminated()


def install_sigterm_handler() -> None:
    """Make SIGTERM raise `Terminated` (only possible from the main thread; elsewhere a no-op)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)
