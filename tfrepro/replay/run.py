"""`tfrepro replay` without its command line: prepare() reads and checks everything and says
what would run; replay() runs it and returns the verdict (replay/repeat.py: N of them).

What the record may not decide (SECURITY.md) is settled here: its mounts are offers
(`offers`, mounted once approved), its image's registry is checked (`image_concerns`), its
signature verified; the replaying user's own grants come in as grants.Options.

Order: read and validate the record, pick the engine (`--on`, else the recorded one), work
out drift (GPU, mounted data, and the data beside
the code: untracked and ignored inputs found in the replayer's clone, replay/overlay.py) and
what would be submitted (the command shows them; --dry-run stops there), materialise
commit + patch in a standalone temporary checkout (so git inside the container records them
itself) with the data beside the code mounted read-only over it, pull
by digest where the engine pulls here (a Kubernetes pod clones the commit itself), run with a new MLflow run tagged tfrepro.replay_of, then compare metrics and model
hash, explain a verdict short of identical (inspect/explain.py), and tag the verdict on the
replay and on the original (tfrepro.replayed_by, tfrepro.replay.last_verdict).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Tuple

from tfrepro import schema, signing
from tfrepro.errors import ContainerFailed, RecordError, UsageError
from tfrepro.fingerprint.data_record import DataDrift, DataSource
from tfrepro.launch import engines, hooks, kubernetes, settings, spec
from tfrepro.launch import launcher as launch
from tfrepro.replay import checkout, data, drift, grants, hostpaths, overlay, plan, verify
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
    offers: Tuple[grants.MountOffer, ...] = ()  # the record's mounts
    approved: Tuple[grants.MountOffer, ...] = ()  # those the user granted (approve() adds more)
    user_mounts: Tuple[spec.Mount, ...] = ()  # -v given at replay that the record did not have
    image_concerns: Tuple[str, ...] = ()  # need confirmation or --allow-untrusted-image
    verification: signing.Verification = field(default_factory=lambda: signing.Verification(signing.UNSIGNED))
    credentials: Tuple[str, ...] = ()  # tracking credential variables passed to the container
    env_record: Dict[str, Optional[str]] = field(default_factory=dict)  # launch.json's env for the replay run
    source: str = ""  # where the commit will come from, for the plan
    data_current: Tuple[DataSource, ...] = ()  # the recorded mounts, fingerprinted again here
    data_drift: Tuple[DataDrift, ...] = ()  # what changed in them and in the data beside the code (blocking)
    beside: overlay.Overlay = overlay.Overlay()  # untracked and ignored inputs, mounted read-only from the clone
    engine: Any = None  # engines.get(...): where it runs

    def mounted_data(self) -> Tuple[DataSource, ...]:
        """The fingerprints of what this replay mounts (recorded on the replay run)."""
        mounted = {o.source for o in self.approved}
        return tuple(d for d in self.data_current if d.label != "mount" or d.path in mounted) + tuple(
            self.beside.current
        )

    def approve(self, offers) -> "Prepared":
        return replace(self, approved=self.approved + tuple(o for o in offers if o not in self.approved))

    @property
    def hooked(self) -> bool:
        return hooks.wanted(self.replay_plan.autolog, self.replay_plan.hook_seed)

    def launch_spec(
        self,
        source: str = plan.CHECKOUT,
        run_id: str = NEW_RUN,
        hook_dir: Optional[str] = None,
        image_env: Optional[Dict[str, str]] = None,
    ) -> spec.LaunchSpec:
        """What runs: the checkout at `source` mounted, tfrepro's env for run `run_id` added,
        the launch hook (autolog, seed) mounted from `hook_dir`. The preview is the same spec
        with placeholders."""
        replay_plan = self.replay_plan
        env = spec.managed_env(
            self.container_uri,
            self.experiment_id,
            run_id,
            replay_plan.image_ref,
            replay_plan.image_digest,
            replay_plan.image_id,
            os.environ,
            replay_plan.spec.workdir,
        )
        env.update(hooks.hook_env(replay_plan.autolog, replay_plan.hook_seed, replay_plan.spec.env, image_env or {}))
        if hook_dir is None and self.hooked:
            hook_dir = HOOK
        granted = tuple(spec.Mount(o.real, o.target, o.read_only, "user") for o in self.approved)
        mounts = (
            granted
            + self.user_mounts
            + self.tracking_mounts
            + hooks.hook_mounts(hook_dir)
            + self.beside.mounts(replay_plan.spec.workdir)
        )
        return plan.finalize(replay_plan, source, env, mounts, {schema.RUN_ID_LABEL: run_id})

    @property
    def pod_source(self) -> kubernetes.Source:
        """What a pod clones: the recorded commit, its remote and patch."""
        return kubernetes.Source(self.replay_plan.remote or "", self.replay_plan.commit, self.replay_plan.patch)

    def preview(self) -> str:
        """What would be submitted, checkout and run id as placeholders."""
        return self.engine.preview(self.launch_spec(), self.hidden, self.pod_source)


def prepare(
    run_id: str,
    gpus: Optional[str] = None,
    tracking_uri: Optional[str] = None,
    experiment: Optional[str] = None,
    allow_drift: bool = False,
    mount_docker_socket: bool = False,
    options: grants.Options = grants.Options(),
    untracked: bool = True,
    engine_name: Optional[str] = None,
    engine_given: Optional[Dict[str, object]] = None,
) -> Prepared:
    """engine_name: --on, else the recorded engine; engine_given: its options from the command
    line, over the recorded ones."""
    allow_socket = mount_docker_socket or options.mount_docker_socket
    given, passed = grants.parse_env_options(options.env_items, options.pass_env, os.environ)
    rules = hostpaths.policy()
    user_mounts = [hostpaths.checked_mount(v, rules, allow_socket) for v in options.volumes]
    uri = launch.tracking_uri(tracking_uri)
    client = run_record.client(uri, existing=True)
    record = run_record.load(client, run_id)
    verification = signing.verify_record(record, signing.allowed_signers_file(options.allowed_signers))
    if verification.status == signing.MISMATCH:
        raise RecordError("run %s: %s" % (run_id, verification.line()))
    if options.require_signed and verification.status != signing.TRUSTED:
        raise RecordError("run %s: %s, and --require-signed was given" % (run_id, verification.line()))
    replay_plan = plan.plan(record, given, plan.KEEP if gpus is None else gpus, passed)
    recorded_name, recorded_settings = settings.recorded_backend(record.launch or {}, record.tags)
    name = engine_name or recorded_name
    engine = engines.get(name, settings.options_from(name, engine_given or {}, recorded_settings))
    left_out = [
        o
        for o in settings.not_reused(name, recorded_settings)
        if not (engine_given or {}).get(o[2:].replace("-", "_") + ("s" if o == "--sbatch-arg" else ""))
    ]
    if left_out:
        replay_plan = replace(
            replay_plan,
            warnings=replay_plan.warnings
            + (
                "the run's %s settings are not reused (a record may not grant access): give them again if you trust "
                "them" % ", ".join(left_out),
            ),
        )
    offers = tuple(_offer(m, rules, allow_socket) for m in replay_plan.recorded_mounts)
    given_pairs = [(m.source, m.target) for m in user_mounts]
    approved, _ = grants.approved_mounts(offers, given_pairs, True, options.allow_recorded_mounts)
    extra = tuple(m for m in user_mounts if not any(grants.same_mount(o, [(m.source, m.target)]) for o in offers))
    host_gpu = _host_gpu()
    items = drift.compare(record.environment, host_gpu, replay_plan.spec.gpus)
    experiment_id = launch.experiment_id(client, experiment, default=record.experiment_id)
    container_uri, tracking_mounts = launch.tracking_mounts(uri, client, experiment_id, rules)
    concerns = tuple(
        grants.image_concerns(replay_plan.image, replay_plan.image_ref, grants.trusted_registries(os.environ))
    )
    env_record, dropped = spec.recorded_env(replay_plan.spec.env, passed)
    hidden = (
        ("MLFLOW_RUN_ID",)
        + (("MLFLOW_TRACKING_URI",) if "@" in container_uri else ())
        + tuple(passed)
        + tuple(name for name, _ in dropped)
    )
    # a cluster's job runs on a node it picks: this host's GPUs and driver do not decide
    refusals = () if name in engines.CLUSTERS else _refusals(replay_plan, items, host_gpu, allow_drift)
    # only what the record offers as a mount, and is not refused, is read on this host: a
    # record may not make replay list (and upload) what is under an arbitrary path here
    offered = {o.source for o in offers if not o.refusal}
    data_current, data_drift = data.check([d for d in record.data if d.label != "mount" or d.path in offered])
    local = checkout.find_local(replay_plan.commit, [os.getcwd()] + list(replay_plan.repo_roots))
    # the data beside the code comes from that clone, or from what the user mounts at its place
    provided = dict({o.target: o.real for o in approved}, **{m.target: m.source for m in user_mounts})
    beside = overlay.check(
        record.data,
        local if untracked else None,
        untracked,
        allow_drift,
        replay_plan.spec.workdir,
        provided,
        lambda path: hostpaths.check(path, rules)[1],
    )
    data_drift += beside.drift
    if data_drift and not allow_drift:
        refusals += (data.refusal(data_drift),)
    refusals += tuple("refusing the recorded mount %s: %s" % (o.source, o.refusal) for o in offers if o.refusal)
    if concerns and options.yes and not options.allow_untrusted_image:
        refusals += ("%s; pass --allow-untrusted-image to run it" % concerns[0],)
    source = "local repository %s" % local if local else "remote %s" % (replay_plan.remote or "(none recorded)")
    prepared = Prepared(
        record,
        replay_plan,
        items,
        refusals,
        client,
        uri,
        experiment_id,
        container_uri,
        tracking_mounts,
        hidden,
        offers,
        tuple(approved),
        extra,
        concerns,
        verification,
        tuple(spec.tracking_credentials(os.environ)),
        env_record,
        source,
        tuple(data_current),
        tuple(data_drift),
        beside,
        engine,
    )
    engine.check(prepared.launch_spec(), prepared.pod_source)
    return prepared


def _offer(mount: spec.Mount, rules, allow_socket: bool) -> grants.MountOffer:
    if not mount.source.startswith("/"):  # a named volume: offered like any mount
        return grants.MountOffer(mount.source, mount.target, mount.read_only, mount.source, None)
    real, refusal = hostpaths.check(mount.source, rules, allow_socket)
    if refusal and "Docker socket" in refusal and not allow_socket:
        refusal += "; pass --mount-docker-socket to allow it"
    return grants.MountOffer(mount.source, mount.target, mount.read_only, real, refusal)


def run_one(
    prepared: Prepared,
    keep_checkout: bool = False,
    extra_tags: Optional[Dict[str, str]] = None,
    run_name: Optional[str] = None,
) -> Tuple[str, int]:
    """Launch one replay run: (its run id, the container's exit status)."""
    record, replay_plan, client = prepared.record, prepared.replay_plan, prepared.client
    candidates = [os.getcwd()] + list(replay_plan.repo_roots)
    # the source first: a missing commit or a stale patch is found before a long pull
    with checkout.materialise(
        replay_plan.commit, replay_plan.patch, candidates, replay_plan.remote, log=launch.info, keep=keep_checkout
    ) as source:
        engine = prepared.engine
        engine.prepare(replay_plan.image)
        tags = launch.image_tags(replay_plan.image_ref, replay_plan.image_digest, replay_plan.image_id)
        tags.update(_launch_tags(replay_plan, source))
        overlay.prepare_checkout(source, prepared.beside, launch.info)
        tags.update(data.to_tags(prepared.mounted_data()))  # the data this replay saw
        tags[schema.REPLAY_OF] = record.run_id
        tags.update(extra_tags or {})
        new_run = launch.create_run(
            client, prepared.experiment_id, run_name or "replay-of-" + (record.run_name or record.run_id), tags
        )
        try:
            data.record(client, new_run, prepared.mounted_data())
            image_env = engine.image_env(replay_plan.image) if prepared.hooked else {}
            with hooks.hook_directory(prepared.hooked) as hook_dir:
                launch_spec = prepared.launch_spec(source, new_run, hook_dir, image_env)
                launch_json = spec.launch_record(
                    launch_spec, replay_plan.image_ref, None, prepared.tracking_uri, env=prepared.env_record
                )
                launch_json.update(hooks.hook_record(replay_plan.autolog, replay_plan.hook_seed))
                status = launch.run_recorded(
                    client,
                    engine,
                    new_run,
                    launch_spec,
                    launch_json,
                    replay_plan.patch,
                    prepared.hidden,
                    "replay run",
                    prepared.pod_source,
                )
        except BaseException:
            launch.finish(client, new_run, 1)
            raise
        launch.finish(client, new_run, status)
        signing.sign_run(client, new_run, warn=launch.warn)
    return new_run, status


def replay(
    prepared: Prepared, tolerance: float = verify.DEFAULT_TOLERANCE, keep_checkout: bool = False
) -> Tuple[str, verify.Verdict]:
    """Run the replay; return (its run id, the verdict). ContainerFailed if it exited non-zero."""
    record, client = prepared.record, prepared.client
    new_run, status = run_one(prepared, keep_checkout)
    if status:
        failed(prepared, new_run, status)
    replayed = run_record.load(client, new_run, histories=True)
    verdict = verify.compare(
        run_record.read_histories(client, record.run_id),
        replayed.histories,
        record.tags.get(schema.MODEL_HASH),
        replayed.tags.get(schema.MODEL_HASH),
        tolerance,
    )
    verdict = explained(prepared, replayed, verdict)
    launch.set_verdict(client, new_run, verdict)
    launch.mark_original(client, record.run_id, new_run, verdict.verdict)
    return new_run, verdict


def failed(prepared: Prepared, run_id: str, status: int, tagged: Optional[str] = None) -> None:
    """A replay container exited non-zero: tag it (and the original), raise ContainerFailed."""
    verdict = verify.Verdict(verify.FAILED, "container exited with status %d" % status)
    launch.set_verdict(prepared.client, tagged or run_id, verdict)
    launch.mark_original(prepared.client, prepared.record.run_id, tagged or run_id, verdict.verdict)
    raise ContainerFailed(status, "replay run %s: container exited with status %d" % (run_id, status))


def explained(prepared: Prepared, replayed: run_record.RunRecord, verdict):
    """The verdict with what can explain it (inspect/explain.py): always when the data had
    changed (--allow-drift), else whenever it is short of identical."""
    from tfrepro.inspect import explain

    if verdict.verdict == verify.IDENTICAL and not prepared.data_drift:
        return verdict
    rows = list(prepared.data_drift) + prepared.beside.unrestored
    factors = explain.explain(prepared.record, replayed, rows, prepared.record.data)
    if verdict.verdict == verify.IDENTICAL:
        factors = [f for f in factors if f.key == "data"]
    return dataclasses.replace(verdict, why=tuple(factors))


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
        reasons.append(
            "%s: recorded %s, this host %s (pass --allow-drift to run anyway)"
            % (blocking[0].name, blocking[0].recorded, blocking[0].host)
        )
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
