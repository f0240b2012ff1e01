"""A launch as values: the validators every launch value passes (from the command line or from a
record), and a recorded launch (tfrepro/launch.json and the tags) parsed once into them. Pure.

A record is data written by anyone with access to the tracking server: parse() checks every
value a replay would hand to a container (error=RecordError), as launch/spec.py checks options
(error=UsageError) with the same functions. What the record may not decide (its mounts are
offers, its variables without a value are listed) is replay's to settle.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Tuple

from tfrepro import schema
from tfrepro.errors import RecordError, UsageError

DEFAULT_WORKDIR = "/workspace"
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SIZE_RE = re.compile(r"^[0-9]+[bkmg]?$")
SEED_RE = re.compile(r"^-?[0-9]{1,20}$")
CLAIM_PREFIX = "pvc:"  # -v pvc:CLAIM:/path, Kubernetes only
VOLUME_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
# set up afresh by every launch: the repository, the tracking store, the launch hook, the data beside the code
MANAGED_MOUNTS = ("repo", "tracking", "hook", "beside")


@dataclass(frozen=True)
class Mount:
    source: str  # absolute host path, or a named volume
    target: str  # absolute container path
    read_only: bool = False
    kind: str = "user"  # user | repo | tracking | docker-socket | hook | beside (replay/overlay.py)

    def bind(self) -> str:
        return "%s:%s:%s" % (self.source, self.target, "ro" if self.read_only else "rw")

    def to_dict(self) -> Dict[str, object]:
        return {"source": self.source, "target": self.target, "read_only": self.read_only, "kind": self.kind}


# -- validation (error= picks UsageError for options, RecordError for records) ----------------


def check_subdir(value: str, error=UsageError) -> str:
    """A working directory relative to the repository root that stays inside it."""
    value = value or "."
    normal = posixpath.normpath(value)
    if value.startswith("/") or normal == ".." or normal.startswith("../") or "\0" in value or "\\" in value:
        raise error("workdir %r must be relative to the repository and stay inside it" % value)
    return normal


def check_container_path(value: str, what: str, error=UsageError) -> str:
    normal = posixpath.normpath(value or "")
    if not value.startswith("/") or ".." in value.split("/") or ":" in value or "," in value or "\0" in value:
        raise error("%s %r must be an absolute container path without ':' or '..'" % (what, value))
    return normal


def parse_gpus(value: Optional[str], error=UsageError) -> Optional[str]:
    """--gpus all|N|none -> "all", "N" or None."""
    text = str(value if value is not None else "none").strip().lower()
    if text in ("none", "", "0"):
        return None
    if text == "all" or text == "-1":
        return "all"
    if text.isdigit():
        return str(int(text))
    raise error("--gpus must be all, a count or none, not %r" % value)


def parse_size(value: Optional[str], what: str, error=UsageError) -> Optional[str]:
    if value is None or value == "":
        return None
    text = str(value).strip().lower()
    if text.endswith("b") and len(text) > 1 and text[-2] in "kmg":
        text = text[:-1]  # 16gb -> 16g
    if not SIZE_RE.match(text):
        raise error("%s must be a size like 512m or 8g, not %r" % (what, value))
    return text


def parse_mount(text: str, allow_docker_socket: bool = False, error=UsageError, allow_claims: bool = False) -> Mount:
    """-v SRC:DST[:ro|rw]; SRC is an absolute host path or a volume name, or with
    allow_claims (Kubernetes) pvc:CLAIM, a PersistentVolumeClaim."""
    if text.startswith(CLAIM_PREFIX):
        if not allow_claims:
            raise error("mount %r: a PersistentVolumeClaim (pvc:CLAIM:/path) needs --on kubernetes" % text)
        claim = parse_mount(text[len(CLAIM_PREFIX) :], False, error)
        return Mount(CLAIM_PREFIX + claim.source, claim.target, claim.read_only, "user")
    parts = text.split(":")
    mode = "rw"
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        mode = parts.pop()
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise error("mount %r must be SRC:DST[:ro|rw]" % text)
    source, target = parts
    if source.startswith("/"):
        source = posixpath.normpath(source)
    elif not VOLUME_NAME_RE.match(source):
        raise error("mount source %r must be an absolute path or a volume name" % source)
    target = check_container_path(target, "mount target", error)
    if source in DOCKER_SOCKETS and not allow_docker_socket:
        raise error("refusing to mount the Docker socket (%s) unless --mount-docker-socket is given" % source)
    return Mount(source, target, mode == "ro", "docker-socket" if source in DOCKER_SOCKETS else "user")


def parse_command(value, error=UsageError) -> Tuple[str, ...]:
    """The recorded argv: a non-empty JSON list of strings (never a shell string)."""
    try:
        argv = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        argv = None
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) and "\0" not in a for a in argv):
        raise error("the recorded command is not a JSON list of strings: %.80r" % (value,))
    return tuple(argv)


# -- a recorded launch ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedLaunch:
    """What a run's record says about its launch, every value validated."""

    command: Tuple[str, ...]
    workdir: str = DEFAULT_WORKDIR  # where the repository was mounted
    subdir: str = "."  # the cwd, relative to the repository root
    gpus: Optional[str] = None  # as recorded: None, "all" or a count
    shm_size: Optional[str] = None
    memory: Optional[str] = None
    mounts: Tuple[Mount, ...] = ()  # the user's own mounts (offers to a replay), syntax checked
    env: Mapping[str, Optional[str]] = field(default_factory=dict)  # the user's variables; None: value not kept
    env_names: Tuple[str, ...] = ()  # every variable the container got (names only)
    seed: Optional[str] = None  # tfrepro.seed: the seed the run reported
    autolog: bool = False  # the launcher turned autolog on in the container
    hook_seed: Optional[int] = None  # the seed the launcher applied (`tfrepro run --seed`)
    image_ref: Optional[str] = None  # the image as the user named it
    repo_root: Optional[str] = None  # where the repository lived on the recording host (absolute)


