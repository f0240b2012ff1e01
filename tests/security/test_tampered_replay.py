"""Replaying a record an attacker wrote through MlflowClient, on the real Docker engine: what the
replay container gets (docker inspect), what reaches the server, and what is refused."""

import json
import os
import uuid

import pytest

from tests.helpers.cli import one_error
from tests.helpers.records import FAKE, everything_on_server
from tfrepro.cli import main

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPLAYER_ENV = {
    "HF_TOKEN": "hf_" + FAKE + "aaaaaaaaaaaa",
    "DATABASE_URL": "postgres://dbuser:%s@db/x" % FAKE,
    "PIP_INDEX_URL": "https://user:%s@host/simple" % FAKE,
    "AWS_SECRET_ACCESS_KEY": FAKE + "-aws",
    "MLFLOW_TRACKING_USERNAME": "replayer",
    "MLFLOW_TRACKING_PASSWORD": FAKE + "-mlflow",
}
TRACKING_CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def replay(mlflow_server, run_id, *extra):
    return main(["replay", run_id, "--yes", "--gpus", "none", "--tracking-uri", mlflow_server.uri] + list(extra))


def replay_run_of(client, run_id):
    runs = client.search_runs([client.get_run(run_id).info.experiment_id], "tags.`tfrepro.replay_of` = '%s'" % run_id)
    assert len(runs) == 1
    return runs[0].info.run_id


def test_no_value_of_the_replayers_environment_enters_the_container_or_reaches_the_server(
    tampered, mlflow_server, attacker, watch, monkeypatch, capsys, tmp_path
):
    for name, value in REPLAYER_ENV.items():
        monkeypatch.setenv(name, value)
    launch = {
        "env": {
            "HF_TOKEN": None,
            "DATABASE_URL": None,
            "PIP_INDEX_URL": None,
            "AWS_SECRET_ACCESS_KEY": None,
            "MLFLOW_TRACKING_URI": "http://127.0.0.1:9/steal",
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "BATCH": "32",
        }
    }
    run_id = tampered(launch=launch)
    watcher = watch()
    replay(mlflow_server, run_id)
    out, err = capsys.readouterr()
    env = watcher.env()
    assert not [k for k, v in env.items() if FAKE in v and k not in TRACKING_CREDENTIALS], env
    assert env["BATCH"] == "32" and "HTTPS_PROXY" not in env
    assert env["MLFLOW_TRACKING_URI"] == mlflow_server.uri  # only to the replayer's own server
    assert watcher.attrs["HostConfig"]["NetworkMode"] == "host"
    assert [m[1] for m in watcher.mounts()] == ["/workspace"]  # the checkout, nothing else
    assert "HF_TOKEN needs --pass-env HF_TOKEN" in out
    assert (
        "tracking:  MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD passed to %s" % env["TFREPRO_IMAGE_DIGEST"]
        in out
    ) and mlflow_server.uri in out
    assert FAKE not in out + err
    assert FAKE not in everything_on_server(attacker, replay_run_of(attacker, run_id), tmp_path)


def test_pass_env_passes_the_value_but_never_records_it(
    tampered, mlflow_server, attacker, watch, monkeypatch, capsys, tmp_path
):
    monkeypatch.setenv("HF_TOKEN", REPLAYER_ENV["HF_TOKEN"])
    monkeypatch.setenv("DATABASE_URL", REPLAYER_ENV["DATABASE_URL"])
    run_id = tampered(launch={"env": {"HF_TOKEN": None, "DATABASE_URL": None}})
    watcher = watch()
    replay(mlflow_server, run_id, "--pass-env", "HF_TOKEN", "-e", "MODE=fast")
    out, err = capsys.readouterr()
    env = watcher.env()
    assert env["HF_TOKEN"] == REPLAYER_ENV["HF_TOKEN"] and env["MODE"] == "fast" and "DATABASE_URL" not in env
    assert "HF_TOKEN passed from your environment (--pass-env)" in out and FAKE not in out + err
    new_run = replay_run_of(attacker, run_id)
    stored = everything_on_server(attacker, new_run, tmp_path)
    assert FAKE not in stored
    path = attacker.download_artifacts(new_run, "tfrepro/launch.json", str(tmp_path))
    recorded = json.load(open(path))["env"]
    assert recorded["HF_TOKEN"] is None and recorded["MODE"] == "fast"


