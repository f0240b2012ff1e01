"""The Keras compatibility matrix: each case is a real fit() with ReproCallback against the
shared real `mlflow server`, and checks what landed: per-epoch metrics (count and steps),
params, the model, and the environment tags. Models are tiny and epochs few, to stay fast.
"""

import csv
import json
import logging
import os

import numpy as np
import pytest

from tests.helpers.git_repos import git, make_repo
from tests.helpers.mlflow_server import tracking_into

pytestmark = [pytest.mark.slow, pytest.mark.py38]

tf = pytest.importorskip("tensorflow")
mlflow = pytest.importorskip("mlflow")

import tfrepro  # noqa: E402
from tfrepro.callback import ReproCallback  # noqa: E402

N, BATCH = 64, 16
TRAIN_KEYS = ("loss", "mae")
VAL_KEYS = ("val_loss", "val_mae")


@pytest.fixture(scope="module")
def repo(mlflow_server, tmp_path_factory):
    """Module-wide: MLflow pointed at the shared server, cwd inside a clean git repo."""
    repo = make_repo(tmp_path_factory.mktemp("matrix") / "repo")
    with tracking_into(mlflow_server.uri, repo):
        yield repo


def arrays(n=N, seed=0):
    rng = np.random.RandomState(seed)
    x = rng.rand(n, 4).astype("float32")
    return x, x.sum(axis=1, keepdims=True)


def sequential():
    return tf.keras.Sequential(
        [tf.keras.layers.Dense(4, activation="relu", input_shape=(4,)), tf.keras.layers.Dense(1)]
    )


def compiled(model=None, lr=0.01, **kwargs):
    model = model or sequential()
    kwargs.setdefault("loss", "mse")
    kwargs.setdefault("metrics", ["mae"])
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=lr), **kwargs)
    return model


def fit(model=None, x=None, y=None, callback=None, others=(), **kwargs):
    """model.fit with a ReproCallback first in the list; returns (callback, history, run)."""
    tfrepro.deterministic(0)
    model = model or compiled()
    if x is None:
        x, y = arrays()
    callback = callback or ReproCallback(experiment_name="keras-matrix", log_model=False)
    kwargs.setdefault("epochs", 2)
    kwargs.setdefault("verbose", 0)
    history = model.fit(x, y, callbacks=[callback, *others], **kwargs)
    callback.wait(60)  # fit() returns before the last upload and the run's end (issue 21)
    return callback, history, mlflow.tracking.MlflowClient().get_run(callback.session.run_id)


def check(run, epochs, keys=TRAIN_KEYS, absent=(), params=None, model=False, callback=None):
    """What landed: FINISHED, each key once per epoch at the epoch's index, params, model, environment."""
    client = mlflow.tracking.MlflowClient()
    assert run.info.status == "FINISHED"
    for key in keys:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
        assert sorted(steps) == list(epochs), key
    for key in absent:
        assert key not in run.data.metrics
    for key, value in (params or {}).items():
        assert run.data.params.get(key) == str(value), (key, run.data.params)
    tags = run.data.tags
    assert tags["tfrepro.tf.version"].startswith("2.9")
    assert tags["tfrepro.python.version"]
    assert tags["tfrepro.git.commit"] == git(os.getcwd(), "rev-parse", "HEAD")
    if model:
        assert tags["tfrepro.model.hash"].startswith("sha256:")
        assert tags["tfrepro.model.uri"] == callback.model_uri
        assert tags["tfrepro.model.hash"] == callback.model_hash


# -- verbose and validation ----------------------------------------------------------


@pytest.mark.parametrize("verbose", [0, 1, 2])
def test_verbose(repo, verbose):
    x, y = arrays()
    callback = ReproCallback(experiment_name="keras-matrix", log_model=verbose == 1)
    callback, history, run = fit(
        x=x, y=y, callback=callback, verbose=verbose, batch_size=BATCH, validation_data=(x[:16], y[:16])
    )
    check(
        run,
        [0, 1],
        TRAIN_KEYS + VAL_KEYS,
        model=verbose == 1,
        callback=callback,
        params={
            "epochs": 2,
            "steps": 4,
            "batch_size": BATCH,
            "initial_epoch": 0,
            "shuffle": True,
            "validation_split": 0.0,
        },
    )


