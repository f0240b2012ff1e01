"""Docker Engine, registry and test-image fixtures (owned by the replay infrastructure).

The engine and registry are real: `scripts/docker-up.sh` starts them (dockerd with no
bridge, `docker-registry` on 127.0.0.1), `scripts/build-test-image.sh` builds and pushes
the test image (TensorFlow 2.9, MLflow client, this checkout's tfrepro). When they are
missing, the fixtures call `missing(...)`: a skip locally, a failure under CI.

Containers a test starts should carry TEST_LABELS; `docker_cleanup` removes those (and
new containers of the test image) after the test, and the session removes the rest.
"""

from __future__ import annotations

import os
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from tests.helpers.requirements import missing

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REGISTRY = "127.0.0.1:5555"
DEFAULT_REGISTRY_LOG = "/tmp/tfrepro-registry.log"
TEST_LABELS = {"tfrepro.test": "1"}
IMAGE_REPO = "tfrepro-test"


@dataclass(frozen=True)
class BuiltImage:
    """The pushed test image: refer to it by tag, by the moving :latest, or by digest."""

    ref: str  # registry/tfrepro-test:<hash of its inputs>, fixed for this checkout state
    latest: str  # registry/tfrepro-test:latest
    digest_ref: str  # registry/tfrepro-test@sha256:...
    digest: str  # sha256:... (the manifest digest the registry serves)


def registry_address() -> str:
    return os.environ.get("TFREPRO_REGISTRY") or DEFAULT_REGISTRY


def registry_answers(address: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen("http://%s/v2/" % address, timeout=timeout) as response:
            return response.status == 200
    except Exception:
        return False


def parse_exports(text: str) -> Dict[str, str]:
    """`export NAME=value` lines (what the scripts print) -> {NAME: value}."""
    found = {}
    for line in text.splitlines():
        if line.startswith("export ") and "=" in line:
            name, _, value = line[len("export ") :].partition("=")
            found[name.strip()] = value.strip()
    return found


def registry_log_mark() -> int:
    """Where the registry log ends now; pass it to `registry_requests` later."""
    try:
        return os.path.getsize(os.environ.get("TFREPRO_REGISTRY_LOG", DEFAULT_REGISTRY_LOG))
    except OSError:
        return 0


def registry_requests(since: int, repo: str = IMAGE_REPO) -> List[str]:
    """What the registry served for `repo` since `since`: ["manifests/<ref>", "blobs/sha256:..."].

    dockerd 20.10 keeps fetched manifests in its content store, so a repeated pull by digest
    may fetch only blobs: look for any request, not for the manifest alone.
    """
    path = os.environ.get("TFREPRO_REGISTRY_LOG", DEFAULT_REGISTRY_LOG)
    try:
        with open(path, "rb") as log:
            log.seek(since)
            text = log.read().decode("utf-8", "replace")
    except OSError:
        return []
    marker = '"GET /v2/%s/' % repo
    return [line.split(marker, 1)[1].split(" ", 1)[0] for line in text.splitlines() if marker in line]


def forget_image(client, reference: str) -> None:
    """Delete the local copy of an image (every tag of it), so the next use must pull it."""
    import docker

    try:
        image = client.images.get(reference)
    except docker.errors.ImageNotFound:
        return
    client.images.remove(image.id, force=True)


def has_image(client, reference: str) -> bool:
    import docker

    try:
        client.images.get(reference)
        return True
    except docker.errors.ImageNotFound:
        return False


def remove_containers(client, containers) -> None:
    import docker

    for container in containers:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass


@pytest.fixture(scope="session")
def docker_client():
    try:
        import docker
    except ImportError:
        missing("docker-py is not installed (pip install docker)")
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception:
        missing("no Docker daemon: run scripts/docker-up.sh")
    yield client
    remove_containers(client, client.containers.list(all=True, filters={"label": "tfrepro.test=1"}))
    client.close()


@pytest.fixture(scope="session")
def registry() -> str:
    """The local registry's address, e.g. "127.0.0.1:5555" (answers GET /v2/)."""
    address = registry_address()
    if not registry_answers(address):
        missing("no local registry at %s: run scripts/docker-up.sh" % address)
    return address


@pytest.fixture(scope="session")
def test_image(docker_client, registry) -> BuiltImage:
    """Build (cached: under a second when up to date) and push the test image; with
    TFREPRO_TEST_IMAGE_PREBUILT=1, the one $TFREPRO_TEST_IMAGE_* name (a checkout whose
    container-side code is the image's: nothing is built)."""
    if os.environ.get("TFREPRO_TEST_IMAGE_PREBUILT") == "1" and os.environ.get("TFREPRO_TEST_IMAGE_DIGEST"):
        digest_ref = os.environ["TFREPRO_TEST_IMAGE_DIGEST"]
        tag = os.environ.get("TFREPRO_TEST_IMAGE_TAG") or digest_ref
        return BuiltImage(tag, os.environ.get("TFREPRO_TEST_IMAGE") or tag, digest_ref, digest_ref.split("@", 1)[1])
    env = dict(os.environ, TFREPRO_REGISTRY=registry)
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-test-image.sh")],
        env=env,
        capture_output=True,
        text=True,
    )
    exports = parse_exports(result.stdout)
    if result.returncode != 0 or "TFREPRO_TEST_IMAGE_DIGEST" not in exports:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        missing("could not build the test image (scripts/build-test-image.sh): " + tail)
    digest_ref = exports["TFREPRO_TEST_IMAGE_DIGEST"]
    return BuiltImage(
        ref=exports["TFREPRO_TEST_IMAGE_TAG"],
        latest=exports["TFREPRO_TEST_IMAGE"],
        digest_ref=digest_ref,
        digest=digest_ref.split("@", 1)[1],
    )


@pytest.fixture
def docker_cleanup(docker_client):
    """After the test, remove containers it started: labelled TEST_LABELS, or new ones of the test image."""
    before = {c.id for c in docker_client.containers.list(all=True)}
    yield docker_client
    leftovers = []
    for container in docker_client.containers.list(all=True):
        if container.id in before:
            continue
        labels = container.labels or {}
        image_name = container.attrs.get("Config", {}).get("Image", "")
        if labels.get("tfrepro.test") == "1" or ("/%s" % IMAGE_REPO) in image_name:
            leftovers.append(container)
    remove_containers(docker_client, leftovers)


@pytest.fixture
def forget_local_image(docker_client):
    """forget_local_image(ref): delete the local copy so the code under test must pull it."""

    def forget(reference: Optional[str]) -> None:
        if reference:
            forget_image(docker_client, reference)

    return forget