@pytest.mark.parametrize(
    "source",
    [
        "/",
        "//var/run/docker.sock",
        "/var/run",
        "/etc",
        "/proc",
        "HOME",
        "HOME/.ssh",
        "HOME/.docker",
        "SYMLINK_TO_ROOT",
        "HOME/../..",
    ],
)
def test_dangerous_recorded_mounts_are_refused_before_anything_runs(
    tampered, mlflow_server, attacker, tmp_path, docker_client, capsys, source
):
    home = os.path.expanduser("~")
    (tmp_path / "innocent").symlink_to("/")
    source = source.replace("SYMLINK_TO_ROOT", str(tmp_path / "innocent")).replace("HOME", home)
    run_id = tampered(launch={"mounts": [{"source": source, "target": "/host", "read_only": False, "kind": "user"}]})
    before = {c.id for c in docker_client.containers.list(all=True)}
    line = one_error(capsys, replay(mlflow_server, run_id, "--allow-recorded-mounts"))
    assert "refusing the recorded mount" in line
    assert {c.id for c in docker_client.containers.list(all=True)} == before  # nothing ran
    assert attacker.search_runs(["0"], "tags.`tfrepro.replay_of` = '%s'" % run_id) == []


def test_recorded_mounts_are_offered_not_imposed(tampered, mlflow_server, watch, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    run_id = tampered(launch={"mounts": [{"source": str(data), "target": "/data", "read_only": True, "kind": "user"}]})
    watcher = watch()
    replay(mlflow_server, run_id)  # --yes alone: not mounted
    assert "/data" not in [m[1] for m in watcher.mounts()]
    assert "not mounted unless you confirm" in capsys.readouterr().out
    watcher = watch()
    replay(mlflow_server, run_id, "--allow-recorded-mounts")
    assert (str(data), "/data", False) in watcher.mounts()
    watcher = watch()
    replay(mlflow_server, run_id, "-v", "%s:/data:ro" % data)  # the same -v again
    assert (str(data), "/data", False) in watcher.mounts()


@pytest.mark.parametrize("answer", ["n", "y"])
def test_recorded_mounts_are_confirmed_interactively(tampered, mlflow_server, watch, tmp_path, answer):
    from tests.helpers.terminal import run_on_tty

    data = tmp_path / "data"
    data.mkdir()
    run_id = tampered(launch={"mounts": [{"source": str(data), "target": "/data", "read_only": True, "kind": "user"}]})
    watcher = watch()
    code, screen = run_on_tty(
        ["replay", run_id, "--gpus", "none", "--tracking-uri", mlflow_server.uri],
        [("as the original run did?", answer), ("with this command?", "y")],
        env=dict(os.environ),
        cwd=os.getcwd(),
    )
    assert "Mount %s at /data read-only" % data in screen, screen
    assert ((str(data), "/data", False) in watcher.mounts()) == (answer == "y")


def test_artifact_location_never_becomes_a_mount(attacker, tampered, mlflow_server, watch, repo, test_image, capsys):
    experiment = attacker.create_experiment("evil-" + uuid.uuid4().hex[:8], artifact_location="/var/run")
    run_id = tampered(experiment_id=experiment)
    watcher = watch()
    replay(mlflow_server, run_id)
    assert [m[1] for m in watcher.mounts()] == ["/workspace"]
    name = attacker.get_experiment(experiment).name
    watcher = watch()  # `tfrepro run` into that experiment: the same
    main(
        [
            "run",
            "--image",
            test_image.latest,
            "--experiment",
            name,
            "--tracking-uri",
            mlflow_server.uri,
            "--no-autolog",
            "--",
        ]
        + json.loads(attacker.get_run(run_id).data.tags["tfrepro.command"])
    )
    assert [m[1] for m in watcher.mounts()] == ["/workspace"]


def test_an_image_from_another_repository_or_registry_needs_consent(
    tampered, mlflow_server, test_image, watch, monkeypatch, capsys
):
    run_id = tampered(tags={"tfrepro.image.ref": "nvcr.io/nvidia/tensorflow:22.07-tf2-py3"})
    line = one_error(capsys, replay(mlflow_server, run_id))
    assert "is from 127.0.0.1:5555/tfrepro-test but the run says its image was nvcr.io" in line
    assert "--allow-untrusted-image" in line
    monkeypatch.setenv("TFREPRO_TRUSTED_REGISTRIES", "nvcr.io")
    run_id = tampered()
    line = one_error(capsys, replay(mlflow_server, run_id))
    assert "registry 127.0.0.1:5555 is not in TFREPRO_TRUSTED_REGISTRIES" in line
    watcher = watch()
    assert replay(mlflow_server, run_id, "--allow-untrusted-image") in (0, 1)
    assert watcher.attrs["Config"]["Image"] == test_image.digest_ref
    monkeypatch.setenv("TFREPRO_TRUSTED_REGISTRIES", "nvcr.io,127.0.0.1:5555")
    out = capsys.readouterr().out
    assert "image:     %s (registry 127.0.0.1:5555)" % test_image.digest_ref in out
