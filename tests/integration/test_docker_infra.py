"""The real engine, registry and test image that the replay tests stand on."""

from __future__ import annotations

import urllib.request

import pytest

from tests.helpers.docker_fixtures import TEST_LABELS, has_image, registry_log_mark, registry_requests

pytestmark = pytest.mark.docker


def test_daemon_answers(docker_client):
    assert docker_client.ping()
    assert docker_client.version()["ApiVersion"]


def test_registry_answers(registry):
    assert registry.startswith("127.")
    with urllib.request.urlopen("http://%s/v2/" % registry, timeout=5) as response:
        assert response.status == 200


def test_image_runs_tensorflow_mlflow_and_tfrepro(docker_client, test_image, docker_cleanup):
    script = (
        "import tensorflow, mlflow, tfrepro; from importlib.metadata import entry_points; "
        "eps = entry_points().get('mlflow.run_context_provider', []); "
        "print(tensorflow.__version__, mlflow.__version__, [e.name for e in eps])"
    )
    container = docker_client.containers.run(
        test_image.ref,
        ["python", "-c", script],
        network_mode="host",
        labels=TEST_LABELS,
        detach=True,
    )
    status = container.wait(timeout=300)["StatusCode"]
    output = container.logs(stderr=False).decode()
    assert status == 0, container.logs().decode()[-2000:]
    tf_version, _, plugins = output.strip().splitlines()[-1].partition(" ")
    assert tf_version.startswith("2.9.")
    assert "'tfrepro'" in plugins  # the MLflow plugin entry point is registered


def test_pull_by_digest_after_forgetting_the_local_copy(docker_client, test_image, forget_local_image):
    forget_local_image(test_image.digest_ref)
    assert not has_image(docker_client, test_image.digest_ref)
    mark = registry_log_mark()
    repository, digest = test_image.digest_ref.split("@")
    events = list(docker_client.api.pull(repository, tag=digest, stream=True, decode=True))
    assert any("Downloaded newer image" in event.get("status", "") for event in events)
    assert registry_requests(mark)  # the registry served it: a real pull
    image = docker_client.images.get(test_image.digest_ref)
    assert test_image.digest_ref in image.attrs["RepoDigests"]
    image.tag(test_image.ref)  # put the session's tag back for the tests after this one
