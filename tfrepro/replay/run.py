"""`tfrepro replay` without its command line: prepare() reads and checks everything and says
what would run; replay() runs it and returns the verdict (replay/repeat.py: N of them).

What the record may not decide (SECURITY.md) is settled here: its mounts are offers
(`MountGrants.offers`, mounted once approved), its image's registry is checked
(`Trust.image_concerns`), its signature verified; the replaying user's own grants come in as
grants.Options.

prepare() runs named steps, each returning a value built by keyword: trust (`_verified`: the
signature), the plan (replay/plan.py, from the typed record), the engine (`_engine`: `--on`,
else the recorded one), the mounts (`_mounts`), where the run is recorded (`_destination`),
the data (`_data`: the recorded mounts scanned again, the data beside the code found in the
replayer's clone, replay/overlay.py) and the drift (`_host_refusals`, `_data_refusals`).
The command shows the plan; --dry-run stops there. run_one() materialises commit + patch in a
standalone temporary checkout (so git inside the container records them itself) with the
data beside the code mounted read-only over it, pulls by digest where the engine pulls here
(a Kubernetes pod clones the commit itself), and runs it through the recorded-launch pipeline
shared with `tfrepro run` (launch/pipeline.py) as a new MLflow run tagged tfrepro.replay_of.
replay() then compares metrics and model hash, explains a verdict short of identical
(inspect/explain.py), and tags the verdict on the replay and on the original
(replay/verdict_tags.py: tfrepro.replayed_by, tfrepro.replay.last_verdict).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Mapping, Optional, Tuple

from tfrepro import schema, signing
from tfrepro.errors import JobFailed, RecordError, UsageError
from tfrepro.fingerprint.data_record import DataDrift, DataSource
from tfrepro.fingerprint.data_record import to_tags as data_tags
from tfrepro.inspect import explain
from tfrepro.launch import engines, env_options, hooks, hostpaths, kubernetes, pipeline, settings, spec, tags
from tfrepro.replay import checkout, data, drift, grants, overlay, plan, verdict_tags, verify
from tfrepro.tracking import record as run_record
from tfrepro.tracking import runs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trust:
    """What the replaying user is asked to trust: the record's signature, the image."""

    verification: signing.Verification = field(default_factory=lambda: signing.Verification(signing.UNSIGNED))
    image_concerns: Tuple[str, ...] = ()  # need confirmation or --allow-untrusted-image


@dataclass(frozen=True)
class MountGrants:
    offers: Tuple[grants.MountOffer, ...] = ()  # the record's mounts
    approved: Tuple[grants.MountOffer, ...] = ()  # those the user granted (Prepared.approve adds more)
    user_mounts: Tuple[spec.Mount, ...] = ()  # -v given at replay that the record did not have


@dataclass(frozen=True)
class DataState:
    """The recorded data, looked at again on this host."""

    current: Tuple[DataSource, ...] = ()  # the recorded mounts, fingerprinted again here
    drift: Tuple[DataDrift, ...] = ()  # what changed in them and in the data beside the code (blocking)
    beside: overlay.Overlay = overlay.Overlay()  # untracked and ignored inputs, mounted read-only from the clone


