"""One way for an engine to be stopped: SIGTERM takes the same path as Ctrl-C.

    with signals.terminating():
        try:
            ...                   # follow the container or job
        except KeyboardInterrupt:
            ...                   # stop it (podman stop, scancel, delete the Job), then re-raise

A launcher killed by a batch system or a CI runner gets SIGTERM, not SIGINT: without this the
container or job it started would run on, unobserved. Only the main thread can take signals;
elsewhere terminating() changes nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _interrupt(signum, frame):
    raise KeyboardInterrupt()


@contextlib.contextmanager
def terminating() -> Iterator[None]:
    """SIGTERM and SIGINT raise KeyboardInterrupt inside the block; the previous handlers come
    back after it (also when the block raises)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with contextlib.ExitStack() as restore:
        for signum in SIGNALS:
            previous = signal.signal(signum, _interrupt)
            # None: a handler not set from Python, which cannot be put back; the default is closest
            restore.callback(signal.signal, signum, previous if previous is not None else signal.SIG_DFL)
        yield
