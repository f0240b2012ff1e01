"""Fixtures for the security tests: an attacker with write access to a real `mlflow server`, and
a watcher that `docker inspect`s the replay container while it runs.

The tampered records use harmless commands only (HOLD: wait until the test has inspected the
container, then exit). A dangerous path is never mounted into a container: those tests
assert the refusal that comes before anything runs.
"""

import json
import os
import threading
import time

import pytest

from tests.helpers.git_repos import git
from tests.helpers.records import HOLD


@pytest.fixture
def attacker(client):
    """An MlflowClient with write access, as a teammate, a CI token or a leaked password has."""
    return client


@pytest.fixture
def repo(git_repo, monkeypatch):
    """The replaying user's checkout (it has the recorded commit); cwd."""
    monkeypatch.chdir(git_repo)
    return git_repo


@pytest.fixture
def tampered(attacker, repo, test_image):
    """tampered(tags=..., launch=..., experiment_id=...) -> run id of a record crafted through
    MlflowClient: the test image by digest, this repo's HEAD, a harmless command."""

    def make(tags=None, launch=None, experiment_id="0", environment=None, patch=None):
        values = {
            "tfrepro.schema": "1",
            "tfrepro.image.digest": test_image.digest_ref,
            "tfrepro.image.ref": test_image.latest,
            "tfrepro.git.commit": git(repo, "rev-parse", "HEAD"),
            "tfrepro.git.dirty": "false",
            "tfrepro.command": json.dumps(HOLD),
            "tfrepro.workdir": ".",
        }
        values.update(tags or {})
        run = attacker.create_run(experiment_id, tags=values)
        run_id = run.info.run_id
        if launch is not None:
            attacker.log_text(run_id, json.dumps(launch), "tfrepro/launch.json")
        if environment is not None:
            attacker.log_text(run_id, json.dumps(environment), "tfrepro/environment.json")
        if patch is not None:
            attacker.log_text(run_id, patch, "tfrepro/git.patch")
        attacker.set_terminated(run_id)
        return run_id

    return make


class Watcher:
    """docker inspect of the first tfrepro container started while it watches (the run's
    container is removed when it exits, so it is caught while HOLD keeps it alive)."""

    def __init__(self, docker_client):
        self.client = docker_client
        self.before = {c.id for c in docker_client.containers.list(all=True)}
        self.attrs = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self):
        deadline = time.time() + 600
        while not self._stop.is_set() and time.time() < deadline:
            for container in self.client.containers.list(filters={"label": "tfrepro.run_id"}):
                if container.id in self.before:
                    continue
                self.attrs = self.client.api.inspect_container(container.id)
                checkout = next(m["Source"] for m in self.attrs["Mounts"] if m["Destination"] == "/workspace")
                open(os.path.join(checkout, "release"), "w").close()  # HOLD may exit now
                return
            time.sleep(0.2)

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=30)

    # what the tests look at
    def mounts(self):
        return sorted((m["Source"], m["Destination"], m["RW"]) for m in self.attrs["Mounts"])

    def env(self):
        return dict(item.split("=", 1) for item in self.attrs["Config"]["Env"])


@pytest.fixture
def watch(docker_client, docker_cleanup):
    watchers = []

    def start():
        watchers.append(Watcher(docker_client))
        return watchers[-1]

    yield start
    for w in watchers:
        w.stop()