@dataclass(frozen=True)
class Prepared:
    """All that is known before anything runs."""

    record: run_record.RunRecord
    replay_plan: plan.ReplayPlan
    engine: Any  # engines.get(...): where it runs
    destination: pipeline.Destination
    trust: Trust
    mounts: MountGrants
    data: DataState
    drift_items: Tuple[drift.Drift, ...]
    refusals: Tuple[str, ...]  # reasons not to run (--dry-run only warns about them)
    hidden: Tuple[str, ...]  # env names whose values the shown command leaves out
    credentials: Tuple[str, ...] = ()  # tracking credential variables passed to the container
    env_record: Mapping[str, Optional[str]] = field(default_factory=dict)  # launch.json's env for the replay run
    source: str = ""  # where the commit will come from, for the plan

    @property
    def client(self):
        return self.destination.client

    def mounted_data(self) -> Tuple[DataSource, ...]:
        """The fingerprints of what this replay mounts (recorded on the replay run)."""
        mounted = {offer.source for offer in self.mounts.approved}
        kept = tuple(source for source in self.data.current if source.label != "mount" or source.path in mounted)
        return kept + tuple(self.data.beside.current)

    def approve(self, offers) -> "Prepared":
        approved = self.mounts.approved + tuple(offer for offer in offers if offer not in self.mounts.approved)
        return replace(self, mounts=replace(self.mounts, approved=approved))

    @property
    def blueprint(self) -> pipeline.Blueprint:
        """What runs (launch/pipeline.py builds the spec): the checkout, the granted mounts and
        the data beside the code mounted, tfrepro's env and the launch hook added."""
        replay_plan = self.replay_plan
        granted = tuple(spec.Mount(offer.real, offer.target, offer.read_only, "user") for offer in self.mounts.approved)
        return pipeline.Blueprint(
            spec=replace(replay_plan.spec, mounts=replay_plan.spec.mounts + granted + self.mounts.user_mounts),
            image_ref=replay_plan.image_ref,
            image_digest=replay_plan.image_digest,
            image_id=replay_plan.image_id,
            destination=self.destination,
            autolog=replay_plan.autolog,
            seed=replay_plan.hook_seed,
            trailing_mounts=self.data.beside.mounts(replay_plan.spec.workdir),
        )

    @property
    def pod_source(self) -> kubernetes.Source:
        """What a pod clones: the recorded commit, its remote and patch."""
        return kubernetes.Source(self.replay_plan.remote or "", self.replay_plan.commit, self.replay_plan.patch)

    def preview(self) -> str:
        """What would be submitted, checkout and run id as placeholders."""
        return self.engine.preview(pipeline.runtime_spec(self.blueprint), self.hidden, self.pod_source)


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
    """Read and check everything, run nothing. engine_name: --on, else the recorded engine;
    engine_given: its options from the command line, over the recorded ones."""
    allow_socket = mount_docker_socket or options.mount_docker_socket
    given, passed = env_options.parse_env_options(options.env_items, options.pass_env, os.environ)
    rules = hostpaths.policy()
    user_mounts = [hostpaths.checked_mount(volume, rules, allow_socket) for volume in options.volumes]
    uri = runs.tracking_uri(tracking_uri)
    client = run_record.client(uri, existing=True)
    record = run_record.load(client, run_id)
    verification = _verified(record, options)
    replay_plan = plan.plan(record, given, plan.KEEP if gpus is None else gpus, passed)
    engine, replay_plan = _engine(record, replay_plan, engine_name, engine_given or {})
    mounts = _mounts(replay_plan, user_mounts, rules, allow_socket, options.allow_recorded_mounts)
    host_gpu = _host_gpu()
    drift_items = tuple(drift.compare(record.environment, host_gpu, replay_plan.spec.gpus))
    destination = _destination(uri, client, experiment, record, rules)
    trust = Trust(
        verification=verification,
        image_concerns=tuple(
            grants.image_concerns(replay_plan.image, replay_plan.image_ref, grants.trusted_registries(os.environ))
        ),
    )
    env_record, dropped = spec.recorded_env(replay_plan.spec.env, passed)
    hidden = (
        ("MLFLOW_RUN_ID",)
        + (("MLFLOW_TRACKING_URI",) if "@" in destination.container_uri else ())
        + tuple(passed)
        + tuple(name for name, _ in dropped)
    )
    # a cluster's job runs on a node it picks: this host's GPUs and driver do not decide
    on_cluster = engine.name in engines.CLUSTERS
    refusals = () if on_cluster else _host_refusals(replay_plan, drift_items, host_gpu, allow_drift)
    local_clone = checkout.find_local(replay_plan.commit, [os.getcwd()] + list(replay_plan.repo_roots))
    data_state = _data(record, replay_plan, mounts, local_clone, untracked, allow_drift, rules)
    refusals += _data_refusals(data_state, mounts, trust, options, allow_drift)
    source = (
        "local repository %s" % local_clone if local_clone else "remote %s" % (replay_plan.remote or "(none recorded)")
    )
    prepared = Prepared(
        record=record,
        replay_plan=replay_plan,
        engine=engine,
        destination=destination,
        trust=trust,
        mounts=mounts,
        data=data_state,
        drift_items=drift_items,
        refusals=refusals,
        hidden=hidden,
        credentials=tuple(spec.tracking_credentials(os.environ)),
        env_record=env_record,
        source=source,
    )
    engine.check(pipeline.runtime_spec(prepared.blueprint), prepared.pod_source)
    return prepared


