"""What to launch: options and recorded tags -> a LaunchSpec -> docker-py kwargs or `docker run` argv.

Pure: no Docker, no MLflow, no filesystem. Every value that reaches a container is
validated here, whether it came from the command line or from (untrusted) run tags.
Like docker-py's `_create_container_args`, this is the testable half of `run`.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from tfrepro import schema
from tfrepro.errors import UsageError
from tfrepro.redact import is_secret, looks_secret_value, redact_argv, split_env, strip_url_credentials

# The validators every launch value passes, from the command line here or from a record
# (tracking/launch_record.py parses records with them): one set of rules for both.
from tfrepro.tracking.launch_record import (  # noqa: F401  re-exported: spec.Mount, spec.parse_gpus...
    CLAIM_PREFIX,
    DEFAULT_WORKDIR,
    DOCKER_SOCKETS,
    ENV_NAME_RE,
    SIZE_RE,
    VOLUME_NAME_RE,
    Mount,
    check_container_path,
    check_subdir,
    parse_command,
    parse_gpus,
    parse_mount,
    parse_size,
)

# Forwarded from the launcher's environment when set (names recorded, values never), so the
# container can log to the launcher's own tracking server; the plan says so.
MLFLOW_AUTH_VARS = schema.ENV_MLFLOW_AUTH


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


def device_requests(gpus: Optional[str]) -> List[Dict[str, object]]:
    """docker-py DeviceRequest fields (HostConfig turns dicts into DeviceRequest)."""
    if gpus is None:
        return []
    return [{"driver": "", "count": -1 if gpus == "all" else int(gpus), "capabilities": [["gpu"]]}]


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
    env: Optional[Mapping[str, Optional[str]]] = None,
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
        schema.LAUNCH_WORKERS: ((record.get("engine") or {}).get("shape") or {}).get("workers"),  # type: ignore
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
        schema.ENV_MLFLOW_TRACKING_URI: tracking_uri,
        schema.ENV_MLFLOW_EXPERIMENT_ID: str(experiment_id),
        schema.ENV_IMAGE_REF: image_ref,
        schema.ENV_IMAGE_DIGEST: image_digest or "",
        schema.ENV_IMAGE_ID: image_id or "",
    }
    if workdir:
        env[schema.ENV_SAFE_DIRECTORY] = workdir
    if run_id:
        env[schema.ENV_MLFLOW_RUN_ID] = run_id
    env.update({k: environ[k] for k in MLFLOW_AUTH_VARS if environ.get(k)})
    return env


def tracking_credentials(environ: Mapping[str, str]) -> List[str]:
    """The tracking credential variables managed_env() passes from `environ`."""
    return [k for k in MLFLOW_AUTH_VARS if environ.get(k)]
