"""Container source: detection and image-digest parsing on recorded docker/podman/k8s outputs."""

import json
import os
import socket
from pathlib import Path

import pytest

from tfrepro.fingerprint import container

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
C = FIXTURES / "container"
PROBE = json.loads((FIXTURES / "gpu" / "h200-driver580" / "probe.json").read_text())
DOCKER_ID = "32265fa0f119a609ffdbb563f056c881aef4789349bfbec5b7e3a9585920e4e8"
PUSHED = "127.0.0.1:5555/h1-fp-fixture@sha256:f8c0573e7123a4da8b6bbe5d58278371da2cb749140b4227c827924d07348ea8"
DEPS_ID = "sha256:175cc2bd6affc780c59bdf6a322a65ce8dac184ee3faaafb2391402a5d055c89"
DIGEST = "nvcr.io/nvidia/tensorflow@sha256:" + "ab" * 32


def text(name):
    return (C / name).read_text()


def load(name):
    return json.loads((C / name).read_text())


def env_lines(block):
    return dict(line.split("=", 1) for line in block.splitlines() if "=" in line)


def test_h200_sandbox_reports_dockerenv_and_a_cgroup_without_id_honestly():
    raw = {
        "dockerenv": True,
        "containerenv": None,
        "cgroup": PROBE["cgroup"]["stdout"],
        "mountinfo": "",
        "env": env_lines(PROBE["env_nvidia"]["stdout"]),
    }
    info, reason = container.resolve(raw)
    assert info.in_container is True
    assert info.evidence == ("/.dockerenv", "cgroup v2 without container id")
    assert info.container_id is None
    assert info.runtime == "docker"
    assert info.image_digest is None and "TFREPRO_IMAGE_DIGEST not set" in reason
    assert info.ngc["CUDA_VERSION"] == "13.0.2"
    assert info.ngc["NCCL_VERSION"] == "2.28.3-1"
    assert info.ngc["NVIDIA_REQUIRE_CUDA"].startswith("cuda>=13.0")
    assert "CUDA_HOME" not in info.ngc and "LD_LIBRARY_PATH" not in info.ngc


@pytest.mark.parametrize(
    "name, expected, hint, version",
    [
        ("docker-cgroup-v1.txt", DOCKER_ID, "docker", 1),
        (
            "cgroup-v2-docker-systemd.txt",
            "55157c7ce4a0d2c55baea942bac8235210009e659376ba138047e66bec2eb952",
            "docker",
            2,
        ),
        (
            "cgroup-v2-kubernetes.txt",
            "97d6b43e81bc124af670c4237dc8c05a592bc4d52a8eeae278fc8144830c7329",
            "kubernetes",
            2,
        ),
        (
            "cgroup-v1-kubernetes.txt",
            "97d6b43e81bc124af670c4237dc8c05a592bc4d52a8eeae278fc8144830c7329",
            "kubernetes",
            1,
        ),
        ("cgroup-v2-private.txt", None, None, 2),
    ],
)
def test_parse_cgroup(name, expected, hint, version):
    assert container.parse_cgroup(text(name)) == (expected, hint, version)


def test_parse_mountinfo_docker_and_podman():
    assert container.parse_mountinfo(text("docker-mountinfo.txt")) == (DOCKER_ID, "docker")
    podman_id = "790576333a6878c8dfae2172a05527aedf32d7defb7dc120a60161c184e441a2"
    assert container.parse_mountinfo(text("podman-mountinfo.txt")) == (podman_id, "podman")


def test_mountinfo_ignores_a_host_docker_data_dir_mounted_elsewhere():
    line = (
        "42 27 254:0 /var/lib/docker/containers/%s/hostname /var/lib/docker/containers/%s/hostname rw - ext4"
        " /dev/vda rw\n" % (DOCKER_ID, DOCKER_ID)
    )
    assert container.parse_mountinfo(line) == (None, None)


def test_cgroup_v2_private_namespace_falls_back_to_mountinfo():
    raw = {"dockerenv": True, "cgroup": text("cgroup-v2-private.txt"), "mountinfo": text("docker-mountinfo.txt")}
    found = container.detect(raw)
    assert found["container_id"] == DOCKER_ID
    assert found["evidence"] == ["/.dockerenv", "mountinfo container id", "cgroup v2 without container id"]


def test_bare_host_is_not_a_container():
    raw = {
        "dockerenv": False,
        "containerenv": None,
        "cgroup": "0::/user.slice/user-1000.slice/session-2.scope\n",
        "mountinfo": "",
        "env": {"PATH": "/usr/bin"},
    }
    info, reason = container.resolve(raw)
    assert info.in_container is False and info.evidence == () and info.runtime is None
    assert reason is None


