"""The one recorded-launch pipeline, shared by `tfrepro run` (launch/new_run.py) and `tfrepro replay`
(replay/rerun.py), and the one builder of the spec that runs.

    Blueprint          what runs, but for the run id and the launch hook's directory
    runtime_spec()     Blueprint + run id + hook directory -> the LaunchSpec (a preview uses placeholders)
    launch_recorded()  create the MLflow run with its tags, record the data, write the hook
                       directory, record the launch, run it on the engine, close the run (FAILED
                       on any exception), write its card (launch/page.py), sign the record

Reports go to logging (`tfrepro.launch.pipeline`); the job's own output goes to the `write`
callable the command layer passes (cli/output.stdout_writer).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

from tfrepro import schema, signing
from tfrepro.errors import UsageError
from tfrepro.fingerprint.data_record import DataSource
from tfrepro.imageref import Resolved
from tfrepro.launch import hooks, hostpaths, page, spec, tags, workers
from tfrepro.launch.job import Job
from tfrepro.launch.spec import Mount
from tfrepro.tracking import runs
from tfrepro.tracking import workers as worker_records

log = logging.getLogger(__name__)

NEW_RUN = "<new run>"  # the run id in a preview, before the run exists
HOOK = "<hook>"  # the launch hook's directory in a preview, before it is written

Write = Callable[[bytes], None]


@dataclass(frozen=True)
class Destination:
    """Where the run is recorded, and how the container reaches it."""

    client: object  # MlflowClient
    tracking_uri: str  # as the launcher reaches it
    experiment_id: str
    container_uri: str  # as the container reaches it
    tracking_mounts: Tuple[spec.Mount, ...] = ()


def tracking_mounts(uri: str, client, experiment: str, rules=None) -> Tuple[str, Tuple[spec.Mount, ...]]:
    """spec.tracking_setup() with its store root checked like any host path (refused: one
    line, UsageError). An experiment's local artifact location outside that root is never
    mounted (anyone who can create experiments sets it): the container's model upload fails."""
    container_uri, mounts = spec.tracking_setup(uri)
    checked = []
    for mount in mounts:
        real, refusal = hostpaths.check(mount.source, rules)
        if refusal:
            raise UsageError("refusing to mount the tracking store: %s" % refusal)
        checked.append(mount)
        for directory in runs.artifact_dirs(client, experiment):
            if not hostpaths.under(os.path.realpath(directory), real):
                log.warning(
                    "experiment %s keeps artifacts in %s, outside the tracking store %s: not mounted, so "
                    "the container cannot write artifacts there",
                    experiment,
                    directory,
                    mount.source,
                )
    return container_uri, tuple(checked)


@dataclass(frozen=True)
class Blueprint:
    """What runs, but for the run id and the hook's directory.

    `spec` holds the image to run, the command, its directories, the repository mount and the
    user's mounts, the user's variables, GPUs and sizes; the rest is what tfrepro adds."""

    spec: spec.LaunchSpec
    image: Resolved  # as the user named it (recorded, and passed as TFREPRO_IMAGE_REF), digest, id
    destination: Destination
    autolog: bool = False
    seed: Optional[int] = None  # applied by the launch hook
    extra_env: Mapping[str, str] = field(default_factory=dict)  # e.g. TFREPRO_NO_PATCH
    trailing_mounts: Tuple[Mount, ...] = ()  # after the hook's (the data beside the code)
    shape: workers.Shape = workers.ONE  # how many workers (launch/workers.py)

    @property
    def hooked(self) -> bool:
        return hooks.wanted(self.autolog, self.seed)


def runtime_spec(
    blueprint: Blueprint,
    run_id: str = NEW_RUN,
    hook_dir: Optional[str] = None,
    image_env: Optional[Mapping[str, str]] = None,
    checkout: Optional[str] = None,
) -> spec.LaunchSpec:
    """The spec that runs as run `run_id`: tfrepro's variables added to the user's, the tracking
    store and the launch hook (from `hook_dir`, a placeholder when hooked and None) mounted, the
    repository mount's source set to `checkout` when given. A preview is the same spec with
    placeholders."""
    base = blueprint.spec
    destination = blueprint.destination
    env = dict(base.env)
    env.update(
        spec.managed_env(
            destination.container_uri,
            destination.experiment_id or "<experiment>",
            run_id,
            blueprint.image.ref,
            blueprint.image.digest,
            blueprint.image.image_id,
            os.environ,
            base.workdir,
        )
    )
    env.update(hooks.hook_env(blueprint.autolog, blueprint.seed, base.env, image_env or {}))
    env.update(blueprint.extra_env)
    if hook_dir is None and blueprint.hooked:
        hook_dir = HOOK
    mounts = tuple(
        replace(mount, source=checkout) if checkout is not None and mount.kind == "repo" else mount
        for mount in base.mounts
    )
    mounts += destination.tracking_mounts + hooks.hook_mounts(hook_dir) + blueprint.trailing_mounts
    return replace(base, env=env, mounts=mounts, labels={schema.RUN_ID_LABEL: run_id})