def parse(run_id: str, launch: Optional[Mapping[str, object]], tags: Mapping[str, str]) -> RecordedLaunch:
    """launch.json (None for runs without one) and the tags -> a RecordedLaunch; RecordError
    naming the first malformed value."""
    launch = launch or {}
    if schema.COMMAND not in tags:
        raise RecordError("run %s has no command (%s): it cannot be replayed" % (run_id, schema.COMMAND))
    command = parse_command(tags[schema.COMMAND], RecordError)
    workdir = check_container_path(str(launch.get("workdir") or DEFAULT_WORKDIR), "workdir", RecordError)
    subdir = _subdir(tags.get(schema.WORKDIR) or str(launch.get("subdir") or "."), workdir)
    seed = tags.get(schema.SEED)
    if seed is not None and not SEED_RE.match(seed):
        raise RecordError("malformed seed %.40r in %s" % (seed, schema.SEED))
    autolog, hook_seed = hook_settings(launch, tags)
    if hook_seed is not None and not SEED_RE.match(hook_seed):
        raise RecordError("malformed seed %.40r in the launch record" % hook_seed)
    repo_root = launch.get("repo_root")
    env_names = launch.get("env_names") or ()
    return RecordedLaunch(
        command=command,
        workdir=workdir,
        subdir=subdir,
        gpus=_gpus(tags, launch),
        shm_size=parse_size(launch.get("shm_size"), "shm_size", RecordError),  # type: ignore[arg-type]
        memory=parse_size(launch.get("memory"), "memory", RecordError),  # type: ignore[arg-type]
        mounts=_mounts(launch),
        env=_env(launch),
        env_names=tuple(str(name) for name in env_names) if isinstance(env_names, (list, tuple)) else (),
        seed=seed,
        autolog=autolog,
        hook_seed=None if hook_seed is None else int(hook_seed),
        image_ref=str(tags.get(schema.IMAGE_REF) or launch.get("image_ref") or "") or None,
        repo_root=repo_root if isinstance(repo_root, str) and repo_root.startswith("/") else None,
    )


def hook_settings(launch: Mapping[str, object], tags: Mapping[str, str]) -> Tuple[bool, Optional[str]]:
    """(autolog, the seed the launcher applied, unvalidated) of a recorded run. Runs from
    before the launch hook have neither: their script set everything up itself."""
    autolog = launch.get("autolog")
    if not isinstance(autolog, bool):
        autolog = tags.get(schema.AUTOLOG) == "true"
    seed = launch.get("seed")
    if seed is None:
        seed = tags.get(schema.LAUNCH_SEED)
    return autolog, None if seed is None else str(seed)


def _subdir(value: str, workdir: str) -> str:
    # an image without git (or a git that refused the checkout) records its absolute cwd
    if value == workdir or value.startswith(workdir.rstrip("/") + "/"):
        value = value[len(workdir) :].lstrip("/") or "."
    return check_subdir(value, RecordError)


def _gpus(tags: Mapping[str, str], launch: Mapping[str, object]) -> Optional[str]:
    if "gpus" in launch:
        return parse_gpus(str(launch["gpus"]), RecordError)
    if schema.LAUNCH_GPUS in tags:
        return parse_gpus(tags[schema.LAUNCH_GPUS], RecordError)
    count = tags.get(schema.GPU_COUNT, "0")
    return "all" if count.isdigit() and int(count) > 0 else None


def _mounts(launch: Mapping[str, object]) -> Tuple[Mount, ...]:
    """The recorded user mounts, syntax checked; launch/hostpaths.py judges the host paths."""
    mounts = []
    for item in launch.get("mounts") or ():  # type: ignore[attr-defined]
        if not isinstance(item, dict):
            raise RecordError("launch.json: a mount is not an object")
        if item.get("kind") in MANAGED_MOUNTS:
            continue
        bind = "%s:%s:%s" % (item.get("source"), item.get("target"), "ro" if item.get("read_only") else "rw")
        mounts.append(parse_mount(bind, True, RecordError, allow_claims=True))
    return tuple(mounts)


def _env(launch: Mapping[str, object]) -> Dict[str, Optional[str]]:
    recorded = launch.get("env") or {}
    if not isinstance(recorded, dict):
        raise RecordError("launch.json: env is not an object")
    for name, value in recorded.items():
        if not ENV_NAME_RE.match(str(name)) or not (value is None or isinstance(value, str)):
            raise RecordError("launch.json: bad environment entry %.60r" % (name,))
    return dict(recorded)
