"""Launcher I/O shared by `tfrepro run` and `tfrepro replay`: the MLflow run around a container.

The launcher creates the run before the container starts, records the launch, passes
MLFLOW_RUN_ID in, and closes the run if the container could not.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from typing import Dict, Optional, Tuple
from urllib.parse import urlsplit

import click

from tfrepro import schema
from tfrepro.errors import TrackingError, UsageError
from tfrepro.launch import spec
from tfrepro.termsafe import safe
from tfrepro.tracking import experiments
from tfrepro.tracking.record import tracking_error


def host_git(cwd: Optional[str] = None):
    """(GitInfo or None, reason): the repository the container will see, read on this side."""
    from tfrepro.fingerprint import NotApplicable
    from tfrepro.fingerprint import git as git_source

    try:
        raw = git_source.query(cwd)
        return git_source.parse(raw), raw.get("error")
    except NotApplicable as exc:
        return None, str(exc)
    except Exception as exc:  # never fatal: the container records git itself too
        return None, "git failed: %s" % exc


def git_tags(git) -> Dict[str, str]:
    from tfrepro.environment import Environment

    tags = Environment(git=git).to_tags()
    return {
        k: v
        for k, v in tags.items()
        if k.startswith((schema.GIT_PREFIX, schema.MLFLOW_GIT_PREFIX)) or k == schema.WORKDIR
    }


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
    try:
        if name:
            return experiments.experiment_id(client, name)
    except TrackingError:
        raise
    except Exception as exc:
        raise tracking_error(exc, "experiment %s" % name) from None
    return default or os.environ.get("MLFLOW_EXPERIMENT_ID") or "0"


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


def tracking_mounts(uri: str, client, experiment: str, rules=None) -> Tuple[str, Tuple[spec.Mount, ...]]:
    """spec.tracking_setup() with its store root checked like any host path (refused: one
    line, UsageError). An experiment's local artifact location outside that root is never
    mounted (anyone who can create experiments sets it): the container's model upload fails."""
    from tfrepro.replay import hostpaths

    container_uri, mounts = spec.tracking_setup(uri)
    checked = []
    for mount in mounts:
        real, refusal = hostpaths.check(mount.source, rules)
        if refusal:
            raise UsageError("refusing to mount the tracking store: %s" % refusal)
        checked.append(mount)
        for directory in artifact_dirs(client, experiment):
            if not hostpaths.under(os.path.realpath(directory), real):
                warn(
                    "experiment %s keeps artifacts in %s, outside the tracking store %s: not mounted, so "
                    "the container cannot write artifacts there" % (experiment, directory, mount.source)
                )
    return container_uri, tuple(checked)


def create_run(client, experiment: str, run_name: Optional[str], tags: Dict[str, str]) -> str:
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


def record_launch(client, run_id: str, record: Dict[str, object], tags: Dict[str, str]) -> None:
    from mlflow.entities import RunTag

    try:
        items = [RunTag(k, v) for k, v in tags.items()]
        for i in range(0, len(items), 100):
            client.log_batch(run_id, tags=items[i : i + 100])
        client.log_text(run_id, json.dumps(record, indent=2, sort_keys=True), schema.LAUNCH_JSON)
    except Exception as exc:
        raise tracking_error(exc, "recording the launch of run %s" % run_id) from None


def log_text(client, run_id: str, text: str, artifact_file: str) -> None:
    try:
        client.log_text(run_id, text, artifact_file)
    except Exception as exc:
        raise tracking_error(exc, "logging %s" % artifact_file) from None


def set_verdict(client, run_id: str, verdict) -> None:
    """Tag a replay (or --repeat summary) run with its verdict and what can explain it; a
    failure is only warned (the verdict is printed)."""
    from mlflow.entities import RunTag

    from tfrepro.inspect import explain

    detail = verdict.detail + (" | why: " + explain.detail(verdict.why) if getattr(verdict, "why", ()) else "")
    tags = [RunTag(schema.REPLAY_VERDICT, verdict.verdict), RunTag(schema.REPLAY_DETAIL, schema.truncate(detail))]
    try:
        client.log_batch(run_id, tags=tags)
    except Exception as exc:
        warn("could not tag the verdict on run %s: %s" % (run_id, tracking_error(exc, "run")))


