"""A run's tfrepro record, read back from MLflow: the one loader `show`, `diff`, `replay` and
`doctor` use, with the one translation of MLflow's errors into tfrepro's.

The environment comes from the artifact tfrepro/environment.json; a run that only has the
tfrepro.* tags (e.g. started with the MLflow plugin alone) gets a partial record built from
them (`source == "tags"`). Everything read here is untrusted: load() checks the types of what
it builds and turns anything malformed into RecordError, and replay/plan.py validates each
value before it reaches a container. Python 3.8 compatible.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from tfrepro import schema
from tfrepro.environment import Environment
from tfrepro.errors import RecordError, TfreproError, TrackingError
from tfrepro.fingerprint.data_record import DataSource, from_json_data, from_tags
from tfrepro.redact import redact_text, strip_url_credentials
from tfrepro.tracking import launch_record
from tfrepro.tracking.backend import short_http

log = logging.getLogger(__name__)

History = Dict[str, List[Tuple[int, float]]]  # metric -> [(step, value)] in logging order

NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")
UNREACHABLE = (
    ("NewConnectionError", "connection refused"),
    ("Connection refused", "connection refused"),
    ("NameResolutionError", "unknown host"),
    ("timed out", "timed out"),
    ("Max retries exceeded", "no answer"),
)
# An unreachable server should cost seconds, not MLflow's default minutes of retries.
READ_TIMEOUT = 5


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    environment: Environment
    environment_json: Mapping[str, Any] = field(default_factory=dict)  # as stored (unknown keys kept)
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
    histories: Optional[History] = None  # every value, when load(histories=True)
    patch: Optional[str] = None  # tfrepro/git.patch
    launch: Optional[Mapping[str, Any]] = None  # tfrepro/launch.json
    signature: Optional[str] = None  # tfrepro/record.sig (signing.py)
    data: Tuple[DataSource, ...] = ()  # data fingerprints: tfrepro/data.json, else the tfrepro.data.* tags
    experiment_name: str = ""
    workers: Optional[Mapping[str, Any]] = (
        None  # tfrepro/workers.json: a multi-worker job's workers (tracking/workers.py)
    )
    # the launch (launch.json and the tags) parsed once, when the record is built: its values,
    # or why they are malformed (raised by recorded_launch(), when a replay needs them: `show`
    # and `diff` still show such a record)
    _launch_values: Optional[launch_record.RecordedLaunch] = field(default=None, init=False, repr=False, compare=False)
    _launch_problem: Optional[str] = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            values = launch_record.parse(self.run_id, self.launch, self.tags)
        except RecordError as exc:
            object.__setattr__(self, "_launch_problem", str(exc))
        else:
            object.__setattr__(self, "_launch_values", values)

    def recorded_launch(self) -> launch_record.RecordedLaunch:
        """The launch's values (tracking/launch_record.py); RecordError when malformed."""
        if self._launch_values is None:
            raise RecordError(self._launch_problem or "run %s: no launch recorded" % self.run_id)
        return self._launch_values

    def launch_settings(self) -> Optional[Dict[str, Any]]:
        """launch.json, else what the tfrepro.launch.* tags say (for show and diff)."""
        if self.launch is not None:
            return dict(self.launch)
        found = {k[len(schema.LAUNCH_PREFIX) :]: v for k, v in self.tags.items() if k.startswith(schema.LAUNCH_PREFIX)}
        return found or None

    def summary(self) -> Dict[str, Any]:
        return {
            "run_id": self.run_id,
            "run_name": self.run_name,
            "experiment_id": self.experiment_id,
            "experiment_name": self.experiment_name,
            "status": self.status,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "tracking_uri": self.tracking_uri,
            "record_source": self.source,
        }


