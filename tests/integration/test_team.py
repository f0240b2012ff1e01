"""Team scale, for real: a PostgreSQL-backed `mlflow server` with proxied artifacts, the
repository served over `git daemon`, the real Docker Engine and registry.

- the capture -> run -> replay -> diff loop against PostgreSQL;
- replay from a second "machine": another HOME and working directory, no clone, the trainer's
  checkout out of reach: the recorded remote is cloned, the patch comes over the proxy, the
  image is pulled by digest, and the verdict is `identical`;
- an offline trainer: trained with the server unreachable (spooled), then `tfrepro sync
  --tracking-uri TEAM`; the run lands and replays from the second machine.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.helpers.docker_fixtures import TEST_LABELS, has_image
from tests.helpers.git_repos import git
from tests.helpers.git_servers import GitDaemon, bare_clone
from tests.helpers.ports import free_port
from tfrepro.cli import main

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    """The trainer's clone of a repository published over git daemon, with an uncommitted change."""
    base = tmp_path_factory.mktemp("team")
    repo = base / "trainer" / "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "test@example.com")
    git(repo, "config", "user.name", "Test")
    shutil.copy(ROOT / "examples" / "train.py", repo / "train.py")
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "train")
    daemon = GitDaemon(base / "served").start()
    bare_clone(repo, daemon.base)
    git(repo, "remote", "add", "origin", daemon.url())
    with open(repo / "train.py", "a") as fh:
        fh.write("\n# an uncommitted change: the patch travels through the artifact store\n")
    yield repo, daemon
    daemon.stop()


@pytest.fixture(scope="module")
def team(postgres_server):
    from mlflow.tracking import MlflowClient

    return postgres_server.uri, MlflowClient(postgres_server.uri)


