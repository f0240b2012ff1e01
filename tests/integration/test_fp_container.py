"""Container source inside real containers of the test image (real dockerd, real registry).

The checkout's tfrepro is mounted over the image's copy, so this tests the code under review.
"""

import json
import os
from pathlib import Path

import pytest

from tests.helpers.docker_fixtures import TEST_LABELS

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import json, tfrepro\n"
    "e = tfrepro.collect_environment()\n"
    "print(json.dumps({'container': e.to_dict()['container'], 'reasons': dict(e.reasons)}))\n"
)
pytestmark = pytest.mark.docker


def socket_path():
    host = os.environ.get("DOCKER_HOST", "")
    return host[len("unix://") :] if host.startswith("unix://") else "/var/run/docker.sock"


def run_probe(client, image, socket=True, environment=None):
    volumes = {str(ROOT): {"bind": "/src", "mode": "ro"}}
    if socket:
        volumes[socket_path()] = {"bind": "/var/run/docker.sock", "mode": "rw"}
    container = client.containers.create(
        image,
        ["python", "-c", PROBE],
        working_dir="/tmp",
        network_mode="none",
        labels=TEST_LABELS,
        volumes=volumes,
        environment=dict({"PYTHONPATH": "/src"}, **(environment or {})),
    )
    try:
        container.start()
        status = container.wait(timeout=120)
        logs = container.logs(stdout=True, stderr=True).decode()
        assert status["StatusCode"] == 0, logs[-2000:]
        return container.id, json.loads(logs.strip().splitlines()[-1])
    finally:
        container.remove(force=True)


def test_started_by_digest_finds_its_digest_through_the_socket(docker_client, test_image, docker_cleanup):
    cid, out = run_probe(docker_client, test_image.digest_ref)
    info = out["container"]
    assert info["in_container"] and info["runtime"] == "docker" and "/.dockerenv" in info["evidence"]
    assert info["container_id"] == cid
    assert info["image_digest"] == test_image.digest_ref and info["digest_source"] == "docker-socket"
    assert info["image_id"] == docker_client.images.get(test_image.digest_ref).id
    assert "container" not in out["reasons"]


def test_started_by_tag_picks_the_matching_repo_digest(docker_client, test_image, docker_cleanup):
    _, out = run_probe(docker_client, test_image.ref)
    assert out["container"]["image_ref"] == test_image.ref
    assert out["container"]["image_digest"] == test_image.digest_ref


def test_without_the_socket_the_reason_says_so(docker_client, test_image, docker_cleanup):
    cid, out = run_probe(docker_client, test_image.digest_ref, socket=False)
    assert out["container"]["container_id"] == cid  # from cgroup or mountinfo, no socket needed
    assert out["container"]["image_digest"] is None
    assert "no Docker socket" in out["reasons"]["container"]


def test_launcher_env_wins_without_a_socket(docker_client, test_image, docker_cleanup):
    env = {"TFREPRO_IMAGE_REF": test_image.ref, "TFREPRO_IMAGE_DIGEST": test_image.digest_ref}
    _, out = run_probe(docker_client, test_image.digest_ref, socket=False, environment=env)
    info = out["container"]
    assert (info["image_digest"], info["digest_source"], info["image_ref"]) == (
        test_image.digest_ref,
        "launcher",
        test_image.ref,
    )