@pytest.mark.parametrize("validation", ["data", "split", "none"])
def test_validation(repo, validation):
    x, y = arrays()
    kwargs = {"data": {"validation_data": (x[:16], y[:16])}, "split": {"validation_split": 0.25}, "none": {}}[
        validation
    ]
    _, _, run = fit(x=x, y=y, batch_size=BATCH, **kwargs)
    steps = 3 if validation == "split" else 4
    split = 0.25 if validation == "split" else 0.0
    if validation == "none":
        check(run, [0, 1], TRAIN_KEYS, absent=VAL_KEYS, params={"steps": steps})
    else:
        check(run, [0, 1], TRAIN_KEYS + VAL_KEYS, params={"steps": steps, "validation_split": split})


# -- inputs ----------------------------------------------------------------------------


class Batches(tf.keras.utils.Sequence):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x) // BATCH

    def __getitem__(self, i):
        return self.x[i * BATCH : (i + 1) * BATCH], self.y[i * BATCH : (i + 1) * BATCH]


def finite_batches(x, y):
    for i in range(0, len(x), BATCH):
        yield x[i : i + BATCH], y[i : i + BATCH]


def endless_batches(x, y):
    while True:
        yield from finite_batches(x, y)


@pytest.mark.parametrize(
    "kind, steps_per_epoch",
    [
        ("numpy", None),
        ("numpy", 3),
        ("dataset", None),
        ("dataset", 3),
        ("generator", None),
        ("generator", 3),
        ("sequence", None),
        ("sequence", 3),
    ],
)
def test_inputs(repo, kind, steps_per_epoch):
    x, y = arrays()
    kwargs = {"steps_per_epoch": steps_per_epoch} if steps_per_epoch else {}
    epochs = 2
    if kind == "numpy":
        data = {"x": x, "y": y}
        batch = 8 if steps_per_epoch else 32  # not given: Keras' default
        if steps_per_epoch:
            kwargs["batch_size"] = batch
    elif kind == "dataset":
        dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
        data = {"x": dataset.repeat().prefetch(2) if steps_per_epoch else dataset}
        batch = BATCH
    elif kind == "generator":
        data = {"x": endless_batches(x, y) if steps_per_epoch else finite_batches(x, y)}
        batch = BATCH
        epochs = 2 if steps_per_epoch else 1  # a finite generator runs out after one epoch
    else:
        data = {"x": Batches(x, y)}
        batch = BATCH
    callback, history, run = fit(epochs=epochs, **data, **kwargs)
    steps = steps_per_epoch or N // batch
    assert history.epoch == list(range(epochs))
    check(run, range(epochs), params={"epochs": epochs, "steps": steps, "batch_size": batch})


def test_initial_epoch_logs_true_epoch_index(repo):
    _, history, run = fit(epochs=4, initial_epoch=2)
    assert history.epoch == [2, 3]
    check(run, [2, 3], params={"epochs": 4, "initial_epoch": 2})


# -- other callbacks -------------------------------------------------------------------


def test_early_stopping_ends_run_finished_with_model(repo):
    stop = tf.keras.callbacks.EarlyStopping(monitor="loss", min_delta=1e9, patience=0)  # no epoch improves enough
    callback = ReproCallback(experiment_name="keras-matrix")
    callback, history, run = fit(callback=callback, others=[stop], epochs=10)
    assert history.epoch == [0, 1] and stop.stopped_epoch == 1
    check(run, [0, 1], params={"epochs": 10}, model=True, callback=callback)


