"""Acceptance: `tfrepro run` a seeded CPU training in the test image, then `tfrepro replay` it
by digest (the local copy deleted first) and get `identical`, bit for bit.

Real everything: dockerd, the local registry, the test image, an `mlflow server`, git.
"""

import json
import shutil
import uuid
from pathlib import Path

import pytest

from tests.helpers.docker_fixtures import has_image, registry_log_mark, registry_requests
from tests.helpers.git_repos import git
from tfrepro.cli import main

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SECRET = "supersecret-" + uuid.uuid4().hex[:8]


def launch_json(client, run_id, directory):
    directory.mkdir(exist_ok=True)
    return json.loads(Path(client.download_artifacts(run_id, "tfrepro/launch.json", str(directory))).read_text())


def environment_json(client, run_id, directory):
    """What the callback recorded inside the container."""
    directory.mkdir(exist_ok=True)
    return json.loads(Path(client.download_artifacts(run_id, "tfrepro/environment.json", str(directory))).read_text())


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, mlflow_server, test_image, docker_client):
    """One recorded run, shared by the tests below: (run_id, repo, data dir, client)."""
    from mlflow.tracking import MlflowClient

    train = ROOT / "examples" / "train.py"
    if not train.exists():
        pytest.fail("examples/train.py is missing", pytrace=False)
    repo = tmp_path_factory.mktemp("run-replay") / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "test@example.com")
    git(repo, "config", "user.name", "Test")
    shutil.copy(train, repo / "train.py")
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "train")
    with open(repo / "train.py", "a") as fh:
        fh.write("\n# an uncommitted change: replay must apply it\n")
    data = repo.parent / "data"
    data.mkdir()
    experiment = "run-replay-" + uuid.uuid4().hex[:8]
    argv = [
        "run",
        "--image",
        test_image.latest,
        "--gpus",
        "none",
        "--experiment",
        experiment,
        "--tracking-uri",
        mlflow_server.uri,
        "--shm-size",
        "256m",
        "--memory",
        "4g",
        "-v",
        "%s:/data:ro" % data,
        "-e",
        "MY_API_TOKEN=" + SECRET,
        "-e",
        "BATCH_NOTE=plain",
        # train.py names its own experiment (tfrepro-example): the callback resumes the
        # launcher's run in the launcher's experiment regardless
        "--",
        "python",
        "train.py",
        "--epochs",
        "2",
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(repo)
        assert main(argv) == 0
    client = MlflowClient(mlflow_server.uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1
    return runs[0].info.run_id, repo, data, client


def test_run_records_the_launch(recorded, test_image):
    run_id, repo, data, client = recorded
    run = client.get_run(run_id)
    tags = run.data.tags
    assert run.info.status == "FINISHED"
    assert tags["tfrepro.image.digest"] == test_image.digest_ref
    assert tags["tfrepro.git.dirty"] == "true" and tags["tfrepro.git.commit"] == git(repo, "rev-parse", "HEAD")
    assert json.loads(tags["tfrepro.command"])[1:4] == ["train.py", "--epochs", "2"]
    assert tags["tfrepro.launch.gpus"] == "none"
    assert tags["tfrepro.launch.shm_size"] == "256m" and tags["tfrepro.launch.memory"] == "4g"
    assert "%s:/data:ro" % data in json.loads(tags["tfrepro.launch.mounts"])
    assert "MY_API_TOKEN" in json.loads(tags["tfrepro.launch.env_names"])
    assert tags.get("tfrepro.model.hash") and run.data.metrics
    launch = launch_json(client, run_id, repo.parent / "original")
    assert launch["image"] == test_image.digest_ref and launch["env"]["BATCH_NOTE"] == "plain"
    everything = json.dumps(tags) + json.dumps(launch)
    assert SECRET not in everything and launch["env"]["MY_API_TOKEN"] is None


def test_dry_run_prints_the_docker_command(recorded, mlflow_server, capsys, monkeypatch):
    run_id, repo, data, client = recorded
    assert main(["replay", run_id, "--dry-run", "--tracking-uri", mlflow_server.uri]) == 0
    out, err = capsys.readouterr()
    assert "MY_API_TOKEN was set for the original run" in err and "MY_API_TOKEN needs --pass-env" in out
    assert "%s -> /data (ro)  not mounted unless you confirm" % data in out  # offered, not imposed
    monkeypatch.setenv("MY_API_TOKEN", "another-" + SECRET)  # taken from here only when named, never shown
    assert (
        main(
            [
                "replay",
                run_id,
                "--dry-run",
                "--tracking-uri",
                mlflow_server.uri,
                "--pass-env",
                "MY_API_TOKEN",
                "--allow-recorded-mounts",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "MY_API_TOKEN passed from your environment" in out
    line = next(x for x in out.splitlines() if x.strip().startswith("docker run"))
    assert "@sha256:" in line and "--network host" in line
    assert "--shm-size 256m" in line and "--memory 4g" in line
    assert "-v %s:/data:ro" % data in line and "'<checkout>:/workspace:rw'" in line
    assert "-w /workspace" in line and "-e BATCH_NOTE=plain" in line and "-e MY_API_TOKEN" in line
    assert "--gpus" not in line and SECRET not in out
    assert line.endswith("python train.py --epochs 2")


def test_replay_is_identical_and_pulls_by_digest(
    recorded, mlflow_server, test_image, docker_client, forget_local_image, capsys
):
    run_id, repo, data, client = recorded
    forget_local_image(test_image.digest_ref)
    assert not has_image(docker_client, test_image.digest_ref)
    mark = registry_log_mark()
    try:
        code = main(["replay", run_id, "--yes", "--gpus", "none", "--tracking-uri", mlflow_server.uri])
    finally:
        if has_image(docker_client, test_image.digest_ref):  # put the session's tags back
            image = docker_client.images.get(test_image.digest_ref)
            image.tag(test_image.ref)
            image.tag(test_image.latest)
    out = capsys.readouterr().out
    assert code == 0, out
    verdict_line = out.strip().splitlines()[-1]
    assert ": identical: " in verdict_line
    # pulled by digest, never by tag
    image = docker_client.images.get(test_image.digest_ref)
    assert test_image.digest_ref in image.attrs["RepoDigests"]
    requests = registry_requests(mark)
    manifests = [r for r in requests if r.startswith("manifests/")]
    assert requests, "the image did not come from the registry"
    assert all(r == "manifests/" + test_image.digest for r in manifests), manifests
    replay_id = verdict_line.split()[2].rstrip(":")
    replay = client.get_run(replay_id)
    assert replay.data.tags["tfrepro.replay_of"] == run_id
    assert replay.data.tags["tfrepro.replay.verdict"] == "identical"
    assert replay.data.tags["tfrepro.model.hash"] == client.get_run(run_id).data.tags["tfrepro.model.hash"]
    assert replay.info.status == "FINISHED"
    assert replay.info.experiment_id == client.get_run(run_id).info.experiment_id  # not train.py's own
    launch = launch_json(client, replay_id, repo.parent / "replay")
    assert launch["image"] == test_image.digest_ref
    # git inside the replay container saw the same commit and the same patch
    original_env = environment_json(client, run_id, repo.parent / "original-env")
    replay_env = environment_json(client, replay_id, repo.parent / "replay-env")
    assert replay.data.tags["tfrepro.git.commit"] == client.get_run(run_id).data.tags["tfrepro.git.commit"]
    assert replay_env["git"]["commit"] == original_env["git"]["commit"] == git(repo, "rev-parse", "HEAD")
    assert replay_env["git"]["patch_sha256"] == original_env["git"]["patch_sha256"]
    assert replay_env["git"]["patch_sha256"] and replay.data.tags["tfrepro.git.dirty"] == "true"
    # the user's checkout is untouched and the temporary checkout is gone
    assert "uncommitted change" in (repo / "train.py").read_text()
    assert len(git(repo, "worktree", "list").splitlines()) == 1
    checkout = next(m["source"] for m in launch["mounts"] if m["kind"] == "repo")
    assert checkout != str(repo) and not Path(checkout).exists()
