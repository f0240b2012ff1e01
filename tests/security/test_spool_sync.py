"""A crafted spool against `tfrepro sync` and a real `mlflow server`: only the run's own files
go up, other users' files are skipped, one bad spool file does not stop the others, and the
tracking URI's password is never printed."""

import json
import os
import stat

import pytest

from tfrepro.cli import main, status
from tfrepro.tracking import spool

OTHER_UID = 4242
FAKE_SECRET = "FAKE-docker-auth-c2VjcmV0"


def write_spool(directory, run_id, header, records):
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, run_id + ".jsonl")
    with open(path, "w") as f:
        f.write(json.dumps({"run": dict(header, run_id=run_id)}) + "\n")
        for r in records:
            f.write(json.dumps(r) + "\n")
    os.chmod(path, 0o600)
    return path


def artifact_files(client, run_id, path=""):
    out = []
    for f in client.list_artifacts(run_id, path):
        out.extend(artifact_files(client, run_id, f.path) if f.is_dir else [f.path])
    return out


@pytest.fixture
def workdir(tmp_path):
    work = tmp_path / "work"
    (work / "logs").mkdir(parents=True)
    (work / "logs" / "events.txt").write_text("ok\n")
    return work


@pytest.fixture
def docker_config(tmp_path):
    d = tmp_path / "home" / ".docker"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"auths": {"registry": {"auth": FAKE_SECRET}}}))
    return d


def test_sync_uploads_only_the_runs_own_files(tracking_uri, tmp_path, workdir, docker_config, capsys):
    from mlflow.tracking import MlflowClient

    if os.geteuid() == 0:  # as root we can plant another user's file in the run's own directory
        (workdir / "logs" / "planted.txt").write_text("not yours\n")
        os.chown(str(workdir / "logs" / "planted.txt"), OTHER_UID, OTHER_UID)
    (workdir / "logs" / "link.json").symlink_to(docker_config / "config.json")
    spool_dir = str(tmp_path / "spool")
    header = {"experiment_name": "sync-sec", "tracking_uri": tracking_uri, "cwd": str(workdir)}
    write_spool(
        spool_dir,
        "local-aaaa",
        header,
        [
            {"params": {"lr": "0.1"}},
            {"artifacts": str(docker_config), "path": "stolen"},
            {"artifacts": str(workdir / "logs" / ".." / ".." / "home" / ".docker"), "path": "stolen2"},
            {"artifacts": str(workdir / "logs"), "path": "tensorboard"},
            {"end": "FINISHED", "end_time": 1},
        ],
    )
    write_spool(spool_dir, "local-bbbb", header, [{"metrics": ["not", "a", "dict"], "step": 0, "ts": 1}])
    write_spool(spool_dir, "local-cccc", header, [{"params": {"ok": "1"}}, {"end": "FINISHED", "end_time": 1}])

    assert main(["sync", "--spool-dir", spool_dir]) == status.TRACKING  # one file failed: said, and the others went on
    out, err = capsys.readouterr()
    assert "local-bbbb.jsonl: not uploaded: malformed spool file" in err
    assert "local-aaaa.jsonl -> run" in out and "local-cccc.jsonl -> run" in out
    assert "outside the run's working directory" in err and "link.json (not yours" in err
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("sync-sec").experiment_id
    runs = {r.data.tags["tfrepro.local_run_id"]: r for r in client.search_runs([exp])}
    assert {"local-aaaa", "local-cccc"} <= set(runs)
    assert os.path.exists(os.path.join(spool_dir, "local-bbbb.jsonl"))  # kept; the others are done
    assert not os.path.exists(os.path.join(spool_dir, "local-cccc.jsonl"))
    files = artifact_files(client, runs["local-aaaa"].info.run_id)
    assert files == ["tensorboard/events.txt"]
    assert runs["local-cccc"].data.params == {"ok": "1"}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")
def test_another_users_spool_file_is_skipped(tracking_uri, tmp_path, capsys):
    spool_dir = str(tmp_path / "spool")
    path = write_spool(spool_dir, "local-dddd", {"experiment_name": "sync-sec", "tracking_uri": tracking_uri}, [])
    os.chown(path, OTHER_UID, OTHER_UID)
    assert main(["sync", "--spool-dir", spool_dir]) == 0
    assert "skipped (owned by another user (uid 4242))" in capsys.readouterr().out
    assert os.path.exists(path)


def test_sync_list_and_errors_never_show_the_uri_password(tmp_path, capsys):
    spool_dir = str(tmp_path / "spool")
    write_spool(spool_dir, "local-eeee", {"tracking_uri": "http://bob:FAKEPASS123@127.0.0.1:9/"}, [])
    assert main(["sync", "--spool-dir", spool_dir, "--list"]) == 0
    assert main(["sync", "--spool-dir", spool_dir]) == status.TRACKING  # nothing listens on port 9
    out, err = capsys.readouterr()
    assert "http://127.0.0.1:9/" in out and "FAKEPASS123" not in out + err


def test_a_session_spools_privately_without_the_uri_password(tmp_path, monkeypatch, caplog):
    import mlflow

    from tfrepro.tracking.session import TrackingSession

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://bob:FAKEPASS123@127.0.0.1:9")
    mlflow.set_tracking_uri("http://bob:FAKEPASS123@127.0.0.1:9")
    try:
        session = TrackingSession.open(experiment_name="x", spool_dir=str(tmp_path / "spool"))
        session.log_params({"a": 1})
        session.close(timeout=0.5)
    finally:
        mlflow.set_tracking_uri(None)
    assert stat.S_IMODE(os.stat(str(tmp_path / "spool")).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(session.spool_path).st_mode) == 0o600
    assert "FAKEPASS123" not in open(session.spool_path).read()
    assert "FAKEPASS123" not in caplog.text and "127.0.0.1:9" in caplog.text
    assert spool.read_header(session.spool_path)["tracking_uri"] == "http://127.0.0.1:9"