def test_other_callbacks_in_the_same_list(repo, tmp_path):
    checkpoint = tf.keras.callbacks.ModelCheckpoint(str(tmp_path / "ckpt.h5"))
    # min_delta: no epoch counts as better, so lr halves after every epoch from the second on
    plateau = tf.keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=1e9)
    board = tf.keras.callbacks.TensorBoard(log_dir=str(tmp_path / "tb"))
    csv_log = tf.keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))
    callback = ReproCallback(experiment_name="keras-matrix", log_model=False, log_tensorboard=True)
    # ReproCallback comes first: Keras adds `lr` to the epoch's logs after it has run
    callback, _, run = fit(callback=callback, others=[checkpoint, plateau, board, csv_log], epochs=3)
    check(run, [0, 1, 2], TRAIN_KEYS + ("lr",), params={"optimizer.learning_rate": 0.01})
    history = mlflow.tracking.MlflowClient().get_metric_history(run.info.run_id, "lr")
    lrs = [m.value for m in sorted(history, key=lambda m: m.step)]
    assert lrs == pytest.approx([0.01, 0.01, 0.005])
    with open(str(tmp_path / "log.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [float(r["lr"]) for r in rows] == pytest.approx(lrs)  # the same numbers as Keras reports
    assert os.path.exists(str(tmp_path / "ckpt.h5"))
    listed = mlflow.artifacts.list_artifacts(run_id=run.info.run_id, artifact_path="tensorboard")
    assert {os.path.basename(a.path) for a in listed} >= {"train"}


# -- model kinds -----------------------------------------------------------------------


class Subclassed(tf.keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = tf.keras.layers.Dense(4, activation="relu")
        self.out = tf.keras.layers.Dense(1)

    def call(self, inputs):
        return self.out(self.hidden(inputs))


class CustomStep(tf.keras.Sequential):
    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            loss = self.compiled_loss(y, self(x, training=True))
        self.optimizer.apply_gradients(zip(tape.gradient(loss, self.trainable_variables), self.trainable_variables))
        return {"loss": loss, "custom": loss * 2.0}


def functional():
    inputs = tf.keras.Input(shape=(4,))
    return tf.keras.Model(inputs, tf.keras.layers.Dense(1)(tf.keras.layers.Dense(4)(inputs)))


def custom_step():
    return CustomStep([tf.keras.layers.Dense(4, input_shape=(4,)), tf.keras.layers.Dense(1)])


@pytest.mark.parametrize(
    "kind, keys",
    [
        ("functional", TRAIN_KEYS),
        ("subclassed", TRAIN_KEYS),
        ("custom_train_step", ("loss", "custom")),
    ],
)
def test_model_kinds(repo, kind, keys):
    build = {"functional": functional, "subclassed": Subclassed, "custom_train_step": custom_step}[kind]
    callback = ReproCallback(experiment_name="keras-matrix")
    callback, _, run = fit(compiled(build()), callback=callback, batch_size=BATCH)
    check(run, [0, 1], keys, model=True, callback=callback, params={"batch_size": BATCH})
    x, _ = arrays()
    pyfunc = mlflow.pyfunc.load_model(callback.model_uri)
    assert np.asarray(pyfunc.predict(x[:3])).size == 3


def test_multi_output_model(repo):
    inputs = tf.keras.Input(shape=(4,))
    hidden = tf.keras.layers.Dense(4)(inputs)
    model = tf.keras.Model(
        inputs, {"a": tf.keras.layers.Dense(1, name="a")(hidden), "b": tf.keras.layers.Dense(1, name="b")(hidden)}
    )
    model.compile(
        optimizer="adam",
        loss={"a": "mse", "b": "mae"},
        loss_weights={"a": 1.0, "b": 0.5},
        metrics={"a": ["mae"], "b": ["mse"]},
    )
    x, y = arrays()
    callback = ReproCallback(experiment_name="keras-matrix")
    callback, _, run = fit(model, x, {"a": y, "b": -y}, callback=callback, validation_split=0.25)
    keys = ("loss", "a_loss", "b_loss", "a_mae", "b_mse", "val_loss", "val_a_mae", "val_b_mse")
    check(run, [0, 1], keys, model=True, callback=callback)
    assert json.loads(run.data.params["loss"]) == {"a": "mse", "b": "mae"}


def test_mixed_precision_on_cpu(repo):
    policy = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = tf.keras.Sequential(
            [tf.keras.layers.Dense(4, input_shape=(4,)), tf.keras.layers.Dense(1, dtype="float32")]
        )  # float32 outputs
        callback = ReproCallback(experiment_name="keras-matrix")
        callback, history, run = fit(compiled(model), callback=callback)
    finally:
        tf.keras.mixed_precision.set_global_policy(policy)
    assert model.layers[0].compute_dtype == "float16"
    assert np.isfinite(history.history["loss"]).all()
    check(run, [0, 1], model=True, callback=callback, params={"optimizer": "LossScaleOptimizer"})


# -- weights -----------------------------------------------------------------------------


@pytest.mark.parametrize("weighting", ["class_weight", "sample_weight"])
def test_weights(repo, weighting):
    x, _ = arrays()
    labels = (x[:, 0] > 0.5).astype("float32")
    model = compiled(
        tf.keras.Sequential([tf.keras.layers.Dense(1, activation="sigmoid", input_shape=(4,))]),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    kwargs = (
        {"class_weight": {0: 1.0, 1: 3.0}}
        if weighting == "class_weight"
        else {"sample_weight": np.linspace(0.5, 1.5, N).astype("float32")}
    )
    _, _, run = fit(model, x, labels, batch_size=BATCH, **kwargs)
    check(run, [0, 1], ("loss", "accuracy"), params={"batch_size": BATCH, "steps": 4})


# -- the same callback twice; inside a run; next to mlflow.tensorflow.autolog() ---------


def test_fit_twice_with_one_callback_makes_two_runs(repo):
    callback = ReproCallback(experiment_name="keras-matrix")
    model = compiled()
    _, _, first = fit(model, callback=callback, epochs=2)
    first_hash = callback.model_hash
    _, _, second = fit(model, callback=callback, epochs=3)
    assert first.info.run_id != second.info.run_id
    check(first, [0, 1], params={"epochs": 2})
    check(second, [0, 1, 2], params={"epochs": 3}, model=True, callback=callback)
    assert first.data.tags["tfrepro.model.hash"] == first_hash != callback.model_hash


def test_fit_twice_inside_an_active_run_continues_it(repo, caplog):
    model = compiled()
    callback = ReproCallback(log_model=False)
    with mlflow.start_run() as active:
        fit(model, callback=callback, epochs=2)
        fit(model, callback=callback, epochs=4, initial_epoch=2)
        assert mlflow.active_run().info.run_id == active.info.run_id  # not ended by the callback
    run = mlflow.tracking.MlflowClient().get_run(active.info.run_id)
    check(run, [0, 1, 2, 3], params={"epochs": 2, "initial_epoch": 0})  # MLflow keeps the first value
    assert any("param epochs is already '2'" in r.getMessage() for r in caplog.records)


@pytest.fixture
def mlflow_autolog():
    mlflow.tensorflow.autolog(checkpoint=False)
    yield
    mlflow.tensorflow.autolog(disable=True)


@pytest.mark.parametrize("own_run", [True, False], ids=["inside-start_run", "autolog-run"])
def test_next_to_mlflow_autolog(repo, mlflow_autolog, own_run, caplog):
    """MLflow logs the epoch metrics, fit's params and the model; tfrepro adds the
    environment, its other params and the model hash: no key twice, no param conflict."""
    x, y = arrays()
    callback = ReproCallback()
    if own_run:
        with mlflow.start_run() as active:
            callback, _, run = fit(callback=callback, batch_size=BATCH, validation_data=(x[:16], y[:16]))
        assert run.info.run_id == active.info.run_id
    else:
        callback, _, run = fit(callback=callback, batch_size=BATCH, validation_data=(x[:16], y[:16]))
        assert mlflow.active_run() is None
    run = mlflow.tracking.MlflowClient().get_run(run.info.run_id)
    check(
        run,
        [0, 1],
        TRAIN_KEYS + VAL_KEYS,
        params={"epochs": 2, "batch_size": BATCH, "steps": 4, "optimizer": "Adam", "opt_name": "Adam"},
    )
    assert run.data.params["model.params"] and run.data.tags["tfrepro.model.hash"] == callback.model_hash
    assert "tfrepro.model.uri" not in run.data.tags  # MLflow's autolog logged the model
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("tfrepro")]
    if hasattr(mlflow, "last_logged_model"):  # MLflow 3: a logged model
        assert mlflow.last_logged_model().source_run_id == run.info.run_id
    else:
        names = {a.path for a in mlflow.artifacts.list_artifacts(run_id=run.info.run_id)}
        assert "model" in names
