"""A model reference resolved to the run that produced it, so `show`, `diff` and `replay` take
models as well as runs ("what environment produced the model in production?").

    runs:/RUN_ID/PATH            the run itself
    models:/NAME/VERSION         a registered version's source run (VERSION may be "latest")
    models:/NAME@ALIAS           the version the alias points to, then as above
    models:/m-ID  or  m-ID       an MLflow 3 logged model's source run (MLflow 2 has none: one error)

    is_model_ref(text)           whether text is one of these (else: a run id)
    resolve(client, ref)         ModelSource(run_id, ...); I/O through the MlflowClient only

A registered version made from a logged model (MLflow 3) may have no run id of its own: its
logged model, or the runs:/ or models:/ URI of its source, names the run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from tfrepro.errors import RecordError, UsageError
from tfrepro.redact import strip_url_credentials
from tfrepro.tracking.record import tracking_error

LOGGED_MODEL_ID = re.compile(r"^m-[A-Za-z0-9]{8,64}$")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,127}$")
_VERSION = re.compile(r"^[0-9]{1,10}$")
MLFLOW2 = (
    "logged model ids (m-...) exist from MLflow 3 on; this client has MLflow %s: "
    "give models:/NAME/VERSION, models:/NAME@ALIAS or runs:/RUN_ID/PATH"
)


@dataclass(frozen=True)
class ModelSource:
    run_id: str
    ref: str  # as given
    kind: str  # run | model-version | logged-model
    name: Optional[str] = None  # registered model name
    version: Optional[str] = None
    model_id: Optional[str] = None  # the logged model (MLflow 3)
    experiment_id: Optional[str] = None  # the logged model's experiment, when known


def is_model_ref(text: str) -> bool:
    text = (text or "").strip()
    return text.startswith(("models:/", "runs:/")) or bool(LOGGED_MODEL_ID.match(text))


def _run_id(value, ref: str) -> str:
    if not isinstance(value, str) or not _RUN_ID.match(value):
        raise RecordError("%s: its source run id %r is not a run id" % (ref, value))
    return value


def _uri(client) -> str:
    return strip_url_credentials(str(getattr(client, "tracking_uri", "") or ""))


def _call(client, ref: str, what: str, missing: str, call, *args):
    try:
        return call(*args)
    except Exception as exc:
        raise tracking_error(exc, what, _uri(client), missing=missing) from None


def _logged_model(client, model_id: str, ref: str) -> ModelSource:
    if not hasattr(client, "get_logged_model"):
        import mlflow

        raise UsageError(MLFLOW2 % mlflow.__version__)
    model = _call(
        client, ref, "logged model %s" % model_id, "no logged model %s" % model_id, client.get_logged_model, model_id
    )
    if not model.source_run_id:
        raise RecordError("logged model %s was not logged from a run: there is no environment to show" % model_id)
    return ModelSource(
        _run_id(model.source_run_id, ref), ref, "logged-model", model_id=model_id, experiment_id=model.experiment_id
    )


def _from_version(client, version, ref: str) -> ModelSource:
    name, number = version.name, str(version.version)
    if getattr(version, "run_id", None):
        return ModelSource(
            _run_id(version.run_id, ref), ref, "model-version", name, number, getattr(version, "model_id", None)
        )
    model_id = getattr(version, "model_id", None)
    source = str(getattr(version, "source", "") or "")
    if (
        not model_id
        and source.startswith("models:/")
        and LOGGED_MODEL_ID.match(source[len("models:/") :].split("/")[0])
    ):
        model_id = source[len("models:/") :].split("/")[0]
    if model_id:
        found = _logged_model(client, model_id, ref)
        return ModelSource(found.run_id, ref, "model-version", name, number, model_id, found.experiment_id)
    if source.startswith("runs:/"):
        return ModelSource(_run_id(source[len("runs:/") :].split("/")[0], ref), ref, "model-version", name, number)
    raise RecordError("model %s version %s has no source run (source: %s)" % (name, number, source[:200] or "none"))


def _latest(client, name: str, ref: str):
    quoted = name.replace("\\", "\\\\").replace("'", "\\'")
    versions = _call(
        client,
        ref,
        "model %s" % name,
        "no registered model %r" % name,
        client.search_model_versions,
        "name = '%s'" % quoted,
    )
    versions = [v for v in versions if v.name == name]
    if not versions:
        raise RecordError("no registered model %r (or it has no versions)" % name)
    return max(versions, key=lambda v: int(v.version))


def resolve(client, ref: str) -> ModelSource:
    """The run that produced `ref` (see the module docstring). UsageError: not a model reference,
    or a logged model id on MLflow 2; RecordError: it does not exist or names no run;
    TrackingError: the server cannot be reached."""
    ref = (ref or "").strip()
    if ref.startswith("runs:/"):
        run_id = ref[len("runs:/") :].split("/")[0]
        if not _RUN_ID.match(run_id):
            raise UsageError("%r: expected runs:/RUN_ID/PATH" % ref)
        return ModelSource(run_id, ref, "run")
    if LOGGED_MODEL_ID.match(ref):
        return _logged_model(client, ref, ref)
    if not ref.startswith("models:/"):
        raise UsageError(
            "%r is not a model reference (models:/NAME/VERSION, models:/NAME@ALIAS, runs:/ID/PATH, m-ID)" % ref
        )
    body = ref[len("models:/") :].strip("/")
    if LOGGED_MODEL_ID.match(body):
        return _logged_model(client, body, ref)
    if "@" in body:
        name, key = body.rsplit("@", 1)
        if not name or not key:
            raise UsageError("%r: expected models:/NAME@ALIAS" % ref)
        missing = "model %r has no alias %r" % (name, key)
        get = client.get_model_version_by_alias
    else:
        name, _, key = body.rpartition("/")
        if not name or not key:
            raise UsageError("%r: expected models:/NAME/VERSION or models:/NAME@ALIAS" % ref)
        if key.lower() == "latest":
            return _from_version(client, _latest(client, name, ref), ref)
        if not _VERSION.match(key):
            raise UsageError("%r: the version must be a number or 'latest'" % ref)
        missing = "no version %s of registered model %r" % (key, name)
        get = client.get_model_version
    return _from_version(client, _call(client, ref, "model %s" % name, missing, get, name, key), ref)
