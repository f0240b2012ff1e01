"""No hook of ReproCallback raises into fit(), whatever tracking does; only bad settings raise.

Fault injection: every tracking call raises, and fit() runs with every hook in use
(verbose=1's progress bar, validation, per-step logging, TensorBoard, evaluate, predict).
"""

import logging
import pathlib

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.py38]

tf = pytest.importorskip("tensorflow")

from tfrepro import callback as callback_mod  # noqa: E402
from tfrepro import keras_fit  # noqa: E402
from tfrepro.callback import ReproCallback  # noqa: E402
from tfrepro.tracking import model as model_io  # noqa: E402
from tfrepro.tracking.session import TrackingSession  # noqa: E402


@pytest.fixture(autouse=True)
def _no_server(monkeypatch):
    """Nothing listens there: a run that does open is spooled (never ./mlflow.db)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri("http://127.0.0.1:9")
    yield
    mlflow.set_tracking_uri(previous)


def boom(*args, **kwargs):
    raise RuntimeError("injected failure")


class BrokenSession:
    """A session on which every attribute and call fails."""

    def __getattr__(self, name):
        raise RuntimeError("injected failure: session.%s" % name)


def train(callback, tmp_path):
    x = np.random.RandomState(0).rand(40, 3).astype("float32")
    y = x.sum(axis=1)
    model = tf.keras.Sequential([tf.keras.layers.Dense(4, input_shape=(3,)), tf.keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    tensorboard = tf.keras.callbacks.TensorBoard(log_dir=str(tmp_path / "tb"))
    history = model.fit(
        x, y, epochs=2, batch_size=8, verbose=1, validation_split=0.25, callbacks=[callback, tensorboard]
    )
    model.evaluate(x, y, verbose=1, callbacks=[callback])
    model.predict(x, verbose=1, callbacks=[callback])
    return history


def warnings_in(caplog):
    return [r.getMessage() for r in caplog.records if r.name.startswith("tfrepro") and r.levelno >= logging.WARNING]


def test_opening_the_run_fails(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(TrackingSession, "open", classmethod(boom))
    callback = ReproCallback(log_every_n_steps=1, log_tensorboard=True)
    history = train(callback, tmp_path)
    assert history.epoch == [0, 1]
    assert any("opening the MLflow run failed" in m for m in warnings_in(caplog))


FAULTS = [
    "session",
    "collect_environment",
    "save_model",
    "FitContext.find",
    "is_chief",
    "fit_params",
    "floats",
    "_tensorboard_in",
    "run_params",
    "_multi_worker",
]


def inject(monkeypatch, fault):
    import tfrepro.fingerprint

    if fault == "session":
        monkeypatch.setattr(TrackingSession, "open", classmethod(lambda cls, **kw: BrokenSession()))
    elif fault == "collect_environment":
        monkeypatch.setattr(tfrepro.fingerprint, "shared", boom)
    elif fault == "save_model":
        monkeypatch.setattr(model_io, "save_model", boom)
    elif fault == "run_params":
        monkeypatch.setattr(TrackingSession, "run_params", boom)
    elif fault == "FitContext.find":
        monkeypatch.setattr(keras_fit.FitContext, "find", classmethod(boom))
    else:
        monkeypatch.setattr(callback_mod, fault, boom)


@pytest.mark.parametrize("fault", FAULTS)
def test_one_tracking_call_fails(monkeypatch, tmp_path, caplog, fault):
    inject(monkeypatch, fault)
    history = train(ReproCallback(log_every_n_steps=1, log_tensorboard=True, seed=3), tmp_path)
    assert history.epoch == [0, 1] and len(history.history["val_loss"]) == 2
    assert any("failed" in m for m in warnings_in(caplog))


def test_every_tracking_call_fails(monkeypatch, tmp_path, caplog):
    for fault in FAULTS:
        inject(monkeypatch, fault)
    history = train(ReproCallback(log_every_n_steps=1, log_tensorboard=True, seed=3), tmp_path)
    assert history.epoch == [0, 1] and len(history.history["val_loss"]) == 2
    warned = warnings_in(caplog)
    assert warned and len(warned) == len(set(warned))  # once per kind


def test_session_methods_fail_after_a_good_start(monkeypatch, tmp_path, caplog):
    """The session opens; then every logging call raises (as if the writer died)."""
    real_open = TrackingSession.open.__func__

    def open_then_break(cls, **kwargs):
        session = real_open(cls, **kwargs)
        for name in ("log_params", "set_tags", "log_text", "log_artifacts", "log_metrics", "close"):
            setattr(session, name, boom)
        return session

    monkeypatch.setattr(TrackingSession, "open", classmethod(open_then_break))
    history = train(ReproCallback(log_every_n_steps=1, log_tensorboard=True), tmp_path)
    assert history.epoch == [0, 1]
    assert any("failed" in m for m in warnings_in(caplog))


@pytest.mark.parametrize("hook", sorted(h for h in dir(tf.keras.callbacks.Callback) if h.startswith("on_")))
def test_every_hook_tolerates_no_model_and_odd_logs(hook):
    """Called out of order, with no model and logs Keras would never send: nothing raises."""
    callback = ReproCallback(log_every_n_steps=1)
    fn = getattr(callback, hook)
    for logs in (None, {}, {"loss": np.ones(3), "x": "text", "acc": tf.constant(0.5)}):
        if "batch" in hook or "epoch" in hook:
            fn(0, logs)
        else:
            fn(logs)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"experiment_name": 3}, TypeError),
        ({"experiment_name": ""}, TypeError),
        ({"run_name": ["a"]}, TypeError),
        ({"params": [("a", 1)]}, TypeError),
        ({"log_every_n_steps": 0}, ValueError),
        ({"log_every_n_steps": -5}, ValueError),
        ({"log_every_n_steps": 2.5}, TypeError),
        ({"log_every_n_steps": "10"}, TypeError),
        ({"log_every_n_steps": True}, TypeError),
        ({"log_model": "yes"}, TypeError),
        ({"log_tensorboard": 1}, TypeError),
        ({"log_tensorboard": ""}, TypeError),
        ({"seed": 1.5}, TypeError),
        ({"seed": "0"}, TypeError),
        ({"no_such_option": 1}, TypeError),
    ],
)
def test_bad_settings_are_rejected_in_init(kwargs, error):
    with pytest.raises(error) as info:
        ReproCallback(**kwargs)
    assert list(kwargs)[0] in str(info.value)


def test_good_settings_are_kept():
    callback = ReproCallback(
        experiment_name="e",
        run_name="r",
        params={"a": 1},
        log_every_n_steps=np.int64(5),
        log_model=False,
        log_tensorboard=pathlib.Path("/tmp/tb"),
        seed=np.int32(7),
    )
    assert callback.log_every_n_steps == 5 and type(callback.log_every_n_steps) is int
    assert callback.log_tensorboard == "/tmp/tb"
    assert callback.seed == 7 and callback.user_params == {"a": 1}
