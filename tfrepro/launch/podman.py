"""Podman: the podman CLI, for sites without a Docker daemon. Rootful or rootless alike.

`podman run` takes docker's options, so the argv is the spec's `docker run` line with
podman in front; GPUs go through CDI (`--device nvidia.com/gpu=...`, podman 4.x has no
--gpus). The image is resolved to its registry digest and pulled by digest like docker's.
Inside, the fingerprint sees /run/.containerenv: the recorded runtime is `podman`.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from dataclasses import replace
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from tfrepro import imageref
from tfrepro.errors import SchedulerError
from tfrepro.launch import commands, local_workers, signals
from tfrepro.launch.docker import Resolved, ensure_present, pick_repo_digest
from tfrepro.launch.spec import LaunchSpec, docker_argv

log = logging.getLogger(__name__)

PODMAN = "podman"
MISSING = "podman not found (apt-get install podman)"
TIMEOUT = 120
STOP_WAIT = 60  # seconds a worker's podman has to create, then stop, its container


def gpu_args(gpus: Optional[str], device_ids: Optional[Sequence[str]] = None) -> List[str]:
    if device_ids is not None:  # one worker's slice of the host's GPUs
        return [word for device in device_ids for word in ("--device", "nvidia.com/gpu=%s" % device)]
    if gpus is None:
        return []
    if gpus == "all":
        return ["--device", "nvidia.com/gpu=all"]
    return [word for index in range(int(gpus)) for word in ("--device", "nvidia.com/gpu=%d" % index)]


def podman_argv(spec: LaunchSpec, hidden: Sequence[str] = (), device_ids: Optional[Sequence[str]] = None) -> List[str]:
    """`podman run ...`: exactly what run() executes (secret values are taken by name from
    podman's environment, as with docker). `device_ids`: the GPUs of one worker."""
    argv = docker_argv(replace(spec, gpus=None), hidden)
    labels = [word for key, value in sorted(spec.labels.items()) for word in ("--label", "%s=%s" % (key, value))]
    return [PODMAN, "run", "--rm"] + gpu_args(spec.gpus, device_ids) + labels + argv[3:]


def _podman(args: Sequence[str], timeout: int = TIMEOUT) -> subprocess.CompletedProcess:
    return commands.run([PODMAN] + list(args), timeout, MISSING)


def _error(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in (result.stderr or result.stdout or "").splitlines() if line.strip()]
    return (lines[-1] if lines else "exit status %d" % result.returncode).replace("Error: ", "")[:300]


def check() -> None:
    result = _podman(["info", "--format", "{{.Host.OCIRuntime.Name}}"], timeout=60)
    if result.returncode != 0:
        raise SchedulerError("podman does not work here: %s" % _error(result))


def inspect(ref: str) -> Optional[dict]:
    result = _podman(["image", "inspect", ref])
    if result.returncode != 0:
        return None
    found = json.loads(result.stdout or "[]")
    return found[0] if found else None


def image_env(image: str) -> Dict[str, str]:
    """The image's own ENV; {} when podman does not have it."""
    found = inspect(image) or {}
    items = (found.get("Config") or {}).get("Env") or []
    return dict(item.split("=", 1) for item in items if "=" in item)


def pull(ref: str) -> None:
    """Pull, podman's progress lines logged as they come (escaped: a registry's words)."""
    process = commands.start(
        [PODMAN, "pull", ref], MISSING, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        for line in process.stderr:
            log.info(line.rstrip("\n"), extra={"bare": True})
        returncode = process.wait()
    finally:
        if process.poll() is None:  # interrupted: the pull stops with us
            process.kill()
            process.wait()
    if returncode != 0:
        raise SchedulerError("podman could not pull %s" % ref)


def resolve(ref: str) -> Resolved:
    """REF -> the digest its registry serves and the image id, as docker.resolve does; an image
    podman does not have yet is pulled first (podman has no registry-only lookup)."""
    imageref.check_image_ref(ref)
    repo, _, digest = imageref.split(ref)
    image = inspect(ref)
    if image is None:
        pull(ref)
        image = inspect(ref)
        if image is None:
            raise SchedulerError("podman pulled %s but does not have it" % ref)
    found = ref if digest else pick_repo_digest(image.get("RepoDigests"), _qualified(repo, image))
    return Resolved(ref, found, "sha256:" + image["Id"] if image.get("Id") else None)


def _qualified(repo: str, image: dict) -> str:
    """podman names Docker Hub images docker.io/library/x: match the repository either way."""
    for repo_digest in image.get("RepoDigests") or ():
        name = repo_digest.rsplit("@", 1)[0]
        if name == repo or name.endswith("/" + repo):
            return name
    return repo


def ensure_image(image: str) -> None:
    ensure_present(image, inspect, pull, SchedulerError, store="podman")


def run(
    argv: Sequence[str],
    write: Callable[[bytes], None],
    env: Optional[Mapping[str, str]] = None,
    label: Optional[str] = None,
) -> int:
    """Run the container, stream its output to `write`, return its exit status. Ctrl-C or SIGTERM
    stops the container labelled `label` (podman stop: SIGTERM, SIGKILL 10 s later; a training as
    the container's PID 1 ignores SIGTERM), then re-raises KeyboardInterrupt."""
    process = commands.start(argv, MISSING, env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    with signals.terminating():
        try:
            for chunk in iter(lambda: process.stdout.read1(65536), b""):
                write(chunk)
            return process.wait()
        except KeyboardInterrupt:
            if label:
                _stop_labelled([label])
            process.terminate()
            process.wait()
            raise


def _stop_labelled(labels: Sequence[str]) -> int:
    """podman stop the containers carrying every one of `labels` (KEY=VALUE); how many there were."""
    filters = [word for label in labels for word in ("--filter", "label=" + label)]
    container_ids = _podman(["ps", "-q"] + filters).stdout.split()
    if container_ids:
        _podman(["stop", "--time", "10"] + container_ids, timeout=60)
    return len(container_ids)


class _Worker:
    """One `podman run` of a multi-worker launch, for local_workers.supervise()."""

    def __init__(self, index: int, process: subprocess.Popen, labels: Sequence[str]):
        self.index, self.process, self.labels = index, process, labels

    def chunks(self):
        return iter(lambda: self.process.stdout.read1(65536), b"")

    def wait(self) -> int:
        return self.process.wait()

    def stop(self) -> None:
        """Stop its container; one podman has not created yet is stopped once it exists."""
        deadline = time.monotonic() + STOP_WAIT
        while self.process.poll() is None and time.monotonic() < deadline:
            if _stop_labelled(self.labels) == 0:
                time.sleep(0.5)
                continue
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def run_workers(
    argvs: Sequence[Sequence[str]],
    write: Callable[[bytes], None],
    env: Optional[Mapping[str, str]],
    labels: Sequence[Sequence[str]],
    timeout_s: Optional[float] = None,
    on_facts: Optional[Callable[[Dict[str, object]], None]] = None,
) -> int:
    """Start one `podman run` per worker (`labels[i]` find worker i's container), follow them
    as one job (local_workers.supervise); a worker's podman still running at the end is stopped."""
    workers: List[_Worker] = []
    try:
        for index, argv in enumerate(argvs):
            process = commands.start(argv, MISSING, env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            workers.append(_Worker(index, process, labels[index]))
        return local_workers.supervise(workers, write, timeout_s, on_facts=on_facts)
    finally:
        for worker in workers:
            if worker.process.poll() is not None:
                continue
            try:
                worker.stop()
            except Exception:
                worker.process.kill()
