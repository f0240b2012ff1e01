"""The wrappers fluent.py puts on MLflow: its fluent logging functions and TrackingServiceClient.

Each wrapper asks `current()` (fluent.current) for the router on every call; without one, or
for a call the router does not take, it calls MLflow's original with the same arguments.
A taken call is converted and validated here with MLflow's own functions (the same checks
its stores and server run), then handed to the router: no network, no MlflowClient built.

The fluent functions are replaced on both `mlflow` and `mlflow.tracking.fluent` (the same
function objects in 2.17 and 3.x); a script that did `from mlflow import log_metric` before
enable() keeps the original, which still reaches the TrackingServiceClient hook (slower, as
MLflow 3 builds its clients first, but routed all the same).
"""

from __future__ import annotations

import functools
import importlib.util
import numbers
import sys
import time
from threading import get_ident
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from tfrepro.tracking import hotpath

FLUENT_NAMES = ("log_metric", "log_metrics", "log_param", "log_params", "set_tag", "set_tags", "flush_async_logging")
CLIENT_NAMES = ("log_metric", "log_batch", "log_param", "set_tag", "set_terminated")
MARK = "__tfrepro_fluent__"

_originals: Dict[Tuple[Any, str], Any] = {}
_current: Callable[[], Any] = lambda: None  # noqa: E731
_valid_keys: Set[str] = set()  # metric names MLflow's validation already passed
_mlflow: Dict[str, Any] = {}  # what the hot path calls, looked up once at install
_finder: Optional["_AfterImport"] = None
_last_taken: List[Any] = [None, None, None]  # the router, active run and thread of the last log_metric taken


def install(current: Callable[[], Any]) -> bool:
    """Wrap MLflow now, or when the script first imports it. False: no MLflow here."""
    global _current, _finder
    _current = current
    if "mlflow" in sys.modules:
        return _wrap_mlflow()
    if _finder is None:
        if find_spec("mlflow") is None:
            return False
        _finder = _AfterImport()
        sys.meta_path.insert(0, _finder)
    return True


def find_spec(name: str):
    """importlib's spec for `name` without importing it; None when it is not there (or its
    parent package, half-imported or odd, makes the look-up fail)."""
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError, AttributeError):
        return None


class _AfterImport:
    """A sys.meta_path finder that wraps MLflow once the script has imported it (importing
    it in the launch hook would cost every process a second or more). As autolog.py does."""

    def __init__(self):
        self._searching = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "mlflow" or self._searching:
            return None
        self._searching = True
        try:
            spec = importlib.util.find_spec(fullname)  # what the other finders make of it
        finally:
            self._searching = False
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return None
        exec_module = loader.exec_module

        def exec_then_wrap(module):
            exec_module(module)
            _remove_finder()
            try:
                _wrap_mlflow()
            except Exception:  # never break the script's `import mlflow`
                pass

        loader.exec_module = exec_then_wrap
        return spec


def _remove_finder() -> None:
    global _finder
    if _finder is not None:
        if _finder in sys.meta_path:
            sys.meta_path.remove(_finder)
        _finder = None


def _wrap_mlflow() -> bool:
    import mlflow
    import mlflow.tracking.fluent as fluent_module
    from mlflow.environment_variables import MLFLOW_ENABLE_ASYNC_LOGGING
    from mlflow.tracking._tracking_service.client import TrackingServiceClient

    if _originals:
        return True
    _mlflow.update(
        active_run=hotpath.active_run_reader(fluent_module),
        active_model_id=hotpath.active_model_reader(fluent_module),  # MLflow 3
        async_logging=MLFLOW_ENABLE_ASYNC_LOGGING,
        async_set=hotpath.env_reader(MLFLOW_ENABLE_ASYNC_LOGGING.name),
    )
    for name in FLUENT_NAMES:
        original = getattr(fluent_module, name)
        wrapper = _mark(functools.wraps(original)(_FLUENT[name](original)))
        for module in (fluent_module, mlflow):
            if getattr(module, name, None) is original:
                _originals[(module, name)] = original
                setattr(module, name, wrapper)
    for name in CLIENT_NAMES:
        original = TrackingServiceClient.__dict__[name]
        _originals[(TrackingServiceClient, name)] = original
        setattr(TrackingServiceClient, name, _mark(functools.wraps(original)(_CLIENT[name](original))))
    return True


