"""Acceptance with Podman (scripts/podman-up.sh), no Docker daemon involved in running:
`tfrepro run --on podman` trains the example in the test image, `tfrepro replay` (on podman,
as recorded) gives `identical`; the fingerprint inside records runtime `podman`."""

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.helpers.git_repos import example_repo
from tfrepro.cli import main

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def podman_argv(image, experiment, uri, *cmd, extra=()):
    return (
        ["run", "--on", "podman", "--image", image, "--experiment", experiment, "--tracking-uri", uri]
        + list(extra)
        + ["--"]
        + list(cmd)
    )


@pytest.fixture(scope="module")
def podman_run(podman, tmp_path_factory, mlflow_server, test_image, client):
    repo = example_repo(tmp_path_factory.mktemp("podman") / "repo")
    experiment = "podman-" + uuid.uuid4().hex[:8]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(repo)
        assert (
            main(
                podman_argv(
                    test_image.ref,
                    experiment,
                    mlflow_server.uri,
                    "python",
                    "train.py",
                    "--epochs",
                    "2",
                    extra=["--seed", "0"],
                )
            )
            == 0
        )
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return run.info.run_id, repo


def test_run_on_podman_records_podman(podman_run, client, test_image):
    run_id, repo = podman_run
    run = client.get_run(run_id)
    tags = run.data.tags
    assert run.info.status == "FINISHED" and tags["tfrepro.model.hash"].startswith("sha256:")
    assert tags["tfrepro.image.digest"] == test_image.digest_ref  # podman resolved the same registry digest
    assert tags["tfrepro.launch.backend"] == "podman" and tags["tfrepro.launch.runtime"] == "podman"
    assert tags["tfrepro.container.runtime"] == "podman"  # /run/.containerenv, seen from inside
    env = json.loads(Path(client.download_artifacts(run_id, "tfrepro/environment.json", str(repo.parent))).read_text())
    assert "/run/.containerenv" in env["container"]["evidence"]
    pulled = subprocess.run(
        ["podman", "image", "inspect", test_image.digest_ref, "--format", "{{json .RepoDigests}}"],
        capture_output=True,
        text=True,
    )
    assert test_image.digest_ref in json.loads(pulled.stdout)


def test_replay_on_podman_is_identical(podman_run, client, mlflow_server, capsys, monkeypatch):
    run_id, repo = podman_run
    monkeypatch.chdir(repo)
    assert main(["replay", run_id, "--yes", "--tracking-uri", mlflow_server.uri]) == 0
    out, err = capsys.readouterr()
    assert "command (<checkout> = commit" in out and "\n  podman run --rm " in out
    verdict = out.strip().splitlines()[-1]
    assert ": identical: " in verdict, err[-3000:]
    replay = client.get_run(verdict.split()[2].rstrip(":"))
    assert replay.data.tags["tfrepro.launch.backend"] == "podman"
    assert replay.data.tags["tfrepro.container.runtime"] == "podman"


def test_sigterm_stops_the_container(podman, mlflow_server, test_image, client, tmp_path):
    experiment = "podman-stop-" + uuid.uuid4().hex[:8]
    argv = podman_argv(
        test_image.ref,
        experiment,
        mlflow_server.uri,
        "python",
        "-c",
        "import time; print('started', flush=True); time.sleep(300)",
        extra=["--no-autolog"],
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "tfrepro"] + argv,
        cwd=str(example_repo(tmp_path / "repo")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    err = ""
    try:
        assert proc.stdout.readline().strip() == "started"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)  # drains both pipes: a full one would block tfrepro
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert run.info.status == "FAILED"
    left = subprocess.run(
        ["podman", "ps", "-q", "--filter", "label=tfrepro.run_id=" + run.info.run_id], capture_output=True, text=True
    )
    assert left.stdout.strip() == ""
