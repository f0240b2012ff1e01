"""`tfrepro replay` without its command line: prepare() reads and checks everything and says
what would run; replay() runs it and returns the verdict.

Order: read and validate the record, pick the engine (`--on`, else the recorded one), work
out drift and what would be submitted (the command shows them; --dry-run stops there),
materialise commit + patch in a standalone temporary checkout (so git inside the container
records them itself; a Kubernetes pod clones them instead), pull by digest where the engine
pulls here, run with a new MLflow run tagged tfrepro.replay_of, then compare metrics and
model hash.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from tfrepro import schema
from tfrepro.errors import ContainerFailed, UsageError
from tfrepro.launch import engines, hooks, kubernetes, settings, spec
from tfrepro.launch import launcher as launch
from tfrepro.replay import checkout, drift, plan, verify
from tfrepro.tracking import record as run_record

NEW_RUN = "<new run>"  # the run id in the preview, before the run exists
HOOK = "<hook>"  # the launch hook's directory in the preview, before it is written


@dataclass(frozen=True)
class Prepared:
    """All that is known before anything runs."""

    record: run_record.RunRecord
    replay_plan: plan.ReplayPlan
    drift_items: List[drift.Drift]
    refusals: Tuple[str, ...]  # reasons not to run (--dry-run only warns about them)
    client: Any  # MlflowClient
    tracking_uri: str
    experiment_id: str
    container_uri: str  # how the container reaches the tracking store
    tracking_mounts: Tuple[spec.Mount, ...]
    hidden: Tuple[str, ...]  # env names whose values the shown command leaves out
    engine: Any  # engines.get(...)

    @property
    def hooked(self) -> bool:
        return hooks.wanted(self.replay_plan.autolog, self.replay_plan.hook_seed)

    def launch_spec(self, source: str = plan.CHECKOUT, run_id: str = NEW_RUN, hook_dir: Optional[str] = None,
                    image_env: Optional[Dict[str, str]] = None) -> spec.LaunchSpec:
        """What runs: the checkout at `source` mounted, tfrepro's env for run `run_id` added,
        the launch hook (autolog, seed) mounted from `hook_dir`. The preview is the same spec
        with placeholders."""
        replay_plan = self.replay_plan
        env = spec.managed_env(self.container_uri, self.experiment_id, run_id, replay_plan.image_ref,
                               replay_plan.image_digest, replay_plan.image_id, os.environ,
                               replay_plan.spec.workdir)
        env.update(hooks.hook_env(replay_plan.autolog, replay_plan.hook_seed, replay_plan.spec.env, image_env or {}))
        if hook_dir is None and self.hooked:
            hook_dir = HOOK
        mounts = self.tracking_mounts + hooks.hook_mounts(hook_dir)
        return plan.finalize(replay_plan, source, env, mounts, {schema.RUN_ID_LABEL: run_id})

    @property
    def source(self) -> kubernetes.Source:
        """What a pod clones: the recorded commit, its remote and patch."""
        return kubernetes.Source(self.replay_plan.remote or "", self.replay_plan.commit, self.replay_plan.patch)

    def preview(self) -> str:
        """What would be submitted, checkout and run id as placeholders."""
        return self.engine.preview(self.launch_spec(), self.hidden, self.source)


def prepare(run_id: str, gpus: Optional[str] = None, tracking_uri: Optional[str] = None,
            experiment: Optional[str] = None, allow_drift: bool = False,
            mount_docker_socket: bool = False, engine_name: Optional[str] = None,
            engine_given: Optional[Dict[str, object]] = None) -> Prepared:
    """engine_name: --on, else the recorded engine; engine_given: its options from the command
    line, over the recorded ones."""
    uri = launch.tracking_uri(tracking_uri)
    client = run_record.client(uri, existing=True)
    record = run_record.load(client, run_id)
    replay_plan = plan.plan(record, os.environ, plan.KEEP if gpus is None else gpus, mount_docker_socket)
    recorded_name, recorded_settings = settings.recorded_backend(record.launch or {}, record.tags)
    name = engine_name or recorded_name
    engine = engines.get(name, settings.options_from(name, engine_given or {}, recorded_settings))
    host_gpu = _host_gpu()
    items = drift.compare(record.environment, host_gpu, replay_plan.spec.gpus)
    experiment_id = launch.experiment_id(client, experiment, default=record.experiment_id)
    container_uri, tracking_mounts = spec.tracking_setup(uri, launch.artifact_dirs(client, experiment_id))
    hidden = ("MLFLOW_RUN_ID",) + (("MLFLOW_TRACKING_URI",) if "@" in container_uri else ())
    # a cluster's job runs on a node it picks: this host's GPUs and driver do not decide
    refusals = () if name in engines.CLUSTERS else _refusals(replay_plan, items, host_gpu, allow_drift)
    prepared = Prepared(record, replay_plan, items, refusals, client, uri, experiment_id, container_uri,
                        tracking_mounts, hidden, engine)
    engine.check(prepared.launch_spec(), prepared.source)
    return prepared


def replay(prepared: Prepared, tolerance: float = verify.DEFAULT_TOLERANCE,
           keep_checkout: bool = False) -> Tuple[str, verify.Verdict]:
    """Run the replay; return (its run id, the verdict). ContainerFailed if it exited non-zero."""
    record, replay_plan, client = prepared.record, prepared.replay_plan, prepared.client
    candidates = [os.getcwd()] + list(replay_plan.repo_roots)
    # the source first: a missing commit or a stale patch is found before a long pull
    with checkout.materialise(replay_plan.commit, replay_plan.patch, candidates, replay_plan.remote,
                              log=launch.info, keep=keep_checkout) as source:
        engine = prepared.engine
        engine.prepare(replay_plan.image)
        tags = launch.image_tags(replay_plan.image_ref, replay_plan.image_digest, replay_plan.image_id)
        tags.update(_launch_tags(replay_plan, source))
        tags[schema.REPLAY_OF] = record.run_id
        new_run = launch.create_run(client, prepared.experiment_id,
                                    "replay-of-" + (record.run_name or record.run_id), tags)
        try:
            image_env = engine.image_env(replay_plan.image) if prepared.hooked else {}
            with hooks.hook_directory(prepared.hooked) as hook_dir:
                launch_spec = prepared.launch_spec(source, new_run, hook_dir, image_env)
                launch_json = spec.launch_record(launch_spec, replay_plan.image_ref, None, prepared.tracking_uri,
                                                 user_env=list(replay_plan.spec.env))
                launch_json.update(hooks.hook_record(replay_plan.autolog, replay_plan.hook_seed))
                status = launch.run_recorded(client, engine, new_run, launch_spec, launch_json,
                                             replay_plan.patch, prepared.hidden, "replay run", prepared.source)
        except BaseException:
            launch.finish(client, new_run, 1)
            raise
        launch.finish(client, new_run, status)
    if status:
        launch.set_verdict(client, new_run, verify.Verdict(verify.FAILED, "container exited with status %d" % status))
        raise ContainerFailed(status, "replay run %s: container exited with status %d" % (new_run, status))
    replayed = run_record.load(client, new_run, histories=True)
    verdict = verify.compare(run_record.read_histories(client, record.run_id), replayed.histories,
                             record.tags.get(schema.MODEL_HASH), replayed.tags.get(schema.MODEL_HASH), tolerance)
    launch.set_verdict(client, new_run, verdict)
    return new_run, verdict


def _host_gpu():
    from tfrepro.fingerprint import collect

    return collect(("gpu",)).gpu


def _refusals(replay_plan: plan.ReplayPlan, items, host_gpu, allow_drift: bool) -> Tuple[str, ...]:
    """Reasons not to run, as messages (raised, or only warned on --dry-run)."""
    reasons = []
    try:
        plan.check_gpus(replay_plan, host_gpu.count if host_gpu else 0)
    except UsageError as exc:
        reasons.append(str(exc))
    blocking = [d for d in items if d.blocking]
    if blocking and not allow_drift:
        reasons.append("%s: recorded %s, this host %s (pass --allow-drift to run anyway)"
                       % (blocking[0].name, blocking[0].recorded, blocking[0].host))
    return tuple(reasons)


def _launch_tags(replay_plan: plan.ReplayPlan, source: str) -> Dict[str, str]:
    """What the launcher knows, as `tfrepro run` records it: the checkout read on this side
    (the in-container fingerprint records it again), the command, its directory, the seed."""
    git, _ = launch.host_git(source)
    tags = launch.git_tags(git) if git else {}
    tags[schema.COMMAND] = json.dumps(list(replay_plan.spec.command))
    tags[schema.WORKDIR] = replay_plan.spec.subdir
    if replay_plan.seed is not None:
        tags[schema.SEED] = replay_plan.seed
    tags.update(hooks.hook_tags(replay_plan.autolog, replay_plan.hook_seed))
    return tags
