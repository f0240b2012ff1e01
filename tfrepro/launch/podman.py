"""Podman: the podman CLI, for sites without a Docker daemon. Rootful or rootless alike.

`podman run` takes docker's options, so the argv is the spec's `docker run` line with
podman in front; GPUs go through CDI (`--device nvidia.com/gpu=...`, podman 4.x has no
--gpus). The image is resolved to its registry digest and pulled by digest like docker's.
Inside, the fingerprint sees /run/.containerenv: the recorded runtime is `podman`.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import replace
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from tfrepro import imageref
from tfrepro.errors import SchedulerError
from tfrepro.launch import spec as S
from tfrepro.launch.docker import Resolved, pick_repo_digest

PODMAN = "podman"
TIMEOUT = 120


def gpu_args(gpus: Optional[str]) -> List[str]:
    if gpus is None:
        return []
    if gpus == "all":
        return ["--device", "nvidia.com/gpu=all"]
    return [w for i in range(int(gpus)) for w in ("--device", "nvidia.com/gpu=%d" % i)]


def podman_argv(spec: S.LaunchSpec, hidden: Sequence[str] = ()) -> List[str]:
    """`podman run ...`: exactly what run() executes (secret values are taken by name from
    podman's environment, as with docker)."""
    argv = S.docker_argv(replace(spec, gpus=None), hidden)
    labels = [w for k, v in sorted(spec.labels.items()) for w in ("--label", "%s=%s" % (k, v))]
    return [PODMAN, "run", "--rm"] + gpu_args(spec.gpus) + labels + argv[3:]


def _podman(args: Sequence[str], timeout: int = TIMEOUT) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([PODMAN] + list(args), capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise SchedulerError("podman not found (apt-get install podman)") from None
    except subprocess.TimeoutExpired:
        raise SchedulerError("podman %s did not answer within %d s" % (args[0], timeout)) from None


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


def pull(ref: str, out=None) -> None:
    """Pull, its progress shown on stderr."""
    out = out or sys.stderr
    try:
        result = subprocess.run([PODMAN, "pull", ref], stdout=subprocess.PIPE, stderr=out, text=True)
    except FileNotFoundError:
        raise SchedulerError("podman not found (apt-get install podman)") from None
    if result.returncode != 0:
        raise SchedulerError("podman could not pull %s" % ref)


def resolve(ref: str, out=None) -> Resolved:
    """REF -> the digest its registry serves and the image id, as docker.resolve does; an image
    podman does not have yet is pulled first (podman has no registry-only lookup)."""
    imageref.check_image_ref(ref)
    repo, _, digest = imageref.split(ref)
    image = inspect(ref)
    if image is None:
        pull(ref, out)
        image = inspect(ref)
        if image is None:
            raise SchedulerError("podman pulled %s but does not have it" % ref)
    found = ref if digest else pick_repo_digest(image.get("RepoDigests"), _qualified(repo, image))
    return Resolved(ref, found, "sha256:" + image["Id"] if image.get("Id") else None)


def _qualified(repo: str, image: dict) -> str:
    """podman names Docker Hub images docker.io/library/x: match the repository either way."""
    for item in image.get("RepoDigests") or ():
        name = item.rsplit("@", 1)[0]
        if name == repo or name.endswith("/" + repo):
            return name
    return repo


def ensure_image(image: str, log: Callable[[str], None], out=None) -> None:
    if inspect(image) is not None:
        log("image %s is present (podman)" % image)
        return
    if imageref.is_image_id(image):
        raise SchedulerError("image %s is not in podman's store (the run was replayable on its host only)" % image)
    pull(image, out)


def run(
    argv: Sequence[str],
    write: Callable[[bytes], None],
    env: Optional[Mapping[str, str]] = None,
    label: Optional[str] = None,
) -> int:
    """Run the container, stream its output, return its exit status. Ctrl-C or SIGTERM stops
    the container labelled `label` (podman stop: SIGTERM, SIGKILL 10 s later; a training as
    the container's PID 1 ignores SIGTERM), then re-raises KeyboardInterrupt."""
    try:
        proc = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise SchedulerError("podman not found (apt-get install podman)") from None
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if _main_thread() else None
    try:
        for chunk in iter(lambda: proc.stdout.read1(65536), b""):
            write(chunk)
        return proc.wait()
    except KeyboardInterrupt:
        if label:
            found = _podman(["ps", "-q", "--filter", "label=" + label]).stdout.split()
            if found:
                _podman(["stop", "--time", "10"] + found, timeout=60)
        proc.terminate()
        proc.wait()
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt()


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
