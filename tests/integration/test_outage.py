"""Tracking server outages during a real Keras fit: nothing lost, nothing duplicated.

Each test owns its `mlflow server` (stopped and restarted on the same port and backend),
so the session-wide server other tests share is never disturbed.
"""

import os

import numpy as np
import pytest

from tests.helpers.mlflow_server import MlflowServer
from tfrepro.cli import main, status
from tfrepro.tracking.session import FLUSH_TAG

pytestmark = pytest.mark.slow

STEPS, EPOCHS = 40, 3


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("outage-server")).start()
    yield server
    server.stop()


@pytest.fixture
def tracking(server, monkeypatch, tmp_path):
    import mlflow

    if server.proc is None:
        server.start()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    monkeypatch.setenv("TFREPRO_SPOOL_DIR", str(tmp_path / "spool"))
    mlflow.set_tracking_uri(server.uri)
    yield server
    while mlflow.active_run():
        mlflow.end_run()


def fit(extra_callbacks=(), run_name=None):
    import tensorflow as tf

    from tfrepro import ReproCallback

    rng = np.random.RandomState(0)
    x, y = rng.rand(STEPS * 8, 32).astype("float32"), rng.rand(STEPS * 8, 1).astype("float32")
    model = tf.keras.Sequential(
        [tf.keras.layers.Dense(64, activation="relu", input_shape=(32,)), tf.keras.layers.Dense(1)]
    )
    model.compile(optimizer="adam", loss="mse")
    repro = ReproCallback(experiment_name="outage", run_name=run_name, log_every_n_steps=1, log_model=False)
    history = model.fit(x, y, batch_size=8, epochs=EPOCHS, verbose=0, callbacks=[repro, *extra_callbacks])
    return history, repro


def assert_every_point_once(client, run_id):
    total = STEPS * EPOCHS
    steps = sorted(m.step for m in client.get_metric_history(run_id, "batch_loss"))
    assert steps == list(range(1, total + 1))
    assert sorted(m.step for m in client.get_metric_history(run_id, "loss")) == list(range(EPOCHS))


def test_server_killed_mid_fit_and_restarted(tracking):
    import tensorflow as tf
    from mlflow.tracking import MlflowClient

    def outage(batch, logs):
        step = outage.calls = outage.calls + 1
        if step == 30:
            tracking.stop()
        elif step == 70:  # blocks training while the server boots: only the test waits here
            tracking.start()

    outage.calls = 0
    history, repro = fit([tf.keras.callbacks.LambdaCallback(on_train_batch_end=outage)])
    assert len(history.history["loss"]) == EPOCHS  # training finished normally
    assert repro.wait(60)  # fit() returns before the last upload and the run's end
    session = repro.session
    client = MlflowClient(tracking.uri)
    run = client.get_run(session.run_id)
    assert_every_point_once(client, session.run_id)
    assert run.info.status == "FINISHED"
    assert float(run.data.tags[FLUSH_TAG]) >= 0
    assert "tfrepro/environment.json" in [f.path for f in client.list_artifacts(session.run_id, "tfrepro")]
    assert not os.path.exists(session.spool_path)


def test_server_down_for_the_whole_fit_then_sync(tracking, capsys):
    from mlflow.tracking import MlflowClient

    tracking.stop()
    history, repro = fit(run_name="offline")
    assert len(history.history["loss"]) == EPOCHS
    local_id = repro.session.run_id
    assert local_id.startswith("local-") and os.path.exists(repro.session.spool_path)
    tracking.start()
    assert main(["sync"]) == 0
    client = MlflowClient(tracking.uri)
    runs = client.search_runs(
        [client.get_experiment_by_name("outage").experiment_id], "tags.`tfrepro.local_run_id` = '%s'" % local_id
    )
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == "offline"
    assert run.data.params["epochs"] == str(EPOCHS)
    assert run.data.tags.get("tfrepro.schema") and FLUSH_TAG in run.data.tags
    assert "tfrepro/environment.json" in [f.path for f in client.list_artifacts(run.info.run_id, "tfrepro")]
    assert_every_point_once(client, run.info.run_id)
    capsys.readouterr()
    assert main(["sync"]) == 0  # a second sync finds nothing left and uploads nothing
    assert "nothing to sync" in capsys.readouterr().out
    assert_every_point_once(client, run.info.run_id)


def test_sync_reports_one_line_when_the_server_is_still_down(tracking, capsys):
    tracking.stop()
    history, repro = fit()
    capsys.readouterr()
    assert main(["sync"]) == status.TRACKING  # the server is still down
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("tfrepro: error: 1 of 1 spool files not uploaded")
    assert os.path.exists(repro.session.spool_path)  # kept for the next try
