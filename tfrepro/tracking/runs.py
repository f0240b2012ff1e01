"""The MLflow writes of a launcher (`tfrepro run`, `tfrepro replay`): the run it creates before
the container starts, what it records on it, and closing it when the container could not.

Each write turns MLflow's failure into one TrackingError line (record.tracking_error), except
those that must never stop a running job (record_facts): they log a warning.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
from typing import Dict, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from tfrepro import schema
from tfrepro.errors import TrackingError
from tfrepro.fingerprint.data_record import DataSource, to_json_data, to_tags
from tfrepro.tracking import experiments
from tfrepro.tracking.record import tracking_error

log = logging.getLogger(__name__)

BATCH = 100  # tags per log_batch call (MLflow's limit)


def tracking_uri(option: Optional[str] = None) -> str:
    """--tracking-uri, else MLflow's own resolution ($MLFLOW_TRACKING_URI or its default);
    a relative sqlite or file store becomes absolute so a container can mount it."""
    if option:
        uri = option
    else:
        import mlflow

        uri = mlflow.get_tracking_uri()
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + os.path.abspath(uri[len("sqlite:///") :])
    elif "://" not in uri and uri not in ("databricks",) and not uri.startswith("databricks"):
        uri = "file://" + os.path.abspath(uri)
    return uri


def experiment_id(client, name: Optional[str], default: Optional[str] = None) -> str:
    """The id of experiment `name` (created if missing), else `default`, $MLFLOW_EXPERIMENT_ID or "0"."""
    try:
        if name:
            return experiments.experiment_id(client, name)
    except TrackingError:
        raise
    except Exception as exc:
        raise tracking_error(exc, "experiment %s" % name) from None
    return default or os.environ.get(schema.ENV_MLFLOW_EXPERIMENT_ID) or "0"


def existing_experiment_id(client, name: Optional[str]) -> Optional[str]:
    """Like experiment_id(), creating nothing (a dry run): None when `name` does not exist."""
    if not name:
        return experiment_id(client, None)
    try:
        found = client.get_experiment_by_name(name)
    except Exception as exc:
        raise tracking_error(exc, "experiment %s" % name) from None
    return found.experiment_id if found else None


def artifact_dirs(client, experiment: str) -> Tuple[str, ...]:
    """Local artifact directories of the experiment (a sqlite store writes artifacts to disk)."""
    try:
        location = client.get_experiment(experiment).artifact_location or ""
    except Exception as exc:
        raise tracking_error(exc, "experiment %s" % experiment) from None
    parts = urlsplit(location)
    if parts.scheme in ("", "file") and parts.path.startswith("/"):
        return (parts.path,)
    return ()


def create_run(client, experiment: str, run_name: Optional[str], tags: Mapping[str, str]) -> str:
    tags = dict(tags)
    tags.setdefault("mlflow.user", _user())
    tags.setdefault("mlflow.source.type", "LOCAL")
    try:
        run = client.create_run(experiment, run_name=run_name, tags=tags)
    except Exception as exc:
        raise tracking_error(exc, "creating a run in experiment %s" % experiment) from None
    return run.info.run_id


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def _log_tags(client, run_id: str, tags: Mapping[str, str]) -> None:
    from mlflow.entities import RunTag

    items = [RunTag(key, value) for key, value in tags.items()]
    for start in range(0, len(items), BATCH):
        client.log_batch(run_id, tags=items[start : start + BATCH])


def record_launch(client, run_id: str, launch_json: Mapping[str, object], tags: Mapping[str, str]) -> None:
    """The launch's tags and tfrepro/launch.json on the run."""
    try:
        _log_tags(client, run_id, tags)
        client.log_text(run_id, json.dumps(launch_json, indent=2, sort_keys=True), schema.LAUNCH_JSON)
    except Exception as exc:
        raise tracking_error(exc, "recording the launch of run %s" % run_id) from None


def log_text(client, run_id: str, text: str, artifact_file: str) -> None:
    try:
        client.log_text(run_id, text, artifact_file)
    except Exception as exc:
        raise tracking_error(exc, "logging %s" % artifact_file) from None


def record_data(client, run_id: str, sources: Sequence[DataSource], tags: bool = False) -> None:
    """tfrepro/data.json on the run; its tags (`to_tags`) go with the run's creation, or now
    with `tags` (when a source changed after the run was created)."""
    if not sources:
        return
    log_text(client, run_id, json.dumps(to_json_data(sources), sort_keys=True), schema.DATA_JSON)
    if tags:
        try:
            _log_tags(client, run_id, dict(sorted(to_tags(sources).items())))
        except Exception as exc:
            raise tracking_error(exc, "tagging the data of run %s" % run_id) from None


def record_facts(client, run_id: str, facts: Mapping[str, object]) -> None:
    """The engine's job (id, nodes, partition...) as tfrepro.launch.* tags; a failure is only
    warned: the job runs on."""
    tags: Dict[str, str] = {
        schema.LAUNCH_PREFIX + key: schema.truncate(str(value))
        for key, value in sorted(facts.items())
        if key in schema.LAUNCH_JOB_FIELDS and value
    }
    try:
        if tags:
            _log_tags(client, run_id, tags)
    except Exception as exc:
        log.warning("could not record the job on run %s: %s", run_id, tracking_error(exc, "run"))


def tag_run(client, run_id: str, tags: Mapping[str, str], what: str) -> None:
    """Tags that only describe (a verdict): a failure is warned ("could not tag `what`"), never raised."""
    try:
        _log_tags(client, run_id, tags)
    except Exception as exc:
        log.warning("could not tag %s: %s", what, tracking_error(exc, "run"))


def finish(client, run_id: str, exit_status: int, job_decides: bool = False) -> None:
    """Close the run the container left RUNNING: FINISHED on 0, FAILED otherwise. job_decides:
    a failed job is FAILED even when the container closed the run (a multi-worker job whose
    chief finished, or closed it on its way out, while another worker died)."""
    try:
        status = client.get_run(run_id).info.status
        if status == "RUNNING" or (job_decides and exit_status and status != "FAILED"):
            client.set_terminated(run_id, "FINISHED" if exit_status == 0 else "FAILED")
    except Exception as exc:  # the container's result stands; say the status could not be set
        log.warning("could not close run %s: %s", run_id, tracking_error(exc, "run"))
