"""git inside the container: a checkout owned by another uid is still recorded (safe.directory
for the mount point only), with real git on this host and in the test image (bullseye's 2.30)."""

import json
import os
import uuid
from pathlib import Path

import pytest

from tests.helpers.git_repos import git
from tfrepro.cli import main
from tfrepro.fingerprint import NotApplicable
from tfrepro.fingerprint import git as G

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown the repo to another user")

# What the in-container callback does at train begin, without TensorFlow: fingerprint git and
# record it on the run the launcher created. It also shows that git refuses the checkout
# without the launcher's TFREPRO_SAFE_DIRECTORY.
RECORD_GIT = """
import json, os
from tfrepro.fingerprint import collect
from tfrepro.tracking.session import TrackingSession
trusted = collect(("git",))
trusted_to = os.environ.pop("TFREPRO_SAFE_DIRECTORY")
print("UNTRUSTED", json.dumps(collect(("git",)).reasons.get("git")))
print("TRUSTED", trusted_to, trusted.git.commit if trusted.git else trusted.reasons)
session = TrackingSession.open()
session.set_tags(trusted.to_tags())
session.log_text(trusted.to_json(), "tfrepro/environment.json")
session.close()
"""


def chown_tree(path, uid):
    for folder, _, files in os.walk(str(path)):
        for name in [folder] + [os.path.join(folder, f) for f in files]:
            os.lchown(name, uid, uid)


def trust_on_this_host(monkeypatch, tmp_path, repo):
    """A HOME whose .gitconfig trusts `repo`: the launcher's side reads it as its owner would."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text('[safe]\n\tdirectory = "%s"\n' % repo)
    monkeypatch.setenv("HOME", str(home))


@needs_root
def test_fingerprint_trusts_only_the_named_directory(dirty_repo, monkeypatch, tmp_path):
    commit = git(dirty_repo, "rev-parse", "HEAD")
    chown_tree(dirty_repo, 12345)
    monkeypatch.setenv("HOME", str(tmp_path))  # no global safe.directory from this machine
    monkeypatch.delenv("TFREPRO_SAFE_DIRECTORY", raising=False)
    with pytest.raises(NotApplicable, match="safe.directory"):
        G.query(str(dirty_repo))
    monkeypatch.setenv("TFREPRO_SAFE_DIRECTORY", str(tmp_path))  # another directory: still refused
    with pytest.raises(NotApplicable, match="safe.directory"):
        G.query(str(dirty_repo))
    monkeypatch.setenv("TFREPRO_SAFE_DIRECTORY", str(dirty_repo))
    info = G.parse(G.query(str(dirty_repo)))
    assert info.commit == commit and info.dirty and "staged.py" in info.patch
    assert not [p for p in os.listdir(str(tmp_path)) if p.startswith("tfrepro-git-")]  # temp config removed


@needs_root
@pytest.mark.docker
def test_run_records_git_from_inside_for_a_checkout_owned_by_another_uid(
    test_image, mlflow_server, dirty_repo, monkeypatch, capsys, docker_cleanup, tmp_path
):
    from mlflow.tracking import MlflowClient

    commit = git(dirty_repo, "rev-parse", "HEAD")
    chown_tree(dirty_repo, 12345)
    trust_on_this_host(monkeypatch, tmp_path, dirty_repo)
    monkeypatch.chdir(dirty_repo)
    experiment = "owned-" + uuid.uuid4().hex[:8]
    code = main(
        [
            "run",
            "--image",
            test_image.latest,
            "--experiment",
            experiment,
            "--tracking-uri",
            mlflow_server.uri,
            "--",
            "python",
            "-c",
            RECORD_GIT,
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "dubious ownership" in out or "safe.directory" in out  # git refuses without the launcher's env
    assert "TRUSTED /workspace %s" % commit in out
    client = MlflowClient(mlflow_server.uri)
    run = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])[0]
    assert run.data.tags["tfrepro.git.commit"] == commit
    assert "TFREPRO_SAFE_DIRECTORY" in json.loads(run.data.tags["tfrepro.launch.env_names"])
    path = client.download_artifacts(run.info.run_id, "tfrepro/environment.json", str(tmp_path))
    recorded = json.loads(Path(path).read_text())["git"]  # written inside the container only
    assert recorded["commit"] == commit and recorded["dirty"] is True and recorded["root"] == "/workspace"
