"""Podman engine, the pure half: the `podman run` argv is the spec's docker line with podman's GPU form."""

from tfrepro.launch import podman as P
from tfrepro.launch import spec as S

DIGEST = "127.0.0.1:5555/tfrepro-test@sha256:" + "ab" * 32


def test_argv_is_the_docker_line_with_podman_in_front():
    spec = S.LaunchSpec(
        image=DIGEST,
        command=("python", "train.py"),
        shm_size="1g",
        memory="8g",
        mounts=(S.Mount("/co", "/workspace", False, "repo"),),
        env={"A": "1", "MLFLOW_TRACKING_TOKEN": "s3cret"},
        labels={"tfrepro.run_id": "r1"},
    )
    argv = P.podman_argv(spec)
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
    assert S.docker_argv(spec)[3:] == argv[5:]


def test_gpus_through_cdi():
    assert P.gpu_args(None) == []
    assert P.gpu_args("all") == ["--device", "nvidia.com/gpu=all"]
    assert P.gpu_args("2") == ["--device", "nvidia.com/gpu=0", "--device", "nvidia.com/gpu=1"]
    spec = S.LaunchSpec(image=DIGEST, command=("true",), gpus="1")
    assert P.podman_argv(spec)[:5] == ["podman", "run", "--rm", "--device", "nvidia.com/gpu=0"]


def test_repository_names_podman_qualifies():
    image = {"RepoDigests": ["docker.io/library/ubuntu@sha256:" + "0" * 64]}
    assert P._qualified("ubuntu", image) == "docker.io/library/ubuntu"
    assert P._qualified("127.0.0.1:5555/x", {"RepoDigests": []}) == "127.0.0.1:5555/x"
