"""Load a run's tfrepro record from MLflow: tags, params, final metrics, environment, launch.

The environment comes from the artifact tfrepro/environment.json. A run that only has the
tfrepro.* tags (e.g. started with the MLflow plugin alone) gets a partial record built from
them (`source == "tags"`). Python 3.8 compatible.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, Mapping, Optional

from tfrepro.environment import Environment
from tfrepro.errors import RecordError, TrackingError

ENVIRONMENT_ARTIFACT = "tfrepro/environment.json"
LAUNCH_ARTIFACT = "tfrepro/launch.json"
LAUNCH_TAG_PREFIX = "tfrepro.launch."

# An unreachable server should cost seconds, not MLflow's default minutes of retries.
QUICK_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


@contextlib.contextmanager
def quick_mlflow() -> Iterator[None]:
    """Short MLflow HTTP retries/timeouts for the duration, unless the user set their own."""
    added = [k for k in QUICK_ENV if k not in os.environ]
    for key in added:
        os.environ[key] = QUICK_ENV[key]
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    environment: Environment
    environment_json: Dict[str, Any]  # as stored (unknown keys kept)
    source: str = "artifact"  # "artifact" | "tags"
    experiment_id: str = ""
    run_name: str = ""
    status: str = ""
    start_time: Optional[int] = None  # ms since epoch
    end_time: Optional[int] = None
    tracking_uri: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)  # final (latest) values
    launch: Optional[Dict[str, Any]] = None  # tfrepro/launch.json, or the tfrepro.launch.* tags
    experiment_name: str = ""

    def summary(self) -> Dict[str, Any]:
        return {
            "run_id": self.run_id, "run_name": self.run_name, "experiment_id": self.experiment_id,
            "experiment_name": self.experiment_name,
            "status": self.status, "start_time": self.start_time, "end_time": self.end_time,
            "tracking_uri": self.tracking_uri, "record_source": self.source,
        }


def _mlflow_error(exc: Exception, run_id: str, uri: str) -> Exception:
    code = getattr(exc, "error_code", "")
    if code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
        return RecordError("no run %r on %s" % (run_id, uri))
    text = str(exc)
    for marker, why in (("NewConnectionError", "connection refused"), ("Connection refused", "connection refused"),
                        ("NameResolutionError", "unknown host"), ("timed out", "timed out"),
                        ("Max retries exceeded", "no answer")):
        if marker in text:
            return TrackingError("cannot reach the tracking server at %s (%s)" % (uri, why))
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return TrackingError("cannot read run %s from %s: %s" % (run_id, uri, first[:300]))


def _read_artifact(client, run_id: str, path: str, names) -> Optional[str]:
    """Text of a run artifact, or None when `names` (the folder's listing) lacks it."""
    if path not in names:
        return None
    with tempfile.TemporaryDirectory(prefix="tfrepro-") as tmp:
        local = client.download_artifacts(run_id, path, tmp)
        with open(local, encoding="utf-8") as f:
            return f.read()


def environment_from_tags(tags: Mapping[str, str]) -> Dict[str, Any]:
    """A partial environment dict from the tfrepro.* tags (runs without environment.json)."""
    t = tags.get

    def flag(key):
        return None if t(key) is None else t(key) == "true"

    command = t("tfrepro.command")
    try:
        argv = json.loads(command) if command else []
    except ValueError:
        argv = [command]
    gpu_names = [n.strip() for n in (t("tfrepro.gpu.name") or "").split(",") if n.strip()]
    count = int(t("tfrepro.gpu.count") or 0)
    determinism = flag("tfrepro.tf.determinism")
    return {
        "schema": t("tfrepro.schema", ""),
        "tfrepro_version": t("tfrepro.version", ""),
        "container": {
            "in_container": bool(flag("tfrepro.container.detected")),
            "runtime": None if t("tfrepro.container.runtime") == "none" else t("tfrepro.container.runtime"),
            "image_ref": t("tfrepro.image.ref"), "image_digest": t("tfrepro.image.digest"),
            "image_id": t("tfrepro.image.id"), "digest_source": t("tfrepro.image.digest_source"),
        },
        "git": {
            "commit": t("tfrepro.git.commit"), "branch": t("tfrepro.git.branch"),
            "remote_url": t("tfrepro.git.remote"), "dirty": bool(flag("tfrepro.git.dirty")),
            "workdir": t("tfrepro.workdir", "."),
        } if t("tfrepro.git.commit") else None,
        "gpu": {
            "count": count, "driver_version": t("tfrepro.gpu.driver"),
            "cuda_driver_version": _cuda_int(t("tfrepro.cuda.driver")),
            "devices": [{"index": i, "name": gpu_names[0] if len(gpu_names) == 1 else ""}
                        for i in range(count)] if gpu_names else [],
        },
        "tensorflow": {
            "version": t("tfrepro.tf.version"), "cuda_build": t("tfrepro.cuda.build"),
            "cudnn_build": t("tfrepro.cudnn.build"),
            "seed": int(t("tfrepro.seed")) if (t("tfrepro.seed") or "").isdigit() else None,
            "determinism": {} if determinism is None else {"op_determinism": determinism},
            "imported": determinism is not None,
        },
        "python": {"version": t("tfrepro.python.version", "")},
        "system": {"hostname": t("tfrepro.hostname")},
        "process": {"argv": argv, "cwd": t("tfrepro.workdir", "")},
        "reasons": {"record": "no %s artifact: built from the run's tags" % ENVIRONMENT_ARTIFACT},
    }


def _cuda_int(text: Optional[str]) -> Optional[int]:
    try:
        major, minor = (text or "").split(".")[:2]
        return int(major) * 1000 + int(minor) * 10
    except ValueError:
        return None


def _launch(client, run_id: str, tags: Mapping[str, str], names) -> Optional[Dict[str, Any]]:
    text = _read_artifact(client, run_id, LAUNCH_ARTIFACT, names)
    if text:
        try:
            return json.loads(text)
        except ValueError:
            raise RecordError("run %s: %s is not valid JSON" % (run_id, LAUNCH_ARTIFACT))
    launch = {k[len(LAUNCH_TAG_PREFIX):]: v for k, v in tags.items() if k.startswith(LAUNCH_TAG_PREFIX)}
    return launch or None


def _check_sqlite(uri: str) -> None:
    # reading must not create an empty database where the user expected their runs
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///"):]
        if path and not os.path.exists(path):
            raise TrackingError("no tracking database at %s (set MLFLOW_TRACKING_URI or --tracking-uri)"
                                % os.path.abspath(path))


def load(run_id: str, tracking_uri: Optional[str] = None) -> RunRecord:
    """The run's record. RecordError: unknown run or no record; TrackingError: server trouble."""
    with quick_mlflow():
        import mlflow
        from mlflow.tracking import MlflowClient

        uri = tracking_uri or mlflow.get_tracking_uri()
        _check_sqlite(uri)
        client = MlflowClient(tracking_uri=uri)
        try:
            run = client.get_run(run_id)
        except Exception as exc:
            raise _mlflow_error(exc, run_id, uri) from None
        tags = dict(run.data.tags)
        try:
            names = {a.path for a in client.list_artifacts(run_id, "tfrepro")}
            text = _read_artifact(client, run_id, ENVIRONMENT_ARTIFACT, names)
            launch = _launch(client, run_id, tags, names)
        except RecordError:
            raise
        except Exception as exc:  # e.g. artifacts served over HTTP while reading the sqlite store
            if "tfrepro.schema" not in tags:
                raise _mlflow_error(exc, run_id, uri) from None
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            print("tfrepro: warning: artifacts of run %s unreadable (%s): record from its tags"
                  % (run_id, first[:200]), file=sys.stderr)
            text, launch = None, _launch(client, run_id, tags, set())
    source = "artifact"
    if text is not None:
        try:
            data = json.loads(text)
            environment = Environment.from_dict(data)
        except (ValueError, TypeError, AttributeError) as exc:
            raise RecordError("run %s: %s is malformed (%s)" % (run_id, ENVIRONMENT_ARTIFACT, exc))
    elif "tfrepro.schema" in tags:
        data, source = environment_from_tags(tags), "tags"
        environment = Environment.from_dict(data)
    else:
        raise RecordError("run %s has no tfrepro record (no %s artifact, no tfrepro.* tags)"
                          % (run_id, ENVIRONMENT_ARTIFACT))
    info = run.info
    return RunRecord(
        run_id=info.run_id, environment=environment, environment_json=data, source=source,
        experiment_id=info.experiment_id, run_name=getattr(info, "run_name", "") or "",
        status=info.status, start_time=info.start_time, end_time=info.end_time,
        tracking_uri=uri, tags=tags, params=dict(run.data.params),
        metrics=dict(run.data.metrics), launch=launch, experiment_name=_experiment_name(client, info.experiment_id),
    )


def _experiment_name(client, experiment_id: str) -> str:
    try:
        with quick_mlflow():
            return client.get_experiment(experiment_id).name or ""
    except Exception:  # the name is a courtesy: the id is what identifies it
        return ""