def test_launcher_env_wins_and_is_validated():
    env = {
        "TFREPRO_IMAGE_REF": "nvcr.io/nvidia/tensorflow:22.07-tf2-py3",
        "TFREPRO_IMAGE_DIGEST": DIGEST,
        "TFREPRO_IMAGE_ID": "cd" * 32,
    }
    raw = {
        "dockerenv": True,
        "cgroup": text("docker-cgroup-v1.txt"),
        "env": env,
        "docker": {
            "container": load("docker-inspect-container-by-digest.json"),
            "image": load("docker-inspect-image.json"),
        },
    }
    info, reason = container.resolve(raw)
    assert (info.image_digest, info.image_id, info.digest_source) == (DIGEST, "sha256:" + "cd" * 32, "launcher")
    assert info.image_ref == "nvcr.io/nvidia/tensorflow:22.07-tf2-py3"
    assert reason is None


@pytest.mark.parametrize("bad", ["nvcr.io/x@sha256:123", "sha256:" + "ab" * 32, "x@sha256:" + "AB" * 32, "x@md5:00"])
def test_launcher_rejects_malformed_digests(bad):
    found = container.from_launcher({"TFREPRO_IMAGE_DIGEST": bad})
    assert "image_digest" not in found and "not repo@sha256" in found["error"]


def test_docker_inspect_of_a_container_started_by_digest():
    raw = {
        "dockerenv": True,
        "cgroup": text("docker-cgroup-v1.txt"),
        "env": {},
        "docker": {
            "container": load("docker-inspect-container-by-digest.json"),
            "image": load("docker-inspect-image.json"),
        },
    }
    info, reason = container.resolve(raw)
    assert info.digest_source == "docker-socket"
    assert info.image_digest == PUSHED and info.image_ref == PUSHED
    assert info.image_id == DEPS_ID
    assert reason is None


def test_docker_inspect_of_a_tagged_container_picks_the_matching_repo_digest():
    image = load("docker-inspect-image.json")
    image["RepoDigests"] = ["other.io/x@sha256:" + "11" * 32] + image["RepoDigests"]
    assert container.pick_digest("127.0.0.1:5555/h1-fp-fixture:deps", image["RepoDigests"]) == PUSHED
    assert container.pick_digest("unrelated:1", image["RepoDigests"]) == "other.io/x@sha256:" + "11" * 32
    assert container.pick_digest("x:1", []) is None


def test_local_image_without_repo_digest_keeps_the_image_id_and_says_why():
    raw = {
        "dockerenv": True,
        "cgroup": text("docker-cgroup-v1.txt"),
        "env": {},
        "docker": {
            "container": load("docker-inspect-container.json"),
            "image": load("docker-inspect-image-local.json"),
        },
    }
    info, reason = container.resolve(raw)
    assert info.container_id == DOCKER_ID
    assert info.image_ref == "tfrepro-deps:191c38dbd090"
    assert info.image_id == DEPS_ID and info.image_digest is None
    assert info.digest_source == "docker-socket"
    assert "never pushed" in reason


def test_podman_containerenv():
    raw = {
        "containerenv": text("podman-containerenv"),
        "cgroup": text("cgroup-v2-private.txt"),
        "mountinfo": text("podman-mountinfo.txt"),
        "env": {"container": "podman"},
    }
    info, reason = container.resolve(raw)
    assert info.runtime == "podman"
    assert info.evidence[:2] == ("/run/.containerenv", "container=podman")
    assert info.container_id == "790576333a6878c8dfae2172a05527aedf32d7defb7dc120a60161c184e441a2"
    assert info.image_ref == "nvcr.io/nvidia/tensorflow:22.07-tf2-py3"
    assert info.image_id == "sha256:d34f6a3e025e32e9d37fbab4d9c5b107253056605e8f0decf723c6648af8e724"
    assert info.digest_source == "containerenv" and "digest unknown" in reason


def test_empty_containerenv_is_still_evidence():
    info, reason = container.resolve({"containerenv": "", "env": {}})
    assert info.in_container and info.runtime == "podman" and info.image_id is None
    assert "no imageid" in reason


def test_kubernetes_pod_matches_our_container_by_cgroup_id():
    raw = {
        "cgroup": text("cgroup-v2-kubernetes.txt"),
        "env": {"KUBERNETES_SERVICE_HOST": "10.96.0.1"},
        "kubernetes": load("k8s-pod.json"),
    }
    info, reason = container.resolve(raw)
    assert info.runtime == "kubernetes" and info.digest_source == "kubernetes"
    assert info.image_digest == (
        "nvcr.io/nvidia/tensorflow@sha256:8a2b41b58e0d4a0d9f2c7d5e6a3b1c0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"
    )
    assert info.image_ref == "nvcr.io/nvidia/tensorflow:22.07-tf2-py3"
    assert reason is None


