"""Turn SIGTERM into an exception so long jobs can save a resumable state and exit with code 143."""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def deferred_signals():
    """Hold SIGINT/SIGTERM for the duration of a short critical section (bookkeeping that must not be torn);
    a signal that arrives meanwhile is delivered when the block ends."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    blocked = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