def cli(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@contextlib.contextmanager
def second_machine(tmp_path, trainer_repo, monkeypatch):
    """Another HOME and cwd with no clone; the trainer's checkout moved out of reach."""
    home = tmp_path / "machine2"
    (home / "work").mkdir(parents=True)
    away = trainer_repo.with_name("repo.away")
    with monkeypatch.context() as mp:
        mp.setenv("HOME", str(home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.chdir(home / "work")
        trainer_repo.rename(away)
        try:
            yield home
        finally:
            away.rename(trainer_repo)


def replay_identical(run_id, uri, capsys):
    code, out, err = cli(["replay", run_id, "--yes", "--gpus", "none", "--tracking-uri", uri], capsys)
    assert code == 0, out[-3000:] + err[-3000:]
    verdict = out.strip().splitlines()[-1]
    assert ": identical: " in verdict, verdict
    return verdict.split()[2].rstrip(":"), err


@pytest.fixture
def pull_by_digest(test_image, docker_client, forget_local_image):
    """Forget the local copy so replay must pull by digest; put the session's tags back after."""
    forget_local_image(test_image.digest_ref)
    yield
    if has_image(docker_client, test_image.digest_ref):
        image = docker_client.images.get(test_image.digest_ref)
        image.tag(test_image.ref)
        image.tag(test_image.latest)


@pytest.fixture(scope="module")
def launched(trainer, team, test_image):
    """One `tfrepro run` of the trainer's checkout against the team server."""
    repo, _ = trainer
    uri, client = team
    experiment = "team-" + uuid.uuid4().hex[:8]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(repo)
        assert (
            main(
                [
                    "run",
                    "--image",
                    test_image.latest,
                    "--gpus",
                    "none",
                    "--experiment",
                    experiment,
                    "--tracking-uri",
                    uri,
                    "--",
                    "python",
                    "train.py",
                    "--epochs",
                    "1",
                ]
            )
            == 0
        )
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return run.info.run_id, experiment


def test_capture_run_replay_diff_loop_on_postgresql(trainer, team, launched, docker_cleanup, capsys, tmp_path):
    repo, daemon = trainer
    uri, client = team
    run_id, experiment = launched
    # capture: the callback on this host, into the same experiment
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, TFREPRO_SPOOL_DIR=str(tmp_path / "spool"))
    host = subprocess.run(
        [sys.executable, "train.py", "--epochs", "1", "--experiment", experiment],
        cwd=str(repo),
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert host.returncode == 0, host.stderr[-3000:]
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    (host_run,) = [r for r in runs if r.info.run_id != run_id]
    assert host_run.data.tags["tfrepro.git.remote"] == daemon.url()
    assert host_run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied: no shared filesystem
    # replay where it was trained
    replay_id, _ = replay_identical(run_id, uri, capsys)
    # diff: the run and its replay differ in no high-ranked fact; the host run differs in its image
    code, out, _ = cli(["diff", run_id, replay_id, "--json", "--tracking-uri", uri], capsys)
    assert code in (0, 1), out
    assert json.loads(out)["counts"].get("high", 0) == 0, out
    code, out, _ = cli(["diff", host_run.info.run_id, run_id, "--tracking-uri", uri], capsys)
    assert code == 1 and "image" in out and "digest" in out


def test_replay_from_a_second_machine_clones_the_recorded_remote(
    trainer, team, launched, test_image, docker_cleanup, pull_by_digest, capsys, tmp_path, monkeypatch
):
    repo, daemon = trainer
    uri, client = team
    run_id, _ = launched
    assert client.get_run(run_id).data.tags["tfrepro.git.remote"] == daemon.url()
    with second_machine(tmp_path, repo, monkeypatch):
        replay_id, err = replay_identical(run_id, uri, capsys)
    assert "source: cloning %s at " % daemon.url() in err
    replay = client.get_run(replay_id)
    original = client.get_run(run_id)
    assert replay.data.tags["tfrepro.git.commit"] == original.data.tags["tfrepro.git.commit"]
    assert replay.data.tags["tfrepro.git.dirty"] == "true"
    assert replay.data.tags["tfrepro.image.digest"] == test_image.digest_ref


def test_an_offline_trainer_syncs_to_the_team_and_replays_on_a_second_machine(
    trainer, team, test_image, docker_client, docker_cleanup, capsys, tmp_path, monkeypatch
):
    repo, daemon = trainer
    uri, client = team
    experiment = "offline-" + uuid.uuid4().hex[:8]
    spool = tmp_path / "spool"
    spool.mkdir()
    dead = "http://127.0.0.1:%d" % free_port()
    image = docker_client.images.get(test_image.digest_ref)
    # a training in the image with the server unreachable; it names its digest itself
    logs = docker_client.containers.run(
        test_image.digest_ref,
        ["python", "train.py", "--epochs", "1", "--experiment", experiment],
        network_mode="host",
        working_dir="/workspace",
        labels=TEST_LABELS,
        remove=True,
        stderr=True,
        volumes={str(repo): {"bind": "/workspace", "mode": "rw"}, str(spool): {"bind": "/spool", "mode": "rw"}},
        environment={
            "MLFLOW_TRACKING_URI": dead,
            "TFREPRO_SPOOL_DIR": "/spool",
            "TFREPRO_IMAGE_REF": test_image.latest,
            "TFREPRO_IMAGE_DIGEST": test_image.digest_ref,
            "TFREPRO_IMAGE_ID": image.id,
            "TFREPRO_SAFE_DIRECTORY": "/workspace",
        },
    )
    assert b"is not fully uploaded" in logs and b"tfrepro sync" in logs  # the run waits in the spool
    assert client.get_experiment_by_name(experiment) is None
    code, out, err = cli(["sync", "--spool-dir", str(spool), "--tracking-uri", uri], capsys)
    assert code == 0, out + err
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    tags = run.data.tags
    assert tags["tfrepro.image.digest"] == test_image.digest_ref and tags["tfrepro.git.dirty"] == "true"
    assert tags["tfrepro.git.remote"] == daemon.url() and run.info.status == "FINISHED"
    with second_machine(tmp_path, repo, monkeypatch):
        replay_id, err = replay_identical(run.info.run_id, uri, capsys)
    assert "source: cloning %s at " % daemon.url() in err
    assert client.get_run(replay_id).info.experiment_id == run.info.experiment_id
