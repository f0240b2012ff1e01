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
The work is split by phase: session_open.py (opening, in the foreground or the background),
session_close.py (close, wait, the exit hook) and session_model.py (log_keras_model); this
module holds the session itself and its logging.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Callable, Dict, List, Optional

from tfrepro import schema
from tfrepro.redact import strip_url_credentials
from tfrepro.tracking import session_close, session_model, session_open
from tfrepro.tracking.runpage import RunPage
from tfrepro.tracking.session_close import FINAL_TIMEOUT, FLUSH_TAG, FLUSH_TIMEOUT, wait_for_uploads, warn_not_uploaded
from tfrepro.tracking.session_open import OPEN_TIMEOUT
from tfrepro.tracking.threads import join_started
from tfrepro.tracking.upload import LOCAL_PREFIX
from tfrepro.tracking.writer import QUEUE_SIZE, UPLOAD_INTERVAL, Writer

__all__ = [
    "FINAL_TIMEOUT",
    "FLUSH_TAG",
    "FLUSH_TIMEOUT",
    "OPEN_TIMEOUT",
    "RunPage",
    "TrackingSession",
    "wait_for_uploads",
    "warn_not_uploaded",
]

log = logging.getLogger(__name__)


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
        return session_open.open_session(
            cls, experiment_name, run_name, spool_dir, queue_size, upload_interval, background, caller_records
        )

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
        return session_model.log_keras_model(self, model, params)

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
        session_close.close(self, status, timeout, background, before, after)

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait for a background close (at most `timeout` s). True when it is over and nothing
        is left for `tfrepro sync`."""
        return session_close.wait(self, timeout)

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
