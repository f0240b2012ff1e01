"""`tfrepro doctor`: is this machine ready to record and replay runs?

gather() does all the I/O into a Facts value; each check_* is a pure function over Facts,
so the checks are tested with recorded facts (e.g. the H200 fixture), no GPU needed.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from tfrepro import schema
from tfrepro.environment import ContainerInfo, GpuInfo
from tfrepro.versions import cuda_int, version_tuple

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
# TensorFlow 2.9's pins (its setup.py): numpy>=1.20, protobuf>=3.9.2,<3.20
RANGES = {"numpy": ("1.20", "1.24"), "protobuf": ("3.9.2", "3.20")}
DOCTOR_EXPERIMENT = "tfrepro-doctor"
TF29_CUDA = "11.2"  # the CUDA tensorflow==2.9.* wheels are built with


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # pass | warn | fail | skip
    message: str
    fix: str = ""

    def to_dict(self) -> Dict[str, str]:
        return {"name": self.name, "status": self.status, "message": self.message, "fix": self.fix}


class _Verdicts:
    """The Checks one check_* function returns, its name said once."""

    def __init__(self, name: str):
        self.name = name

    def passed(self, message: str) -> Check:
        return Check(self.name, PASS, message)

    def skipped(self, message: str) -> Check:
        return Check(self.name, SKIP, message)

    def warned(self, message: str, fix: str) -> Check:
        return Check(self.name, WARN, message, fix)

    def failed(self, message: str, fix: str) -> Check:
        return Check(self.name, FAIL, message, fix)


# the checks doctor runs, by the name it shows (check_versions adds one per package)
TENSORFLOW, GPUS, DRIVER_CUDA, DOCKER, TRACKING, GIT, IMAGE = map(
    _Verdicts, ("tensorflow", "gpus", "driver/cuda", "docker", "tracking", "git", "image")
)


@dataclass(frozen=True)
class Facts:
    tf_version: Optional[str] = None
    tf_error: Optional[str] = None  # why `import tensorflow` failed
    tf_cuda_build: Optional[str] = None  # "11.2"
    tf_cudnn_build: Optional[str] = None
    tf_gpus: int = 0
    gpu: Optional[GpuInfo] = None
    gpu_reason: Optional[str] = None
    versions: Dict[str, Optional[str]] = field(default_factory=dict)  # distribution -> version
    docker_runtimes: Optional[Tuple[str, ...]] = None  # None: daemon not reachable
    docker_error: Optional[str] = None
    container: Optional[ContainerInfo] = None
    container_reason: Optional[str] = None
    tracking_uri: str = ""
    tracking_error: Optional[str] = None  # None: reachable and writable
    git_root: Optional[str] = None
    git_changes: Tuple[str, ...] = ()  # `git status --porcelain` lines
    git_error: Optional[str] = None


# ---- checks: pure ----------------------------------------------------------------------------


def check_tensorflow(facts: Facts) -> Check:
    if facts.tf_error:
        return TENSORFLOW.failed(
            "TensorFlow does not import: %s" % facts.tf_error,
            "pip install 'tensorflow==2.9.*' (or run inside nvcr.io/nvidia/tensorflow:22.07-tf2-py3)",
        )
    built = ", ".join(
        x
        for x in (
            facts.tf_cuda_build and "CUDA " + facts.tf_cuda_build,
            facts.tf_cudnn_build and "cuDNN " + facts.tf_cudnn_build,
        )
        if x
    )
    message = "TensorFlow %s imports%s" % (facts.tf_version, " (built with %s)" % built if built else "")
    if version_tuple(facts.tf_version)[:2] != (2, 9):
        return TENSORFLOW.warned(message + "; tfrepro targets 2.9", "pip install 'tensorflow==2.9.*'")
    return TENSORFLOW.passed(message)


def check_gpus(facts: Facts) -> Check:
    nvml = facts.gpu.count if facts.gpu else 0
    if facts.tf_error:
        devices = facts.gpu.devices if facts.gpu else ()
        seen = " (%s)" % ", ".join(sorted({d.name for d in devices if d.name})) if nvml else ""
        return GPUS.skipped(
            "NVML sees %d GPU(s)%s; TensorFlow does not import, so whether it can use them is unknown" % (nvml, seen),
        )
    if not nvml:
        reason = (facts.gpu.reason if facts.gpu else None) or facts.gpu_reason or "no GPU"
        if facts.tf_gpus:
            return GPUS.warned(
                "TensorFlow sees %d GPU(s) but NVML none (%s)" % (facts.tf_gpus, reason),
                "install nvidia-ml-py, or check the NVIDIA driver",
            )
        return GPUS.warned(
            "no NVIDIA GPU here: runs here train on the CPU (%s)" % reason,
            "run on a GPU machine, with `docker run --gpus all` when in a container",
        )
    if facts.tf_gpus == nvml:
        return GPUS.passed("TensorFlow sees the %d GPU(s) NVML sees" % nvml)
    if facts.tf_gpus == 0:
        return GPUS.failed(
            "NVML sees %d GPU(s), TensorFlow none" % nvml,
            "TensorFlow cannot load CUDA/cuDNN or is a CPU build: use the NGC image "
            "or a CUDA 11.2 + cuDNN 8.1 install matching tensorflow 2.9",
        )
    visible = facts.gpu.cuda_visible_devices if facts.gpu else None
    if visible is not None:
        return GPUS.passed("TensorFlow sees %d of %d GPUs (CUDA_VISIBLE_DEVICES=%s)" % (facts.tf_gpus, nvml, visible))
    return GPUS.warned(
        "TensorFlow sees %d GPU(s), NVML %d" % (facts.tf_gpus, nvml),
        "check NVIDIA_VISIBLE_DEVICES / --gpus and the MIG setup",
    )


def check_driver_cuda(facts: Facts) -> Check:
    if not facts.gpu or not facts.gpu.count:
        return DRIVER_CUDA.skipped("no GPU driver to check")
    built = facts.tf_cuda_build or (TF29_CUDA if facts.tf_error else None)  # no TF: what its wheels need
    need = cuda_int(built)
    have = facts.gpu.cuda_driver_version
    if not need or not have:
        return DRIVER_CUDA.skipped("driver %s: TensorFlow's build CUDA unknown" % (facts.gpu.driver_version or "?"))
    message = "driver %s supports CUDA %s; %s CUDA %s" % (
        facts.gpu.driver_version,
        facts.gpu.cuda_driver,
        "tensorflow 2.9's wheels need" if facts.tf_error else "TensorFlow was built with",
        built,
    )
    if have >= need:
        return DRIVER_CUDA.passed(message)
    return DRIVER_CUDA.failed(message, "upgrade the NVIDIA driver to one supporting CUDA %s or newer" % built)


def check_versions(facts: Facts) -> List[Check]:
    out = []
    for name, (low, high) in sorted(RANGES.items()):
        check = _Verdicts(name)
        have = facts.versions.get(name)
        wanted = ">=%s,<%s" % (low, high)
        if have and version_tuple(low) <= version_tuple(have) < version_tuple(high):
            out.append(check.passed("%s %s is within TF 2.9's range %s" % (name, have, wanted)))
            continue
        if have:
            message = "%s %s is outside TF 2.9's range %s" % (name, have, wanted)
        else:
            message = "%s is not installed (TF 2.9 needs %s)" % (name, wanted)
        out.append(check.failed(message, "pip install '%s%s'" % (name, wanted)))
    return out


def check_docker(facts: Facts) -> Check:
    in_container = bool(facts.container and facts.container.in_container)
    if facts.docker_runtimes is None:
        where = "in a container: replay from the host" if in_container else "needed by run and replay"
        verdict = DOCKER.warned if in_container else DOCKER.failed
        return verdict(
            "Docker daemon not reachable (%s): %s" % (facts.docker_error or "no answer", where),
            "start dockerd, or set DOCKER_HOST; add your user to the docker group",
        )
    runtimes = ", ".join(facts.docker_runtimes) or "none"
    gpus = bool(facts.gpu and facts.gpu.count)
    if gpus and "nvidia" not in facts.docker_runtimes:
        # `--gpus` can still work through the toolkit's hook, so this is a warning, not a failure
        return DOCKER.warned(
            "Docker is reachable but has no nvidia runtime (runtimes: %s)" % runtimes,
            "install nvidia-container-toolkit, then `nvidia-ctk runtime configure "
            "--runtime=docker` and restart dockerd",
        )
    return DOCKER.passed("Docker is reachable (runtimes: %s)" % runtimes)


def check_tracking(facts: Facts) -> Check:
    if facts.tracking_error:
        return TRACKING.failed(
            "%s: %s" % (facts.tracking_uri, facts.tracking_error),
            "start the server or set MLFLOW_TRACKING_URI (sqlite: a writable directory)",
        )
    return TRACKING.passed("%s is reachable and writable" % facts.tracking_uri)


def check_git(facts: Facts) -> Check:
    if facts.git_error or not facts.git_root:
        return GIT.warned(
            "not in a git repository (%s): runs record no commit" % (facts.git_error or "no repository"),
            "run from a git checkout of your training code",
        )
    if facts.git_changes:
        return GIT.warned(
            "%s has %d uncommitted change(s): each run logs the patch "
            "(%s) and replay applies it" % (facts.git_root, len(facts.git_changes), schema.GIT_PATCH),
            "commit to make runs point at a commit alone",
        )
    return GIT.passed("%s is clean" % facts.git_root)


def check_image(facts: Facts) -> Check:
    container = facts.container
    if container is None:
        return IMAGE.warned(
            "could not tell whether this is a container (%s)" % (facts.container_reason or "unknown"),
            "start training with `tfrepro run`",
        )
    if not container.in_container:
        return IMAGE.warned(
            "not in a container: runs started here record no image",
            "start training with `tfrepro run IMAGE -- python train.py`",
        )
    if container.image_digest:
        return IMAGE.passed("image digest known (%s): %s" % (container.digest_source, container.image_digest))
    return IMAGE.warned(
        "in a container (%s) but the image digest is unknown"
        % (container.runtime or ", ".join(container.evidence) or "?"),
        "start it with `tfrepro run`, or mount /var/run/docker.sock read-only",
    )


def run_checks(facts: Facts) -> List[Check]:
    return (
        [check_tensorflow(facts), check_gpus(facts), check_driver_cuda(facts)]
        + check_versions(facts)
        + [check_docker(facts), check_tracking(facts), check_git(facts), check_image(facts)]
    )


# ---- gather: the I/O ---------------------------------------------------------------------------


def _tensorflow() -> Dict[str, Any]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except Exception as exc:  # ImportError, or a broken CUDA library
        return {"tf_error": "%s: %s" % (type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")}
    build = dict(tf.sysconfig.get_build_info())
    return {
        "tf_version": tf.__version__,
        "tf_cuda_build": build.get("cuda_version"),
        "tf_cudnn_build": build.get("cudnn_version"),
        "tf_gpus": len(tf.config.list_physical_devices("GPU")),
    }


def _versions() -> Dict[str, Any]:
    from importlib import metadata

    out: Dict[str, Optional[str]] = {}
    for name in RANGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return {"versions": out}


def _docker() -> Dict[str, Any]:
    try:
        import docker

        client = docker.from_env(timeout=5)
        try:
            info = client.info()
        finally:
            client.close()
        return {"docker_runtimes": tuple(sorted(info.get("Runtimes") or {}))}
    except Exception as exc:
        return {"docker_error": str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}


def _tracking(tracking_uri: Optional[str] = None) -> Dict[str, Any]:
    from tfrepro.redact import strip_url_credentials

    try:
        import mlflow  # a required dependency, but doctor must still answer without it
    except ImportError as exc:
        uri = tracking_uri or os.environ.get(schema.ENV_MLFLOW_TRACKING_URI) or "(default)"
        return {
            "tracking_uri": strip_url_credentials(uri),
            "tracking_error": "mlflow cannot be imported (%s): pip install tfrepro" % exc,
        }
    from tfrepro.tracking import record as run_record
    from tfrepro.tracking.backend import short_http

    with short_http(run_record.READ_TIMEOUT, 0, quiet=True, keep_user=True):
        real_uri = tracking_uri or mlflow.get_tracking_uri()
        uri = strip_url_credentials(real_uri)  # what doctor prints and --json keeps
        if uri.startswith("sqlite:"):
            path = uri.split(":///", 1)[-1] if ":///" in uri else ""
            folder = os.path.dirname(os.path.abspath(path)) if path else ""
            if not folder or not os.path.isdir(folder):
                return {"tracking_uri": uri, "tracking_error": "directory %s does not exist" % folder}
            if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
                return {"tracking_uri": uri, "tracking_error": "%s is not writable" % (path or folder)}
            return {"tracking_uri": uri}
        try:
            from tfrepro.tracking import experiments

            client = run_record.client(real_uri)
            experiment_id = experiments.experiment_id(client, DOCTOR_EXPERIMENT)
            run = client.create_run(experiment_id, run_name="doctor-%s" % uuid.uuid4().hex[:8])
            client.delete_run(run.info.run_id)
        except Exception as exc:
            return {"tracking_uri": uri, "tracking_error": str(run_record.tracking_error(exc, "a test run"))}
        return {"tracking_uri": uri}


def _git(cwd: Optional[str] = None) -> Dict[str, Any]:
    def git(*args):
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30)

    try:
        top = git("rev-parse", "--show-toplevel")
        if top.returncode != 0:
            return {"git_error": (top.stderr.strip().splitlines() or ["not a git repository"])[0]}
        status = git("status", "--porcelain")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"git_error": str(exc)}
    return {"git_root": top.stdout.strip(), "git_changes": tuple(status.stdout.splitlines())}


def _fingerprint() -> Dict[str, Any]:
    from tfrepro.fingerprint import collect

    env = collect(["gpu", "container"])
    return {
        "gpu": env.gpu,
        "gpu_reason": env.reasons.get("gpu"),
        "container": env.container,
        "container_reason": env.reasons.get("container"),
    }


def gather(cwd: Optional[str] = None, tracking_uri: Optional[str] = None) -> Facts:
    facts: Dict[str, Any] = {}
    for part in (_fingerprint, _versions, _tensorflow, _docker, lambda: _tracking(tracking_uri), lambda: _git(cwd)):
        facts.update(part())
    return Facts(**facts)
