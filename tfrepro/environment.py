"""The environment record: one immutable value, its JSON form and its MLflow tags (both ways).

The tag names and value limits are in schema.py. Python 3.8 compatible: it runs inside the
users' NGC containers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from tfrepro import schema
from tfrepro.schema import SCHEMA_VERSION
from tfrepro.versions import cuda_int, cuda_text


def _freeze(value):
    if isinstance(value, Mapping):
        return types.MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value):
    if dataclasses.is_dataclass(value):
        return {f.name: _thaw(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


class _Record:
    """Frozen dataclass mixin: dicts become read-only mappings, lists tuples."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _freeze(getattr(self, f.name)))

    def to_dict(self) -> Dict[str, Any]:
        return _thaw(self)

    @classmethod
    def from_dict(cls, data: Mapping):
        """Build from JSON data; unknown keys are ignored, missing ones take defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class ContainerInfo(_Record):
    """Whether the training ran in a container, which runtime, and how that is known."""

    in_container: bool = False
    evidence: Tuple[str, ...] = ()  # how we know, e.g. "/.dockerenv", "cgroup v2 (no container id)"
    runtime: Optional[str] = None  # docker | podman | kubernetes | None
    container_id: Optional[str] = None
    image_ref: Optional[str] = None  # as launched, e.g. nvcr.io/nvidia/tensorflow:22.07-tf2-py3
    image_digest: Optional[str] = None  # pullable: repo@sha256:<64 hex>
    image_id: Optional[str] = None  # local config digest: sha256:<64 hex>
    digest_source: Optional[str] = None  # launcher | docker-socket | containerenv | kubernetes
    ngc: Mapping[str, str] = field(default_factory=dict)  # NVIDIA_*/CUDA_*/CUDNN_*/NCCL_* env


@dataclass(frozen=True)
class GitInfo(_Record):
    """The repository the code came from: commit, branch, remote (credentials stripped), dirty
    state and the uncommitted patch (stored as tfrepro/git.patch), untracked files, workdir."""

    commit: Optional[str] = None
    branch: Optional[str] = None  # None when detached
    remote_url: Optional[str] = None  # credentials stripped
    dirty: bool = False
    patch_sha256: Optional[str] = None  # of `patch`; the text itself goes to tfrepro/git.patch
    untracked: Tuple[str, ...] = ()
    root: Optional[str] = None
    workdir: str = "."  # cwd relative to root
    patch: str = field(default="", repr=False)


@dataclass(frozen=True)
class GpuDevice(_Record):
    """One GPU as NVML (or nvidia-smi) reports it: index, model, UUID, memory, compute capability."""

    index: int = 0
    name: str = ""
    uuid: str = ""
    memory_total_bytes: Optional[int] = None
    compute_capability: Optional[str] = None  # "9.0"
    mig_mode: Optional[str] = None  # "enabled" | "disabled" | None when unsupported
    pci_bus_id: Optional[str] = None


@dataclass(frozen=True)
class GpuInfo(_Record):
    """The GPUs visible to the process, the driver, the CUDA version the driver supports, and the
    visibility variables (CUDA_VISIBLE_DEVICES, NVIDIA_VISIBLE_DEVICES)."""

    count: int = 0
    driver_version: Optional[str] = None  # "580.159.04"
    cuda_driver_version: Optional[int] = None  # NVML's integer: 13000 means 13.0
    nvml_version: Optional[str] = None
    devices: Tuple[GpuDevice, ...] = ()
    cuda_visible_devices: Optional[str] = None
    nvidia_visible_devices: Optional[str] = None
    reason: Optional[str] = None  # why count is 0

    def __post_init__(self):
        super().__post_init__()
        devices = tuple(d if isinstance(d, GpuDevice) else GpuDevice.from_dict(d) for d in self.devices)
        object.__setattr__(self, "devices", devices)

    @property
    def cuda_driver(self) -> Optional[str]:
        return cuda_text(self.cuda_driver_version)


@dataclass(frozen=True)
class TensorflowInfo(_Record):
    """TensorFlow's version, the CUDA and cuDNN it was built with, its devices, mixed precision
    policy, and the seed and op determinism in force."""

    version: Optional[str] = None
    cuda_build: Optional[str] = None  # from tf.sysconfig.get_build_info()
    cudnn_build: Optional[str] = None
    build_info: Mapping[str, Any] = field(default_factory=dict)
    devices: Tuple[str, ...] = ()  # e.g. "/physical_device:GPU:0"
    determinism: Mapping[str, Any] = field(default_factory=dict)  # env flags + op_determinism
    mixed_precision_policy: Optional[str] = None
    seed: Optional[int] = None  # set through tfrepro.deterministic()
    imported: bool = False  # False: version from package metadata only


@dataclass(frozen=True)
class PythonInfo(_Record):
    """The interpreter (version, implementation, executable) and the installed packages."""

    version: str = ""
    implementation: str = ""
    executable: str = ""
    packages: Tuple[str, ...] = ()  # sorted "name==version"


@dataclass(frozen=True)
class SystemInfo(_Record):
    """The host: hostname, OS, kernel, machine, CPU model and count, memory."""

    os: Optional[str] = None
    kernel: Optional[str] = None
    machine: Optional[str] = None
    cpu_model: Optional[str] = None
    cpu_count: Optional[int] = None
    memory_bytes: Optional[int] = None
    hostname: Optional[str] = None


@dataclass(frozen=True)
class ProcessInfo(_Record):
    """The training process: its command line, working directory and entry script."""

    argv: Tuple[str, ...] = ()  # full command, interpreter first: ("python", "train.py", ...)
    cwd: str = ""
    entry_script: Optional[str] = None
    python_executable: str = ""


@dataclass(frozen=True)
class SchedulerInfo(_Record):
    """The cluster job the process ran in, if any: Slurm job or Kubernetes pod, node, partition."""

    kind: Optional[str] = None  # slurm | kubernetes
    job_id: Optional[str] = None  # SLURM_JOB_ID; the owning Job's uid on Kubernetes
    job_name: Optional[str] = None  # SLURM_JOB_NAME; the owning Job's name
    nodes: Optional[str] = None  # SLURM_JOB_NODELIST; the pod's node
    partition: Optional[str] = None
    cluster: Optional[str] = None
    account: Optional[str] = None
    pod: Optional[str] = None
    namespace: Optional[str] = None


SECTIONS = {
    "container": ContainerInfo,
    "git": GitInfo,
    "gpu": GpuInfo,
    "tensorflow": TensorflowInfo,
    "python": PythonInfo,
    "system": SystemInfo,
    "process": ProcessInfo,
    "scheduler": SchedulerInfo,
}


@dataclass(frozen=True)
class Environment(_Record):
    """Where a run ran: one immutable value, built once (`tfrepro.collect_environment()`), written
    as `tfrepro/environment.json` and as `tfrepro.*` tags, and read back by replay, show and diff.

    Each section is None when its source was not available; `reasons` says why (source name ->
    one line)."""

    schema: str = SCHEMA_VERSION
    collected_at: str = ""  # ISO 8601, UTC
    tfrepro_version: str = ""
    container: Optional[ContainerInfo] = None
    git: Optional[GitInfo] = None
    gpu: Optional[GpuInfo] = None
    tensorflow: Optional[TensorflowInfo] = None
    python: Optional[PythonInfo] = None
    system: Optional[SystemInfo] = None
    process: Optional[ProcessInfo] = None
    scheduler: Optional[SchedulerInfo] = None
    reasons: Mapping[str, str] = field(default_factory=dict)  # source -> why it is missing/partial

    def __post_init__(self):
        super().__post_init__()
        for name, cls in SECTIONS.items():
            value = getattr(self, name)
            if isinstance(value, Mapping):
                object.__setattr__(self, name, cls.from_dict(value))

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON data (the patch left out: it is stored as its own artifact)."""
        data = _thaw(self)
        if data.get("git"):
            data["git"].pop("patch", None)  # stored as tfrepro/git.patch
        return data

    def to_json(self) -> str:
        """The text of tfrepro/environment.json."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Environment":
        """Read tfrepro/environment.json back; unknown keys are ignored."""
        return cls.from_dict(json.loads(text))

    def requirements(self) -> str:
        """The installed packages, one `name==version` a line (pip's requirements format)."""
        return "".join(p + "\n" for p in (self.python.packages if self.python else ()))

    def to_tags(self) -> Dict[str, str]:
        """The run's tags: `tfrepro.*` plus MLflow's own source and docker tags where known."""
        return to_tags(self)

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> "Environment":
        """The partial record a run's tags hold (a run without environment.json)."""
        return from_tags(tags)


# Packages most likely to change results get a tag each, so the MLflow UI compares them;
# the whole lock is hashed into one tag and stored in tfrepro/requirements.txt.
KEY_PACKAGES = ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "keras", "numpy", "protobuf", "h5py", "mlflow")


