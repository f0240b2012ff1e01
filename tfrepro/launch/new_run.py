"""`tfrepro run` without its command line: options -> a LaunchSpec -> an engine.

Order: resolve REF to its digest, fingerprint the mounted data and the data beside the code,
create the MLflow run and record the launch (argv redacted, no secret env value, the patch
unless withheld), submit the spec with MLFLOW_RUN_ID so the in-container callback resumes that
run, stream its output, mark what the run wrote beside the code, sign the record, return its
exit status (launch/pipeline.py holds the steps shared with replay). A dry run (preview) stops
before the MLflow run: it returns what would be submitted, the run id and the hook's directory
as placeholders.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from tfrepro import schema
from tfrepro.errors import TfreproError
from tfrepro.fingerprint import untracked
from tfrepro.fingerprint.data_record import to_tags
from tfrepro.launch import hostpaths, kubernetes, mounted_data, pipeline, spec, tags, workers
from tfrepro.launch.job import Job
from tfrepro.redact import patch_withheld, redact_argv
from tfrepro.tracking import record as run_record
from tfrepro.tracking import runs
from tfrepro.tracking.launched import where_the_run_went
from tfrepro.tracking.spool import spool_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    """The validated command line."""

    image: str
    command: Tuple[str, ...]
    gpus: Optional[str]
    mounts: Tuple[spec.Mount, ...]  # host paths already checked (launch/hostpaths.py)
    shm_size: Optional[str]
    memory: Optional[str]
    user_env: Dict[str, str]
    workdir: str
    experiment: Optional[str]
    run_name: Optional[str]
    tracking_uri: str
    autolog: bool
    seed: Optional[int]
    hash_data: bool = False
    untracked: bool = True  # fingerprint the data beside the code
    env_record: Dict[str, Optional[str]] = field(default_factory=dict)  # launch.json's env: no secret values
    from_environ: Tuple[str, ...] = ()  # -e NAME: values taken from this shell, never shown
    dropped: Tuple[str, ...] = ()  # -e values not recorded (secret-looking)
    rules: Any = None  # hostpaths.policy()
    shape: workers.Shape = workers.ONE  # --workers and the rest (launch/workers.py)


@dataclass(frozen=True)
class Setup:
    """All that is known before the run exists: what a dry run shows, and what launch() runs."""

    blueprint: pipeline.Blueprint
    git: Any  # GitInfo, or None outside a repository
    repo_root: str
    patch: str  # "" when withheld
    withhold: bool
    source: Optional[kubernetes.Source]  # what a pod clones
    hidden: Tuple[str, ...]
    image_env: Dict[str, str]
    resolved: Any  # the engine's answer for the image (docker.Resolved)


def setup(request: Request, engine, dry_run: bool = False) -> Setup:
    """Read git, resolve the image (pulled unless a dry run), find the experiment and the
    tracking mounts, and check the spec on the engine: refused before anything is created."""
    git, reason = tags.host_git()
    if git is None:
        log.warning("git on this host: %s: the run may not be replayable", reason)
    elif git.untracked and not request.untracked:
        log.warning(
            "%d untracked file(s) are visible to the container and not fingerprinted (--no-untracked): "
            "a replay cannot restore them",
            len(git.untracked),
        )
    repo_root = git.root if git and git.root else os.getcwd()
    withhold = patch_withheld()  # TFREPRO_NO_PATCH=1: the uncommitted code stays off the server
    patch = "" if withhold or not git else git.patch
    source = kubernetes.Source(git.remote_url or "", git.commit or "", patch) if git else None

    resolved = engine.resolve(request.image)
    if resolved.digest and not dry_run:
        engine.prepare(resolved.digest)  # pulls, or asks the scheduler, before anything is recorded
    if not resolved.digest:
        log.warning(
            "image %s is in no registry: the run is replayable on this host only (image id %s)",
            request.image,
            resolved.image_id,
        )
    client = run_record.client(request.tracking_uri)
    if dry_run:
        experiment_id = runs.existing_experiment_id(client, request.experiment)
    else:
        experiment_id = runs.experiment_id(client, request.experiment)
    rules = request.rules if request.rules is not None else hostpaths.policy()
    container_uri, tracking_mounts = pipeline.tracking_mounts(request.tracking_uri, client, experiment_id, rules)
    hidden = (("MLFLOW_TRACKING_URI",) if "@" in container_uri else ()) + request.from_environ + request.dropped
    repo_mount = spec.Mount(repo_root, request.workdir, False, "repo")
    blueprint = pipeline.Blueprint(
        spec=spec.LaunchSpec(
            image=resolved.run_ref,
            command=request.command,
            workdir=request.workdir,
            subdir=git.workdir if git else ".",
            mounts=(repo_mount,) + request.mounts,
            env=dict(request.user_env),
            gpus=request.gpus,
            shm_size=request.shm_size,
            memory=request.memory,
        ),
        image_ref=request.image,
        image_digest=resolved.digest,
        image_id=resolved.image_id,
        destination=pipeline.Destination(client, request.tracking_uri, experiment_id, container_uri, tracking_mounts),
        autolog=request.autolog,
        seed=request.seed,
        shape=request.shape,
        extra_env={"TFREPRO_NO_PATCH": "1"} if withhold else {},  # the callback inside withholds it too
    )
    image_env = engine.image_env(resolved.run_ref) if blueprint.hooked else {}
    launch_setup = Setup(
        blueprint=blueprint,
        git=git,
        repo_root=repo_root,
        patch=patch,
        withhold=withhold,
        source=source,
        hidden=hidden,
        image_env=image_env,
        resolved=resolved,
    )
    engine.check(
        Job(pipeline.runtime_spec(blueprint, image_env=image_env), hidden, source, request.shape)
    )  # refused before anything is created
    return launch_setup


def preview(request: Request, engine) -> str:
    """--dry-run: exactly what would be submitted, run id and hook directory as placeholders;
    nothing is created."""
    launch_setup = setup(request, engine, dry_run=True)
    launch_spec = pipeline.runtime_spec(launch_setup.blueprint, image_env=launch_setup.image_env)
    hidden = launch_setup.hidden + ("MLFLOW_RUN_ID",)
    return engine.preview(Job(launch_spec, hidden, launch_setup.source, request.shape)).rstrip("\n")


def launch(request: Request, engine, write: Optional[pipeline.Write] = None) -> int:
    """Run it, recorded; return the container's exit status. `write` takes the job's output."""
    launch_setup = setup(request, engine)
    blueprint, git = launch_setup.blueprint, launch_setup.git
    destination = blueprint.destination
    sources = mounted_data.fingerprint_mounts(request.mounts, request.hash_data)
    beside = untracked.Capture()
    if git and git.root and request.untracked:
        beside = untracked.collect(
            git.root,
            request.workdir,
            request.hash_data,
            [mount.source for mount in destination.tracking_mounts] + [spool_dir()],
        )
    if beside.found:
        log.info("%s", beside.note())  # file names from disk: escaped like a record's strings
    sources += beside.sources
    run_tags = pipeline.launcher_tags(  # secret flag values never reach the server
        git, redact_argv(request.command), blueprint.spec.subdir, request.autolog, request.seed
    )
    if launch_setup.withhold and git and git.dirty:
        run_tags[schema.GIT_PATCH_WITHHELD] = "true"
    run_tags.update(to_tags(sources))
    if beside.found:
        run_tags[schema.DATA_BESIDE] = schema.truncate(beside.note())
    recording = pipeline.Recording(
        run_name=request.run_name,
        tags=run_tags,
        data=sources,
        repo_root=launch_setup.repo_root,
        env_record=request.env_record,
        patch=launch_setup.patch,
        hidden=launch_setup.hidden,
        label="run",
    )
    run_id, status = pipeline.launch_recorded(
        engine,
        blueprint,
        recording,
        write,
        launch_setup.source,
        image_env=launch_setup.image_env,
        after=lambda run_id: _mark_written(destination.client, run_id, sources, beside, git.root if git else None),
    )
    log.info("run %s exited with status %d", run_id, status)
    where_the_run_went(destination.client, run_id, destination.experiment_id)
    return status


def _mark_written(client, run_id, sources, beside, root) -> None:
    """What changed beside the code while the run ran is its output: recorded as such, not restored."""
    if not beside.sources:
        return
    marked, changed = untracked.written(beside, root)
    if changed:
        log.info(
            "data beside the code: %s changed while the run ran: recorded as its output, not restored on replay",
            ", ".join(changed),
        )
        try:
            mounts = [source for source in sources if source.label == "mount"]
            runs.record_data(client, run_id, mounts + list(marked.sources), tags=True)
        except TfreproError as exc:  # the run's own result stands
            log.warning("could not record which data the run wrote: %s", exc)
