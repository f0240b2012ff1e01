"""The few tracking-server calls the writer and `sync` make, with short timeouts and no retries.

MLflow's own client retries an HTTP call for minutes (MLFLOW_HTTP_REQUEST_MAX_RETRIES=7,
120 s timeouts); a background writer must notice an outage in seconds and keep its own
backoff. For http(s) tracking URIs, RestBackend talks to the REST API through MLflow's
`http_request` (same auth/TLS settings) with explicit limits; any other store (sqlite,
postgres, ...) goes through MlflowClient.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import threading
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple
from urllib.parse import urlparse

from tfrepro import schema

TIMEOUT = 10  # seconds, one call
DATASET_FIELDS = ("name", "digest", "source_type", "source", "schema", "profile")  # MLflow's Dataset entity
CONTEXT_TAG = "mlflow.data.context"
PROBE_TIMEOUT = 3
# (key, value, timestamp ms, step)
Point = Tuple[str, float, int, int]
# An overloaded server's database answers 400 BAD_REQUEST for reasons that are not our data:
# MLflow maps SQLAlchemy's pool timeout ("QueuePool limit ... reached, connection timed out")
# to BAD_REQUEST. Skipping that batch would lose it; it is retried like a 5xx.
TRANSIENT_400 = ("QueuePool limit", "connection timed out")


class Retryable(Exception):
    """The server is unreachable, overloaded or refusing us for now: keep the data, retry later."""


class Rejected(Exception):
    """The server answered that this data is invalid: retrying cannot help."""


def retryable_answer(status: int, text: str) -> bool:
    """An HTTP error answer that means "not now" rather than "never"."""
    return status >= 500 or status in (401, 403, 408, 429) or (status == 400 and any(s in text for s in TRANSIENT_400))


def backend_for(tracking_uri: str):
    scheme = urlparse(tracking_uri).scheme
    if scheme in ("http", "https"):
        from tfrepro.tracking import quickack

        quickack.enable(tracking_uri)  # MLflow's own calls to this server too
        return RestBackend(tracking_uri)
    return ClientBackend(tracking_uri)


class Deferred:
    """The backend of MLflow's tracking URI, built on first use: importing MLflow takes
    seconds, so a session opened before the program imported it leaves that to the writer's
    upload thread."""

    IMPORT_TIMEOUT = 120.0

    def __init__(self, imported: Optional[threading.Event] = None):
        self._backend = None
        self._lock = threading.Lock()
        self._imported = imported  # set once another thread imported MLflow: two at once break it

    def get(self):
        with self._lock:
            if self._backend is None:
                if self._imported is not None:
                    self._imported.wait(self.IMPORT_TIMEOUT)
                import mlflow

                self._backend = backend_for(mlflow.get_tracking_uri())
            return self._backend

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.get(), name)


@contextlib.contextmanager
def short_http(timeout: int = 5, retries: int = 0, quiet: bool = False, keep_user: bool = False):
    """MLflow's client settings while inside this block: its HTTP calls (fluent API and
    MlflowClient alike) bounded to `timeout` seconds and `retries` retries; `quiet` turns off
    its per-download progress bars (the CLI prints its own lines).

    keep_user: a variable the user set wins (the CLI's reads honour it); without it the
    callback bounds its calls whatever is set, since a slow server must not stall training.
    Process-wide env vars, so keep the block short; the writer thread never relies on it.
    """
    names = {
        schema.ENV_MLFLOW_HTTP_REQUEST_MAX_RETRIES: str(retries),
        schema.ENV_MLFLOW_HTTP_REQUEST_TIMEOUT: str(timeout),
    }
    if retries:
        names[schema.ENV_MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR] = "1"
    if quiet:
        names[schema.ENV_MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR] = "false"
    if keep_user:
        names = {k: v for k, v in names.items() if k not in os.environ}
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update(names)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _json_float(value: float):
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def history_key(step, timestamp, value) -> Tuple[int, int, str]:
    """Identity of a point of one metric in one run (value included: two points logged in
    the same millisecond at the same step are told apart by it)."""
    return int(step), int(timestamp), repr(float(value))


class RestBackend:
    def __init__(self, tracking_uri: str):
        self.tracking_uri = tracking_uri
        self._creds = None
        self._artifact_uri: Dict[str, str] = {}

    def _call(self, method: str, endpoint: str, timeout=TIMEOUT, **kwargs) -> Dict:
        from mlflow.utils.rest_utils import http_request

        if self._creds is None:
            from mlflow.tracking import MlflowClient

            self._creds = MlflowClient(self.tracking_uri)._tracking_client.store.get_host_creds()
        try:
            resp = http_request(
                self._creds,
                endpoint,
                method,
                max_retries=0,
                backoff_factor=0,
                timeout=timeout,
                raise_on_status=False,
                **kwargs,
            )
        except Exception as exc:  # connection refused, timeout, DNS: all "not now"
            raise Retryable(str(exc)) from exc
        if retryable_answer(resp.status_code, resp.text):
            raise Retryable("HTTP %d from %s: %s" % (resp.status_code, endpoint, resp.text[:200]))
        if resp.status_code >= 400:
            raise Rejected("HTTP %d from %s: %s" % (resp.status_code, endpoint, resp.text[:300]))
        try:
            return resp.json() if resp.content else {}
        except ValueError:
            return {}

    def reachable(self) -> bool:
        try:
            self._call("GET", "/health", timeout=PROBE_TIMEOUT)
            return True
        except Retryable:
            return False
        except Rejected:  # e.g. no /health behind a proxy: it answered, so it is up
            return True

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Point] = (),
        params: Optional[Dict] = None,
        tags: Optional[Dict] = None,
        timeout: Optional[float] = None,
    ) -> None:
        body: Dict[str, Any] = {"run_id": run_id}
        if metrics:
            body["metrics"] = [
                {"key": k, "value": v if math.isfinite(v) else _json_float(v), "timestamp": t, "step": s}
                for k, v, t, s in metrics
            ]
        if params:
            body["params"] = [{"key": k, "value": v} for k, v in params.items()]
        if tags:
            body["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
        self._call("POST", "/api/2.0/mlflow/runs/log-batch", timeout=timeout or TIMEOUT, json=body)

    def metric_history(self, run_id: str, key: str) -> Set[Tuple[int, int, str]]:
        seen, token = set(), None
        while True:
            params = {"run_id": run_id, "metric_key": key}
            if token:
                params["page_token"] = token
            page = self._call("GET", "/api/2.0/mlflow/metrics/get-history", params=params)
            for m in page.get("metrics", []):
                seen.add(history_key(m.get("step", 0), m.get("timestamp", 0), float(m.get("value", 0.0))))
            token = page.get("next_page_token")
            if not token:
                return seen

    def create_run(self, experiment_id: str, run_name: Optional[str], start_time: int, tags: Dict) -> str:
        body = {
            "experiment_id": experiment_id,
            "start_time": start_time,
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        }
        if run_name:
            body["run_name"] = run_name
        return self._call("POST", "/api/2.0/mlflow/runs/create", json=body)["run"]["info"]["run_id"]

    def find_run(self, experiment_id: str, tag: str, value: str) -> Optional[str]:
        body = {
            "experiment_ids": [experiment_id],
            "max_results": 1,
            "filter": "tags.`%s` = '%s'" % (tag, value.replace("'", "")),
        }
        runs = self._call("POST", "/api/2.0/mlflow/runs/search", json=body).get("runs") or []
        return runs[0]["info"]["run_id"] if runs else None

    def experiment_id(self, name: str) -> str:
        from tfrepro.tracking import experiments

        def get(n):
            try:
                got = self._call("GET", "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": n})
            except Rejected as exc:
                if "RESOURCE_DOES_NOT_EXIST" in str(exc):
                    return None
                raise
            experiments.check_active(n, got["experiment"].get("lifecycle_stage"))
            return got["experiment"]["experiment_id"]

        def create(n):
            return self._call("POST", "/api/2.0/mlflow/experiments/create", json={"name": n})["experiment_id"]

        return experiments.resolve(name, get, create)

    def log_inputs(self, run_id: str, datasets: List[Dict]) -> None:
        body = {
            "run_id": run_id,
            "datasets": [
                {
                    "tags": [{"key": CONTEXT_TAG, "value": d["context"]}],
                    "dataset": {k: d[k] for k in DATASET_FIELDS if d.get(k) is not None},
                }
                for d in datasets
            ],
        }
        self._call("POST", "/api/2.0/mlflow/runs/log-inputs", json=body)

    def set_terminated(self, run_id: str, status: str, end_time: int) -> None:
        self._call(
            "POST", "/api/2.0/mlflow/runs/update", json={"run_id": run_id, "status": status, "end_time": end_time}
        )

    def _run_artifact_uri(self, run_id: str) -> str:
        if run_id not in self._artifact_uri:
            run = self._call("GET", "/api/2.0/mlflow/runs/get", params={"run_id": run_id})
            self._artifact_uri[run_id] = run["run"]["info"]["artifact_uri"]
        return self._artifact_uri[run_id]

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        uri = self._run_artifact_uri(run_id)
        if not uri.startswith("mlflow-artifacts:"):
            return _log_text_to_repo(uri, text, artifact_file)
        # the server proxies artifacts: one PUT, with our limits
        path = urlparse(uri).path.rstrip("/")
        self._call(
            "PUT",
            "/api/2.0/mlflow-artifacts/artifacts%s/%s" % (path, artifact_file.lstrip("/")),
            data=text.encode("utf-8"),
        )

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: Optional[str]) -> None:
        _client(self.tracking_uri).log_artifacts(run_id, local_dir, artifact_path)

    def delete_tag(self, run_id: str, key: str) -> None:
        self._call("POST", "/api/2.0/mlflow/runs/delete-tag", json={"run_id": run_id, "key": key})

    def run_tags(self, run_id: str) -> Tuple[str, Dict[str, str]]:
        """The run's experiment id and tags: one call, no retry."""
        run = self._call("GET", "/api/2.0/mlflow/runs/get", params={"run_id": run_id})["run"]
        tags = {t["key"]: t.get("value", "") for t in (run.get("data") or {}).get("tags") or []}
        return str(run["info"]["experiment_id"]), tags


def _client(tracking_uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri)


def _log_text_to_repo(artifact_uri: str, text: str, artifact_file: str) -> None:
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    directory, name = os.path.split(artifact_file)
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, name)
        with open(local, "w", encoding="utf-8") as f:
            f.write(text)
        get_artifact_repository(artifact_uri).log_artifact(local, directory or None)