# -- the steps of prepare() ----------------------------------------------------------------------


def _verified(record: run_record.RunRecord, options: grants.Options) -> signing.Verification:
    """Trust: the record's signature; a mismatch, or an untrusted one with --require-signed, refused."""
    verification = signing.verify_record(record, signing.allowed_signers_file(options.allowed_signers))
    if verification.status == signing.MISMATCH:
        raise RecordError("run %s: %s" % (record.run_id, verification.line()))
    if options.require_signed and verification.status != signing.TRUSTED:
        raise RecordError("run %s: %s, and --require-signed was given" % (record.run_id, verification.line()))
    return verification


def _engine(record, replay_plan: plan.ReplayPlan, engine_name: Optional[str], engine_given: Dict[str, object]):
    """Engine: --on, else the recorded one, with the recorded settings a record may decide;
    (engine, the plan with a warning naming the settings left out)."""
    recorded_name, recorded_settings = settings.recorded_backend(record.launch or {}, record.tags)
    name = engine_name or recorded_name
    engine = engines.get(name, settings.options_from(name, engine_given, recorded_settings))
    left_out = [
        option
        for option in settings.not_reused(name, recorded_settings)
        if not engine_given.get(option[2:].replace("-", "_") + ("s" if option == "--sbatch-arg" else ""))
    ]
    if left_out:
        warning = (
            "the run's %s settings are not reused (a record may not grant access): give them again if you trust "
            "them" % ", ".join(left_out)
        )
        replay_plan = replace(replay_plan, warnings=replay_plan.warnings + (warning,))
    return engine, replay_plan


def _mounts(replay_plan: plan.ReplayPlan, user_mounts, rules, allow_socket: bool, allow_recorded: bool) -> MountGrants:
    """Mounts: the record's are offers; those given again with -v, or --allow-recorded-mounts, are approved."""
    offers = tuple(_offer(mount, rules, allow_socket) for mount in replay_plan.recorded_mounts)
    given_pairs = [(mount.source, mount.target) for mount in user_mounts]
    approved, _ = grants.approved_mounts(offers, given_pairs, True, allow_recorded)
    extra = tuple(
        mount
        for mount in user_mounts
        if not any(grants.same_mount(offer, [(mount.source, mount.target)]) for offer in offers)
    )
    return MountGrants(offers=offers, approved=tuple(approved), user_mounts=extra)


def _offer(mount: spec.Mount, rules, allow_socket: bool) -> grants.MountOffer:
    if not mount.source.startswith("/"):  # a named volume: offered like any mount
        return grants.MountOffer(mount.source, mount.target, mount.read_only, mount.source, None)
    real, refusal = hostpaths.check(mount.source, rules, allow_socket)
    if refusal and "Docker socket" in refusal and not allow_socket:
        refusal += "; pass --mount-docker-socket to allow it"
    return grants.MountOffer(mount.source, mount.target, mount.read_only, real, refusal)


