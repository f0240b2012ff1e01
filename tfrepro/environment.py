"""The environment record: one immutable value, its JSON form and its MLflow tags.

The tag schema (names and value limits) lives here and nowhere else.
Python 3.8 compatible: it runs inside the users' NGC containers.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import types
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

SCHEMA_VERSION = "1"

# MLflow 2.17+ accepts 8000 characters per tag value, older servers and stores 5000: use the lower.
MAX_TAG_VALUE = 5000
TRUNCATED = "...[truncated]"


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
    index: int = 0
    name: str = ""
    uuid: str = ""
    memory_total_bytes: Optional[int] = None
    compute_capability: Optional[str] = None  # "9.0"
    mig_mode: Optional[str] = None  # "enabled" | "disabled" | None when unsupported
    pci_bus_id: Optional[str] = None


@dataclass(frozen=True)
class GpuInfo(_Record):
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
        return cuda_version_string(self.cuda_driver_version)


@dataclass(frozen=True)
class TensorflowInfo(_Record):
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
    version: str = ""
    implementation: str = ""
    executable: str = ""
    packages: Tuple[str, ...] = ()  # sorted "name==version"


@dataclass(frozen=True)
class SystemInfo(_Record):
    os: Optional[str] = None
    kernel: Optional[str] = None
    machine: Optional[str] = None
    cpu_model: Optional[str] = None
    cpu_count: Optional[int] = None
    memory_bytes: Optional[int] = None
    hostname: Optional[str] = None


@dataclass(frozen=True)
class ProcessInfo(_Record):
    argv: Tuple[str, ...] = ()  # full command, interpreter first: ("python", "train.py", ...)
    cwd: str = ""
    entry_script: Optional[str] = None
    python_executable: str = ""


@dataclass(frozen=True)
class SchedulerInfo(_Record):
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
        data = _thaw(self)
        if data.get("git"):
            data["git"].pop("patch", None)  # stored as tfrepro/git.patch
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Environment":
        return cls.from_dict(json.loads(text))

    def requirements(self) -> str:
        return "".join(p + "\n" for p in (self.python.packages if self.python else ()))

    def to_tags(self) -> Dict[str, str]:
        return to_tags(self)


def cuda_version_string(value: Optional[int]) -> Optional[str]:
    """NVML/CUDA integer version to text: 13000 -> "13.0", 11070 -> "11.7"."""
    if not value:
        return None
    return "%d.%d" % (value // 1000, (value % 1000) // 10)


def truncate(value: str, limit: int = MAX_TAG_VALUE) -> str:
    if len(value) <= limit:
        return value
    return value[: limit - len(TRUNCATED)] + TRUNCATED


# Public tag schema. Documented in README.md ("Tags"); users filter on these in the MLflow UI.
TAG_KEYS = (
    "tfrepro.schema",
    "tfrepro.version",
    "tfrepro.image.ref",
    "tfrepro.image.digest",
    "tfrepro.image.id",
    "tfrepro.image.digest_source",
    "tfrepro.container.runtime",
    "tfrepro.container.detected",
    "tfrepro.git.commit",
    "tfrepro.git.branch",
    "tfrepro.git.remote",
    "tfrepro.git.dirty",
    "tfrepro.gpu.count",
    "tfrepro.gpu.name",
    "tfrepro.gpu.driver",
    "tfrepro.cuda.driver",
    "tfrepro.cuda.build",
    "tfrepro.cudnn.build",
    "tfrepro.tf.version",
    "tfrepro.tf.determinism",
    "tfrepro.seed",
    "tfrepro.python.version",
    "tfrepro.python.lock",  # sha256 of the sorted name==version lock
    # "tfrepro.pkg.<name>": version of each of KEY_PACKAGES that is installed
    "tfrepro.command",
    "tfrepro.workdir",
    "tfrepro.hostname",
    "tfrepro.scheduler",  # slurm | kubernetes
    "tfrepro.scheduler.job_id",
    "tfrepro.scheduler.job_name",
    "tfrepro.scheduler.nodes",
    "tfrepro.scheduler.partition",
    "tfrepro.scheduler.cluster",
    "tfrepro.scheduler.account",
    "tfrepro.scheduler.pod",
    "tfrepro.scheduler.namespace",
    # written by other parts: the callback, `tfrepro run` and `tfrepro replay`
    "tfrepro.model.hash",
    "tfrepro.model.uri",
    "tfrepro.flush_seconds",  # time the callback's final flush took
    "tfrepro.local_run_id",  # on a run `tfrepro sync` created for a run spooled while the server was down
    "tfrepro.replayable",
    "tfrepro.replay_of",
    "tfrepro.replay.verdict",
    "tfrepro.replay.detail",
    "tfrepro.launch.gpus",
    "tfrepro.launch.mounts",
    "tfrepro.launch.shm_size",
    "tfrepro.launch.memory",
    "tfrepro.launch.network",
    "tfrepro.launch.workdir",
    "tfrepro.launch.env_names",
)


# Packages most likely to change results get a tag each, so the MLflow UI compares them;
# the whole lock is hashed into one tag and stored in tfrepro/requirements.txt.
KEY_PACKAGES = ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "keras", "numpy", "protobuf", "h5py", "mlflow")


def package_tags(packages) -> Dict[str, str]:
    versions = dict(p.split("==", 1) for p in packages if "==" in p)
    tags = {"tfrepro.pkg." + name: versions[name] for name in KEY_PACKAGES if name in versions}
    if packages:
        lock = "".join(p + "\n" for p in packages).encode()
        tags["tfrepro.python.lock"] = "sha256:" + hashlib.sha256(lock).hexdigest()
    return tags


def to_tags(env: Environment) -> Dict[str, str]:
    """Tags for an MLflow run: tfrepro.* plus MLflow's own source/docker tags where known.

    `tfrepro.command` is a JSON list (literal argv, never a shell string).
    Missing facts are left out rather than tagged "None".
    """
    tags: Dict[str, Any] = {"tfrepro.schema": env.schema, "tfrepro.version": env.tfrepro_version}
    c, g, gpu, tf, py, proc = env.container, env.git, env.gpu, env.tensorflow, env.python, env.process
    if c:
        tags.update({
            "tfrepro.image.ref": c.image_ref,
            "tfrepro.image.digest": c.image_digest,
            "tfrepro.image.id": c.image_id,
            "tfrepro.image.digest_source": c.digest_source,
            "tfrepro.container.runtime": c.runtime or "none",
            "tfrepro.container.detected": str(c.in_container).lower(),
            "mlflow.docker.image.uri": c.image_digest or c.image_ref,
            "mlflow.docker.image.id": c.image_id,
        })
    if g:
        tags.update({
            "tfrepro.git.commit": g.commit,
            "tfrepro.git.branch": g.branch,
            "tfrepro.git.remote": g.remote_url,
            "tfrepro.git.dirty": str(g.dirty).lower(),
            "tfrepro.workdir": g.workdir,
            "mlflow.source.git.commit": g.commit,
            "mlflow.source.git.branch": g.branch,
            "mlflow.source.git.repoURL": g.remote_url,
        })
    if gpu:
        names = sorted({d.name for d in gpu.devices})
        tags.update({
            "tfrepro.gpu.count": str(gpu.count),
            "tfrepro.gpu.name": ", ".join(names) or None,
            "tfrepro.gpu.driver": gpu.driver_version,
            "tfrepro.cuda.driver": gpu.cuda_driver,
        })
    if tf:
        flags = tf.determinism or {}
        tags.update({
            "tfrepro.tf.version": tf.version,
            "tfrepro.cuda.build": tf.cuda_build,
            "tfrepro.cudnn.build": tf.cudnn_build,
            "tfrepro.tf.determinism": None if not tf.imported else str(bool(flags.get("op_determinism"))).lower(),
            "tfrepro.seed": None if tf.seed is None else str(tf.seed),
        })
    if py:
        tags["tfrepro.python.version"] = py.version
        tags.update(package_tags(py.packages))
    if proc and proc.argv:
        tags["tfrepro.command"] = json.dumps(list(proc.argv))
        if not g:
            tags["tfrepro.workdir"] = proc.cwd
    if env.system:
        tags["tfrepro.hostname"] = env.system.hostname
    if env.scheduler:
        tags["tfrepro.scheduler"] = env.scheduler.kind
        tags.update({"tfrepro.scheduler." + k: v for k, v in env.scheduler.to_dict().items() if k != "kind"})
    return {k: truncate(str(v)) for k, v in tags.items() if v not in (None, "")}