class ClientBackend:
    """Any non-HTTP store through MlflowClient: local, so failures are rare and not an outage."""

    def __init__(self, tracking_uri: str):
        self.tracking_uri = tracking_uri
        self.client = _client(tracking_uri)

    @staticmethod
    def _wrap(fn, *args, **kwargs):
        from mlflow.exceptions import MlflowException

        try:
            return fn(*args, **kwargs)
        except MlflowException as exc:
            if not retryable_answer(getattr(exc, "get_http_status_code", lambda: 500)(), str(exc)):
                raise Rejected(str(exc)) from exc
            raise Retryable(str(exc)) from exc
        except Exception as exc:
            raise Retryable(str(exc)) from exc

    def reachable(self) -> bool:
        return True

    def log_batch(self, run_id, metrics=(), params=None, tags=None, timeout=None) -> None:
        from mlflow.entities import Metric, Param, RunTag

        self._wrap(
            self.client.log_batch,
            run_id,
            metrics=[Metric(k, v, t, s) for k, v, t, s in metrics],
            params=[Param(k, v) for k, v in (params or {}).items()],
            tags=[RunTag(k, v) for k, v in (tags or {}).items()],
        )

    def metric_history(self, run_id, key):
        history = self._wrap(self.client.get_metric_history, run_id, key)
        return {history_key(m.step, m.timestamp, m.value) for m in history}

    def create_run(self, experiment_id, run_name, start_time, tags) -> str:
        run = self._wrap(self.client.create_run, experiment_id, start_time=start_time, tags=tags, run_name=run_name)
        return run.info.run_id

    def find_run(self, experiment_id, tag, value) -> Optional[str]:
        runs = self._wrap(
            self.client.search_runs, [experiment_id], "tags.`%s` = '%s'" % (tag, value.replace("'", "")), max_results=1
        )
        return runs[0].info.run_id if runs else None

    def experiment_id(self, name) -> str:
        from tfrepro.tracking import experiments

        def get(n):
            exp = self._wrap(self.client.get_experiment_by_name, n)
            if exp is None:
                return None
            experiments.check_active(n, exp.lifecycle_stage)
            return exp.experiment_id

        return experiments.resolve(name, get, lambda n: self._wrap(self.client.create_experiment, n))

    def log_inputs(self, run_id, datasets) -> None:
        from mlflow.entities import Dataset, DatasetInput, InputTag

        inputs = [
            DatasetInput(Dataset(**{k: d.get(k) for k in DATASET_FIELDS}), tags=[InputTag(CONTEXT_TAG, d["context"])])
            for d in datasets
        ]
        self._wrap(self.client.log_inputs, run_id, datasets=inputs)

    def set_terminated(self, run_id, status, end_time) -> None:
        self._wrap(self.client.set_terminated, run_id, status, end_time)

    def log_text(self, run_id, text, artifact_file) -> None:
        self._wrap(self.client.log_text, run_id, text, artifact_file)

    def log_artifacts(self, run_id, local_dir, artifact_path) -> None:
        self._wrap(self.client.log_artifacts, run_id, local_dir, artifact_path)

    def delete_tag(self, run_id, key) -> None:
        self._wrap(self.client.delete_tag, run_id, key)

    def run_tags(self, run_id) -> Tuple[str, Dict[str, str]]:
        run = self._wrap(self.client.get_run, run_id)
        return str(run.info.experiment_id), dict(run.data.tags)
