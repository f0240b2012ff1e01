"""ReproCallback records fit()'s inputs as MLflow datasets: a real `mlflow server`, a real fit()."""

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.py38]

tf = pytest.importorskip("tensorflow")
mlflow = pytest.importorskip("mlflow")

import tfrepro  # noqa: E402
from tfrepro.callback import ReproCallback  # noqa: E402


@pytest.fixture
def server(mlflow_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    mlflow.set_tracking_uri(mlflow_server.uri)
    yield mlflow.tracking.MlflowClient()
    while mlflow.active_run():
        mlflow.end_run()


def model():
    m = tf.keras.Sequential([tf.keras.layers.Dense(4, activation="relu", input_shape=(3,)), tf.keras.layers.Dense(1)])
    m.compile(optimizer="adam", loss="mse")
    return m


def inputs_of(client, run_id):
    run = client.get_run(run_id)
    return run, {
        [t.value for t in d.tags if t.key == "mlflow.data.context"][0]: d.dataset for d in run.inputs.dataset_inputs
    }


def test_numpy_inputs_show_in_mlflow(server):
    tfrepro.deterministic(0)
    x = np.random.RandomState(0).rand(32, 3).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    callback = ReproCallback(experiment_name="inputs", log_model=False)
    model().fit(x, y, validation_data=(x[:8], y[:8]), epochs=1, verbose=0, callbacks=[callback])
    assert callback.wait(60)  # fit() returns before the last upload
    run, datasets = inputs_of(server, callback.session.run_id)
    assert set(datasets) == {"training", "validation"}
    tags = run.data.tags
    assert datasets["training"].digest == tags["tfrepro.input.training.digest"][len("sha256:") :][:32]
    assert datasets["training"].name == "training" and datasets["training"].source_type == "code"
    assert tags["tfrepro.input.training.shape"] == "x float32[32, 3], y float32[32, 1]"
    assert tags["tfrepro.distribute.replicas"] == "1"


def train_shuffled(callbacks):
    tfrepro.deterministic(3)
    x = np.arange(60, dtype="float32").reshape(20, 3) / 60
    dataset = tf.data.Dataset.from_tensor_slices((x, x.sum(axis=1, keepdims=True)))
    dataset = dataset.shuffle(20, reshuffle_each_iteration=True).batch(4)
    m = model()
    m.fit(dataset, epochs=3, verbose=0, callbacks=callbacks)
    return dataset, [w.numpy() for w in m.weights]


def test_tf_data_is_logged_by_spec_and_training_sees_the_same_batches(server):
    bare_dataset, bare = train_shuffled([])
    callback = ReproCallback(experiment_name="inputs", log_model=False)
    dataset, tracked = train_shuffled([callback])
    for a, b in zip(bare, tracked):
        np.testing.assert_array_equal(a, b)  # reading the pipeline would have advanced its shuffle
    assert callback.wait(60)  # fit() returns before the last upload
    run, datasets = inputs_of(server, callback.session.run_id)
    assert list(datasets) == ["training"]
    assert datasets["training"].name == "training (tf.data 5)"
    assert run.data.tags["tfrepro.input.training.kind"] == "tf.data"


def test_an_unreachable_server_never_breaks_fit_and_sync_uploads_the_inputs(mlflow_server, tmp_path, monkeypatch):
    from tests.helpers.ports import free_port
    from tfrepro.tracking.sync import sync_all

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TFREPRO_SPOOL_DIR", str(tmp_path / "spool"))
    nobody = "http://127.0.0.1:%d" % free_port()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", nobody)
    mlflow.set_tracking_uri(nobody)
    x = np.zeros((8, 3), "float32")
    callback = ReproCallback(experiment_name="inputs", log_model=False)
    history = model().fit(x, x[:, :1], epochs=1, verbose=0, callbacks=[callback])
    assert len(history.history["loss"]) == 1
    # the dataset records were spooled with the rest: `tfrepro sync` puts them on a server
    (result,) = sync_all(str(tmp_path / "spool"), tracking_uri=mlflow_server.uri)
    assert result.failure is None and not result.errors, (result.failure, result.errors)
    run, datasets = inputs_of(mlflow.tracking.MlflowClient(mlflow_server.uri), result.run_id)
    assert set(datasets) == {"training"}
    assert run.data.tags["tfrepro.input.training.kind"] == "numpy"


def test_numpy_inputs_reach_a_sqlite_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TFREPRO_SPOOL_DIR", str(tmp_path / "spool"))
    uri = "sqlite:///%s" % (tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    x = np.ones((16, 3), "float32")
    callback = ReproCallback(experiment_name="inputs", log_model=False)
    model().fit(x, x[:, :1], validation_data=(x, x[:, :1]), epochs=1, verbose=0, callbacks=[callback])
    assert callback.wait(60)
    run, datasets = inputs_of(mlflow.tracking.MlflowClient(uri), callback.session.run_id)
    assert set(datasets) == {"training", "validation"}
    assert datasets["training"].digest == run.data.tags["tfrepro.input.training.digest"].split(":")[1][:32]