def package_tags(packages) -> Dict[str, str]:
    versions = dict(p.split("==", 1) for p in packages if "==" in p)
    tags = {schema.PACKAGE_PREFIX + name: versions[name] for name in KEY_PACKAGES if name in versions}
    if packages:
        lock = "".join(p + "\n" for p in packages).encode()
        tags[schema.PYTHON_LOCK] = "sha256:" + hashlib.sha256(lock).hexdigest()
    return tags


def to_tags(env: Environment) -> Dict[str, str]:
    """Tags for an MLflow run: tfrepro.* plus MLflow's own source/docker tags where known.

    `schema.COMMAND` is a JSON list (literal argv, never a shell string).
    Missing facts are left out rather than tagged "None".
    """
    tags: Dict[str, Any] = {schema.SCHEMA: env.schema, schema.VERSION: env.tfrepro_version}
    c, g, gpu, tf, py, proc = env.container, env.git, env.gpu, env.tensorflow, env.python, env.process
    if c:
        tags.update(
            {
                schema.IMAGE_REF: c.image_ref,
                schema.IMAGE_DIGEST: c.image_digest,
                schema.IMAGE_ID: c.image_id,
                schema.IMAGE_DIGEST_SOURCE: c.digest_source,
                schema.CONTAINER_RUNTIME: c.runtime or "none",
                schema.CONTAINER_DETECTED: str(c.in_container).lower(),
                schema.MLFLOW_IMAGE_URI: c.image_digest or c.image_ref,
                schema.MLFLOW_IMAGE_ID: c.image_id,
            }
        )
    if g:
        tags.update(
            {
                schema.GIT_COMMIT: g.commit,
                schema.GIT_BRANCH: g.branch,
                schema.GIT_REMOTE: g.remote_url,
                schema.GIT_DIRTY: str(g.dirty).lower(),
                schema.WORKDIR: g.workdir,
                schema.MLFLOW_GIT_COMMIT: g.commit,
                schema.MLFLOW_GIT_BRANCH: g.branch,
                schema.MLFLOW_GIT_REPO_URL: g.remote_url,
            }
        )
    if gpu:
        names = sorted({d.name for d in gpu.devices})
        tags.update(
            {
                schema.GPU_COUNT: str(gpu.count),
                schema.GPU_NAME: ", ".join(names) or None,
                schema.GPU_DRIVER: gpu.driver_version,
                schema.CUDA_DRIVER: gpu.cuda_driver,
            }
        )
    if tf:
        flags = tf.determinism or {}
        tags.update(
            {
                schema.TF_VERSION: tf.version,
                schema.CUDA_BUILD: tf.cuda_build,
                schema.CUDNN_BUILD: tf.cudnn_build,
                schema.TF_DETERMINISM: None if not tf.imported else str(bool(flags.get("op_determinism"))).lower(),
                schema.SEED: None if tf.seed is None else str(tf.seed),
            }
        )
    if py:
        tags[schema.PYTHON_VERSION] = py.version
        tags.update(package_tags(py.packages))
    if proc and proc.argv:
        tags[schema.COMMAND] = json.dumps(list(proc.argv))
        if not g:
            tags[schema.WORKDIR] = proc.cwd
    if env.system:
        tags[schema.HOSTNAME] = env.system.hostname
    if env.scheduler:
        tags[schema.SCHEDULER] = env.scheduler.kind
        tags.update({schema.SCHEDULER_PREFIX + k: v for k, v in env.scheduler.to_dict().items() if k != "kind"})
    return {k: schema.truncate(str(v)) for k, v in tags.items() if v not in (None, "")}


