"""Read a run's tfrepro record from MLflow (the only MLflow reads replay does).

Everything read here is untrusted data: spec.py and plan.py validate it before use.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

from tfrepro.environment import Environment
from tfrepro.errors import RecordError, TrackingError

ENVIRONMENT_JSON = "tfrepro/environment.json"
GIT_PATCH = "tfrepro/git.patch"
LAUNCH_JSON = "tfrepro/launch.json"


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    experiment_id: str
    run_name: str = ""
    status: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    environment: Optional[Environment] = None
    patch: Optional[str] = None
    launch: Optional[Mapping[str, object]] = None


def client(tracking_uri: Optional[str] = None):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def tracking_error(exc: Exception, what: str) -> Exception:
    """MlflowException -> RecordError (not found) or TrackingError (anything else)."""
    code = getattr(exc, "error_code", "")
    if code == "RESOURCE_DOES_NOT_EXIST" or "RESOURCE_DOES_NOT_EXIST" in str(exc):
        return RecordError("%s: not found" % what)
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return TrackingError("%s: %s" % (what, first[:300]))


@contextlib.contextmanager
def _quiet_downloads():
    """MLflow draws a progress bar per download; replay prints its own output."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    old = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def _listing(mlflow_client, run_id: str) -> set:
    try:
        return {f.path for f in mlflow_client.list_artifacts(run_id, "tfrepro")}
    except Exception:
        return set()


def _download(mlflow_client, run_id: str, path: str, present: set) -> Optional[str]:
    if path not in present:
        return None
    with tempfile.TemporaryDirectory(prefix="tfrepro-record-") as tmp, _quiet_downloads():
        try:
            local = mlflow_client.download_artifacts(run_id, path, tmp)
        except Exception:  # absent artifact: the record is partial, plan.py decides
            return None
        if not os.path.isfile(local):
            return None
        with open(local, "rb") as fh:
            return fh.read().decode("utf-8", "surrogateescape")


def load(mlflow_client, run_id: str) -> RunRecord:
    if not run_id or not all(c.isalnum() or c in "-_" for c in run_id):
        raise RecordError("not a run id: %r" % run_id)
    try:
        run = mlflow_client.get_run(run_id)
    except Exception as exc:
        raise tracking_error(exc, "run %s" % run_id) from None
    tags = dict(run.data.tags)
    if not any(k.startswith("tfrepro.") for k in tags):
        raise RecordError("run %s has no tfrepro record (no tfrepro.* tags)" % run_id)
    present = _listing(mlflow_client, run_id)
    environment = None
    text = _download(mlflow_client, run_id, ENVIRONMENT_JSON, present)
    if text:
        try:
            environment = Environment.from_json(text)
        except Exception:
            environment = None  # a broken artifact: fall back on the tags
    launch = None
    text = _download(mlflow_client, run_id, LAUNCH_JSON, present)
    if text:
        try:
            launch = json.loads(text)
        except ValueError:
            raise RecordError("run %s: %s is not valid JSON" % (run_id, LAUNCH_JSON)) from None
        if not isinstance(launch, dict):
            raise RecordError("run %s: %s is not a JSON object" % (run_id, LAUNCH_JSON))
    return RunRecord(
        run_id=run.info.run_id,
        experiment_id=run.info.experiment_id,
        run_name=run.info.run_name or "",
        status=run.info.status,
        tags=tags,
        environment=environment,
        patch=_download(mlflow_client, run_id, GIT_PATCH, present),
        launch=launch,
    )


def histories(mlflow_client, run_id: str) -> Dict[str, List[Tuple[int, float]]]:
    """Every logged value of every metric, as (step, value) in logging order."""
    try:
        keys = list(mlflow_client.get_run(run_id).data.metrics)
        out = {}
        for key in keys:
            points = mlflow_client.get_metric_history(run_id, key)
            points = sorted(points, key=lambda m: (m.step, m.timestamp))
            out[key] = [(int(m.step), float(m.value)) for m in points]
        return out
    except Exception as exc:
        raise tracking_error(exc, "metrics of run %s" % run_id) from None
