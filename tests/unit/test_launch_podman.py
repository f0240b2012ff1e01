"""Podman engine: the `podman run` argv is the spec's docker line with podman's GPU form; run()
streams, returns the status and stops on SIGTERM (shown with `sh` in podman's place)."""

import os
import signal
import time

import pytest

from tfrepro.errors import SchedulerError
from tfrepro.launch import podman
from tfrepro.launch.spec import LaunchSpec, Mount, docker_argv

DIGEST = "127.0.0.1:5555/tfrepro-test@sha256:" + "ab" * 32


def test_argv_is_the_docker_line_with_podman_in_front():
    spec = LaunchSpec(
        image=DIGEST,
        command=("python", "train.py"),
        shm_size="1g",
        memory="8g",
        mounts=(Mount("/co", "/workspace", False, "repo"),),
        env={"A": "1", "MLFLOW_TRACKING_TOKEN": "s3cret"},
        labels={"tfrepro.run_id": "r1"},
    )
    argv = podman.podman_argv(spec)
    assert argv == [
        "podman",
        "run",
        "--rm",
        "--label",
        "tfrepro.run_id=r1",
        "--network",
        "host",
        "--shm-size",
        "1g",
        "--memory",
        "8g",
        "-v",
        "/co:/workspace:rw",
        "-w",
        "/workspace",
        "-e",
        "A=1",
        "-e",
        "MLFLOW_TRACKING_TOKEN",
        DIGEST,
        "python",
        "train.py",
    ]
    assert docker_argv(spec)[3:] == argv[5:]


def test_gpus_through_cdi():
    assert podman.gpu_args(None) == []
    assert podman.gpu_args("all") == ["--device", "nvidia.com/gpu=all"]
    assert podman.gpu_args("2") == ["--device", "nvidia.com/gpu=0", "--device", "nvidia.com/gpu=1"]
    spec = LaunchSpec(image=DIGEST, command=("true",), gpus="1")
    assert podman.podman_argv(spec)[:5] == ["podman", "run", "--rm", "--device", "nvidia.com/gpu=0"]


def test_repository_names_podman_qualifies():
    image = {"RepoDigests": ["docker.io/library/ubuntu@sha256:" + "0" * 64]}
    assert podman._qualified("ubuntu", image) == "docker.io/library/ubuntu"
    assert podman._qualified("127.0.0.1:5555/x", {"RepoDigests": []}) == "127.0.0.1:5555/x"


def test_run_streams_and_returns_the_exit_status():
    chunks = []
    assert podman.run(["sh", "-c", "echo one; echo two >&2; exit 3"], chunks.append) == 3
    assert b"".join(chunks) == b"one\ntwo\n"


def test_sigterm_stops_the_container_process_and_reraises():
    chunks = []

    def write(chunk):
        chunks.append(chunk)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises here

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        podman.run(["sh", "-c", "echo started; exec sleep 60"], write)
    assert chunks == [b"started\n"] and time.monotonic() - started < 10


def test_a_missing_podman_is_one_error(monkeypatch):
    monkeypatch.setattr(podman, "PODMAN", "tfrepro-no-such-podman")
    with pytest.raises(SchedulerError, match=r"^podman not found \(apt-get install podman\)$"):
        podman.inspect("x")
    with pytest.raises(SchedulerError, match="^podman not found"):
        podman.run(["tfrepro-no-such-podman", "run"], lambda chunk: None)
