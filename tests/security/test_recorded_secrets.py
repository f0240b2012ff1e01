"""Secrets on the command line never reach the server: the plugin (every mlflow.start_run()) and
the callback record a redacted argv; against a real `mlflow server`."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers.records import everything_on_server

pytestmark = [pytest.mark.slow, pytest.mark.py38]

mlflow = pytest.importorskip("mlflow")

SECRET_ARGS = ["--password=hunter2-FAKE", "--api-key", "xyz-FAKE", "--db", "postgres://u:pw-FAKE@db/x", "--epochs", "1"]
START_RUN = "import mlflow; r = mlflow.start_run(); print('run_id:', r.info.run_id); mlflow.end_run()"
FIT = """
import numpy as np, tensorflow as tf, tfrepro
x = np.random.RandomState(0).rand(16, 2).astype("float32")
model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(2,))])
model.compile(optimizer="sgd", loss="mse")
cb = tfrepro.ReproCallback(experiment_name="argv-secrets", log_model=False)
model.fit(x, x[:, :1], epochs=1, verbose=0, callbacks=[cb])
print("run_id:", cb.session.run_id)
"""


def run_python(cwd, uri, args):
    environ = dict(os.environ, MLFLOW_TRACKING_URI=uri)
    environ.pop("MLFLOW_RUN_ID", None)
    out = subprocess.run(
        [sys.executable] + args, cwd=str(cwd), env=environ, check=True, capture_output=True, text=True
    ).stdout
    return [line.split()[1] for line in out.splitlines() if line.startswith("run_id: ")][0]


@pytest.mark.parametrize("how", ["plugin", "callback"])
def test_secret_flags_are_redacted_where_argv_is_recorded(how, tracking_uri, git_repo, tmp_path):
    if how == "plugin":
        run_id = run_python(git_repo, tracking_uri, ["-c", START_RUN] + SECRET_ARGS)
    else:
        (git_repo / "fit.py").write_text(FIT)
        run_id = run_python(git_repo, tracking_uri, ["fit.py"] + SECRET_ARGS)
    client = mlflow.tracking.MlflowClient(tracking_uri)
    stored = everything_on_server(client, run_id, tmp_path)
    assert "FAKE" not in stored
    command = json.loads(client.get_run(run_id).data.tags["tfrepro.command"])
    assert command[-7:] == [
        "--password=<redacted>",
        "--api-key",
        "<redacted>",
        "--db",
        "postgres://db/x",
        "--epochs",
        "1",
    ]


def test_the_callback_signs_the_record_it_wrote(tracking_uri, git_repo, tmp_path, monkeypatch):
    from tfrepro import signing
    from tfrepro.tracking import record as run_record

    key = tmp_path / "alice"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    allowed = tmp_path / "allowed"
    allowed.write_text("alice@example.com " + open(str(key) + ".pub").read())
    monkeypatch.setenv("TFREPRO_SIGNING_KEY", str(key))
    (git_repo / "fit.py").write_text(FIT)
    run_id = run_python(git_repo, tracking_uri, ["fit.py"])
    record = run_record.load(mlflow.tracking.MlflowClient(tracking_uri), run_id)
    assert signing.verify_record(record, str(allowed)).line() == "signed by alice@example.com (trusted)"
