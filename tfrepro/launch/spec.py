"""What to launch: options and recorded tags -> a LaunchSpec -> docker-py kwargs or `docker run` argv.

Pure: no Docker, no MLflow, no filesystem. Every value that reaches a container is
validated here, whether it came from the command line or from (untrusted) run tags.
Like docker-py's `_create_container_args`, this is the testable half of `run`.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from tfrepro import schema
from tfrepro.errors import UsageError
from tfrepro.redact import is_secret, looks_secret_value, redact_argv, split_env, strip_url_credentials

DEFAULT_WORKDIR = "/workspace"
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
# Forwarded from the launcher's environment when set (names recorded, values never), so the
# container can log to the launcher's own tracking server; the plan says so.
MLFLOW_AUTH_VARS = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
)

ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SIZE_RE = re.compile(r"^[0-9]+[bkmg]?$")
CLAIM_PREFIX = "pvc:"  # -v pvc:CLAIM:/path, Kubernetes only
VOLUME_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


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


@dataclass(frozen=True)
class LaunchSpec:
    image: str  # repo@sha256:... (or a local image id for host-only runs)
    command: Tuple[str, ...]
    workdir: str = DEFAULT_WORKDIR  # where the repository is mounted
    subdir: str = "."  # cwd relative to the repository root
    mounts: Tuple[Mount, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    gpus: Optional[str] = None  # None, "all" or a count
    shm_size: Optional[str] = None
    memory: Optional[str] = None
    network: str = "host"
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def cwd(self) -> str:
        return posixpath.normpath(posixpath.join(self.workdir, self.subdir))


# -- validation (error= picks UsageError for options, RecordError for tags) ------------


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


def device_requests(gpus: Optional[str]) -> List[Dict[str, object]]:
    """docker-py DeviceRequest fields (HostConfig turns dicts into DeviceRequest)."""
    if gpus is None:
        return []
    return [{"driver": "", "count": -1 if gpus == "all" else int(gpus), "capabilities": [["gpu"]]}]


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
    import json

    try:
        argv = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        argv = None
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) and "\0" not in a for a in argv):
        raise error("the recorded command is not a JSON list of strings: %.80r" % (value,))
    return tuple(argv)


def tracking_setup(uri: str) -> Tuple[str, Tuple[Mount, ...]]:
    """How a container reaches the launcher's tracking store: (URI to pass, mounts to add).

    An http(s) server is reached over the host network and proxies artifacts: nothing is
    mounted. A sqlite or file store is mounted at the same absolute path: its own root only,
    never an experiment's artifact location (anyone with write access can set that to
    /var/run). The caller checks the root like any host path (launch/hostpaths.py).
    """
    scheme = urlsplit(uri).scheme
    if scheme == "sqlite":
        path = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else ""
        if not path.startswith("/"):
            raise UsageError("the sqlite tracking URI must be absolute (sqlite:////abs/path.db): %s" % uri)
        root = posixpath.dirname(path)
    elif scheme in ("file", ""):
        root = urlsplit(uri).path if scheme else uri
        if not root.startswith("/"):
            raise UsageError("the file tracking URI must be an absolute path: %s" % uri)
    else:
        return uri, ()
    root = posixpath.normpath(root)
    return uri, (Mount(root, root, False, "tracking"),)


# -- spec -> what docker sees -----------------------------------------------------------


def run_kwargs(spec: LaunchSpec) -> Dict[str, object]:
    """Keyword arguments for docker-py `client.containers.create(**kwargs)`."""
    kwargs: Dict[str, object] = {
        "image": spec.image,
        "command": list(spec.command),
        "working_dir": spec.cwd,
        "environment": dict(spec.env),
        "volumes": [m.bind() for m in spec.mounts],
        "network_mode": spec.network,
        "labels": dict(spec.labels),
    }
    if spec.gpus is not None:
        kwargs["device_requests"] = device_requests(spec.gpus)
    if spec.shm_size:
        kwargs["shm_size"] = spec.shm_size
    if spec.memory:
        kwargs["mem_limit"] = spec.memory
    return kwargs


def docker_argv(spec: LaunchSpec, hidden: Sequence[str] = ()) -> List[str]:
    """The equivalent `docker run` command line, to show. Secret (and `hidden`) env values are
    left out: `-e NAME` makes docker take them from the caller's environment; secret flag
    values in the command are shown redacted."""
    argv = ["docker", "run", "--rm", "--network", spec.network]
    if spec.gpus is not None:
        argv += ["--gpus", spec.gpus]
    if spec.shm_size:
        argv += ["--shm-size", spec.shm_size]
    if spec.memory:
        argv += ["--memory", spec.memory]
    for mount in spec.mounts:
        argv += ["-v", mount.bind()]
    argv += ["-w", spec.cwd]
    for name, value in spec.env.items():
        shown = not (is_secret(name) or name in hidden or looks_secret_value(value))
        argv += ["-e", "%s=%s" % (name, value) if shown else name]
    return argv + [spec.image] + redact_argv(spec.command)  # shown, so no secret flag value either


def recorded_env(
    values: Mapping[str, str], from_environ: Sequence[str] = ()
) -> Tuple[Dict[str, Optional[str]], List[Tuple[str, str]]]:
    """The user's variables as launch.json keeps them: a value given on the command line
    (-e NAME=VALUE) unless it looks secret; null for one taken from the environment (-e NAME,
    --pass-env NAME) or dropped. Returns (env, [(name, why dropped)])."""
    given = {k: v for k, v in values.items() if k not in from_environ}
    kept, dropped = split_env(given)
    env: Dict[str, Optional[str]] = {k: kept.get(k) for k in sorted(values)}
    return env, dropped


def launch_record(
    spec: LaunchSpec,
    image_ref: str,
    repo_root: Optional[str],
    tracking_uri: str,
    env: Mapping[str, Optional[str]] = None,
) -> Dict[str, object]:
    """The launch.json artifact (schema.LAUNCH_JSON): everything replay needs, and no secret
    value. `env` is recorded_env()'s answer: the user's variables, null where withheld."""
    return {
        "image": spec.image,
        "image_ref": image_ref,
        "command": redact_argv(spec.command),
        "workdir": spec.workdir,
        "subdir": spec.subdir,
        "repo_root": repo_root,
        "mounts": [m.to_dict() for m in spec.mounts],
        "gpus": spec.gpus or "none",
        "shm_size": spec.shm_size,
        "memory": spec.memory,
        "network": spec.network,
        "env_names": sorted(spec.env),
        # replay passes the values; a null one only when the replaying user names it (--pass-env)
        "env": {k: v for k, v in sorted((env or {}).items())},
        "tracking_uri": strip_url_credentials(tracking_uri),
    }


def launch_tags(record: Mapping[str, object]) -> Dict[str, str]:
    import json

    mounts = [Mount(**m).bind() for m in record.get("mounts") or ()]  # type: ignore[arg-type]
    tags = {
        schema.LAUNCH_GPUS: str(record.get("gpus") or "none"),
        schema.LAUNCH_MOUNTS: json.dumps(mounts),
        schema.LAUNCH_SHM_SIZE: record.get("shm_size"),
        schema.LAUNCH_MEMORY: record.get("memory"),
        schema.LAUNCH_NETWORK: record.get("network"),
        schema.LAUNCH_WORKDIR: record.get("workdir"),
        schema.LAUNCH_ENV_NAMES: json.dumps(list(record.get("env_names") or ())),
        schema.LAUNCH_BACKEND: (record.get("engine") or {}).get("backend", "docker"),  # type: ignore[union-attr]
    }
    return {k: schema.truncate(str(v)) for k, v in tags.items() if v not in (None, "")}


def managed_env(
    tracking_uri: str,
    experiment_id: str,
    run_id: Optional[str],
    image_ref: str,
    image_digest: Optional[str],
    image_id: Optional[str],
    environ: Mapping[str, str],
    workdir: Optional[str] = None,
) -> Dict[str, str]:
    """What tfrepro itself passes: the MLflow run to resume, the image's identity, and the
    mount point of the checkout, which the in-container fingerprint's git may trust even when
    another uid owns it (TFREPRO_SAFE_DIRECTORY: that one directory, never `*`)."""
    env = {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_EXPERIMENT_ID": str(experiment_id),
        "TFREPRO_IMAGE_REF": image_ref,
        "TFREPRO_IMAGE_DIGEST": image_digest or "",
        "TFREPRO_IMAGE_ID": image_id or "",
    }
    if workdir:
        env["TFREPRO_SAFE_DIRECTORY"] = workdir
    if run_id:
        env["MLFLOW_RUN_ID"] = run_id
    env.update({k: environ[k] for k in MLFLOW_AUTH_VARS if environ.get(k)})
    return env


def tracking_credentials(environ: Mapping[str, str]) -> List[str]:
    """The tracking credential variables managed_env() passes from `environ`."""
    return [k for k in MLFLOW_AUTH_VARS if environ.get(k)]