def test_kubernetes_dockershim_image_id_and_the_ambiguous_case():
    found = container.from_pod(load("k8s-pod-dockershim.json"), None)
    assert found["image_digest"] == (
        "registry.example.com/team/trainer@sha256:3f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
    )
    found = container.from_pod(load("k8s-pod.json"), None)  # two containers, id unknown
    assert "none matches" in found["error"]


# ---- query() against a fake filesystem root: the I/O paths, bad inputs included ----


def fake_root(tmp_path, cgroup="0::/\n", dockerenv=True):
    (tmp_path / "proc" / "self").mkdir(parents=True)
    (tmp_path / "proc" / "self" / "cgroup").write_text(cgroup)
    (tmp_path / "proc" / "self" / "mountinfo").write_text(text("docker-mountinfo.txt"))
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "hostname").write_text("32265fa0f119\n")
    if dockerenv:
        (tmp_path / ".dockerenv").write_text("")
    return str(tmp_path)


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_docker_socket_refusing_is_a_reason_not_a_raise(tmp_path):
    sock_path = str(tmp_path / "refusing.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(sock_path)  # the path exists, nobody accepts: connect() is refused
    listener.close()
    root = fake_root(tmp_path / "root")
    info, reason = container.resolve(container.query(root, {"DOCKER_HOST": "unix://" + sock_path}))
    assert info.in_container and info.container_id == DOCKER_ID and info.image_digest is None
    assert "docker-socket:" in reason


def test_docker_host_on_a_closed_port(tmp_path):
    root = fake_root(tmp_path)
    info, reason = container.resolve(container.query(root, {"DOCKER_HOST": "tcp://127.0.0.1:%d" % closed_port()}))
    assert "docker-socket:" in reason and info.image_digest is None


def test_no_socket_and_no_id(tmp_path):
    root = fake_root(tmp_path)
    info, reason = container.resolve(container.query(root, {}))
    assert "no Docker socket" in reason


def test_kubernetes_without_token_or_api(tmp_path):
    root = fake_root(tmp_path, cgroup=text("cgroup-v2-kubernetes.txt"), dockerenv=False)
    env = {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(closed_port()),
        "HOSTNAME": "train-resnet-7d9f8c6b5d-x2k4q",
    }
    info, reason = container.resolve(container.query(root, env))
    assert info.runtime == "kubernetes" and "no service-account token" in reason
    account = tmp_path / "var/run/secrets/kubernetes.io/serviceaccount"
    account.mkdir(parents=True)
    (account / "token").write_text("t0ken")
    (account / "namespace").write_text("ml")
    info, reason = container.resolve(container.query(root, env))
    assert "GET pod ml/train-resnet-7d9f8c6b5d-x2k4q" in reason and "t0ken" not in reason


def test_launcher_digest_skips_the_socket(tmp_path, monkeypatch):
    root = fake_root(tmp_path)
    raw = container.query(root, {"TFREPRO_IMAGE_DIGEST": DIGEST, "DOCKER_HOST": "tcp://127.0.0.1:1"})
    assert "docker" not in raw
    info, reason = container.resolve(raw)
    assert info.image_digest == DIGEST and reason is None


def test_ngc_env_never_copies_secrets():
    env = {
        "NVIDIA_TENSORFLOW_VERSION": "22.07-tf2",
        "NVIDIA_BUILD_ID": "40077977",
        "CUDNN_VERSION": "8.4.1.50",
        "TENSORRT_VERSION": "8.4.1.5",
        "NVIDIA_API_KEY": "nvapi-secret",
        "NGC_API_KEY": "x",
        "CUDA_VISIBLE_DEVICES": "0",
        "PATH": "/bin",
    }
    assert container.ngc_env(env) == {
        "CUDNN_VERSION": "8.4.1.50",
        "NVIDIA_BUILD_ID": "40077977",
        "NVIDIA_TENSORFLOW_VERSION": "22.07-tf2",
        "TENSORRT_VERSION": "8.4.1.5",
    }


def test_this_machine_never_raises():
    info, reason = container.collect()
    assert isinstance(info.in_container, bool)
    assert os.path.exists("/.dockerenv") == ("/.dockerenv" in info.evidence)


def test_a_later_source_with_a_digest_beats_a_launcher_image_id_alone():
    raw = {
        "dockerenv": True,
        "cgroup": text("docker-cgroup-v1.txt"),
        "env": {"TFREPRO_IMAGE_ID": "cd" * 32},
        "docker": {
            "container": load("docker-inspect-container-by-digest.json"),
            "image": load("docker-inspect-image.json"),
        },
    }
    info, reason = container.resolve(raw)
    assert (info.digest_source, info.image_digest) == ("docker-socket", PUSHED) and reason is None