def from_tags(tags: Mapping[str, str]) -> Environment:
    """The partial record to_tags() leaves in a run without environment.json (e.g. one started
    with the MLflow plugin alone). Tags are untrusted text: what does not parse is left out."""
    tag = tags.get

    def flag(key: str) -> Optional[bool]:
        return None if tag(key) is None else tag(key) == "true"

    def number(key: str) -> Optional[int]:
        text = (tag(key) or "").strip()
        return int(text) if text.lstrip("-").isdigit() else None

    count = max(number(schema.GPU_COUNT) or 0, 0)
    # the tag holds the distinct models only: give each device one, so the set of models survives
    names = [n.strip() for n in (tag(schema.GPU_NAME) or "").split(",") if n.strip()]
    devices = [{"index": i, "name": names[min(i, len(names) - 1)]} for i in range(count)] if names else []
    determinism = flag(schema.TF_DETERMINISM)
    runtime = tag(schema.CONTAINER_RUNTIME)
    return Environment.from_dict(
        {
            "schema": tag(schema.SCHEMA, ""),
            "tfrepro_version": tag(schema.VERSION, ""),
            "container": {
                "in_container": bool(flag(schema.CONTAINER_DETECTED)),
                "runtime": None if runtime == "none" else runtime,
                "image_ref": tag(schema.IMAGE_REF),
                "image_digest": tag(schema.IMAGE_DIGEST),
                "image_id": tag(schema.IMAGE_ID),
                "digest_source": tag(schema.IMAGE_DIGEST_SOURCE),
            },
            "git": {
                "commit": tag(schema.GIT_COMMIT),
                "branch": tag(schema.GIT_BRANCH),
                "remote_url": tag(schema.GIT_REMOTE),
                "dirty": bool(flag(schema.GIT_DIRTY)),
                "workdir": tag(schema.WORKDIR, "."),
            }
            if tag(schema.GIT_COMMIT)
            else None,
            "gpu": {
                "count": count,
                "driver_version": tag(schema.GPU_DRIVER),
                "cuda_driver_version": cuda_int(tag(schema.CUDA_DRIVER)),
                "devices": devices,
            },
            "tensorflow": {
                "version": tag(schema.TF_VERSION),
                "cuda_build": tag(schema.CUDA_BUILD),
                "cudnn_build": tag(schema.CUDNN_BUILD),
                "seed": number(schema.SEED),
                "determinism": {} if determinism is None else {"op_determinism": determinism},
                "imported": determinism is not None,
            },
            "python": {"version": tag(schema.PYTHON_VERSION, "")},
            "system": {"hostname": tag(schema.HOSTNAME)},
            "process": {"argv": _argv(tag(schema.COMMAND)), "cwd": tag(schema.WORKDIR, "")},
            "scheduler": dict(
                {k: tag(schema.SCHEDULER_PREFIX + k) for k in SchedulerInfo.__dataclass_fields__ if k != "kind"},
                kind=tag(schema.SCHEDULER),
            )
            if tag(schema.SCHEDULER)
            else None,
            "reasons": {"record": "no %s artifact: built from the run's tags" % schema.ENVIRONMENT_JSON},
        }
    )


def _argv(command: Optional[str]) -> List[str]:
    try:
        argv = json.loads(command) if command else []
    except ValueError:
        argv = None
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        return [command] if command else []
    return argv
