"""The script's own MLflow calls, at tfrepro's price: through a TrackingSession for the run tfrepro manages.

    from tfrepro.tracking import fluent
    fluent.enable()          # the run in MLFLOW_RUN_ID (set by `tfrepro run`), or enable(run_id);
                             # before `import mlflow` too: the hooks go in when it is imported
    ...
    mlflow.log_metric("loss", loss, step=i)     # a queue put (tens of µs), not a ~20 ms REST call
    fluent.disable()         # MLflow as it was (what was logged is flushed first, bounded)

What is routed: `mlflow.log_metric`, `log_metrics`, `log_param`, `log_params`, `set_tag`,
`set_tags` on that run (the active run, or `run_id=`), and `MlflowClient(...).log_metric`,
`log_batch`, `log_param`, `set_tag` with that run id. Calls on any other run, from tfrepro's
own writer threads, or with what the spool cannot carry (a `model_id`, a `dataset`, a metric
of an MLflow 3 LoggedModel step) pass through to MLflow untouched. The hooks
(fluent_hooks.py) sit in two places: the fluent functions themselves (MLflow 3's fluent
API builds two MlflowClient objects per call, ~300 µs, before any network), and
TrackingServiceClient, which MlflowClient and the fluent API both go through (MLflow 2.17
and 3.x alike). `synchronous=False` and MLFLOW_ENABLE_ASYNC_LOGGING take the same route: the
call returns a RunOperations whose wait() flushes the session (bounded), as does
`mlflow.flush_async_logging()`, so MLflow's own in-memory async queue, which keeps nothing
on disk, is not used for that run.

Guarantees are the TrackingSession's (session.py, writer.py), opened at the first call taken
(its own spool file, beside a ReproCallback session's on the same run): each point is
spooled on disk and uploaded exactly once, by the writer, or by `tfrepro sync` when the
server is down until the end; order, steps and MLflow's call-time timestamps are kept (the
timestamp is taken when the call is made, as MLflow does). Its uploads go to MLflow's
tracking URI as it is at that first call.

Errors, the choice made (issue 21):
- what MLflow's validation refuses (an invalid metric/param/tag key, a non-numeric value, a
  value too long) raises synchronously, with the exception type plain MLflow raises against
  the same store (RestException against a server, MlflowException otherwise);
- what only the server can refuse (a param changed to another value, a run deleted meanwhile)
  is recorded and reported once, at the end, in one line on stderr. A param changed within
  this process is caught here (and not sent, so it cannot take other params of the same
  batch down with it); one changed against a value logged by another process is refused by
  the server with the batch it was uploaded in, and reported likewise.

Ending: `mlflow.end_run()` (or `set_terminated`) of that run spools the end after the last
point and closes the session (the session's bounded flush, then the writer's close; not
TrackingSession.close(), whose flush-seconds tag is the callback's figure); at interpreter
exit (atexit) the same happens to a run still active (MLflow's own atexit would end it
too), and a session whose run is not active is only flushed. Nothing here raises at exit or
waits past that bounded flush. Calls on that run after its end pass through to MLflow.

Opt-out: TFREPRO_FLUENT=0 (schema.ENV_FLUENT): enable() does nothing, MLflow is untouched.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from typing import Dict, List, Optional, Tuple

from tfrepro import schema
from tfrepro.tracking import fluent_hooks, hotpath

log = logging.getLogger("tfrepro")

OFF_VALUES = ("0", "false", "no", "off")
ASYNC_WAIT = 10.0  # RunOperations.wait() on a routed call: at most this flush
MAX_REPORTED = 5  # errors spelled out in the end-of-run line (the count says the rest)

_lock = threading.Lock()
_router: Optional["Router"] = None


def enable(run_id: Optional[str] = None, spool_dir: Optional[str] = None) -> bool:
    """Route the script's MLflow calls on `run_id` (default: MLFLOW_RUN_ID) through a
    TrackingSession. True when routed; False (and MLflow untouched) under TFREPRO_FLUENT=0,
    with no run id, a local run id, or no MLflow. Enabling another run closes the previous one.

    Cheap before MLflow is imported (the launch hook runs it at interpreter start): the hooks
    go in when the script first imports mlflow, and the session opens at the first call taken."""
    global _router
    if os.environ.get(schema.ENV_FLUENT, "").strip().lower() in OFF_VALUES:
        return False
    run_id = run_id or os.environ.get(schema.ENV_MLFLOW_RUN_ID)
    if not run_id or run_id.startswith("local-"):  # a local id is no run MLflow knows
        return False
    with _lock:
        if _router is not None and _router.run_id == run_id and not _router.ended:
            return True
        previous, _router = _router, Router(run_id, spool_dir)
        try:
            installed = fluent_hooks.install(current)
        except Exception as exc:  # a broken MLflow: it stays as it is
            log.debug("tfrepro: fluent logging off: %s", exc)
            installed = False
        if not installed:
            _router = None
    if previous is not None:
        previous.close()
    return installed


def disable() -> None:
    """MLflow as it was; what was logged through the session is flushed first (bounded)."""
    global _router
    with _lock:
        router, _router = _router, None
        fluent_hooks.uninstall()
    if router is not None:
        router.close()


def current() -> Optional["Router"]:
    """The router while it takes calls (the hooks ask on every call)."""
    router = _router
    return router if router is not None and not router.ended else None


class Router:
    """One run's routed calls: validation on the caller's thread, then a put into the writer
    of a TrackingSession opened at the first call."""

    def __init__(self, run_id: str, spool_dir: Optional[str] = None):
        self.run_id = run_id
        self.tracking_uri = ""  # MLflow's, when the session opens (the script may set it after import)
        self.rest = False
        self.spool_dir = spool_dir
        self.ended = False
        self.errors: List[str] = []  # refused later than the call: reported at the end
        self.calls = 0
        self._params: Dict[str, str] = {}
        self._session = None
        self._writer = None
        self._open_lock = threading.Lock()

    def takes(self, run_id: Optional[str], tracking_uri: Optional[str] = None, open_session: bool = True) -> bool:
        """This call is for the run, from the script (not our own uploads), to the same server.
        The first one opens the session (open_session=False: not for that)."""
        if run_id != self.run_id or self.ended or not hotpath.script_thread():
            return False
        if self._writer is None:
            if not open_session:
                return True
            if not self._open():
                return False
        return tracking_uri is None or _normal_uri(tracking_uri) == self.tracking_uri

    # -- the calls (validated by the hooks) --------------------------------------------
    def metrics(self, points: List[Tuple[str, float, int, int]]) -> None:
        """[(key, value, timestamp ms, step)] in call order; one spool record per (step, ts) run."""
        put = self._put
        group: Dict[str, float] = {}
        at: Tuple[int, int] = (points[0][3], points[0][2])
        for key, value, ts, step in points:
            if (step, ts) != at or key in group:
                put((at[0], at[1], group))
                group, at = {}, (step, ts)
            group[key] = value
        if group:
            put((at[0], at[1], group))

    def metric(self, key: str, value: float, timestamp: int, step: int) -> None:
        """One point, checked by the hook already (the loop's log_metric: no grouping to do)."""
        self._put((step, timestamp, {key: value}))

    def params(self, params: Dict[str, str]) -> None:
        fresh = {}
        for key, value in params.items():
            before = self._params.get(key)
            if before is None:
                self._params[key] = fresh[key] = value
            elif before != value:  # the server would refuse it, and the params batched with it
                self.errors.append("param %r: logged as %r, then %r (MLflow keeps the first)" % (key, before, value))
        if fresh:
            self._put((None, {"params": fresh}))

    def tags(self, tags: Dict[str, str]) -> None:
        self._put((None, {"tags": dict(tags)}))

    def end(self, status: Optional[str], end_time: Optional[int]) -> bool:
        """The run ends: spool the end after the last point, close the session. False when
        nothing came through here (MLflow ends the run itself, as usual)."""
        with self._open_lock:
            if self.ended:
                return False
            self.ended = True
            if self._writer is None:
                return False
        self._put((None, {"end": status or "FINISHED", "end_time": int(end_time or time.time() * 1000)}))
        self._close()
        return True

    def flush(self, timeout: float = ASYNC_WAIT) -> None:
        session = self._session
        if session is not None:
            session.flush(timeout)

    @property
    def online(self) -> bool:
        return self._session is not None and self._session.online

    def close(self) -> None:
        """Flush and close without ending the run (disable(), or exit with the run not active)."""
        with self._open_lock:
            if self.ended:
                return
            self.ended = True
            if self._writer is None:
                return
        self._close()

    # -- the session --------------------------------------------------------------------
    def _put(self, item) -> None:
        self.calls += 1
        try:
            self._writer.put(item)
        except Exception as exc:  # the spool's disk: never into the script
            self.errors.append("spool: %s" % exc)

    def _open(self) -> bool:
        """The session, at the first call taken. False (and MLflow's own calls from then on)
        when it cannot be opened."""
        with self._open_lock:
            if self._writer is not None or self.ended:
                return self._writer is not None and not self.ended
            try:
                import mlflow

                from tfrepro.tracking.backend import backend_for
                from tfrepro.tracking.session import TrackingSession
                from tfrepro.tracking.session_open import open_writer, run_header
                from tfrepro.tracking.writer import QUEUE_SIZE, UPLOAD_INTERVAL

                self.tracking_uri = _normal_uri(mlflow.get_tracking_uri())
                self.rest = self.tracking_uri.startswith(("http://", "https://"))
                backend = backend_for(self.tracking_uri)
                header = run_header(self.run_id, None, None, self.tracking_uri)
                writer = open_writer(self.spool_dir, self.run_id, header, backend, QUEUE_SIZE, UPLOAD_INTERVAL, True)
            except Exception as exc:
                log.warning("tfrepro: the script's MLflow calls stay MLflow's own: %s", exc)
                self.ended = True
                return False
            # params and tags go through its log_params/set_tags; metrics straight to the
            # writer, with the timestamp MLflow would have sent
            self._session = TrackingSession(self.run_id, False, writer, False)
            self._writer = writer
            # registered after the writer's own atexit, so it runs first (atexit is LIFO)
            atexit.register(self._at_exit)
            return True

    def _close(self) -> None:
        """Bounded flush, then the writer's close. Not TrackingSession.close(): its flush
        tag is the callback's figure, and this session does not end the run."""
        from tfrepro.tracking.session import FINAL_TIMEOUT, FLUSH_TIMEOUT, warn_not_uploaded

        try:
            atexit.unregister(self._at_exit)
            self._session.flush(FLUSH_TIMEOUT)
            if not self._writer.close(FINAL_TIMEOUT):
                warn_not_uploaded(self.run_id, self._writer.spool.path)
            errors = self.errors + self._session.errors
            if errors:
                log.warning("tfrepro: %s", report_line(self.run_id, errors))
        except Exception as exc:  # never into the script, never at exit
            log.debug("tfrepro: fluent close: %s", exc)

    def _at_exit(self) -> None:
        try:
            import mlflow

            active = mlflow.active_run()
            if active is not None and active.info.run_id == self.run_id:
                mlflow.end_run()  # as MLflow's own atexit would, but through end(): spooled, in order
                return
        except Exception:
            pass
        self.close()


def report_line(run_id: str, errors: List[str]) -> str:
    """The one end-of-run line for what the server (or the param check) refused."""
    shown = "; ".join(" ".join(e.split())[:300] for e in errors[:MAX_REPORTED])
    more = " (and %d more)" % (len(errors) - MAX_REPORTED) if len(errors) > MAX_REPORTED else ""
    return "%d of the script's MLflow calls on run %s were refused: %s%s" % (len(errors), run_id, shown, more)


def _normal_uri(uri: str) -> str:
    return (uri or "").rstrip("/")
