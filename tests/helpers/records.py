"""Hand-made tfrepro records on a real `mlflow server`, written through MlflowClient as a
teammate (or an attacker with write access) could: the `make_run` fixture (a pytest plugin,
registered in tests/conftest.py), and what the security tests look for."""

import json

import pytest

from tests.helpers.git_repos import git

DIGEST_REF = "127.0.0.1:5555/tfrepro-test@sha256:" + "ab" * 32
FAKE = "FAKE-SECRET-7d1e"  # every secret in the security tests contains this
# Waits (at most 2 minutes) for the test to drop `release` into the checkout, then exits 0.
HOLD = [
    "python",
    "-c",
    "import os, time\nfor _ in range(600):\n    if os.path.exists('release'): break\n    time.sleep(0.2)",
]


@pytest.fixture
def make_run(tracking_uri, client, git_repo, monkeypatch):
    """A finished run with a valid tfrepro record for git_repo's HEAD; overrides per test.
    MLflow points at the shared server, cwd is git_repo."""
    monkeypatch.chdir(git_repo)
    commit = git(git_repo, "rev-parse", "HEAD")

    def make(tags=None, drop=(), patch=None, launch=None, environment=None):
        values = {
            "tfrepro.schema": "1",
            "tfrepro.image.digest": DIGEST_REF,
            "tfrepro.git.commit": commit,
            "tfrepro.git.dirty": "true" if patch else "false",
            "tfrepro.git.remote": str(git_repo),
            "tfrepro.command": json.dumps(["python", "train.py"]),
            "tfrepro.workdir": ".",
        }
        values.update(tags or {})
        for key in drop:
            values.pop(key)
        run = client.create_run("0", tags=values)
        if patch:
            client.log_text(run.info.run_id, patch, "tfrepro/git.patch")
        for name, content in (("environment.json", environment), ("launch.json", launch)):
            if content is not None:  # a string goes as it is: a malformed record
                text = content if isinstance(content, str) else json.dumps(content)
                client.log_text(run.info.run_id, text, "tfrepro/" + name)
        client.set_terminated(run.info.run_id)
        return run.info.run_id

    return make


def everything_on_server(client, run_id, tmp_path):
    """Every tag, param and text artifact of a run, as one string (for 'no secret got there')."""
    run = client.get_run(run_id)
    parts = [json.dumps(run.data.tags), json.dumps(run.data.params)]
    target = tmp_path / ("artifacts-" + run_id)
    target.mkdir(exist_ok=True)
    for item in client.list_artifacts(run_id, "tfrepro"):
        if not item.is_dir:
            with open(client.download_artifacts(run_id, item.path, str(target)), "rb") as f:
                parts.append(f.read().decode("utf-8", "replace"))
    return "\n".join(parts)
