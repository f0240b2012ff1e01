"""Closing a TrackingSession (session.py holds the contract): end the run if the session
started it, upload what is left (bounded), on the caller's thread or on one of its own.

close() / wait()      TrackingSession.close() and .wait()
wait_for_uploads()    every background close of this process; at exit the interpreter waits for
                      them (bounded) before Python 3.9+ shuts the thread pools MLflow's calls need
warn_not_uploaded()   the one line a writer that could not finish in time leaves behind
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Callable, List, Optional, Set

from tfrepro import schema
from tfrepro.tracking.session_open import OPEN_TIMEOUT
from tfrepro.tracking.threads import join_started

if TYPE_CHECKING:
    from tfrepro.tracking.session import TrackingSession

log = logging.getLogger(__name__)

FLUSH_TAG = schema.FLUSH_SECONDS  # seconds close() spent flushing the queue
FLUSH_TIMEOUT = 10.0
FINAL_TIMEOUT = 2.0  # for the last few records (flush tag, run end) after the main flush
EXIT_WAIT = 60.0  # s the interpreter's exit waits for background closes before thread pools shut
_closing: Set[threading.Thread] = set()  # background closes still running (non-daemon: exit waits)
_exit_hook: List[bool] = []


def close(
    session: TrackingSession,
    status: str,
    timeout: float,
    background: bool,
    before: Optional[Callable[[], None]],
    after: Optional[Callable[[TrackingSession], None]],
) -> None:
    if session._closed or session._closer is not None:
        return
    session._ending = True
    # a run this session joined (the program's, the launcher's) is closed as before: the
    # program may read it back as soon as fit() returns
    foreground = not session.background or session._writer.uploader is None or session._writer.down
    if not background or foreground:
        _finish(session, status, timeout, before, after)
        return
    session._writer.flush(0, wait=False)  # the spooler writes the rest now (and the atexit handler at worst)
    # not a daemon: the interpreter joins it before it exits, so the bounded flush still happens
    closer = threading.Thread(target=_finish, args=(session, status, timeout, before, after), name="tfrepro-close")
    session._closer = closer
    _closing.add(closer)
    _wait_before_pools_shut()
    closer.start()


def wait(session: TrackingSession, timeout: Optional[float]) -> bool:
    closer = session._closer
    if closer is not None:
        closer.join(timeout)
        if closer.is_alive():
            return False
    return session._closed and session._uploaded


def _finish(session: TrackingSession, status: str, timeout: float, before, after) -> None:
    try:
        if before is not None:
            try:
                before()
            except Exception as exc:
                session._error("before close", exc)
        if session._opener is not None:
            join_started(session._opener_started, session._opener, OPEN_TIMEOUT)  # its tags go up with the rest
        session._closed = True
        _finish_upload(session, status, timeout)
        if after is not None:
            try:
                after(session)
            except Exception as exc:
                session._error("after close", exc)
    finally:
        _closing.discard(threading.current_thread())


def _finish_upload(session: TrackingSession, status: str, timeout: float) -> None:
    start = time.monotonic()
    ended = False
    if session.has_fluent_run and session.started_run:
        session._writer.flush(0, wait=False)  # what is left goes up while MLflow ends the run
        ended = _end_fluent_run(session, status)
    session.flush(max(timeout - (time.monotonic() - start), 0.0))
    seconds = time.monotonic() - start
    log.info("tfrepro: tracking flushed in %.3f s", seconds)
    session._put({"tags": {FLUSH_TAG: "%.3f" % seconds}}, closing=True)
    if session.started_run and not ended:
        session._put({"end": status, "end_time": int(time.time() * 1000)}, closing=True)
    try:
        done = session._writer.close(FINAL_TIMEOUT)
    except Exception as exc:
        session._error("close", exc)
        done = False
    session._uploaded = done
    if not done:
        warn_not_uploaded(session.run_id, session.spool_path)


def _end_fluent_run(session: TrackingSession, status: str) -> bool:
    """End the MLflow active run. Fails fast when the server is down (the run is still
    popped from MLflow's stack, and the spooled end record lets `sync` finish it)."""
    import mlflow

    from tfrepro.tracking.backend import short_http

    active = mlflow.active_run()
    if not active or active.info.run_id != session._local_id:
        return False
    up = session.online
    try:
        with short_http(timeout=5 if up else 1):
            mlflow.end_run(status)
        return True
    except Exception as exc:
        if up:
            session._error("end run", exc)
        return False


def _wait_before_pools_shut() -> None:
    """Python 3.9+ shuts concurrent.futures' thread pools at exit *before* it joins the
    threads still running: a background close that the main thread's end left running would
    then fail every MLflow call that uses a pool (artifact downloads, signing's record load).
    A threading exit hook registered after theirs runs before them (they run in reverse):
    it waits for the closes (bounded). Python 3.8 joins threads before its pools shut."""
    register = getattr(threading, "_register_atexit", None)
    if _exit_hook or register is None:
        return
    try:
        import concurrent.futures.thread  # noqa: F401  (registers its hook first, so it runs after ours)

        register(wait_for_uploads, EXIT_WAIT)
        _exit_hook.append(True)
    except Exception:  # already shutting down, or a Python without the hook: the join still happens
        pass


def wait_for_uploads(timeout: Optional[float] = None) -> bool:
    """Wait for every background close of this process (at most `timeout` s in all).
    True when none is left running."""
    deadline = None if timeout is None else time.monotonic() + timeout
    for thread in list(_closing):
        thread.join(None if deadline is None else max(deadline - time.monotonic(), 0.0))
    return not any(t.is_alive() for t in list(_closing))


def warn_not_uploaded(run_id: str, spool_path: str) -> None:
    """The one line a session whose writer could not finish in time leaves behind."""
    log.warning(
        "tfrepro: run %s is not fully uploaded; its points are in %s: run `tfrepro sync` when the server is back",
        run_id,
        spool_path,
    )
