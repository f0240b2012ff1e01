"""A team server behind MLflow's basic-auth app: clients authenticate with
MLFLOW_TRACKING_USERNAME/PASSWORD, and tfrepro never records the password nor prints it.

Checked everywhere a record goes: tags, params, every artifact, the spool, the training's
output, `show`, `show --json`, `env --json`, `doctor --json`, and for `tfrepro run` the
launch record and its `docker run` line.
"""

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.helpers.git_repos import make_repo
from tests.helpers.mlflow_server import MlflowServer
from tfrepro.cli import main

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
USER = "admin"
PASSWORD = "fake-pw-" + uuid.uuid4().hex[:16]


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    pytest.importorskip("flask_wtf", reason="MLflow's basic-auth app needs Flask-WTF (pip install 'tfrepro[server]')")
    root = tmp_path_factory.mktemp("auth-server")
    ini = root / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///%s/auth.db\n"
        "admin_username = %s\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        % (root, USER)
    )
    server = MlflowServer(
        root,
        extra_args=["--app-name", "basic-auth"],
        env={
            "MLFLOW_AUTH_CONFIG_PATH": str(ini),
            "MLFLOW_AUTH_ADMIN_PASSWORD": PASSWORD,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": uuid.uuid4().hex,
        },
    )
    server.start(timeout=180)
    yield server
    server.stop()


@pytest.fixture
def authenticated(auth_server, monkeypatch, tmp_path):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", auth_server.uri)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    monkeypatch.setenv("TFREPRO_SPOOL_DIR", str(tmp_path / "spool"))
    mlflow.set_tracking_uri(auth_server.uri)
    return auth_server.uri


def training_repo(tmp_path):
    repo = make_repo(tmp_path / "repo")
    shutil.copy(ROOT / "examples" / "train.py", repo / "train.py")  # uncommitted: a patch is logged
    return repo


def files_mentioning(directory, text):
    hits = []
    for folder, _, files in os.walk(str(directory)):
        for name in files:
            with open(os.path.join(folder, name), "rb") as fh:
                if text.encode() in fh.read():
                    hits.append(os.path.join(folder, name))
    return hits


def assert_run_holds_no_password(client, run_id, tmp_path):
    run = client.get_run(run_id)
    for key, value in list(run.data.tags.items()) + list(run.data.params.items()):
        assert PASSWORD not in key + value, key
    local = tmp_path / ("artifacts-" + run_id)
    local.mkdir()
    client.download_artifacts(run_id, "", str(local))
    assert (local / "tfrepro" / "environment.json").exists()  # the artifacts did come down
    assert files_mentioning(local, PASSWORD) == []


def test_the_server_refuses_anonymous_clients(auth_server, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    with pytest.raises(Exception, match="401|Unauthorized|credentials"):
        MlflowClient(auth_server.uri).create_experiment("anonymous-" + uuid.uuid4().hex[:6])


def test_callback_run_and_inspect_commands_never_record_or_print_the_password(authenticated, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    repo = training_repo(tmp_path)
    experiment = "auth-" + uuid.uuid4().hex[:8]
    done = subprocess.run(
        [sys.executable, "train.py", "--epochs", "1", "--experiment", experiment],
        cwd=str(repo),
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert PASSWORD not in done.stdout + done.stderr
    client = MlflowClient(authenticated)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags.get("tfrepro.model.hash")
    assert run.data.tags["mlflow.user"] != PASSWORD
    assert_run_holds_no_password(client, run.info.run_id, tmp_path)
    assert files_mentioning(tmp_path / "spool", PASSWORD) == []
    printed = []
    for argv in (
        ["show", run.info.run_id],
        ["show", run.info.run_id, "--json"],
        ["env", "--json"],
        ["doctor", "--json"],
    ):
        code = main(argv)
        out, err = capsys.readouterr()
        assert code in (0, 1), (argv, err)
        printed.append(out + err)
    assert PASSWORD not in "\n".join(printed)


@pytest.mark.docker
def test_tfrepro_run_forwards_the_credentials_by_name_only(
    authenticated, test_image, docker_cleanup, tmp_path, capsys, monkeypatch
):
    from mlflow.tracking import MlflowClient

    repo = training_repo(tmp_path)
    experiment = "auth-run-" + uuid.uuid4().hex[:8]
    monkeypatch.chdir(repo)
    code = main(
        [
            "run",
            "--image",
            test_image.latest,
            "--gpus",
            "none",
            "--experiment",
            experiment,
            "--",
            "python",
            "train.py",
            "--epochs",
            "1",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, out[-3000:] + err[-3000:]
    assert PASSWORD not in out + err and "-e MLFLOW_TRACKING_PASSWORD " in err
    client = MlflowClient(authenticated)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert run.data.tags.get("tfrepro.model.hash")  # the container's callback logged with the credentials
    assert_run_holds_no_password(client, run.info.run_id, tmp_path)