def _destination(uri: str, client, experiment: Optional[str], record, rules) -> pipeline.Destination:
    """Where the replay run is recorded: --experiment, else the original's."""
    experiment_id = runs.experiment_id(client, experiment, default=record.experiment_id)
    container_uri, tracking_mounts = pipeline.tracking_mounts(uri, client, experiment_id, rules)
    return pipeline.Destination(
        client=client,
        tracking_uri=uri,
        experiment_id=experiment_id,
        container_uri=container_uri,
        tracking_mounts=tracking_mounts,
    )


def _data(
    record, replay_plan, mounts: MountGrants, local_clone, untracked: bool, allow_drift: bool, rules
) -> DataState:
    """Data: the recorded mounts scanned again, and the data beside the code found in the clone."""
    # only what the record offers as a mount, and is not refused, is read on this host: a
    # record may not make replay list (and upload) what is under an arbitrary path here
    offered = {offer.source for offer in mounts.offers if not offer.refusal}
    current, drift_rows = data.check(
        [source for source in record.data if source.label != "mount" or source.path in offered]
    )
    # the data beside the code comes from that clone, or from what the user mounts at its place
    provided = dict(
        {offer.target: offer.real for offer in mounts.approved},
        **{mount.target: mount.source for mount in mounts.user_mounts},
    )
    beside = overlay.check(
        record.data,
        local_clone if untracked else None,
        untracked,
        allow_drift,
        replay_plan.spec.workdir,
        provided,
        lambda path: hostpaths.check(path, rules)[1],
    )
    return DataState(current=tuple(current), drift=tuple(drift_rows) + tuple(beside.drift), beside=beside)


def _host_gpu():
    from tfrepro.fingerprint import collect

    return collect(("gpu",)).gpu


def _host_refusals(replay_plan: plan.ReplayPlan, items, host_gpu, allow_drift: bool) -> Tuple[str, ...]:
    """Drift: reasons this host cannot run it, as messages (raised, or only warned on --dry-run)."""
    reasons = []
    try:
        plan.check_gpus(replay_plan, host_gpu.count if host_gpu else 0)
    except UsageError as exc:
        reasons.append(str(exc))
    blocking = [item for item in items if item.blocking]
    if blocking and not allow_drift:
        reasons.append(
            "%s: recorded %s, this host %s (pass --allow-drift to run anyway)"
            % (blocking[0].name, blocking[0].recorded, blocking[0].host)
        )
    return tuple(reasons)


def _data_refusals(
    data_state: DataState, mounts: MountGrants, trust: Trust, options: grants.Options, allow_drift: bool
) -> Tuple[str, ...]:
    reasons: List[str] = []
    if data_state.drift and not allow_drift:
        reasons.append(data.refusal(data_state.drift))
    reasons += [
        "refusing the recorded mount %s: %s" % (offer.source, offer.refusal) for offer in mounts.offers if offer.refusal
    ]
    if trust.image_concerns and options.yes and not options.allow_untrusted_image:
        reasons.append("%s; pass --allow-untrusted-image to run it" % trust.image_concerns[0])
    return tuple(reasons)


# -- running -------------------------------------------------------------------------------------


def run_one(
    prepared: Prepared,
    keep_checkout: bool = False,
    extra_tags: Optional[Dict[str, str]] = None,
    run_name: Optional[str] = None,
    write: Optional[pipeline.Write] = None,
) -> Tuple[str, int]:
    """Launch one replay run: (its run id, the container's exit status)."""
    record, replay_plan = prepared.record, prepared.replay_plan
    candidates = [os.getcwd()] + list(replay_plan.repo_roots)
    # the source first: a missing commit or a stale patch is found before a long pull
    with checkout.materialise(
        replay_plan.commit, replay_plan.patch, candidates, replay_plan.remote, log=log.info, keep=keep_checkout
    ) as source:
        engine = prepared.engine
        engine.prepare(replay_plan.image)
        run_tags = tags.image_tags(replay_plan.image_ref, replay_plan.image_digest, replay_plan.image_id)
        run_tags.update(_launch_tags(replay_plan, source))
        overlay.prepare_checkout(source, prepared.data.beside, log.info)
        mounted = prepared.mounted_data()
        run_tags.update(data_tags(mounted))  # the data this replay saw
        run_tags[schema.REPLAY_OF] = record.run_id
        run_tags.update(extra_tags or {})
        recording = pipeline.Recording(
            run_name=run_name or "replay-of-" + (record.run_name or record.run_id),
            tags=run_tags,
            data=mounted,
            env_record=prepared.env_record,
            patch=replay_plan.patch,
            hidden=prepared.hidden,
            label="replay run",
        )
        return pipeline.launch_recorded(
            engine, prepared.blueprint, recording, write, prepared.pod_source, checkout=source
        )


