"""Zero-code capture on the real engine: `tfrepro run` on examples/plain_train.py (no tfrepro,
no MLflow, no seed in it) records the training through the mounted sitecustomize hook;
`--seed 0` makes the replay `identical`, without it the replay is not; `--no-autolog` records
nothing from fit(); a script with its own ReproCallback is logged once.

Real everything: dockerd, the local registry, the test image (this checkout's tfrepro), an
`mlflow server`, git.
"""

import json
import uuid
from pathlib import Path

import pytest

from tests.helpers.git_repos import make_repo
from tfrepro.cli import main
from tfrepro.launch.hooks import HOOK_DIR
from tfrepro.tracking.launched import REQUESTED_TAG

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A clean repository with the two examples committed."""
    files = {name: ROOT / "examples" / name for name in ("plain_train.py", "train.py")}
    return make_repo(tmp_path_factory.mktemp("zero-code") / "repo", files, message="examples")


def launch(
    test_image, mlflow_server, client, repo, monkeypatch, capsys, *options, command=("python", "plain_train.py")
):
    """`tfrepro run` in `repo`; returns (run, stdout, stderr)."""
    experiment = "zero-code-" + uuid.uuid4().hex[:8]
    monkeypatch.chdir(repo)
    argv = (
        [
            "run",
            "--image",
            test_image.latest,
            "--gpus",
            "none",
            "--experiment",
            experiment,
            "--tracking-uri",
            mlflow_server.uri,
        ]
        + list(options)
        + ["--"]
        + list(command)
    )
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1
    return runs[0], out, err


def replay(run_id, mlflow_server, capsys):
    code = main(["replay", run_id, "--yes", "--tracking-uri", mlflow_server.uri])
    out, err = capsys.readouterr()
    return code, out.strip().splitlines()[-1], err


def launch_json(client, run_id, directory):
    return json.loads(Path(client.download_artifacts(run_id, "tfrepro/launch.json", str(directory))).read_text())


def test_seeded_plain_script_is_captured_and_replays_identical(
    test_image, mlflow_server, client, repo, monkeypatch, capsys, docker_cleanup, tmp_path
):
    run, out, err = launch(test_image, mlflow_server, client, repo, monkeypatch, capsys, "--seed", "0")
    tags = run.data.tags
    assert tags["tfrepro.autolog"] == "true" and tags["tfrepro.seed"] == "0" and tags["tfrepro.launch.seed"] == "0"
    assert tags["tfrepro.tf.determinism"] == "true"  # tfrepro.deterministic(0) ran in the container
    assert tags["tfrepro.model.hash"].startswith("sha256:") and run.info.status == "FINISHED"
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 3  # 3 epochs, each once
    assert "val_loss" in run.data.metrics and run.data.params["epochs"] == "3"
    assert "final loss:" in out and "tfrepro: warning" not in err
    assert ":%s:ro" % HOOK_DIR in err  # the `docker run` line shows the hook mount
    record = launch_json(client, run.info.run_id, tmp_path / "original")
    assert record["autolog"] is True and record["seed"] == 0
    hook = next(m for m in record["mounts"] if m["kind"] == "hook")
    assert hook["target"] == HOOK_DIR and hook["read_only"] and not Path(hook["source"]).exists()  # cleaned up
    assert {"PYTHONPATH", "TFREPRO_AUTOLOG", "TFREPRO_DETERMINISTIC", "TFREPRO_SEED"} <= set(record["env_names"])

    code, verdict, err = replay(run.info.run_id, mlflow_server, capsys)
    assert code == 0, err
    assert ": identical: " in verdict
    replay_id = verdict.split()[2].rstrip(":")
    replayed = client.get_run(replay_id).data.tags
    assert replayed["tfrepro.autolog"] == "true" and replayed["tfrepro.launch.seed"] == "0"
    assert replayed["tfrepro.model.hash"] == tags["tfrepro.model.hash"]


def test_unseeded_plain_script_does_not_replay_identical(
    test_image, mlflow_server, client, repo, monkeypatch, capsys, docker_cleanup
):
    run, _, _ = launch(test_image, mlflow_server, client, repo, monkeypatch, capsys)
    tags = run.data.tags
    assert tags["tfrepro.autolog"] == "true" and "tfrepro.seed" not in tags and "tfrepro.launch.seed" not in tags
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 3
    code, verdict, _ = replay(run.info.run_id, mlflow_server, capsys)
    assert code == 1 and ": identical: " not in verdict and "diverged" in verdict


def test_no_autolog_records_nothing_from_fit(
    test_image, mlflow_server, client, repo, monkeypatch, capsys, docker_cleanup, tmp_path
):
    run, out, err = launch(test_image, mlflow_server, client, repo, monkeypatch, capsys, "--no-autolog")
    tags = run.data.tags
    assert "final loss:" in out and HOOK_DIR not in err
    assert tags["tfrepro.autolog"] == "false"
    assert run.data.metrics == {} and run.data.params == {} and "tfrepro.model.hash" not in tags
    record = launch_json(client, run.info.run_id, tmp_path / "launch")
    assert record["autolog"] is False and not any(m["kind"] == "hook" for m in record["mounts"])
    assert "PYTHONPATH" not in record["env_names"] and "TFREPRO_AUTOLOG" not in record["env_names"]


def test_script_with_its_own_callback_is_logged_once(
    test_image, mlflow_server, client, repo, monkeypatch, capsys, docker_cleanup
):
    # examples/train.py passes ReproCallback(experiment_name="tfrepro-example") itself
    run, out, err = launch(
        test_image, mlflow_server, client, repo, monkeypatch, capsys, command=("python", "train.py", "--epochs", "2")
    )
    run_id = run.info.run_id
    assert run.data.tags["tfrepro.autolog"] == "true"
    assert len(client.get_metric_history(run_id, "loss")) == 2  # one callback: each epoch once
    assert len(client.get_metric_history(run_id, "val_loss")) == 2
    assert "run_id: %s" % run_id in out
    # the callback's experiment_name cannot move the launcher's run: said in the container,
    # recorded on the run, and said again by the launcher with the fix
    assert run.data.tags[REQUESTED_TAG] == "tfrepro-example"
    assert "experiment_name='tfrepro-example' is not used" in out + err
    assert "the script asked for experiment 'tfrepro-example'" in err
    assert "tfrepro run --experiment tfrepro-example" in err
