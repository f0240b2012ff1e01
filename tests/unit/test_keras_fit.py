"""Pure parts of reading a fit(): the batch size, fit's params, MLflow's callback, autolog's list."""

import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import tfrepro  # noqa: E402,F401
from tfrepro.callback import ReproCallback  # noqa: E402
from tfrepro.keras_fit import FitContext, batch_size  # noqa: E402

autolog_module = sys.modules["tfrepro.autolog"]


class Adapter:
    def __init__(self, size=None, first=None):
        self.size, self.first = size, first

    def batch_size(self):
        return self.size

    def representative_batch_size(self):
        return self.first


class Handler:
    def __init__(self, adapter, steps=None):
        self._adapter = adapter
        self.inferred_steps = steps


def test_batch_size_sources():
    data = tf.data.Dataset.range(10)
    assert batch_size(8, Handler(Adapter(32)), None) == 8  # as given
    assert batch_size(None, Handler(Adapter(32)), None) == 32  # arrays: Keras' default
    assert batch_size(None, Handler(Adapter(None, 5)), None) == 5  # generator: its first batch
    assert batch_size(None, Handler(Adapter()), data.batch(4).map(lambda v: v).prefetch(1)) == 4
    assert batch_size(None, Handler(Adapter()), data.padded_batch(3)) == 3
    assert batch_size(None, None, tf.data.Dataset.zip((data.batch(2), data))) is None
    assert batch_size(None, None, np.ones(3)) is None


def test_fit_context_params_and_steps():
    context = FitContext(
        {
            "batch_size": None,
            "epochs": 3,
            "initial_epoch": 1,
            "validation_split": 0.2,
            "shuffle": False,
            "steps_per_epoch": None,
            "x": None,
        },
        Handler(Adapter(16), steps=7),
    )
    assert context.params() == {"batch_size": 16, "initial_epoch": 1, "validation_split": 0.2, "shuffle": False}
    assert context.steps() == 7
    assert FitContext().params() == {} and FitContext().steps() is None


def test_mlflow_callback_detected_only_when_it_logs_epochs():
    mlflow_tf = pytest.importorskip("mlflow.tensorflow")
    from mlflow.tensorflow.callback import MlflowCallback

    assert FitContext(callbacks=[MlflowCallback()]).mlflow_callback()
    assert not FitContext(callbacks=[MlflowCallback(log_every_epoch=False, log_every_n_steps=5)]).mlflow_callback()
    assert not FitContext(callbacks=[tf.keras.callbacks.History()]).mlflow_callback()
    assert mlflow_tf


def test_with_callback_leaves_the_callers_list_alone():
    history = tf.keras.callbacks.History()
    users = [history]
    args, kwargs = autolog_module.with_callback((), {"callbacks": users}, {"log_model": False})
    assert users == [history] and kwargs["callbacks"][0] is history
    assert isinstance(kwargs["callbacks"][1], ReproCallback) and not kwargs["callbacks"][1].log_model
    args, kwargs = autolog_module.with_callback((1, 2, 3, 4, 0, users), {}, {})
    assert len(args[5]) == 2 and kwargs == {}
    mine = [ReproCallback()]
    assert autolog_module.with_callback((), {"callbacks": mine}, {})[1]["callbacks"] is mine
