"""`--on kubernetes --dry-run`: the Job manifest `tfrepro run` and `tfrepro replay` would submit,
validated offline against Kubernetes' schemas. Nothing is created (no API server exists here)."""

import json
import uuid

import pytest
import yaml

from tests.helpers.git_repos import git
from tfrepro.cli import main

kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install 'tfrepro[test]'")

DIGEST = "registry.example/ml/tf@sha256:" + "ab" * 32


def validate(manifest):
    kubernetes_validate.validate(manifest, kubernetes_validate.latest_version(), strict=True)


def test_run_dry_run_prints_a_valid_job_and_creates_nothing(mlflow_server, git_repo, monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(git_repo)
    experiment = "k8s-" + uuid.uuid4().hex[:8]
    code = main(
        [
            "run",
            "--dry-run",
            "--on",
            "kubernetes",
            "--namespace",
            "ml-team",
            "--gpus",
            "2",
            "--memory",
            "32g",
            "--shm-size",
            "8g",
            "-v",
            "pvc:datasets:/data:ro",
            "-e",
            "MY_API_TOKEN=s3cret",
            "--image",
            DIGEST,
            "--experiment",
            experiment,
            "--tracking-uri",
            mlflow_server.uri,
            "--",
            "python",
            "train.py",
            "--epochs",
            "2",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    manifest = yaml.safe_load(out)
    validate(manifest)
    pod = manifest["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "2", "memory": "32Gi"}
    init_env = {e["name"]: e.get("value") for e in pod["initContainers"][0]["env"]}
    assert init_env["TFREPRO_GIT_COMMIT"] == git(git_repo, "rev-parse", "HEAD")
    assert init_env["TFREPRO_GIT_REMOTE"] == "https://example.com/team/project.git"  # credentials stripped
    assert "s3cret" not in out and "TFREPRO_HOOK" in init_env  # autolog's hook travels in the init container
    assert MlflowClient(mlflow_server.uri).get_experiment_by_name(experiment) is None


def test_replay_dry_run_on_kubernetes(mlflow_server, git_repo, monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server.uri)
    run = client.create_run(
        "0",
        tags={
            "tfrepro.image.digest": DIGEST,
            "tfrepro.git.commit": git(git_repo, "rev-parse", "HEAD"),
            "tfrepro.git.remote": "https://example.com/team/project.git",
            "tfrepro.command": json.dumps(["python", "train.py"]),
            "tfrepro.launch.backend": "docker",
        },
    )
    client.set_terminated(run.info.run_id)
    monkeypatch.chdir(git_repo)
    code = main(["replay", run.info.run_id, "--dry-run", "--on", "kubernetes", "--tracking-uri", mlflow_server.uri])
    out, err = capsys.readouterr()
    assert code == 0, err
    head, _, body = out.partition("Job manifest (<checkout> = commit ")
    manifest = yaml.safe_load("\n".join(line[2:] for line in body.splitlines()[1:]))
    validate(manifest)
    assert manifest["spec"]["template"]["spec"]["containers"][0]["image"] == DIGEST
    assert client.search_runs(["0"], "tags.`tfrepro.replay_of` = '%s'" % run.info.run_id) == []


def test_an_option_for_another_engine_is_one_line(git_repo, monkeypatch, capsys):
    monkeypatch.chdir(git_repo)
    code = main(["run", "--on", "kubernetes", "--partition", "gpu", "--image", DIGEST, "--", "true"])
    assert code == 2
    assert capsys.readouterr().err.strip() == "tfrepro: error: --partition is for --on slurm, not --on kubernetes"
