"""`tfrepro replay` before anything runs: prepare() reads and checks everything and returns
what would run (Prepared); replay/rerun.py runs it.

What the record may not decide (SECURITY.md) is settled here: its mounts are offers
(`MountGrants.offers`, mounted once approved), its image's registry is checked
(`Trust.image_concerns`), its signature verified; the replaying user's own grants come in as
grants.Options.

prepare() runs named steps, each returning a value built by keyword: trust (`_verified`: the
signature), the plan (replay/plan.py, from the typed record), the engine (`_engine`: `--on`,
else the recorded one), the mounts (`_mounts`), where the run is recorded (`_destination`, `_recording`),
the data (`_data`: the recorded mounts scanned again, the data beside the code found in the
replayer's clone, replay/overlay.py) and the drift (`_host_refusals`, `_data_refusals`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

from tfrepro import signing
from tfrepro.errors import RecordError, UsageError
from tfrepro.fingerprint.data_record import DataDrift, DataSource
from tfrepro.imageref import Resolved
from tfrepro.launch import engines, env_options, hostpaths, kubernetes, pipeline, settings, spec, workers
from tfrepro.launch.job import Job
from tfrepro.replay import checkout, data, drift, grants, overlay, plan
from tfrepro.tracking import record as run_record
from tfrepro.tracking import runs


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
    recording: pipeline.Recording  # the replay run's; replay/rerun.py adds its tags and data
    credentials: Tuple[str, ...] = ()  # tracking credential variables passed to the container
    source: str = ""  # where the commit will come from, for the plan
    shape: workers.Shape = workers.ONE  # the recorded shape, or --workers and the rest over it

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
            image=Resolved(replay_plan.image_ref, replay_plan.image_digest, replay_plan.image_id),
            destination=self.destination,
            autolog=replay_plan.launch.autolog,
            seed=replay_plan.launch.hook_seed,
            trailing_mounts=self.data.beside.mounts(replay_plan.spec.workdir),
            shape=self.shape,
        )

    @property
    def pod_source(self) -> kubernetes.Source:
        """What a pod clones: the recorded commit, its remote and patch."""
        return kubernetes.Source(self.replay_plan.remote or "", self.replay_plan.commit, self.replay_plan.patch)

    def preview(self) -> str:
        """What would be submitted, checkout and run id as placeholders."""
        return self.engine.preview(
            Job(pipeline.runtime_spec(self.blueprint), tuple(self.recording.hidden), self.pod_source, self.shape)
        )


def prepare(
    run_id: str,
    gpus: Optional[str] = None,
    tracking_uri: Optional[str] = None,
    experiment: Optional[str] = None,
    allow_drift: bool = False,
    options: grants.Options = grants.Options(),
    untracked: bool = True,
    engine_name: Optional[str] = None,
    engine_given: Optional[Dict[str, object]] = None,
    shape_given: Optional[Dict[str, object]] = None,
) -> Prepared:
    """Read and check everything, run nothing. engine_name: --on, else the recorded engine;
    engine_given: its options from the command line, over the recorded ones."""
    allow_socket = options.mount_docker_socket
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
    recorded_shape = workers.recorded((record.launch or {}).get("engine"))
    shape = workers.merged(shape_given or {}, recorded_shape)
    drift_items = tuple(drift.compare(record.environment, host_gpu, replay_plan.spec.gpus))
    local_gpus = None if engine.name in engines.CLUSTERS else (host_gpu.count if host_gpu else 0)
    drift_items += tuple(drift.shape_rows(recorded_shape.workers, shape.workers, shape.gpus_per_task, local_gpus))
    destination = _destination(uri, client, experiment, record, rules)
    trust = Trust(
        verification=verification,
        image_concerns=tuple(
            grants.image_concerns(replay_plan.image, replay_plan.image_ref, grants.trusted_registries(os.environ))
        ),
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
        recording=_recording(record, replay_plan, destination, passed),
        credentials=tuple(spec.tracking_credentials(os.environ)),
        source=source,
        shape=shape,
    )
    engine.check(
        Job(pipeline.runtime_spec(prepared.blueprint), tuple(prepared.recording.hidden), prepared.pod_source, shape)
    )
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


def _recording(
    record: run_record.RunRecord, replay_plan: plan.ReplayPlan, destination: pipeline.Destination, passed: Sequence[str]
) -> pipeline.Recording:
    """Recording: the replay run's name, launch.json's env (what spec.recorded_env lets it keep)
    and the names whose values the shown command leaves out; replay/rerun.py adds tags and data."""
    env_record, dropped = spec.recorded_env(replay_plan.spec.env, passed)
    hidden = (
        ("MLFLOW_RUN_ID",)
        + (("MLFLOW_TRACKING_URI",) if "@" in destination.container_uri else ())
        + tuple(passed)
        + tuple(name for name, _ in dropped)
    )
    name = "replay-of-" + (record.run_name or record.run_id)
    return pipeline.Recording(
        name, tags={}, env_record=env_record, patch=replay_plan.patch, hidden=hidden, label="replay run"
    )


def _mounts(replay_plan: plan.ReplayPlan, user_mounts, rules, allow_socket: bool, allow_recorded: bool) -> MountGrants:
    """Mounts: the record's are offers; those given again with -v, or --allow-recorded-mounts, are approved."""
    offers = tuple(_offer(mount, rules, allow_socket) for mount in replay_plan.launch.mounts)
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