def uninstall() -> None:
    global _current
    _current = lambda: None  # noqa: E731
    _last_taken[:] = [None, None, None]
    _remove_finder()
    for (owner, name), original in list(_originals.items()):
        if getattr(getattr(owner, name, None), MARK, False):
            setattr(owner, name, original)
    _originals.clear()


def installed() -> bool:
    return bool(_originals)


def _mark(function):
    setattr(function, MARK, True)
    return function


# -- conversion and validation (MLflow's own) ---------------------------------------------
def _now_ms() -> int:
    return int(time.time() * 1000)  # mlflow.utils.time.get_current_time_millis


def _refused(router, exc):
    """The exception plain MLflow raises for this: the server's answer (RestException) when
    the store is a server, the store's own MlflowException otherwise."""
    if router.rest:
        from mlflow.exceptions import RestException

        return RestException({"error_code": exc.error_code, "message": exc.message})
    return exc


def _point(router, key, value, timestamp, step) -> Optional[Tuple[str, float, int, int]]:
    """(key, value, timestamp, step) as MLflow would send it; None for a value MLflow cannot
    convert (the caller lets MLflow raise its own error for it)."""
    if timestamp is None:
        timestamp = _now_ms()
    if step is None:
        step = 0
    if (
        type(value) is float
        and type(timestamp) is int
        and type(step) is int
        and type(key) is str
        and key in _valid_keys
    ):
        return key, value, timestamp, step  # the common call: nothing to convert or check again
    if type(value) is not float:
        from mlflow.tracking.metric_value_conversion_utils import convert_metric_value_to_float_if_possible

        value = convert_metric_value_to_float_if_possible(value)
        if not isinstance(value, numbers.Number) or isinstance(value, bool):
            return None
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_metric

    try:
        _validate_metric(key, value, timestamp, step)
    except MlflowException as exc:
        raise _refused(router, exc) from None
    if type(key) is str and len(_valid_keys) < 10000:
        _valid_keys.add(key)
    return key, float(value), int(timestamp), int(step)


def _strings(router, items: Dict[str, Any], kind: str) -> Dict[str, str]:
    from mlflow.exceptions import MlflowException
    from mlflow.utils import validation

    check = validation._validate_param if kind == "param" else validation._validate_tag
    out = {}
    for key, value in items.items():
        value = str(value)
        try:
            check(key, value)
        except MlflowException as exc:
            raise _refused(router, exc) from None
        out[key] = value
    return out


def _one_param(router, key, value) -> Dict[str, str]:
    """As TrackingServiceClient.log_param: its refusal re-raised as an MlflowException
    with MLflow's hint appended."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
    from mlflow.utils.validation import PARAM_VALIDATION_MSG

    try:
        return _strings(router, {key: value}, "param")
    except MlflowException as exc:
        raise MlflowException(exc.message + PARAM_VALIDATION_MSG, INVALID_PARAMETER_VALUE) from None


def _is_async(synchronous) -> bool:
    if synchronous is not None:
        return not synchronous
    # unset in most scripts: one dict lookup, not MLflow's parsing
    return _mlflow["async_set"]() and bool(_mlflow["async_logging"].get())


def _sent(router, asynchronous: bool, result: Any = None):
    """What MLflow's call returns once the spool holds what it logged: `result` (None, or
    log_param's value), or when asynchronous MLflow's RunOperations, whose wait() here flushes the
    session (bounded)."""
    if not asynchronous:
        return result
    from mlflow.utils.async_logging.run_operations import RunOperations

    return RunOperations([_Flush(router)])


class _Flush:
    """A done future whose result() waits for the session's upload, at most ASYNC_WAIT s."""

    def __init__(self, router):
        self._router = router

    def done(self) -> bool:
        return True

    def result(self, timeout=None):
        self._router.flush(timeout if timeout is not None else 10.0)


def _send_param(router, key, value) -> None:
    router.params(_one_param(router, key, value))


def _send_tag(router, key, value) -> None:
    router.tags(_strings(router, {key: value}, "tag"))


