"""The plugin's first start_run without the wait (issue 21): the environment is recorded on a thread.

The process's first mlflow.start_run() used to collect the environment (git, packages, GPU:
0.1-0.3 s) before MLflow created the run. Now, while nothing is collected yet, start_run gets
two tags at once: a token (tfrepro.plugin.pending) and a placeholder card for the description.
A thread collects the environment, finds the run MLflow created with that token (the caller
thread's active runs, or the last one it ended), writes the tags, and removes the token. What
the user chose wins, as it does when the tags come from start_run itself: a description
passed to start_run replaced the placeholder, so the card is not written, and a source tag
the user set is kept (ours replaces only MLflow's default). At interpreter exit the thread
gets at most EXIT_WAIT s to finish. Where MLflow does not keep its runs where this looks, or
the call does not come from fluent start_run (MLflow 3's LoggedModel creation also asks the
providers), the tags are collected at once, as before.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
import time
import uuid
from typing import Callable, Dict, List, Optional, Tuple

from tfrepro import schema

log = logging.getLogger("tfrepro")

FIND_SECONDS = 30.0  # how long the thread looks for the run start_run creates
EXIT_WAIT = 15.0  # at interpreter exit, at most this for tags not written yet
PLACEHOLDER_NOTE = "<!-- tfrepro:card -->\n*tfrepro is recording this run's environment.*"
SOURCE_TAGS = (schema.MLFLOW_SOURCE_NAME, schema.MLFLOW_SOURCE_TYPE)

_threads: List[Tuple[threading.Thread, threading.Event]] = []  # and the event set once it started
_exiting = threading.Event()


def from_start_run() -> bool:
    """The providers are asked by fluent start_run (not by a LoggedModel's creation), and MLflow
    keeps its active runs where _find looks (2.17 and 3.x)."""
    fluent = sys.modules.get("mlflow.tracking.fluent")
    if fluent is None or not hasattr(fluent, "_active_run_stack") or not hasattr(fluent, "_last_active_run_id"):
        return False
    frame = sys._getframe(1)
    for _ in range(6):  # tags() <- resolve_tags() <- start_run()
        frame = frame.f_back
        if frame is None:
            return False
        if frame.f_code.co_name == "start_run" and frame.f_globals.get("__name__") == fluent.__name__:
            return True
    return False


def start(collect_tags: Callable[[], Dict[str, str]]) -> Dict[str, str]:
    """The tags start_run gets now; collect_tags()'s follow from a thread."""
    import mlflow

    from tfrepro.tracking.threads import start_later  # Thread.start() waits for the thread to run

    token = uuid.uuid4().hex
    args = (token, threading.get_ident(), mlflow.get_tracking_uri(), collect_tags)
    thread = threading.Thread(target=_record, args=args, name="tfrepro-plugin", daemon=True)
    if not _threads:
        atexit.register(_wait_at_exit)
    _threads.append((thread, start_later(thread)))
    return {schema.PLUGIN_PENDING: token, schema.MLFLOW_NOTE: PLACEHOLDER_NOTE}


def _record(token: str, caller: int, tracking_uri: str, collect_tags: Callable[[], Dict[str, str]]) -> None:
    try:
        from tfrepro.tracking.backend import backend_for

        backend = backend_for(tracking_uri)
        run_id = _find(backend, token, caller)  # first: while the run is most likely still active
        tags = collect_tags()
        if run_id is None:
            log.warning("tfrepro: environment tags not written: no run with %s=%s", schema.PLUGIN_PENDING, token)
            return
        current = backend.run_tags(run_id)[1]
        written = kept(tags, current, _mlflow_default_source())
        if written:  # nothing when the collection failed
            backend.log_batch(run_id, tags=written)
        if current.get(schema.MLFLOW_NOTE) == PLACEHOLDER_NOTE and schema.MLFLOW_NOTE not in written:
            backend.delete_tag(run_id, schema.MLFLOW_NOTE)  # nothing collected: no placeholder left
        backend.delete_tag(run_id, schema.PLUGIN_PENDING)
    except Exception as exc:  # never into the script
        log.warning("tfrepro: environment tags not written: %s", exc)


def kept(tags: Dict[str, str], current: Dict[str, str], default_source: Dict[str, str]) -> Dict[str, str]:
    """Our tags less what the user chose: the description (ours only over the placeholder) and
    source tags other than MLflow's default."""
    out = dict(tags)
    if current.get(schema.MLFLOW_NOTE, PLACEHOLDER_NOTE) != PLACEHOLDER_NOTE:
        out.pop(schema.MLFLOW_NOTE, None)
    for key in SOURCE_TAGS:
        if key in current and current[key] != default_source.get(key):
            out.pop(key, None)
    return out


def _mlflow_default_source() -> Dict[str, str]:
    from mlflow.tracking.context.default_context import DefaultRunContext

    return {k: v for k, v in DefaultRunContext().tags().items() if k in SOURCE_TAGS}


def _find(backend, token: str, caller: int) -> Optional[str]:
    """The run start_run created with `token`: among the caller thread's active runs, or the
    last run it ended (checked on the server), or found by the token in that last run's
    experiment (a later run ended meanwhile); None after FIND_SECONDS, or at exit."""
    import mlflow.tracking.fluent as fluent

    deadline = time.monotonic() + FIND_SECONDS
    checked = None
    while True:
        for run in _active_runs(fluent, caller):
            if run.data.tags.get(schema.PLUGIN_PENDING) == token:
                return run.info.run_id
        last = _last_run_id(fluent, caller)
        if last and last != checked:
            checked = last
            experiment_id, tags = backend.run_tags(last)
            if tags.get(schema.PLUGIN_PENDING) == token:
                return last
            found = backend.find_run(experiment_id, schema.PLUGIN_PENDING, token)
            if found:
                return found
        if time.monotonic() > deadline or _exiting.is_set():
            return None
        time.sleep(0.05)


def _active_runs(fluent, caller: int) -> list:
    stack = fluent._active_run_stack
    if isinstance(stack, list):  # MLflow 2.17: one stack for the process
        return list(stack)
    return list(stack.get_all_thread_values().get(caller) or [])


def _last_run_id(fluent, caller: int) -> Optional[str]:
    last = fluent._last_active_run_id
    if last is None or isinstance(last, str):  # MLflow 2.17: one for the process
        return last
    return last.get_all_thread_values().get(caller)


def _wait_at_exit() -> None:
    from tfrepro.tracking.threads import join_started

    _exiting.set()
    deadline = time.monotonic() + EXIT_WAIT
    for thread, started in list(_threads):
        join_started(started, thread, max(deadline - time.monotonic(), 0.0))