def mark_original(client, original_id: str, replay_id: str, verdict: str) -> None:
    """On the original: its latest replay and that verdict, so the run table can filter on them."""
    from mlflow.entities import RunTag

    try:
        client.log_batch(
            original_id, tags=[RunTag(schema.REPLAYED_BY, replay_id), RunTag(schema.REPLAY_LAST_VERDICT, verdict)]
        )
    except Exception as exc:
        warn("could not tag the verdict on the original run %s: %s" % (original_id, tracking_error(exc, "run")))


def finish(client, run_id: str, exit_status: int) -> None:
    """Close the run the container left RUNNING: FINISHED on 0, FAILED otherwise."""
    try:
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_terminated(run_id, "FINISHED" if exit_status == 0 else "FAILED")
    except Exception as exc:  # the container's result stands; say the status could not be set
        click.echo("tfrepro: warning: could not close run %s: %s" % (run_id, tracking_error(exc, "run")), err=True)


def run_recorded(
    client,
    engine,
    run_id: str,
    launch_spec: spec.LaunchSpec,
    record: Dict[str, object],
    patch: str,
    hidden,
    label: str,
    source=None,
) -> int:
    """Record the launch on the run (tags, launch.json with the engine's settings, the patch),
    show what is submitted, run it on `engine` (engines.py) and record the job's facts as
    the engine learns them; return the exit status."""
    record = dict(record, engine=engine.settings())
    record_launch(client, run_id, record, spec.launch_tags(record))
    if patch and patch.strip():
        log_text(client, run_id, patch, schema.GIT_PATCH)
    shown = engine.announce(launch_spec, hidden, source).rstrip("\n").splitlines()
    info("%s %s" % (label, run_id))
    for line in shown:
        info("  " + line, prefix="")
    return engine.run(launch_spec, hidden, source, lambda facts: record_facts(client, run_id, facts), stdout_writer())


def record_facts(client, run_id: str, facts: Dict[str, str]) -> None:
    """The engine's job (id, nodes, partition...) as tfrepro.launch.* tags; a failure is only
    warned: the job runs on."""
    from mlflow.entities import RunTag

    tags = [
        RunTag(schema.LAUNCH_PREFIX + k, schema.truncate(str(v)))
        for k, v in sorted(facts.items())
        if k in schema.LAUNCH_JOB_FIELDS and v
    ]
    try:
        if tags:
            client.log_batch(run_id, tags=tags)
    except Exception as exc:
        warn("could not record the job on run %s: %s" % (run_id, tracking_error(exc, "run")))


def stdout_writer():
    """write(bytes) to our stdout, in order with what click printed before."""
    out = click.get_binary_stream("stdout")
    stdout = sys.stdout

    def write(chunk: bytes) -> None:
        try:
            stdout.flush()
            out.write(chunk)
            out.flush()
        except (AttributeError, ValueError):  # a captured text stream
            stdout.write(chunk.decode("utf-8", "replace"))

    return write


def warn(message: str) -> None:
    """One line on stderr; record strings in it are escaped (termsafe)."""
    click.echo("tfrepro: warning: %s" % safe(message), err=True)


def info(message: str, prefix: str = "tfrepro: ") -> None:
    click.echo(prefix + safe(message), err=True)


def image_tags(ref: Optional[str], digest: Optional[str], image_id: Optional[str]) -> Dict[str, str]:
    """The image tags a launcher sets on its run (the fingerprint inside sets them too)."""
    tags = {
        schema.IMAGE_REF: ref,
        schema.IMAGE_DIGEST: digest,
        schema.IMAGE_ID: image_id,
        schema.IMAGE_DIGEST_SOURCE: "launcher",
        schema.REPLAYABLE: schema.REPLAYABLE_REGISTRY if digest else schema.REPLAYABLE_HOST_ONLY,
        schema.MLFLOW_IMAGE_URI: digest or ref,
        schema.MLFLOW_IMAGE_ID: image_id,
    }
    return {k: v for k, v in tags.items() if v}
