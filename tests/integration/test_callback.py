"""ReproCallback end to end: a real `mlflow server`, a real dirty git repo, a real fit()."""

import os

import numpy as np
import pytest

from tests.helpers.git_repos import git, make_repo
from tests.helpers.mlflow_server import tracking_into
from tests.helpers.ports import free_port

pytestmark = [pytest.mark.slow, pytest.mark.py38]

tf = pytest.importorskip("tensorflow")
mlflow = pytest.importorskip("mlflow")

import tfrepro  # noqa: E402
from tfrepro.callback import ReproCallback  # noqa: E402


def data(seed=0):
    rng = np.random.RandomState(seed)
    x = rng.rand(64, 4).astype("float32")
    return x, x.sum(axis=1, keepdims=True)


def build(lr=0.01):
    model = tf.keras.Sequential(
        [tf.keras.layers.Dense(8, activation="relu", input_shape=(4,)), tf.keras.layers.Dense(1)]
    )
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=lr), loss="mse", metrics=["mae"])
    return model


def train(callback, epochs=2, seed=7, strategy=None):
    tfrepro.deterministic(seed)
    x, y = data()
    if strategy is None:
        model = build()
    else:
        with strategy.scope():
            model = build()
    model.fit(x, y, epochs=epochs, batch_size=16, validation_data=(x[:16], y[:16]), verbose=0, callbacks=[callback])
    return model


@pytest.fixture(scope="module")
def server_env(mlflow_server, tmp_path_factory):
    """Module-wide: MLflow pointed at the shared server, cwd inside a dirty git repo."""
    repo = make_repo(tmp_path_factory.mktemp("callback") / "repo")
    (repo / "train.py").write_text("print('hello, dirty')\n")
    with tracking_into(mlflow_server.uri, repo):
        yield repo


@pytest.fixture(scope="module")
def trained(server_env):
    callback = ReproCallback(experiment_name="callback-e2e", run_name="e2e", params={"note": "hi"})
    model = train(callback)
    assert callback.wait(60)  # fit() returns before the last upload and the run's end
    run = mlflow.tracking.MlflowClient().get_run(callback.session.run_id)
    return callback, model, run


def test_run_is_ended_and_tagged(trained, server_env):
    callback, _, run = trained
    assert mlflow.active_run() is None  # it started the run, so it ended it
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "e2e"
    tags = run.data.tags
    commit = git(server_env, "rev-parse", "HEAD")
    assert tags["tfrepro.git.commit"] == commit
    assert tags["mlflow.source.git.commit"] == commit
    assert tags["tfrepro.git.dirty"] == "true"
    assert tags["tfrepro.seed"] == "7"
    assert tags["tfrepro.tf.version"].startswith("2.9")
    assert tags["tfrepro.model.hash"].startswith("sha256:")
    assert tags["tfrepro.model.uri"] == callback.model_uri


def test_params(trained):
    _, model, run = trained
    params = run.data.params
    assert params["epochs"] == "2"
    assert params["steps"] == "4"
    assert params["optimizer"] == "Adam"
    assert float(params["optimizer.learning_rate"]) == pytest.approx(0.01)
    assert params["loss"] == "mse"
    assert params["model.params"] == str(model.count_params())
    assert params["note"] == "hi"


def test_metrics_per_epoch(trained):
    _, _, run = trained
    client = mlflow.tracking.MlflowClient()
    for key in ("loss", "val_loss", "mae", "val_mae"):
        history = client.get_metric_history(run.info.run_id, key)
        assert sorted(m.step for m in history) == [0, 1], key
    assert not any(k.startswith("batch_") for k in run.data.metrics)


def test_environment_artifacts(trained, tmp_path):
    _, _, run = trained
    local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="tfrepro", dst_path=str(tmp_path))
    names = sorted(os.listdir(local))
    assert names == ["environment.json", "environment.md", "git.patch", "requirements.txt"]
    env = tfrepro.Environment.from_json(open(os.path.join(local, "environment.json")).read())
    assert env.git is not None and env.git.dirty
    assert "hello, dirty" in open(os.path.join(local, "git.patch")).read()
    assert "tensorflow==" in open(os.path.join(local, "requirements.txt")).read().lower() or env.python is None


def test_model_loads_with_pyfunc_and_saved_model(trained, tmp_path):
    callback, model, _ = trained
    x, _ = data()
    expected = model.predict(x[:5], verbose=0)
    pyfunc = mlflow.pyfunc.load_model(callback.model_uri)
    got = np.asarray(pyfunc.predict(x[:5])).reshape(expected.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    local = mlflow.artifacts.download_artifacts(artifact_uri=callback.model_uri, dst_path=str(tmp_path))
    loaded = tf.saved_model.load(os.path.join(local, "data", "model"))
    np.testing.assert_allclose(loaded(tf.constant(x[:5])).numpy(), expected, rtol=1e-5)


def test_deterministic_retrain_gives_same_hash(trained, server_env):
    first, _, _ = trained
    again = ReproCallback(experiment_name="callback-e2e", log_model=True)
    train(again)
    assert again.model_hash == first.model_hash
    other = ReproCallback(experiment_name="callback-e2e")
    train(other, seed=8)
    assert other.model_hash != first.model_hash


def test_uses_active_run_and_leaves_it_open(server_env):
    with mlflow.start_run() as run:
        callback = ReproCallback(log_model=False, log_every_n_steps=2)
        train(callback, epochs=1)
        assert mlflow.active_run().info.run_id == run.info.run_id
        assert callback.session.run_id == run.info.run_id
    client = mlflow.tracking.MlflowClient()
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "batch_loss")]
    assert sorted(steps) == [2, 4]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [0]
    assert "tfrepro.model.hash" not in client.get_run(run.info.run_id).data.tags


def test_mirrored_strategy(server_env):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    callback = ReproCallback(experiment_name="callback-e2e", log_model=True)
    train(callback, epochs=1, strategy=strategy)
    assert callback.wait(60)
    run = mlflow.tracking.MlflowClient().get_run(callback.session.run_id)
    assert run.info.status == "FINISHED"
    assert "val_loss" in run.data.metrics
    assert run.data.tags["tfrepro.model.hash"] == callback.model_hash


def test_tensorboard_logs_are_uploaded(server_env, tmp_path):
    log_dir = tmp_path / "tb"
    callback = ReproCallback(experiment_name="callback-e2e", log_model=False, log_tensorboard=True)
    tfrepro.deterministic(1)
    x, y = data()
    model = build()
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callback, tf.keras.callbacks.TensorBoard(log_dir=str(log_dir))])
    assert callback.wait(60)
    listed = mlflow.artifacts.list_artifacts(run_id=callback.session.run_id, artifact_path="tensorboard")
    assert {os.path.basename(a.path) for a in listed} >= {"train"}


def test_unreachable_server_does_not_stop_training(server_env, mlflow_server, monkeypatch):
    uri = "http://127.0.0.1:%d" % free_port()  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    try:
        callback = ReproCallback(experiment_name="down", log_model=True)
        model = train(callback, epochs=2)
        assert len(model.history.history["loss"]) == 2
        assert callback.model_hash.startswith("sha256:")
        assert callback.model_uri is None
        spooled = open(callback.session.spool_path).read()  # kept for `tfrepro sync`
        assert callback.model_hash in spooled and "val_loss" in spooled
    finally:
        while mlflow.active_run():
            mlflow.end_run()
        mlflow.set_tracking_uri(mlflow_server.uri)
