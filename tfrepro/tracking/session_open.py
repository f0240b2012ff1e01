"""Opening a TrackingSession (session.py holds the contract): join or start the MLflow run,
or, in the background, spool under a local id while the writer's thread creates the run.

open_session()      TrackingSession.open(): the active run, the launcher's (MLFLOW_RUN_ID), or a
                    new one; bounded, and a local id when the server does not answer
open_background()   no server call at all: None when a run exists to join (open_session's case)
context_tags()      the opener thread: imports MLflow first (`session.imported` tells the threads
                    that import it too) and spools the context tags start_run would have set
run_header()        the spool file's header; open_writer(): its writer (fluent.py opens one too)
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
import uuid
from typing import TYPE_CHECKING, Dict, List, Optional, Type

from tfrepro import schema
from tfrepro.redact import strip_url_credentials
from tfrepro.tracking import spool
from tfrepro.tracking.launched import experiment_note
from tfrepro.tracking.threads import start_later
from tfrepro.tracking.upload import LOCAL_PREFIX, RunUploader
from tfrepro.tracking.writer import Writer

if TYPE_CHECKING:
    from tfrepro.tracking.session import TrackingSession

log = logging.getLogger(__name__)

OPEN_TIMEOUT = 30.0  # for MLflow's import and context tags, when the run is opened in the background


def open_session(
    cls: Type[TrackingSession],
    experiment_name: Optional[str],
    run_name: Optional[str],
    spool_dir: Optional[str],
    queue_size: int,
    upload_interval: float,
    background: bool,
    caller_records: bool,
) -> TrackingSession:
    if background:
        session = open_background(cls, experiment_name, run_name, spool_dir, queue_size, upload_interval)
        if session is not None:
            return session
    errors: List[str] = []
    backend, uri, run_id, started, online, fluent = None, None, None, True, False, False
    run_start_time: Optional[float] = None
    notes: Dict[str, str] = {}
    try:
        import mlflow

        from tfrepro.tracking.backend import backend_for, short_http
        from tfrepro.tracking.experiments import fluent_experiment_id

        uri = mlflow.get_tracking_uri()
        backend = backend_for(uri)
        active = mlflow.active_run()
        if active:
            run_id, started, online, fluent = active.info.run_id, False, True, True
            run_start_time = active.info.start_time / 1000.0
        elif backend.reachable():
            try:
                launcher_run = os.environ.get(schema.ENV_MLFLOW_RUN_ID)
                with short_http(), _caller_records(caller_records):
                    # MLFLOW_RUN_ID (set by `tfrepro run`): resume that run in its own experiment
                    experiment_id = None
                    if launcher_run:
                        # MLflow refuses to resume a run outside the experiment that an earlier
                        # mlflow.set_experiment() (the script's, or ours) made active
                        launched_in = mlflow.tracking.MlflowClient().get_run(launcher_run).info.experiment_id
                        mlflow.set_experiment(experiment_id=launched_in)
                    else:
                        # an explicit id: set_experiment() can lose a create race into Default
                        experiment_id = fluent_experiment_id(experiment_name)
                        if experiment_name:  # later mlflow.start_run() calls go there too
                            mlflow.set_experiment(experiment_id=experiment_id)
                    run_id = mlflow.start_run(experiment_id=experiment_id, run_name=run_name).info.run_id
                online, fluent = True, True
                notes = experiment_note(experiment_name, launcher_run)
            except Exception as exc:
                errors.append("start run: %s" % exc)
    except Exception as exc:  # no mlflow, a bad URI, ...: spool only
        errors.append("tracking: %s" % exc)
    if run_id is None:
        run_id = os.environ.get(schema.ENV_MLFLOW_RUN_ID) or LOCAL_PREFIX + uuid.uuid4().hex
        log.warning(
            "tfrepro: tracking server %s unreachable; run %s is spooled locally (upload later with `tfrepro sync`)",
            strip_url_credentials(uri or ""),
            run_id,
        )
    header = run_header(run_id, experiment_name, run_name, uri)
    writer = open_writer(spool_dir, run_id, header, backend, queue_size, upload_interval, online)
    session = cls(run_id, started, writer, fluent, run_start_time)
    session._errors.extend(errors)
    if notes:
        session.set_tags(notes)
    return session


def open_background(cls, experiment_name, run_name, spool_dir, queue_size, upload_interval):
    """A session that makes no server call: None when a run already exists to join (an
    active run, the launcher's MLFLOW_RUN_ID), which open_session() then handles as before."""
    if os.environ.get(schema.ENV_MLFLOW_RUN_ID):
        return None
    try:
        from tfrepro.tracking.backend import Deferred, backend_for

        mlflow = sys.modules.get("mlflow")
        imported = threading.Event()
        if mlflow is None:  # not imported yet, so no run is active: importing it takes seconds
            uri, backend, chosen = os.environ.get(schema.ENV_MLFLOW_TRACKING_URI), Deferred(imported), None
        else:
            if mlflow.active_run() is not None:
                return None
            uri = mlflow.get_tracking_uri()
            backend = backend_for(uri)
            chosen = None
            if not experiment_name:
                chosen = getattr(sys.modules.get("mlflow.tracking.fluent"), "_active_experiment_id", None)
    except Exception:
        return None  # open_session() reports it
    run_id = LOCAL_PREFIX + uuid.uuid4().hex
    header = run_header(run_id, experiment_name, run_name, uri, context_tags=False)
    if chosen:  # the program's mlflow.set_experiment() wins over $MLFLOW_EXPERIMENT_NAME, as in MLflow
        header["experiment_id"], header["experiment_name"] = str(chosen), None
    writer = open_writer(spool_dir, run_id, header, backend, queue_size, upload_interval, False)
    session = cls(run_id, True, writer, False, None)
    session.background = True
    session.imported = imported
    if mlflow is not None:
        imported.set()
    # MLflow's context tags (source, user, git) are what start_run would have set: resolved
    # off the training thread too, and spooled like any tag
    opener = threading.Thread(target=context_tags, args=(session, run_name), name="tfrepro-open", daemon=True)
    session._opener = opener
    session._opener_started = start_later(opener)
    return session


def context_tags(session, run_name):
    try:
        try:
            import mlflow  # noqa: F401  (here first: the writer's threads wait for it)
        finally:
            session.imported.set()
        from mlflow.tracking.context.registry import resolve_tags

        from tfrepro import fingerprint

        with fingerprint.recorded_by_caller():  # ReproCallback records the environment itself
            tags = resolve_tags({"mlflow.runName": run_name} if run_name else {})
        session._writer.put((None, {"tags": {str(k): str(v) for k, v in tags.items()}}))
    except Exception as exc:
        session._error("run context tags", exc)


def _caller_records(active: bool):
    if not active:
        import contextlib

        return contextlib.nullcontext()
    from tfrepro import fingerprint

    return fingerprint.recorded_by_caller()


def run_header(run_id, experiment_name, run_name, uri, context_tags: bool = True) -> Dict:
    header = {
        "run_id": run_id,
        "experiment_name": experiment_name or os.environ.get(schema.ENV_MLFLOW_EXPERIMENT_NAME),
        "experiment_id": None if experiment_name else os.environ.get(schema.ENV_MLFLOW_EXPERIMENT_ID),
        "run_name": run_name,
        "tracking_uri": strip_url_credentials(uri or "") or None,
        "start_time": int(time.time() * 1000),
        "cwd": os.getcwd(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    if context_tags and run_id.startswith(LOCAL_PREFIX):  # the tags MLflow would have set at start_run
        try:
            from mlflow.tracking.context.registry import resolve_tags

            header["tags"] = resolve_tags({"mlflow.runName": run_name} if run_name else {})
        except Exception:
            header["tags"] = {}
    return header


def open_writer(spool_dir, run_id, header, backend, queue_size, upload_interval, online) -> Writer:
    directory = spool.spool_dir(spool_dir)
    try:
        spool_file = spool.SpoolFile(directory, run_id, header)
    except OSError as exc:  # unwritable cache dir: the temp dir still beats losing points
        fallback = spool.fallback_dir()
        log.warning("tfrepro: cannot spool to %s (%s); using %s", directory, exc, fallback)
        spool_file = spool.SpoolFile(fallback, run_id, header)
    uploader = RunUploader(backend, header) if backend is not None else None
    return Writer(spool_file, uploader, queue_size=queue_size, upload_interval=upload_interval, online=online)