@dataclass(frozen=True)
class Recording:
    """What goes on the run besides the spec: its name and tags (the image's come from the
    blueprint), the data it mounts, and what launch.json and the run's artifacts say."""

    run_name: Optional[str]
    tags: Mapping[str, str]
    data: Sequence[DataSource] = ()
    repo_root: Optional[str] = None  # where the repository lives on this host (launch.json)
    env_record: Mapping[str, Optional[str]] = field(default_factory=dict)  # spec.recorded_env()
    patch: str = ""  # tfrepro/git.patch, when not empty
    hidden: Sequence[str] = ()  # env names whose values the shown command leaves out
    label: str = "run"  # "run" or "replay run", in "run <id>" before the command is shown


def launcher_tags(git, command: Sequence[str], subdir: str, autolog: bool, hook_seed: Optional[int]) -> Dict[str, str]:
    """What the launcher knows, recorded alike on a run and on its replays: the checkout read on
    this side (`git`, a GitInfo or None; the in-container fingerprint records it again), the
    command (redacted already), its directory and what the launch hook applies."""
    run_tags = tags.git_tags(git) if git else {}
    run_tags[schema.COMMAND] = json.dumps(list(command))
    run_tags[schema.WORKDIR] = subdir
    run_tags.update(hooks.hook_tags(autolog, hook_seed))
    return run_tags


def launch_recorded(
    engine,
    blueprint: Blueprint,
    recording: Recording,
    write: Optional[Write] = None,
    source=None,
    checkout: Optional[str] = None,
    image_env: Optional[Mapping[str, str]] = None,
    after: Optional[Callable[[str], None]] = None,
) -> Tuple[str, int]:
    """Create the run, launch `blueprint` as it on `engine`, close and sign it: (run id, exit
    status). `source` is what a pod clones (kubernetes.Source); `image_env` the image's ENV
    (asked of the engine when None and the hook is wanted); `after(run_id)` runs once the job
    is over, before the run is closed."""
    destination = blueprint.destination
    client = destination.client
    run_tags = dict(
        page.source_tags(blueprint.spec.command, blueprint.spec.subdir),
        **tags.image_tags(blueprint.image.ref, blueprint.image.digest, blueprint.image.image_id),
    )
    run_tags.update(recording.tags)
    run_id = runs.create_run(client, destination.experiment_id, recording.run_name, run_tags)
    try:
        runs.record_data(client, run_id, recording.data)
        if image_env is None:
            image_env = engine.image_env(blueprint.spec.image) if blueprint.hooked else {}
        with hooks.hook_directory(blueprint.hooked) as hook_dir:
            launch_spec = runtime_spec(blueprint, run_id, hook_dir, image_env, checkout)
            launch_json = spec.launch_record(
                launch_spec,
                blueprint.image.ref,
                recording.repo_root,
                destination.tracking_uri,
                env=recording.env_record,
            )
            launch_json.update(hooks.hook_record(blueprint.autolog, blueprint.seed))
            status = run_recorded(
                client, engine, run_id, launch_spec, launch_json, recording, write, source, blueprint.shape
            )
        if blueprint.shape.multi:
            worker_records.gather(client, run_id, blueprint.shape.workers)
        if after is not None:
            after(run_id)
    except BaseException:
        runs.finish(client, run_id, 1)
        raise
    runs.finish(client, run_id, status, job_decides=blueprint.shape.multi)
    page.refresh_card(client, run_id, destination.tracking_uri)  # the card, with the engine it ran on
    signing.sign_run(client, run_id, warn=log.warning)
    return run_id, status


def run_recorded(
    client,
    engine,
    run_id: str,
    launch_spec: spec.LaunchSpec,
    launch_json,
    recording: Recording,
    write,
    source,
    shape: workers.Shape = workers.ONE,
) -> int:
    """Record the launch on the run (tags, launch.json with the engine's settings, the patch),
    show what is submitted, run it on `engine` and record the job's facts as the engine learns
    them; return the exit status."""
    launch_json = dict(launch_json, engine=engine.settings(shape=shape))
    runs.record_launch(client, run_id, launch_json, spec.launch_tags(launch_json))
    if recording.patch and recording.patch.strip():
        runs.log_text(client, run_id, recording.patch, schema.GIT_PATCH)
    job = Job(launch_spec, tuple(recording.hidden), source, shape)
    log.info("%s %s", recording.label, run_id)
    for line in engine.announce(job).rstrip("\n").splitlines():
        log.info("  %s", line, extra={"bare": True})
    return engine.run(job, lambda facts: runs.record_facts(client, run_id, facts), write or _discard)


def _discard(chunk: bytes) -> None:
    """The job's output when no writer is given (a library caller that wants silence)."""
