"""`tfrepro run` / `replay` edge cases that need the real engine and registry (quick containers,
no training): exit codes, host-only images, images the registry does not have."""

import json
import uuid

import pytest

from tests.helpers.cli import one_error
from tests.helpers.git_repos import git
from tfrepro.cli import main, status

pytestmark = pytest.mark.docker


def only_run(client, experiment):
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1
    return runs[0]


def run_argv(image, experiment, uri, *cmd):
    return ["run", "--image", image, "--experiment", experiment, "--tracking-uri", uri, "--"] + list(cmd)


def test_a_failing_container_is_job_failed_and_the_run_failed(
    test_image, mlflow_server, client, git_repo, monkeypatch, capsys, docker_cleanup
):
    monkeypatch.chdir(git_repo)
    experiment = "exit-" + uuid.uuid4().hex[:8]
    code = main(
        run_argv(
            test_image.latest,
            experiment,
            mlflow_server.uri,
            "python",
            "-c",
            "import os, sys; print('in', os.getcwd()); sys.exit(3)",
        )
    )
    captured = capsys.readouterr()
    assert code == status.JOB_FAILED
    assert "in /workspace" in captured.out
    assert "tfrepro: error: container exited with status 3" in captured.err
    run = only_run(client, experiment)
    assert run.info.status == "FAILED"
    assert run.data.tags["tfrepro.image.digest"] == test_image.digest_ref
    assert run.data.tags["tfrepro.replayable"] == "registry"


def test_arguments_reach_the_container_literally(
    test_image, mlflow_server, git_repo, monkeypatch, capsys, docker_cleanup, tmp_path
):
    monkeypatch.chdir(git_repo)
    marker = tmp_path / "pwned"
    code = main(
        run_argv(
            test_image.latest,
            "literal-" + uuid.uuid4().hex[:8],
            mlflow_server.uri,
            "python",
            "-c",
            "import sys, json; print(json.dumps(sys.argv[1:]))",
            "; touch %s" % marker,
            "$(id)",
        )
    )
    assert code == 0
    assert json.dumps(["; touch %s" % marker, "$(id)"]) in capsys.readouterr().out
    assert not marker.exists()


def test_local_only_image_is_tagged_host_only(
    test_image, docker_client, mlflow_server, client, git_repo, monkeypatch, capsys, docker_cleanup
):
    local_ref = "tfrepro-local-only:%s" % uuid.uuid4().hex[:8]
    image = docker_client.images.get(test_image.ref)
    image.tag(local_ref)
    monkeypatch.chdir(git_repo)
    experiment = "host-only-" + uuid.uuid4().hex[:8]
    try:
        code = main(run_argv(local_ref, experiment, mlflow_server.uri, "python", "-c", "print('ok')"))
    finally:
        docker_client.images.remove(local_ref)
    assert code == 0, capsys.readouterr().err
    assert "replayable on this host only" in capsys.readouterr().err
    tags = only_run(client, experiment).data.tags
    assert tags["tfrepro.replayable"] == "host-only"
    assert tags["tfrepro.image.id"] == image.id
    assert "tfrepro.image.digest" not in tags


def test_run_with_an_image_no_registry_has(registry, mlflow_server, client, git_repo, monkeypatch, capsys):
    monkeypatch.chdir(git_repo)
    experiment = "missing-" + uuid.uuid4().hex[:8]
    line = one_error(
        capsys,
        main(run_argv("%s/tfrepro-no-such-image:1" % registry, experiment, mlflow_server.uri, "true")),
        status.ENGINE,
    )
    assert "neither local nor in its registry" in line
    assert client.get_experiment_by_name(experiment) is None  # nothing recorded, nothing run


def test_replay_of_an_image_missing_from_the_registry(
    registry, docker_client, client, git_repo, monkeypatch, capsys, mlflow_server
):
    monkeypatch.chdir(git_repo)
    missing_ref = "%s/tfrepro-test@sha256:%s" % (registry, "0" * 64)
    run = client.create_run(
        "0",
        tags={
            "tfrepro.image.digest": missing_ref,
            "tfrepro.git.commit": git(git_repo, "rev-parse", "HEAD"),
            "tfrepro.command": json.dumps(["python", "train.py"]),
        },
    )
    client.set_terminated(run.info.run_id)
    line = one_error(
        capsys, main(["replay", run.info.run_id, "--yes", "--tracking-uri", mlflow_server.uri]), status.ENGINE
    )
    assert "cannot pull %s" % missing_ref in line
    # the refused replay left no run behind
    replays = client.search_runs(["0"], "tags.`tfrepro.replay_of` = '%s'" % run.info.run_id)
    assert replays == []