def tracking_error(exc: Exception, what: str, uri: str = "", missing: Optional[str] = None) -> TfreproError:
    """An MLflow failure as one line: RecordError when `what` does not exist (`missing` is
    then the message, and a malformed id counts as missing), TrackingError otherwise."""
    code = getattr(exc, "error_code", "")
    text = redact_text(str(exc))  # MLflow's messages name the URL it called, user:password included
    uri = strip_url_credentials(uri)
    if code in NOT_FOUND or "RESOURCE_DOES_NOT_EXIST" in text or (missing and code == "INVALID_PARAMETER_VALUE"):
        return RecordError(missing or "%s: not found" % what)
    for marker, why in UNREACHABLE:
        if marker in text:
            return TrackingError("cannot reach the tracking server%s (%s)" % (" at " + uri if uri else "", why))
    first = (text.strip().splitlines() or [type(exc).__name__])[0]
    return TrackingError("%s: %s" % (what, first[:300]))


def client(tracking_uri: Optional[str] = None, existing: bool = False):
    """An MlflowClient for tracking_uri (default: $MLFLOW_TRACKING_URI, else MLflow's default).

    existing: refuse a sqlite store that does not exist, which MlflowClient would create
    empty where the user expected their runs.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = tracking_uri or mlflow.get_tracking_uri()
    if existing and uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///") :]
        if path and not os.path.exists(path):
            raise TrackingError(
                "no tracking database at %s (set MLFLOW_TRACKING_URI or --tracking-uri)" % os.path.abspath(path)
            )
    return MlflowClient(tracking_uri=uri)


def load(mlflow_client, run_id: str, histories: bool = False) -> RunRecord:
    """The run's record. RecordError: unknown run, no record or a malformed one;
    TrackingError: the server cannot be reached or refuses."""
    uri = strip_url_credentials(str(getattr(mlflow_client, "tracking_uri", "") or ""))
    where = "no run %r on %s" % (run_id, uri or "the tracking server")
    if not run_id or not all(c.isalnum() or c in "-_" for c in run_id):
        raise RecordError("%s (not a run id)" % where)
    with short_http(READ_TIMEOUT, 0, quiet=True, keep_user=True):
        try:
            run = mlflow_client.get_run(run_id)
        except Exception as exc:
            raise tracking_error(exc, "run %s" % run_id, uri, missing=where) from None
        tags = dict(run.data.tags)
        if not any(k.startswith(schema.PREFIX) for k in tags):
            raise RecordError(
                "run %s has no tfrepro record (no %s artifact, no tfrepro.* tags)" % (run_id, schema.ENVIRONMENT_JSON)
            )
        texts = _artifacts(mlflow_client, run_id)
        points = read_histories(mlflow_client, run_id, run.data.metrics) if histories else None
        experiment_name = _experiment_name(mlflow_client, run.info.experiment_id)
    environment, data, source = _environment(texts.get(schema.ENVIRONMENT_JSON), tags, run_id)
    info = run.info
    return RunRecord(
        run_id=info.run_id,
        environment=environment,
        environment_json=data,
        source=source,
        experiment_id=info.experiment_id,
        run_name=getattr(info, "run_name", "") or "",
        status=info.status,
        start_time=info.start_time,
        end_time=info.end_time,
        tracking_uri=uri,
        tags=tags,
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
        histories=points,
        patch=texts.get(schema.GIT_PATCH),
        launch=_launch(texts.get(schema.LAUNCH_JSON), run_id),
        experiment_name=experiment_name,
        signature=texts.get(schema.RECORD_SIGNATURE),
        data=_data(texts.get(schema.DATA_JSON), tags, run_id),
        workers=_workers(texts.get(schema.WORKERS_JSON), run_id),
    )


def _workers(text: Optional[str], run_id: str) -> Optional[Mapping[str, Any]]:
    """workers.json, or None (one worker, or unreadable: said once, the record stands without it)."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        log.warning("run %s: %s is not JSON (%s): the workers are left out", run_id, schema.WORKERS_JSON, exc)
        return None
    return value if isinstance(value, dict) else None


def _experiment_name(mlflow_client, experiment_id: str) -> str:
    try:
        return mlflow_client.get_experiment(experiment_id).name or ""
    except Exception:  # the name is a courtesy: the id is what identifies the experiment
        return ""


