"""Starting a thread without waiting for it: the training thread's (and start_run's) way.

Importing this costs nothing (no tfrepro module, no MLflow), so the MLflow plugin uses it
on start_run's thread.
"""

from __future__ import annotations

import _thread
import threading
from typing import Optional


def start_later(*threads: Optional[threading.Thread]) -> threading.Event:
    """Start `threads` from a helper thread and return an Event set once they are started.
    Thread.start() waits until the new thread runs, which on busy cores costs the caller
    milliseconds a thread: the training thread must not pay that."""
    started = threading.Event()

    def launch():
        try:
            for thread in threads:
                if thread is not None:
                    thread.start()
        finally:
            started.set()

    _thread.start_new_thread(launch, ())
    return started


def join_started(started: threading.Event, thread: threading.Thread, timeout: Optional[float] = None) -> None:
    """thread.join(timeout), once start_later() has started it."""
    started.wait(timeout if timeout is not None else 60.0)
    if thread.ident is not None:
        thread.join(timeout)
