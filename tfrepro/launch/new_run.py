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
from dataclasses import dataclass, field, replace
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

    # the container as the command line gives it: the image as named, the user's mounts (host
    # paths already checked: launch/hostpaths.py) and -e values; setup() pins the image and
    # adds the checkout
    container: spec.LaunchSpec
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
class Checkout:
    """The checkout `tfrepro run` is started from, as git on this host reads it."""

    git: Any  # GitInfo, or None outside a repository
    root: str  # the repository's root; the working directory outside one
    patch: str  # the uncommitted changes, "" when withheld
    withhold: bool  # TFREPRO_NO_PATCH=1: the uncommitted code stays off the server

    @property
    def source(self) -> Optional[kubernetes.Source]:
        """What a pod clones: the commit, its remote and the patch."""
        git = self.git
        return kubernetes.Source(git.remote_url or "", git.commit or "", self.patch) if git else None


def read_checkout(request: Request) -> Checkout:
    """git on this host, warned about when it leaves the run not replayable as it ran."""
    git, reason = tags.host_git()
    if git is None:
        log.warning("git on this host: %s: the run may not be replayable", reason)
    elif git.untracked and not request.untracked:
        log.warning(
            "%d untracked file(s) are visible to the container and not fingerprinted (--no-untracked): "
            "a replay cannot restore them",
            len(git.untracked),
        )
    withhold = patch_withheld()
    patch = "" if withhold or not git else git.patch
    return Checkout(git, git.root if git and git.root else os.getcwd(), patch, withhold)


@dataclass(frozen=True)
class Setup:
    """All that is known before the run exists: what a dry run shows, and what launch() runs."""

    blueprint: pipeline.Blueprint
    checkout: Checkout
    recording: pipeline.Recording  # launch() adds the tags and the data it fingerprints
    image_env: Dict[str, str]

    def job(self, hidden: Tuple[str, ...] = ()) -> Job:
        """The job a preview shows and check() refuses, run id and hook directory as placeholders."""
        launch_spec = pipeline.runtime_spec(self.blueprint, image_env=self.image_env)
        return Job(launch_spec, tuple(self.recording.hidden) + hidden, self.checkout.source, self.blueprint.shape)


def setup(request: Request, engine, dry_run: bool = False) -> Setup:
    """Read git, resolve the image (pulled unless a dry run), find the experiment and the
    tracking mounts, and check the spec on the engine: refused before anything is created."""
    here = read_checkout(request)
    git = here.git
    container = request.container
    resolved = engine.resolve(container.image)
    if resolved.digest and not dry_run:
        engine.prepare(resolved.digest)  # pulls, or asks the scheduler, before anything is recorded
    if not resolved.digest:
        log.warning(
            "image %s is in no registry: the run is replayable on this host only (image id %s)",
            container.image,
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
    repo_mount = spec.Mount(here.root, container.workdir, False, "repo")
    blueprint = pipeline.Blueprint(
        spec=replace(
            container,
            image=resolved.run_ref,
            subdir=git.workdir if git else ".",
            mounts=(repo_mount,) + container.mounts,
            env=dict(container.env),
        ),
        image=resolved,
        destination=pipeline.Destination(client, request.tracking_uri, experiment_id, container_uri, tracking_mounts),
        autolog=request.autolog,
        seed=request.seed,
        shape=request.shape,
        extra_env={"TFREPRO_NO_PATCH": "1"} if here.withhold else {},  # the callback inside withholds it too
    )
    recording = pipeline.Recording(
        request.run_name, {}, repo_root=here.root, env_record=request.env_record, patch=here.patch, hidden=hidden
    )
    image_env = engine.image_env(resolved.run_ref) if blueprint.hooked else {}
    launch_setup = Setup(blueprint, here, recording, image_env)
    engine.check(launch_setup.job())  # refused before anything is created
    return launch_setup


def preview(request: Request, engine) -> str:
    """--dry-run: exactly what would be submitted, run id and hook directory as placeholders;
    nothing is created."""
    return engine.preview(setup(request, engine, dry_run=True).job(hidden=("MLFLOW_RUN_ID",))).rstrip("\n")


def launch(request: Request, engine, write: Optional[pipeline.Write] = None) -> int:
    """Run it, recorded; return the container's exit status. `write` takes the job's output."""
    launch_setup = setup(request, engine)
    blueprint, git = launch_setup.blueprint, launch_setup.checkout.git
    destination = blueprint.destination
    sources = mounted_data.fingerprint_mounts(request.container.mounts, request.hash_data)
    beside = untracked.Capture()
    if git and git.root and request.untracked:
        beside = untracked.collect(
            git.root,
            request.container.workdir,
            request.hash_data,
            [mount.source for mount in destination.tracking_mounts] + [spool_dir()],
        )
    if beside.found:
        log.info("%s", beside.note())  # file names from disk: escaped like a record's strings
    sources += beside.sources
    run_tags = pipeline.launcher_tags(  # secret flag values never reach the server
        git, redact_argv(request.container.command), blueprint.spec.subdir, request.autolog, request.seed
    )
    if launch_setup.checkout.withhold and git and git.dirty:
        run_tags[schema.GIT_PATCH_WITHHELD] = "true"
    run_tags.update(to_tags(sources))
    if beside.found:
        run_tags[schema.DATA_BESIDE] = schema.truncate(beside.note())
    run_id, status = pipeline.launch_recorded(
        engine,
        blueprint,
        replace(launch_setup.recording, tags=run_tags, data=sources),
        write,
        launch_setup.checkout.source,
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