def read_histories(mlflow_client, run_id: str, keys=None) -> History:
    """Every logged value of every metric (or of `keys`), as (step, value) in logging order."""
    try:
        if keys is None:
            keys = mlflow_client.get_run(run_id).data.metrics
        out = {}
        for key in keys:
            points = sorted(
                mlflow_client.get_metric_history(run_id, key), key=lambda point: (point.step, point.timestamp)
            )
            out[key] = [(int(point.step), float(point.value)) for point in points]
        return out
    except Exception as exc:
        raise tracking_error(exc, "metrics of run %s" % run_id) from None


def _artifacts(mlflow_client, run_id: str) -> Dict[str, str]:
    """The record's artifacts that exist, as text. When they cannot be read (e.g. served over
    HTTP while this reads the sqlite store) the tags still are a record: say so and go on."""
    wanted = (
        schema.ENVIRONMENT_JSON,
        schema.GIT_PATCH,
        schema.LAUNCH_JSON,
        schema.RECORD_SIGNATURE,
        schema.DATA_JSON,
        schema.WORKERS_JSON,
    )
    try:
        present = {artifact.path for artifact in mlflow_client.list_artifacts(run_id, schema.ARTIFACT_DIR)}
        texts = {}
        with tempfile.TemporaryDirectory(prefix="tfrepro-record-") as tmp:
            for path in wanted:
                if path in present:
                    local = mlflow_client.download_artifacts(run_id, path, tmp)
                    with open(local, "rb") as fh:
                        texts[path] = fh.read().decode("utf-8", "surrogateescape")
        return texts
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        log.warning("artifacts of run %s unreadable (%s): record from its tags", run_id, first[:200])
        return {}


def _environment(text: Optional[str], tags: Mapping[str, str], run_id: str):
    """(Environment, its JSON data, source) from environment.json, else from the tags."""
    if text is None:
        environment = Environment.from_tags(tags)
        return environment, environment.to_dict(), "tags"
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        environment = Environment.from_dict(data)
        check_types(environment)
    except (ValueError, TypeError, AttributeError) as exc:
        raise RecordError("run %s: %s is malformed (%s)" % (run_id, schema.ENVIRONMENT_JSON, exc)) from None
    return environment, data, "artifact"


def _launch(text: Optional[str], run_id: str) -> Optional[Dict[str, Any]]:
    if text is None:
        return None
    try:
        launch = json.loads(text)
    except ValueError:
        raise RecordError("run %s: %s is not valid JSON" % (run_id, schema.LAUNCH_JSON)) from None
    if not isinstance(launch, dict):
        raise RecordError("run %s: %s is not a JSON object" % (run_id, schema.LAUNCH_JSON))
    return launch


def _data(text: Optional[str], tags: Mapping[str, str], run_id: str) -> Tuple[DataSource, ...]:
    """The data fingerprints, validated: from data.json (per-file detail), else from the tags."""
    try:
        return tuple(from_json_data(json.loads(text)) if text is not None else from_tags(tags))
    except (ValueError, TypeError, AttributeError) as exc:
        raise RecordError(
            "run %s: its data fingerprint (%s) is malformed: %s" % (run_id, schema.DATA_JSON, exc)
        ) from None


def check_types(value: Any, hint: Any = None, where: str = "") -> None:
    """TypeError naming the first field whose value is not of its declared type (e.g.
    "git": "oops"), so that nothing downstream meets a string where it expects a section."""
    hint = type(value) if hint is None else hint
    if hint is Any:
        return
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:  # Optional[X]
        if value is not None:
            check_types(value, next(a for a in args if a is not type(None)), where)
        return
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, hint):
            raise TypeError("%s is a %s, not an object" % (where or "the record", type(value).__name__))
        hints = typing.get_type_hints(hint)
        for f in dataclasses.fields(hint):
            check_types(getattr(value, f.name), hints[f.name], (where + "." if where else "") + f.name)
        return
    expected = origin or hint  # Tuple[str, ...] -> tuple, Mapping[str, str] -> Mapping, str -> str
    if not isinstance(value, expected):
        raise TypeError("%s is a %s, not a %s" % (where, type(value).__name__, expected.__name__))
    if origin is tuple:
        for i, item in enumerate(value):
            check_types(item, args[0], "%s[%d]" % (where, i))
    elif origin is not None and args:
        for key, item in value.items():
            check_types(key, args[0], where)
            check_types(item, args[1], "%s.%s" % (where, key))
