"""TrackingSession: one run's tracking, used by ReproCallback. It never raises into training.

Contract (the callback relies on it):
    session = TrackingSession.open(experiment_name=None, run_name=None)
        uses the active MLflow run if there is one, else starts one (MLFLOW_RUN_ID resumes
        the run a launcher created); `session.started_run` says whether close() ends it.
        Bounded: when the server does not answer within a few seconds the run gets a local
        id (`local-<uuid>`) and everything is spooled for `tfrepro sync`.
    session.run_id                      real MLflow run id (or a local id while the server is down); after
                                        close(), waits (bounded) for a run being created in the background
    session.log_params(dict) / set_tags(dict)
    session.log_metrics(dict, step)     a put_nowait: never blocks the training thread on the network
    session.log_text(text, artifact_file) / log_artifacts(local_dir, artifact_path)
    session.log_inputs([dataset fields + "context"])   MLflow dataset inputs, spooled too
    session.flush(timeout) -> seconds spent
    session.close(status="FINISHED")    end the run only if this session started it (while what is
                                        left uploads), then wait for the upload
    session.close(..., background=True) the same on a thread of its own, once every point is in the
                                        spool: the process still waits for it (bounded) at exit
    session.wait(timeout) -> bool       wait for a background close; True when all was uploaded
    session.wait_for_run(timeout) -> str   the run id once the run exists (off the training thread):
                                        MLflow's context tags spooled and the run created; the
                                        local id when the server is down

Background opening (`open(..., background=True)`, what ReproCallback does): with no active
MLflow run and no launcher's run to resume, open() makes no server call at all. The session
spools under a local id (`local-<uuid>`) and the writer's upload thread creates the real run
(the same path `tfrepro sync` takes for a local id) and uploads into it: nothing waits for
the server before the first step.
Every method above swallows tracking failures (recorded in `session.errors`, warned once).
What the callback asks of the run itself, so that it never calls MLflow (these raise on a
server error; the callback guards them):
    session.run_params() -> dict        the params the run has already (not to log them again)
    session.log_keras_model(model, params=None) -> the model's URI, or None (warned) when it cannot be logged
    session.run_page() -> RunPage(tracking_uri, experiment_id, tags), or None: for the card
Also: `session.online` (last upload attempt reached the server), `session.spool_path`,
`session.has_fluent_run` (an MLflow active run is set, so mlflow.log_* calls reach it),
`session.run_start_time` (epoch seconds: when the active run it joined started; else None).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
import uuid
from typing import Callable, Dict, List, Optional, Set

from tfrepro import schema
from tfrepro.redact import strip_url_credentials
from tfrepro.tracking import spool
from tfrepro.tracking.launched import experiment_note
from tfrepro.tracking.runpage import RunPage
from tfrepro.tracking.upload import LOCAL_PREFIX, RunUploader
from tfrepro.tracking.writer import QUEUE_SIZE, UPLOAD_INTERVAL, Writer, join_started, start_later

log = logging.getLogger(__name__)

FLUSH_TAG = schema.FLUSH_SECONDS  # seconds close() spent flushing the queue
FLUSH_TIMEOUT = 10.0
FINAL_TIMEOUT = 2.0  # for the last few records (flush tag, run end) after the main flush
OPEN_TIMEOUT = 30.0  # for MLflow's import and context tags, when the run is opened in the background
_closing: Set[threading.Thread] = set()  # background closes still running (non-daemon: exit waits)


class TrackingSession:
    def __init__(
        self,
        run_id: str,
        started_run: bool,
        writer: Writer,
        fluent: bool = False,
        run_start_time: Optional[float] = None,
    ):
        self._local_id = run_id
        self.started_run = started_run
        self.has_fluent_run = fluent
        self.run_start_time = run_start_time
        self._writer = writer
        self._errors: List[str] = []
        self._closed = False
        self._uploaded = False
        self.background = False  # opened in the background: the run is created by the writer's thread
        # set once MLflow is imported: a thread that imports it too must wait for this (two
        # threads importing MLflow at once get half-initialised modules)
        self.imported = threading.Event()
        if "mlflow" in sys.modules:
            self.imported.set()
        self._closer: Optional[threading.Thread] = None
        self._ending = False  # close() was called: run_id may wait for the run to be created
        self._opener: Optional[threading.Thread] = None  # resolving MLflow's context tags
        self._opener_started = threading.Event()

    @classmethod
    def open(
        cls,
        experiment_name: Optional[str] = None,
        run_name: Optional[str] = None,
        *,
        spool_dir: Optional[str] = None,
        queue_size: int = QUEUE_SIZE,
        upload_interval: float = UPLOAD_INTERVAL,
        background: bool = False,
        caller_records: bool = False,
    ) -> "TrackingSession":
        """caller_records: the caller records the environment, so the MLflow plugin adds none
        to a run started here."""
        if background:
            session = cls._open_background(experiment_name, run_name, spool_dir, queue_size, upload_interval)
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
        header = _header(run_id, experiment_name, run_name, uri)
        writer = _open_writer(spool_dir, run_id, header, backend, queue_size, upload_interval, online)
        session = cls(run_id, started, writer, fluent, run_start_time)
        session._errors.extend(errors)
        if notes:
            session.set_tags(notes)
        return session

    @classmethod
    def _open_background(cls, experiment_name, run_name, spool_dir, queue_size, upload_interval):
        """A session that makes no server call: None when a run already exists to join (an
        active run, the launcher's MLFLOW_RUN_ID), which open() then handles as before."""
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
            return None  # open() reports it
        run_id = LOCAL_PREFIX + uuid.uuid4().hex
        header = _header(run_id, experiment_name, run_name, uri, context_tags=False)
        if chosen:  # the program's mlflow.set_experiment() wins over $MLFLOW_EXPERIMENT_NAME, as in MLflow
            header["experiment_id"], header["experiment_name"] = str(chosen), None
        writer = _open_writer(spool_dir, run_id, header, backend, queue_size, upload_interval, False)
        session = cls(run_id, True, writer, False, None)
        session.background = True
        session.imported = imported
        if mlflow is not None:
            imported.set()
        # MLflow's context tags (source, user, git) are what start_run would have set: resolved
        # off the training thread too, and spooled like any tag
        opener = threading.Thread(target=session._context_tags, args=(run_name,), name="tfrepro-open", daemon=True)
        session._opener = opener
        session._opener_started = start_later(opener)
        return session

    def _context_tags(self, run_name):
        try:
            try:
                import mlflow  # noqa: F401  (here first: the writer's threads wait for it)
            finally:
                self.imported.set()
            from mlflow.tracking.context.registry import resolve_tags

            from tfrepro import fingerprint

            with fingerprint.recorded_by_caller():  # ReproCallback records the environment itself
                tags = resolve_tags({"mlflow.runName": run_name} if run_name else {})
            self._writer.put((None, {"tags": {str(k): str(v) for k, v in tags.items()}}))
        except Exception as exc:
            self._error("run context tags", exc)

    def wait_for_run(self, timeout: float = FLUSH_TIMEOUT) -> str:
        """The run id once the run exists on the server. For a session opened in the
        background: waits (at most `timeout` s; never call it on the training thread) until
        MLflow's context tags are spooled, so tags spooled after this call win over them (the
        script tfrepro names is the run's source, not MLflow's argv[0]), and until the writer
        has created the run, so what names the run (the card, environment.md) names its real
        id. The local id when the server is down: `sync` gives it its id."""
        if self.background:
            deadline = time.monotonic() + timeout
            if self._opener is not None:
                join_started(self._opener_started, self._opener, timeout)
            uploader = self._writer.uploader
            if uploader is not None and not uploader.run_id:
                self._writer.wait_for_run(max(deadline - time.monotonic(), 0.0))
        return self.run_id

    # -- properties ------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        """The real MLflow run id, or the local one while there is none. Once close() was
        called (fit() returned), reading it waits (at most FLUSH_TIMEOUT s) for the writer to
        create a run opened in the background, so the id a program prints after fit() is the
        server's; at once when the server is known to be down. Never waits during training."""
        uploader = self._writer.uploader
        if uploader is None:
            return self._local_id
        if not uploader.run_id and self.background and self._ending:
            self._writer.wait_for_run(FLUSH_TIMEOUT)
        return uploader.run_id or self._local_id

    @property
    def online(self) -> bool:
        return self._writer.online

    @property
    def spool_path(self) -> str:
        return self._writer.spool.path

    @property
    def errors(self) -> List[str]:
        uploader = self._writer.uploader
        return self._errors + self._writer.errors + (uploader.errors if uploader is not None else [])

    # -- logging ---------------------------------------------------------------------
    def log_metrics(self, metrics: Dict[str, float], step: int) -> None:
        if not self._closed:
            self._writer.put((step, int(time.time() * 1000), dict(metrics)))

    def _put(self, record: Dict, closing: bool = False) -> None:
        if self._closed and not closing:  # close() itself still writes the flush tag and the end
            return
        try:
            self._writer.put((None, record))
        except Exception as exc:
            self._error("spool", exc)

    def log_params(self, params: Dict[str, object]) -> None:
        self._put({"params": {str(k): str(v) for k, v in params.items()}})

    def set_tags(self, tags: Dict[str, str]) -> None:
        self._put({"tags": {str(k): str(v) for k, v in tags.items()}})

    def log_text(self, text: str, artifact_file: str) -> None:
        self._put({"text": text, "file": artifact_file})

    def log_inputs(self, datasets: List[Dict]) -> None:
        """MLflow dataset inputs: each the fields of MLflow's Dataset entity plus "context"."""
        self._put({"inputs": datasets})

    def log_artifacts(self, local_dir: str, artifact_path: Optional[str] = None) -> None:
        """Uploaded now when the server is up (the directory may be temporary); else spooled
        by path, for `sync` to upload if the directory still exists then."""
        uploader = self._writer.uploader
        if uploader is not None and self.background and not uploader.run_id:
            self._writer.wait_for_run(FLUSH_TIMEOUT)  # the directory may be gone once this returns
        if uploader is not None and (self.online or self.background) and uploader.run_id:
            try:
                from tfrepro.tracking.backend import short_http

                with short_http(timeout=60, retries=1):  # fail in seconds, not minutes, if it is down
                    uploader.backend.log_artifacts(uploader.run_id, local_dir, artifact_path)
                return
            except Exception as exc:
                self._error("log artifacts", exc)
        self._put({"artifacts": os.path.abspath(local_dir), "path": artifact_path})

    # -- reading the run back -----------------------------------------------------------
    def run_params(self) -> Dict[str, str]:
        """The params the run already has: none for a run this session just created or one
        only spooled locally; else asked of the server (an active run, a resumed one, mlflow's
        autolog). Raises when the server cannot say."""
        fresh = self.started_run and not os.environ.get(schema.ENV_MLFLOW_RUN_ID)
        if fresh or not self.online or not self.has_fluent_run:
            return {}
        import mlflow

        from tfrepro.tracking.backend import short_http

        with short_http():
            return dict(mlflow.tracking.MlflowClient().get_run(self.run_id).data.params)

    def log_keras_model(self, model, params: Optional[Dict[str, str]] = None) -> Optional[str]:
        """Log a Keras model with the mlflow.tensorflow flavour (a SavedModel) into this run
        and return its URI; `params` become the logged model's (MLflow 3). The flavour logs into MLflow's active run: None, after a warning,
        when that is not this session's run or the server is down. Raises when logging fails."""
        import mlflow

        active = mlflow.active_run()
        if self.background and not self.has_fluent_run:
            return self._log_keras_model_into_created_run(model, active, params)
        if not (self.has_fluent_run and self.online):
            log.warning("tfrepro: tracking server unreachable; the model was not logged (its hash was recorded)")
            return None
        if active is None or active.info.run_id != self.run_id:
            log.warning("tfrepro: another MLflow run is active; the model was not logged")
            return None
        from tfrepro.tracking import model as model_io

        return model_io.log_keras_model(model, params=params)

    def _log_keras_model_into_created_run(self, model, active, params=None) -> Optional[str]:
        """The flavour logs into MLflow's active run: resume the run the writer created, log,
        and end it (the spooled end record then sets the final status and time)."""
        import mlflow

        if active is not None:
            log.warning("tfrepro: another MLflow run is active; the model was not logged")
            return None
        run_id = self._writer.wait_for_run(FLUSH_TIMEOUT)
        if run_id is None:
            log.warning("tfrepro: tracking server unreachable; the model was not logged (its hash was recorded)")
            return None
        from tfrepro.tracking import model as model_io
        from tfrepro.tracking.backend import short_http

        uploader = self._writer.uploader
        if uploader.header.get("experiment_name") and uploader.experiment_id:
            mlflow.set_experiment(experiment_id=uploader.experiment_id)  # as a foreground open does
        with short_http(timeout=10, retries=1):
            mlflow.start_run(run_id=run_id)
        try:
            return model_io.log_keras_model(model, params=params)
        finally:
            with short_http(timeout=5):
                mlflow.end_run()

    def _error(self, what, exc):
        if not self.errors:
            log.warning("tfrepro: tracking failed (%s): %s; training goes on", what, exc)
        self._errors.append("%s: %s" % (what, exc))

    # -- ending ----------------------------------------------------------------------
    def flush(self, timeout: float = FLUSH_TIMEOUT) -> float:
        """Wait up to `timeout` s for everything logged so far to reach the server (returns
        early when the server is down: it is all in the spool). Returns seconds spent."""
        start = time.monotonic()
        try:
            self._writer.flush(timeout)
        except Exception as exc:
            self._error("flush", exc)
        return time.monotonic() - start

    def close(
        self,
        status: str = "FINISHED",
        timeout: float = FLUSH_TIMEOUT,
        background: bool = False,
        before: Optional[Callable[[], None]] = None,
        after: Optional[Callable[["TrackingSession"], None]] = None,
    ) -> None:
        """Call `before()` (the last things still being logged), end the run if this session
        started it and upload what is left (bounded by `timeout`), then call `after(session)`;
        their failures are logged. background=True does it on a thread of its own, without
        waiting for anything, for a session opened in the background whose server
        is not known to be down (nothing would wait on the network then)."""
        if self._closed or self._closer is not None:
            return
        self._ending = True
        # a run this session joined (the program's, the launcher's) is closed as before: the
        # program may read it back as soon as fit() returns
        foreground = not self.background or self._writer.uploader is None or self._writer.down
        if not background or foreground:
            self._finish(status, timeout, before, after)
            return
        self._writer.flush(0, wait=False)  # the spooler writes the rest now (and the atexit handler at worst)
        # not a daemon: the interpreter joins it before it exits, so the bounded flush still happens
        closer = threading.Thread(target=self._finish, args=(status, timeout, before, after), name="tfrepro-close")
        self._closer = closer
        _closing.add(closer)
        _wait_before_pools_shut()
        closer.start()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait for a background close (at most `timeout` s). True when it is over and nothing
        is left for `tfrepro sync`."""
        closer = self._closer
        if closer is not None:
            closer.join(timeout)
            if closer.is_alive():
                return False
        return self._closed and self._uploaded

    def _finish(self, status: str, timeout: float, before, after) -> None:
        try:
            if before is not None:
                try:
                    before()
                except Exception as exc:
                    self._error("before close", exc)
            if self._opener is not None:
                join_started(self._opener_started, self._opener, OPEN_TIMEOUT)  # its tags go up with the rest
            self._closed = True
            self._finish_upload(status, timeout)
            if after is not None:
                try:
                    after(self)
                except Exception as exc:
                    self._error("after close", exc)
        finally:
            _closing.discard(threading.current_thread())

    def _finish_upload(self, status: str, timeout: float) -> None:
        start = time.monotonic()
        ended = False
        if self.has_fluent_run and self.started_run:
            self._writer.flush(0, wait=False)  # what is left goes up while MLflow ends the run
            ended = self._end_fluent_run(status)
        self.flush(max(timeout - (time.monotonic() - start), 0.0))
        seconds = time.monotonic() - start
        log.info("tfrepro: tracking flushed in %.3f s", seconds)
        self._put({"tags": {FLUSH_TAG: "%.3f" % seconds}}, closing=True)
        if self.started_run and not ended:
            self._put({"end": status, "end_time": int(time.time() * 1000)}, closing=True)
        try:
            done = self._writer.close(FINAL_TIMEOUT)
        except Exception as exc:
            self._error("close", exc)
            done = False
        self._uploaded = done
        if not done:
            warn_not_uploaded(self.run_id, self.spool_path)

    def _end_fluent_run(self, status: str) -> bool:
        """End the MLflow active run. Fails fast when the server is down (the run is still
        popped from MLflow's stack, and the spooled end record lets `sync` finish it)."""
        import mlflow

        from tfrepro.tracking.backend import short_http

        active = mlflow.active_run()
        if not active or active.info.run_id != self._local_id:
            return False
        up = self.online
        try:
            with short_http(timeout=5 if up else 1):
                mlflow.end_run(status)
            return True
        except Exception as exc:
            if up:
                self._error("end run", exc)
            return False

    # -- the run's page in the MLflow UI (issue 20) ---------------------------------------
    def run_page(self) -> Optional[RunPage]:
        """The run as its page shows it now, for the card in its description: the tracking URI
        (credentials stripped), its experiment id and tags (the description among them). A run
        this session only spooled has no tags yet (experiment unknown). None when the server
        cannot say: the run may have a description that must not be overwritten. One bounded
        call, no retry (call it off the training thread); raises on a server error."""
        uploader = self._writer.uploader
        uri = strip_url_credentials(getattr(uploader.backend, "tracking_uri", "") if uploader else "") or None
        # a run the writer created a moment ago: its first upload may still be going on
        if uploader is not None and uploader.run_id and (self.online or (self.background and not self._writer.down)):
            experiment_id, tags = uploader.backend.run_tags(uploader.run_id)
            return RunPage(uri, experiment_id, tags)
        if self._local_id.startswith(LOCAL_PREFIX) and (uploader is None or not uploader.run_id):
            return RunPage(uri, None, {})
        return None


def _caller_records(active: bool):
    if not active:
        import contextlib

        return contextlib.nullcontext()
    from tfrepro import fingerprint

    return fingerprint.recorded_by_caller()


EXIT_WAIT = 60.0  # s the interpreter's exit waits for background closes before thread pools shut
_exit_hook: List[bool] = []


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


def _header(run_id, experiment_name, run_name, uri, context_tags: bool = True) -> Dict:
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


def _open_writer(spool_dir, run_id, header, backend, queue_size, upload_interval, online) -> Writer:
    directory = spool.spool_dir(spool_dir)
    try:
        spool_file = spool.SpoolFile(directory, run_id, header)
    except OSError as exc:  # unwritable cache dir: the temp dir still beats losing points
        fallback = spool.fallback_dir()
        log.warning("tfrepro: cannot spool to %s (%s); using %s", directory, exc, fallback)
        spool_file = spool.SpoolFile(fallback, run_id, header)
    uploader = RunUploader(backend, header) if backend is not None else None
    return Writer(spool_file, uploader, queue_size=queue_size, upload_interval=upload_interval, online=online)


def warn_not_uploaded(run_id: str, spool_path: str) -> None:
    """The one line a session whose writer could not finish in time leaves behind."""
    log.warning(
        "tfrepro: run %s is not fully uploaded; its points are in %s: run `tfrepro sync` when the server is back",
        run_id,
        spool_path,
    )
