"""Pure parts of ReproCallback and the plugin: chief selection, params, logs, the model hash."""

import json

import numpy as np
import pytest

from tfrepro.callback import describe_loss, fit_params, floats, is_chief

pytestmark = pytest.mark.py38
tf = pytest.importorskip("tensorflow")


@pytest.mark.parametrize(
    "task, cluster, expected",
    [
        (None, None, True),
        ({"type": "chief", "index": 0}, {"chief": ["a"], "worker": ["b"]}, True),
        ({"type": "worker", "index": 0}, {"chief": ["a"], "worker": ["b"]}, False),
        ({"type": "worker", "index": 0}, {"worker": ["a", "b"]}, True),
        ({"type": "worker", "index": 1}, {"worker": ["a", "b"]}, False),
        ({"type": "evaluator", "index": 0}, {"worker": ["a"]}, False),
        ({"type": "ps", "index": 0}, {"worker": ["a"], "ps": ["p"]}, False),
    ],
)
def test_is_chief(task, cluster, expected):
    text = None if task is None else json.dumps({"task": task, "cluster": cluster})
    assert is_chief(text) is expected


def test_is_chief_tolerates_garbage():
    assert is_chief("") and is_chief("not json") and is_chief("[]")


def test_describe_loss():
    assert describe_loss("mse") == "mse"
    assert describe_loss(tf.keras.losses.MeanSquaredError()) == "mean_squared_error"
    assert describe_loss(tf.keras.losses.mae) == "mean_absolute_error"
    assert json.loads(describe_loss({"b": "mse", "a": "mae"})) == {"a": "mae", "b": "mse"}


def test_floats_keeps_scalars_only():
    logs = {"loss": tf.constant(0.5), "acc": np.float32(0.25), "n": 3, "vec": np.ones(3), "s": "x"}
    assert floats(logs) == {"loss": 0.5, "acc": 0.25, "n": 3.0}
    assert floats(None) == {}


def test_fit_params():
    model = tf.keras.Sequential([tf.keras.layers.Dense(2, input_shape=(3,))])
    model.compile(optimizer=tf.keras.optimizers.SGD(learning_rate=0.5, momentum=0.9), loss="mae")
    params = fit_params(model, {"epochs": 3, "steps": 10, "verbose": 0}, {"loss": "custom", "x": 1})
    assert params["epochs"] == 3 and params["steps"] == 10 and "verbose" not in params
    assert params["optimizer"] == "SGD"
    assert params["optimizer.learning_rate"] == pytest.approx(0.5)
    assert params["optimizer.momentum"] == pytest.approx(0.9)
    assert params["loss"] == "custom" and params["x"] == 1  # the user's params win
    assert params["model.params"] == params["model.trainable_params"] == 8


def test_fit_params_unbuilt_model():
    model = tf.keras.Sequential([tf.keras.layers.Dense(2)])
    assert fit_params(model, {}, {}) == {}


def test_rejects_bad_step_interval():
    from tfrepro.callback import ReproCallback

    with pytest.raises(ValueError):
        ReproCallback(log_every_n_steps=0)


def test_batch_hooks_only_when_asked():
    from tfrepro.callback import ReproCallback

    assert not ReproCallback()._implements_train_batch_hooks()
    assert ReproCallback(log_every_n_steps=5)._implements_train_batch_hooks()


def test_model_hash_ignores_names_but_not_architecture():
    from tfrepro.tracking.model import model_hash

    def build(activation="relu", perturb=False):
        tf.keras.utils.set_random_seed(3)
        if perturb:  # shifts Keras' auto names (dense_1...) and TF's function counters
            tf.keras.layers.Dense(1)
            tf.function(lambda v: v + 1)(tf.constant(1.0))
        model = tf.keras.Sequential(
            [tf.keras.layers.Dense(4, activation=activation, input_shape=(2,)), tf.keras.layers.Dense(1)]
        )
        model.compile(optimizer="adam", loss="mse")
        return model

    first = model_hash(build())
    assert first.startswith("sha256:") and len(first) == len("sha256:") + 64
    assert model_hash(build(perturb=True)) == first
    assert model_hash(build(activation="tanh")) != first


def test_plugin_in_context_and_never_raises(monkeypatch):
    pytest.importorskip("mlflow")
    import tfrepro.fingerprint
    from tfrepro_mlflow import context

    provider = context.TfreproContextProvider()
    monkeypatch.delenv("TFREPRO_CONTEXT", raising=False)
    assert provider.in_context()
    monkeypatch.setenv("TFREPRO_CONTEXT", "0")
    assert not provider.in_context()

    def broken():
        raise RuntimeError("boom")

    monkeypatch.setattr(context, "_tags", None)
    monkeypatch.setattr(tfrepro.fingerprint, "shared", broken)
    assert provider.tags() == {}