# the one-value calls, fluent and client alike: how each is sent, and whether it returns the value
_ONE_VALUE = {"log_param": (_send_param, True), "set_tag": (_send_tag, False)}


# -- the fluent functions -----------------------------------------------------------------
def _active_router(run_id, extra: Dict[str, Any], step=None):
    """The router when this fluent call is for its run and carries nothing the spool cannot."""
    router = _current()
    if router is None or (extra and any(v is not None for v in extra.values())):
        return None
    if run_id is None:
        active = _mlflow["active_run"]()
        if active is None:  # MLflow starts (or resumes) the run first: its own call
            return None
        run_id = active.info.run_id
        outputs = getattr(active, "outputs", None)
        if outputs is not None and getattr(outputs, "model_outputs", None):
            return None  # MLflow 3 links metrics to the LoggedModels of the run
    if not router.takes(run_id):
        return None
    active_model_id = _mlflow["active_model_id"]
    if active_model_id is not None and active_model_id() is not None:
        return None
    return router


def _same_run_as_last():
    """The router, when this is the thread of the last taken log_metric and the active run the
    very object that call found (its checks passed), and nothing links metrics to a
    LoggedModel since; None otherwise (the full checks then)."""
    router, run, thread = _last_taken
    if router is None or thread != get_ident() or router is not _current() or _mlflow["active_run"]() is not run:
        return None
    outputs = getattr(run, "outputs", None)  # MLflow 3
    if outputs is not None and outputs.model_outputs:
        return None
    active_model_id = _mlflow["active_model_id"]
    if active_model_id is not None and active_model_id() is not None:
        return None
    return router


def _fluent_log_metric(original):
    def log_metric(key, value, step=None, synchronous=None, timestamp=None, run_id=None, **extra):
        # the loop's call, `mlflow.log_metric("loss", float(loss), step=i)`, at a few us
        if run_id is None and timestamp is None and synchronous is None and not extra and type(value) is float:
            router = _same_run_as_last()
            if (
                router is not None
                and type(step) is int
                and type(key) is str
                and key in _valid_keys
                and not _mlflow["async_set"]()
            ):
                router.metric(key, value, int(time.time() * 1000), step)
                return None
        router = _active_router(run_id, extra)
        point = router and _point(router, key, value, timestamp or None, step or 0)
        if not point:
            return original(key, value, step, synchronous, timestamp, run_id, **extra)
        router.metrics([point])
        if run_id is None:
            _last_taken[:] = [router, _mlflow["active_run"](), get_ident()]
        return _sent(router, _is_async(synchronous))

    return log_metric


def _fluent_log_metrics(original):
    def log_metrics(metrics, step=None, synchronous=None, run_id=None, timestamp=None, **extra):
        router = _active_router(run_id, extra)
        if router is not None:
            timestamp, points = timestamp or _now_ms(), []
            for key, value in metrics.items():
                point = _point(router, key, value, timestamp, step or 0)
                if point is None:
                    break
                points.append(point)
            else:
                if points:
                    router.metrics(points)
                return _sent(router, _is_async(synchronous))
        return original(metrics, step, synchronous, run_id, timestamp, **extra)

    return log_metrics


def _fluent_one(send: Callable[[Any, str, Any], Any], returns_value: bool):
    """mlflow.log_param and mlflow.set_tag: one key and value for the active run, handed to
    `send(router, key, value)`; as MLflow's, log_param returns the value and set_tag None."""

    def wrap(original):
        def method(key, value, synchronous=None, **extra):
            router = _active_router(None, extra)
            if router is None:
                return original(key, value, synchronous, **extra)
            send(router, key, value)
            return _sent(router, _is_async(synchronous), value if returns_value else None)

        return method

    return wrap


def _fluent_many(what: str, send: Callable[[Any, Dict[str, str]], Any], takes_run_id: bool):
    """mlflow.log_params and mlflow.set_tags: a dict for the active run (log_params may also
    name it by run_id), handed to `send(router, values)` as strings; both return None."""

    def wrap(original):
        def method(values, synchronous=None, *more, **extra):
            run_id = extra.get("run_id") if takes_run_id else None
            named = {k: v for k, v in extra.items() if not (takes_run_id and k == "run_id")}
            router = None if more else _active_router(run_id, named)
            if router is None:
                return original(values, synchronous, *more, **extra)
            send(router, _strings(router, values, what))
            return _sent(router, _is_async(synchronous))

        return method

    return wrap


