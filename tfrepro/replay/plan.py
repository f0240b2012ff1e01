"""A run record -> what replay will do (image, source, LaunchSpec). Pure; validates every tag.

Refusals raise RecordError (or UsageError for a bad option) before anything runs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Dict, List, Mapping, Optional, Tuple

from tfrepro import imageref, schema
from tfrepro.errors import RecordError, UsageError
from tfrepro.redact import is_secret
from tfrepro.launch import hooks, spec
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


def _mounts(launch: Mapping[str, object], allow_docker_socket: bool) -> List[spec.Mount]:
    mounts = []
    for item in launch.get("mounts") or ():
        if not isinstance(item, dict) or item.get("kind") in ("repo", "tracking", "hook"):
            continue  # the repository, the tracking store and the launch hook are set up afresh
        bind = "%s:%s:%s" % (item.get("source"), item.get("target"), "ro" if item.get("read_only") else "rw")
        try:
            mounts.append(spec.parse_mount(bind, allow_docker_socket, RecordError, allow_claims=True))
        except RecordError as exc:
            if "Docker socket" in str(exc):
                raise RecordError("the run mounted the Docker socket; pass --mount-docker-socket to allow it") from None
            raise
    return mounts


def _user_env(launch: Mapping[str, object], environ: Mapping[str, str]) -> Tuple[Dict[str, str], List[str]]:
    env, warnings = {}, []
    recorded = launch.get("env") or {}
    if not isinstance(recorded, dict):
        raise RecordError("launch.json: env is not an object")
    for name, value in sorted(recorded.items()):
        if not spec.ENV_NAME_RE.match(str(name)) or not (value is None or isinstance(value, str)):
            raise RecordError("launch.json: bad environment entry %.60r" % (name,))
        if value is None or is_secret(name):
            if name in environ:
                env[name] = environ[name]
            else:
                warnings.append("%s was set for the original run (value not recorded) and is not set here" % name)
        else:
            env[name] = value
    return env, warnings


def _subdir(value: str, workdir: str) -> str:
    # an image without git (or a git that refused the checkout) records its absolute cwd
    if value == workdir or value.startswith(workdir.rstrip("/") + "/"):
        value = value[len(workdir):].lstrip("/") or "."
    return spec.check_subdir(value, RecordError)


def plan(record: RunRecord, environ: Mapping[str, str], gpus=KEEP, allow_docker_socket: bool = False) -> ReplayPlan:
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
    if dirty and not patch.strip():
        raise RecordError("run %s was dirty but its patch (%s) is missing" % (run_id, schema.GIT_PATCH))
    git = record.environment.git if record.environment else None
    warnings = []
    if git and git.untracked:
        shown = ", ".join(git.untracked[:5]) + (", ..." if len(git.untracked) > 5 else "")
        warnings.append("%d untracked file(s) cannot be restored: %s" % (len(git.untracked), shown))
    recorded = _recorded_gpus(tags, launch)
    requested = recorded if gpus is KEEP else spec.parse_gpus(gpus)
    mounts = [spec.Mount(CHECKOUT, workdir, False, "repo")] + _mounts(launch, allow_docker_socket)
    user_env, env_warnings = _user_env(launch, environ)
    seed = tags.get(schema.SEED)
    if seed is not None and not SEED_RE.match(seed):
        raise RecordError("malformed seed %.40r in %s" % (seed, schema.SEED))
    if seed is not None:
        user_env["TFREPRO_SEED"] = seed
    autolog, hook_seed = hooks.from_record(launch, tags)
    if hook_seed is not None and not SEED_RE.match(hook_seed):
        raise RecordError("malformed seed %.40r in the launch record" % hook_seed)
    roots = [r for r in (launch.get("repo_root"), git.root if git else None) if isinstance(r, str) and r.startswith("/")]
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
        image=image, image_ref=str(tags.get(schema.IMAGE_REF) or launch.get("image_ref") or image),
        image_digest=digest, image_id=image_id, commit=commit, remote=remote, repo_roots=tuple(roots),
        patch=patch, untracked=tuple(git.untracked) if git else (), spec=launch_spec,
        recorded_gpus=recorded, seed=seed, warnings=tuple(warnings + env_warnings),
        autolog=autolog, hook_seed=None if hook_seed is None else int(hook_seed),
    )


def check_gpus(plan_: ReplayPlan, host_gpu_count: int) -> None:
    """A GPU run on a host without (enough) GPUs is refused unless --gpus none."""
    requested = plan_.spec.gpus
    if requested is None:
        return
    if host_gpu_count == 0:
        raise UsageError("the run used GPUs (--gpus %s) but this host has none; pass --gpus none to replay on CPU"
                         % requested)
    if requested != "all" and int(requested) > host_gpu_count:
        raise UsageError("the run used %s GPUs but this host has %d; pass --gpus %d or --gpus none"
                         % (requested, host_gpu_count, host_gpu_count))


def finalize(plan_: ReplayPlan, checkout: str, env: Mapping[str, str], extra_mounts=(), labels=None) -> spec.LaunchSpec:
    """The spec to run: the checkout mounted, tfrepro's own env and tracking mounts added."""
    mounts = tuple(replace(m, source=checkout) if m.kind == "repo" else m for m in plan_.spec.mounts)
    merged = dict(plan_.spec.env)
    merged.update(env)
    return replace(plan_.spec, mounts=mounts + tuple(extra_mounts), env=merged, labels=dict(labels or {}))
