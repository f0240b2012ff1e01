"""A run record -> what replay will do (image, source, LaunchSpec). Pure; validates every tag.

Refusals raise RecordError (or UsageError for a bad option) before anything runs. The record
is data: its mounts are only offered (recorded_mounts; replay/run.py asks), and its variables
without a value are listed (needs_pass_env), never looked up in this environment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Mapping, Optional, Tuple

from tfrepro import imageref, schema
from tfrepro.errors import RecordError, UsageError
from tfrepro.launch import hooks, spec
from tfrepro.redact import REDACTED
from tfrepro.replay import grants
from tfrepro.tracking.record import RunRecord

COMMIT_RE = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
SEED_RE = re.compile(r"^-?[0-9]{1,20}$")
CHECKOUT = "<checkout>"  # placeholder for the repository mount until it is materialised
KEEP = object()  # --gpus not given: replay the recorded request


@dataclass(frozen=True)
class ReplayPlan:
    image: str  # repo@sha256:... or, for a host-only run, a local image id
    image_ref: str
    image_digest: Optional[str]
    image_id: Optional[str]
    commit: str
    remote: Optional[str]
    repo_roots: Tuple[str, ...]  # where the original repository may live on this host
    patch: str
    untracked: Tuple[str, ...]
    spec: spec.LaunchSpec  # the repository mount's source is CHECKOUT
    recorded_gpus: Optional[str]
    seed: Optional[str]
    warnings: Tuple[str, ...]
    autolog: bool = False  # `tfrepro run` turned on autolog in the container
    hook_seed: Optional[int] = None  # `tfrepro run --seed`: the launcher applied the seed
    recorded_mounts: Tuple[spec.Mount, ...] = ()  # the original run's own mounts: offered, not imposed
    needs_pass_env: Tuple[str, ...] = ()  # recorded without a value and not given: --pass-env NAME
    passed_env: Tuple[str, ...] = ()  # names whose values come from this environment
    patch_withheld: bool = False  # dirty, but the patch was kept off the server


def _image(tags: Mapping[str, str], run_id: str) -> Tuple[str, Optional[str], Optional[str]]:
    digest, image_id = tags.get(schema.IMAGE_DIGEST), tags.get(schema.IMAGE_ID)
    if digest:
        imageref.check_digest_ref(digest, RecordError)
    if image_id:
        imageref.check_image_id(image_id, RecordError)
    if digest:
        return digest, digest, image_id
    if image_id and tags.get(schema.REPLAYABLE) == schema.REPLAYABLE_HOST_ONLY:
        return image_id, None, image_id
    raise RecordError("run %s has no image digest (%s): it cannot be replayed" % (run_id, schema.IMAGE_DIGEST))


def _recorded_gpus(tags: Mapping[str, str], launch: Mapping[str, object]) -> Optional[str]:
    if "gpus" in launch:
        return spec.parse_gpus(str(launch["gpus"]), RecordError)
    if schema.LAUNCH_GPUS in tags:
        return spec.parse_gpus(tags[schema.LAUNCH_GPUS], RecordError)
    count = tags.get(schema.GPU_COUNT, "0")
    return "all" if count.isdigit() and int(count) > 0 else None


def _mounts(launch: Mapping[str, object]) -> List[spec.Mount]:
    """The recorded user mounts, syntax checked; launch/hostpaths.py judges the host paths."""
    mounts = []
    for item in launch.get("mounts") or ():
        if not isinstance(item, dict):
            raise RecordError("launch.json: a mount is not an object")
        if item.get("kind") in ("repo", "tracking", "hook", "beside"):
            continue  # the repository, the tracking store, the launch hook, the data beside the code: set up afresh
        bind = "%s:%s:%s" % (item.get("source"), item.get("target"), "ro" if item.get("read_only") else "rw")
        mounts.append(spec.parse_mount(bind, True, RecordError, allow_claims=True))
    return mounts


def _user_env(launch: Mapping[str, object], given: Mapping[str, str], passed) -> grants.EnvGrant:
    recorded = launch.get("env") or {}
    if not isinstance(recorded, dict):
        raise RecordError("launch.json: env is not an object")
    for name, value in recorded.items():
        if not spec.ENV_NAME_RE.match(str(name)) or not (value is None or isinstance(value, str)):
            raise RecordError("launch.json: bad environment entry %.60r" % (name,))
    return grants.replay_env(recorded, given, passed)


def _subdir(value: str, workdir: str) -> str:
    # an image without git (or a git that refused the checkout) records its absolute cwd
    if value == workdir or value.startswith(workdir.rstrip("/") + "/"):
        value = value[len(workdir) :].lstrip("/") or "."
    return spec.check_subdir(value, RecordError)


def plan(record: RunRecord, given_env: Mapping[str, str], gpus=KEEP, passed: Tuple[str, ...] = ()) -> ReplayPlan:
    """given_env: what the replaying user passes (-e NAME=VALUE, --pass-env NAME), `passed`
    naming those taken from their environment. Nothing else of theirs enters the container."""
    tags, run_id = record.tags, record.run_id
    launch = record.launch or {}
    image, digest, image_id = _image(tags, run_id)
    commit = tags.get(schema.GIT_COMMIT) or ""
    if not commit:
        raise RecordError("run %s has no git commit (%s): it cannot be replayed" % (run_id, schema.GIT_COMMIT))
    if not COMMIT_RE.match(commit):
        raise RecordError("malformed commit %.80r in %s" % (commit, schema.GIT_COMMIT))
    if schema.COMMAND not in tags:
        raise RecordError("run %s has no command (%s): it cannot be replayed" % (run_id, schema.COMMAND))
    command = spec.parse_command(tags[schema.COMMAND], RecordError)
    workdir = spec.check_container_path(str(launch.get("workdir") or spec.DEFAULT_WORKDIR), "workdir", RecordError)
    subdir = _subdir(tags.get(schema.WORKDIR) or str(launch.get("subdir") or "."), workdir)
    dirty = tags.get(schema.GIT_DIRTY) == "true"
    patch = record.patch or ""
    withheld = dirty and not patch.strip() and tags.get(schema.GIT_PATCH_WITHHELD) == "true"
    if dirty and not patch.strip() and not withheld:
        raise RecordError("run %s was dirty but its patch (%s) is missing" % (run_id, schema.GIT_PATCH))
    git = record.environment.git if record.environment else None
    warnings = []
    if withheld:
        warnings.append(
            "the run had uncommitted changes that were not uploaded (TFREPRO_NO_PATCH): the dirty "
            "state cannot be restored; commit %s is replayed as committed" % commit[:12]
        )
    hidden_args = [i for i, a in enumerate(command) if REDACTED in a]
    if hidden_args:
        warnings.append(
            "the recorded command has %d redacted argument(s) (secret values are never recorded): "
            "the replay passes %s literally" % (len(hidden_args), REDACTED)
        )
    if git and git.untracked and not any(s.label in ("untracked", "ignored") for s in record.data):
        shown = ", ".join(git.untracked[:5]) + (", ..." if len(git.untracked) > 5 else "")
        # runs recorded before `tfrepro run` fingerprinted them (replay/overlay.py restores those)
        warnings.append("%d untracked file(s) cannot be restored: %s" % (len(git.untracked), shown))
    recorded = _recorded_gpus(tags, launch)
    requested = recorded if gpus is KEEP else spec.parse_gpus(gpus)
    mounts = [spec.Mount(CHECKOUT, workdir, False, "repo")]
    env_grant = _user_env(launch, given_env, passed)
    user_env = dict(env_grant.env)
    env_warnings = [
        "%s was set for the original run (value not recorded): pass --pass-env %s or -e %s=VALUE" % (name, name, name)
        for name in env_grant.needs_pass_env
    ]
    env_warnings += ["launch.json sets %s: ignored" % item for item in env_grant.ignored]
    seed = tags.get(schema.SEED)
    if seed is not None and not SEED_RE.match(seed):
        raise RecordError("malformed seed %.40r in %s" % (seed, schema.SEED))
    if seed is not None:
        user_env["TFREPRO_SEED"] = seed
    autolog, hook_seed = hooks.from_record(launch, tags)
    if hook_seed is not None and not SEED_RE.match(hook_seed):
        raise RecordError("malformed seed %.40r in the launch record" % hook_seed)
    roots = [
        r for r in (launch.get("repo_root"), git.root if git else None) if isinstance(r, str) and r.startswith("/")
    ]
    remote = tags.get(schema.GIT_REMOTE) or None
    launch_spec = spec.LaunchSpec(
        image=image,
        command=command,
        workdir=workdir,
        subdir=subdir,
        mounts=tuple(mounts),
        env=user_env,
        gpus=requested,
        shm_size=spec.parse_size(launch.get("shm_size"), "shm_size", RecordError),
        memory=spec.parse_size(launch.get("memory"), "memory", RecordError),
        network="host",
    )
    return ReplayPlan(
        image=image,
        image_ref=str(tags.get(schema.IMAGE_REF) or launch.get("image_ref") or image),
        image_digest=digest,
        image_id=image_id,
        commit=commit,
        remote=remote,
        repo_roots=tuple(roots),
        patch=patch,
        untracked=tuple(git.untracked) if git else (),
        spec=launch_spec,
        recorded_gpus=recorded,
        seed=seed,
        warnings=tuple(warnings + env_warnings),
        autolog=autolog,
        hook_seed=None if hook_seed is None else int(hook_seed),
        recorded_mounts=tuple(_mounts(launch)),
        needs_pass_env=env_grant.needs_pass_env,
        passed_env=env_grant.passed,
        patch_withheld=withheld,
    )


def check_gpus(plan_: ReplayPlan, host_gpu_count: int) -> None:
    """A GPU run on a host without (enough) GPUs is refused unless --gpus none."""
    requested = plan_.spec.gpus
    if requested is None:
        return
    if host_gpu_count == 0:
        raise UsageError(
            "the run used GPUs (--gpus %s) but this host has none; pass --gpus none to replay on CPU" % requested
        )
    if requested != "all" and int(requested) > host_gpu_count:
        raise UsageError(
            "the run used %s GPUs but this host has %d; pass --gpus %d or --gpus none"
            % (requested, host_gpu_count, host_gpu_count)
        )