def _fluent_flush_async_logging(original):
    def flush_async_logging():
        result = original()  # MLflow's own queue (calls on other runs)
        router = _current()
        if router is not None:
            router.flush()  # and ours, bounded
        return result

    return flush_async_logging


_FLUENT = {
    "log_metric": _fluent_log_metric,
    "log_metrics": _fluent_log_metrics,
    "log_params": _fluent_many("param", lambda router, values: router.params(values), takes_run_id=True),
    "set_tags": _fluent_many("tag", lambda router, values: router.tags(values), takes_run_id=False),
    "flush_async_logging": _fluent_flush_async_logging,
    **{name: _fluent_one(*how) for name, how in _ONE_VALUE.items()},
}


# -- TrackingServiceClient (MlflowClient, and fluent calls that were not taken above) -------
def _client_router(client, run_id, extra: Dict[str, Any], open_session: bool = True):
    router = _current()
    if router is None or any(v is not None for v in extra.values()):
        return None
    return router if router.takes(run_id, client.tracking_uri, open_session) else None


def _client_log_metric(original):
    def log_metric(self, run_id, key, value, timestamp=None, step=None, synchronous=True, **extra):
        router = _client_router(self, run_id, extra)
        point = router and _point(router, key, value, timestamp, step)
        if not point:
            return original(self, run_id, key, value, timestamp, step, synchronous=synchronous, **extra)
        router.metrics([point])
        return _sent(router, not synchronous)

    return log_metric


def _client_log_batch(original):
    def log_batch(self, run_id, metrics=(), params=(), tags=(), synchronous=True):
        router = _client_router(self, run_id, {})
        points: List[Tuple[str, float, int, int]] = []
        if router is not None:
            for m in metrics:
                if any(getattr(m, a, None) for a in ("model_id", "dataset_name", "dataset_digest")):
                    router = None  # MLflow 3's metric links: not spooled
                    break
                point = _point(router, m.key, m.value, m.timestamp, m.step)
                if point is None:
                    router = None
                    break
                points.append(point)
        if router is None:
            return original(self, run_id, metrics, params, tags, synchronous=synchronous)
        if params or tags:
            from mlflow.exceptions import MlflowException
            from mlflow.utils.validation import _validate_batch_log_data

            try:
                _validate_batch_log_data([], params, tags)
            except MlflowException as exc:
                raise _refused(router, exc) from None
        # in MLflow's order for one batch: params, then metrics, then tags
        if params:
            router.params({p.key: str(p.value) for p in params})
        if points:
            router.metrics(points)
        if tags:
            router.tags({t.key: str(t.value) for t in tags})
        return _sent(router, not synchronous)

    return log_batch


def _client_one(send: Callable[[Any, str, Any], Any], returns_value: bool):
    """TrackingServiceClient.log_param and .set_tag: one key and value, handed to `send(router,
    key, value)`; as MLflow's, log_param returns the value and set_tag None."""

    def wrap(original):
        def method(self, run_id, key, value, synchronous=True):
            router = _client_router(self, run_id, {})
            if router is None:
                return original(self, run_id, key, value, synchronous=synchronous)
            send(router, key, value)
            return _sent(router, not synchronous, value if returns_value else None)

        return method

    return wrap


def _client_set_terminated(original):
    def set_terminated(self, run_id, status=None, end_time=None):
        router = _client_router(self, run_id, {}, open_session=False)
        if router is None or not router.end(status, end_time):
            return original(self, run_id, status, end_time)
        try:  # what MLflow's own async queue holds for this store, and its "View run" line
            self.store.shut_down_async_logging()
            if router.online:
                from tfrepro.tracking.backend import short_http

                with short_http(timeout=5):
                    self._log_url(run_id)
        except Exception:
            pass
        return None

    return set_terminated


_CLIENT = {
    "log_metric": _client_log_metric,
    "log_batch": _client_log_batch,
    "set_terminated": _client_set_terminated,
    **{name: _client_one(*how) for name, how in _ONE_VALUE.items()},
}