def replay(
    prepared: Prepared,
    tolerance: float = verify.DEFAULT_TOLERANCE,
    keep_checkout: bool = False,
    write: Optional[pipeline.Write] = None,
) -> Tuple[str, verify.Verdict]:
    """Run the replay; return (its run id, the verdict). JobFailed if it exited non-zero."""
    record, client = prepared.record, prepared.client
    new_run, status = run_one(prepared, keep_checkout, write=write)
    if status:
        raise_job_failed(prepared, new_run, status)
    replayed = run_record.load(client, new_run, histories=True)
    original_histories = run_record.read_histories(client, record.run_id)
    verdict = verify.compare(
        original_histories,
        replayed.histories,
        record.tags.get(schema.MODEL_HASH),
        replayed.tags.get(schema.MODEL_HASH),
        tolerance,
    )
    metrics = verify.compare_metrics(original_histories, replayed.histories or {}, tolerance)
    verdict = explained(prepared, replayed, dataclasses.replace(verdict, metrics=metrics))
    verdict_tags.set_verdict(client, new_run, verdict)
    verdict_tags.mark_original(client, record.run_id, new_run, verdict.verdict)
    return new_run, verdict


def raise_job_failed(prepared: Prepared, run_id: str, status: int, tagged: Optional[str] = None) -> None:
    """A replay container exited non-zero: tag it (and the original), raise JobFailed."""
    verdict = verify.Verdict(verify.FAILED, "container exited with status %d" % status)
    verdict_tags.set_verdict(prepared.client, tagged or run_id, verdict)
    verdict_tags.mark_original(prepared.client, prepared.record.run_id, tagged or run_id, verdict.verdict)
    raise JobFailed(status, "replay run %s: container exited with status %d" % (run_id, status))


def explained(prepared: Prepared, replayed: run_record.RunRecord, verdict):
    """The verdict with what can explain it (inspect/explain.py): always when the data had
    changed (--allow-drift), else whenever it is short of identical."""
    if verdict.verdict == verify.IDENTICAL and not prepared.data.drift:
        return verdict
    rows = list(prepared.data.drift) + prepared.data.beside.unrestored
    factors = explain.explain(prepared.record, replayed, rows, prepared.record.data)
    if verdict.verdict == verify.IDENTICAL:
        factors = [factor for factor in factors if factor.key == "data"]
    return dataclasses.replace(verdict, why=tuple(factors))


def _launch_tags(replay_plan: plan.ReplayPlan, source: str) -> Dict[str, str]:
    """What the launcher knows, as `tfrepro run` records it: the checkout read on this side
    (the in-container fingerprint records it again), the command, its directory, the seed."""
    git, _ = tags.host_git(source)
    launch_tags = tags.git_tags(git) if git else {}
    launch_tags[schema.COMMAND] = json.dumps(list(replay_plan.spec.command))
    launch_tags[schema.WORKDIR] = replay_plan.spec.subdir
    if replay_plan.seed is not None:
        launch_tags[schema.SEED] = replay_plan.seed
    launch_tags.update(hooks.hook_tags(replay_plan.autolog, replay_plan.hook_seed))
    return launch_tags
