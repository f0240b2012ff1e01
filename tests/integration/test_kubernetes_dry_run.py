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


def recorded_run(client, git_repo):
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
    client.set_terminated(run.info.run_id)  # MLflow prints a "View run" line on stdout
    return run.info.run_id


def test_replay_dry_run_on_kubernetes_prints_the_manifest_alone(mlflow_server, git_repo, monkeypatch, capsys):
    """What `kubectl apply -f -` takes on stdout; the plan on stderr."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server.uri)
    run_id = recorded_run(client, git_repo)
    monkeypatch.chdir(git_repo)
    capsys.readouterr()
    code = main(["replay", run_id, "--dry-run", "--on", "kubernetes", "--tracking-uri", mlflow_server.uri])
    out, err = capsys.readouterr()
    assert code == 0, err
    manifest = yaml.safe_load(out)
    validate(manifest)
    assert manifest["spec"]["template"]["spec"]["containers"][0]["image"] == DIGEST
    assert "replay of run %s" % run_id in err and "Job manifest: on stdout" in err
    assert client.search_runs(["0"], "tags.`tfrepro.replay_of` = '%s'" % run_id) == []


@pytest.mark.parametrize("form", ["yaml", "json"])
def test_replay_dry_run_of_two_workers_is_a_service_and_an_indexed_job(
    form, mlflow_server, git_repo, monkeypatch, capsys
):
    from mlflow.tracking import MlflowClient

    run_id = recorded_run(MlflowClient(mlflow_server.uri), git_repo)
    monkeypatch.chdir(git_repo)
    capsys.readouterr()
    argv = ["replay", run_id, "--dry-run", "--on", "kubernetes", "--workers", "2", "-o", form]
    code = main(argv + ["--tracking-uri", mlflow_server.uri])
    out, err = capsys.readouterr()
    assert code == 0, err
    documents = list(yaml.safe_load_all(out)) if form == "yaml" else json.loads(out)["items"]
    assert [document["kind"] for document in documents] == ["Service", "Job"]
    for document in documents:
        validate(document)
    assert documents[1]["spec"]["completionMode"] == "Indexed" and documents[1]["spec"]["completions"] == 2
    assert "workers" in err  # the drift table: recorded 1, replayed 2


def test_an_option_for_another_engine_is_one_line(git_repo, monkeypatch, capsys):
    monkeypatch.chdir(git_repo)
    code = main(["run", "--on", "kubernetes", "--partition", "gpu", "--image", DIGEST, "--", "true"])
    assert code == 2
    assert capsys.readouterr().err.strip() == "tfrepro: error: --partition is for --on slurm, not --on kubernetes"
