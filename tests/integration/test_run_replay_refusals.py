"""Bad input to `tfrepro run` / `tfrepro replay`: one line on stderr, non-zero, nothing run.

A real MLflow server holds hand-made records; none of these tests needs a Docker daemon
(each one must fail before anything would run).
"""

import json
import os

import pytest

from tests.helpers import host
from tests.helpers.cli import one_error
from tfrepro.cli import main, status

# `tfrepro replay` without --tracking-uri finds the shared server through MLFLOW_TRACKING_URI
pytestmark = pytest.mark.usefixtures("tracking_uri")

PWNED = "/tmp/tfrepro-pwned-test"


def test_unknown_run_id(tracking_uri, capsys):
    line = one_error(capsys, main(["replay", "0123456789abcdef0123456789abcdef", "--yes"]))
    assert "no run" in line


def test_run_without_a_tfrepro_record(client, capsys):
    run = client.create_run("0", tags={"team": "x"})
    line = one_error(capsys, main(["replay", run.info.run_id, "--yes"]))
    assert "no tfrepro record" in line


@pytest.mark.parametrize(
    "tags,drop,message",
    [
        ({"tfrepro.image.digest": "127.0.0.1:5555/tfrepro-test@sha256:deadbeef"}, (), "malformed image digest"),
        ({}, ("tfrepro.image.digest",), "no image digest"),
        ({}, ("tfrepro.git.commit",), "no git commit"),
        ({}, ("tfrepro.command",), "no command"),
        ({"tfrepro.command": "python train.py; touch " + PWNED}, (), "not a JSON list of strings"),
        ({"tfrepro.workdir": "../.."}, (), "stay inside"),
    ],
)
def test_bad_tags(make_run, capsys, tags, drop, message):
    line = one_error(capsys, main(["replay", make_run(tags, drop), "--yes", "--gpus", "none"]))
    assert message in line


def test_metacharacters_are_shown_quoted_and_never_run(make_run, capsys):
    payload = ["python", "-c", "print(1)", "; touch " + PWNED]
    run_id = make_run({"tfrepro.command": json.dumps(payload)})
    assert main(["replay", run_id, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "'; touch %s'" % PWNED in out and "@sha256:" in out
    assert not os.path.exists(PWNED)


def test_gpu_run_on_a_host_without_enough_gpus(make_run, capsys):
    # one GPU more than this host has: "all" on a CPU host, a count on a GPU host
    wanted = str(host.gpu_count() + 1) if host.gpu_count() else "all"
    run_id = make_run(
        {"tfrepro.gpu.count": "1", "tfrepro.gpu.name": "NVIDIA H200"}, launch={"gpus": wanted, "workdir": "/workspace"}
    )
    line = one_error(capsys, main(["replay", run_id, "--yes"]))
    assert "this host has %s" % (host.gpu_count() or "none") in line and "--gpus none" in line
    # --dry-run shows the plan and only warns
    assert main(["replay", run_id, "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert "--gpus " + wanted in captured.out and "--gpus none" in captured.err


def test_no_terminal_without_yes(make_run, capsys):
    line = one_error(capsys, main(["replay", make_run(), "--gpus", "none"]))
    assert "--yes" in line


def test_commit_missing_from_repo_and_remote(make_run, capsys):
    line = one_error(capsys, main(["replay", make_run({"tfrepro.git.commit": "f" * 40}), "--yes"]))
    assert "is in neither" in line


def test_patch_that_does_not_apply(make_run, capsys):
    patch = (
        "diff --git a/train.py b/train.py\n--- a/train.py\n+++ b/train.py\n"
        "@@ -1 +1 @@\n-print('not what is there')\n+print('x')\n"
    )
    line = one_error(capsys, main(["replay", make_run(patch=patch), "--yes"]))
    assert "patch does not apply" in line


def test_dirty_run_without_its_patch(make_run, capsys):
    line = one_error(capsys, main(["replay", make_run({"tfrepro.git.dirty": "true"}), "--yes"]))
    assert "patch" in line


def test_replay_without_a_docker_daemon(make_run, capsys, monkeypatch):
    run_id = make_run()
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent")
    line = one_error(capsys, main(["replay", run_id, "--yes"]), status.ENGINE)
    assert "cannot reach the Docker daemon" in line


def test_run_without_a_docker_daemon_creates_no_run(client, git_repo, capsys, monkeypatch):
    monkeypatch.chdir(git_repo)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent")
    experiment = "refusals-no-daemon"
    line = one_error(
        capsys,
        main(
            [
                "run",
                "--image",
                "127.0.0.1:5555/tfrepro-test:latest",
                "--experiment",
                experiment,
                "--",
                "python",
                "train.py",
            ]
        ),
        status.ENGINE,
    )
    assert "cannot reach the Docker daemon" in line
    assert client.get_experiment_by_name(experiment) is None


@pytest.mark.parametrize(
    "args,message",
    [
        (["--gpus", "lots"], "--gpus"),
        (["-v", "/var/run/docker.sock:/var/run/docker.sock"], "--mount-docker-socket"),
        (["-v", "relative:dir:/x"], "SRC:DST"),
        (["--memory", "a lot"], "--memory"),
        (["-e", "NOT_SET_ANYWHERE_XYZ"], "not set"),
        (["--workdir", "relative"], "--workdir"),
    ],
)
def test_run_bad_options(git_repo, capsys, monkeypatch, args, message):
    monkeypatch.chdir(git_repo)
    argv = ["run", "--image", "127.0.0.1:5555/tfrepro-test:latest"] + args + ["--", "python", "train.py"]
    assert message in one_error(capsys, main(argv), status.USAGE)


def test_run_bad_image_reference(capsys):
    line = one_error(capsys, main(["run", "--image", "--privileged", "--", "true"]), status.USAGE)
    assert "image reference" in line
