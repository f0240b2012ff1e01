"""tfrepro.autolog(): every fit() gets a ReproCallback, against the shared real `mlflow server`."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.py38]

tf = pytest.importorskip("tensorflow")
mlflow = pytest.importorskip("mlflow")

import tfrepro  # noqa: E402
from tfrepro.callback import ReproCallback  # noqa: E402
from tfrepro.tracking.session import wait_for_uploads  # noqa: E402

autolog_module = sys.modules["tfrepro.autolog"]  # tfrepro.autolog is the function
ORIGINAL_FIT = tf.keras.Model.fit


@pytest.fixture(autouse=True)
def _autolog_off(tracking_uri):
    yield
    tfrepro.autolog(disable=True)
    assert tf.keras.Model.fit is ORIGINAL_FIT


def runs(experiment):
    wait_for_uploads(60)  # fit() returns before the last upload and the run's end (issue 21)
    found = mlflow.search_runs(experiment_names=[experiment], output_format="list")
    return sorted(found, key=lambda r: r.info.start_time)


def model_and_data():
    x = np.random.RandomState(0).rand(32, 3).astype("float32")
    model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(3,))])
    model.compile(optimizer="adam", loss="mse")
    return model, x, x.sum(axis=1)


def losses(run):
    history = mlflow.tracking.MlflowClient().get_metric_history(run.info.run_id, "loss")
    return sorted(m.step for m in history)


def test_unmodified_fit_is_logged():
    tfrepro.autolog(experiment_name="autolog-plain", log_model=False)
    model, x, y = model_and_data()
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    first, second = runs("autolog-plain")  # a new callback, so a new run, per fit()
    assert first.info.status == second.info.status == "FINISHED"
    assert losses(first) == [0, 1] and losses(second) == [0]
    assert first.data.params["batch_size"] == "8" and first.data.tags["tfrepro.tf.version"]


@pytest.mark.parametrize("how", ["keyword", "positional", "CallbackList"])
def test_a_callback_the_user_passed_is_not_doubled(how):
    tfrepro.autolog(experiment_name="autolog-unused", log_model=False)
    model, x, y = model_and_data()
    mine = ReproCallback(experiment_name="autolog-user-" + how, log_model=False)
    if how == "keyword":
        model.fit(x, y, epochs=2, verbose=0, callbacks=[mine])
    elif how == "positional":
        model.fit(x, y, 8, 2, 0, [mine])
    else:
        listed = tf.keras.callbacks.CallbackList([mine], add_history=True, model=model, epochs=2, steps=4)
        model.fit(x, y, epochs=2, verbose=0, callbacks=listed)
    assert runs("autolog-unused") == []
    (run,) = runs("autolog-user-" + how)
    assert losses(run) == [0, 1]


def test_callback_list_without_one_gets_one():
    tfrepro.autolog(experiment_name="autolog-list", log_model=False)
    model, x, y = model_and_data()
    history = tf.keras.callbacks.History()
    listed = tf.keras.callbacks.CallbackList([history], model=model, epochs=2, steps=4)
    model.fit(x, y, epochs=2, verbose=0, callbacks=listed)
    assert len(listed.callbacks) == 1  # the user's list is left as it was
    (run,) = runs("autolog-list")
    assert losses(run) == [0, 1] and history.epoch == [0, 1]


def test_idempotent_and_the_last_options_win():
    tfrepro.autolog(experiment_name="autolog-first", log_model=False)
    wrapped = tf.keras.Model.fit
    tfrepro.autolog(experiment_name="autolog-second", log_model=False)
    assert tf.keras.Model.fit is wrapped and wrapped._tfrepro_original is ORIGINAL_FIT  # wrapped once
    model, x, y = model_and_data()
    model.fit(x, y, epochs=1, verbose=0)
    assert runs("autolog-first") == []
    (run,) = runs("autolog-second")
    assert losses(run) == [0]


def test_disable_puts_fit_back():
    tfrepro.autolog(experiment_name="autolog-disabled", log_model=False)
    tfrepro.autolog(disable=True)
    tfrepro.autolog(disable=True)  # twice is fine
    assert tf.keras.Model.fit is ORIGINAL_FIT
    model, x, y = model_and_data()
    model.fit(x, y, epochs=1, verbose=0)
    assert runs("autolog-disabled") == []


def test_bad_options_raise_and_change_nothing():
    with pytest.raises(ValueError):
        tfrepro.autolog(log_every_n_steps=0)
    with pytest.raises(TypeError):
        tfrepro.autolog(experiment="typo")
    assert tf.keras.Model.fit is ORIGINAL_FIT


def test_a_failure_to_add_the_callback_does_not_stop_fit(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("injected failure")

    tfrepro.autolog(experiment_name="autolog-broken", log_model=False)
    monkeypatch.setattr(autolog_module, "with_callback", broken)
    model, x, y = model_and_data()
    assert model.fit(x, y, epochs=2, verbose=0).epoch == [0, 1]
    assert "autolog could not add its callback" in caplog.text


def python(code, *flags, env=None):
    return subprocess.run(
        [sys.executable, *flags, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env or os.environ.copy(),
        timeout=300,
    )


def test_before_tensorflow_is_imported(tmp_path):
    """As a sitecustomize calls it: TensorFlow is not imported then, and not by autolog."""
    done = python("""
        import sys
        import tfrepro
        tfrepro.autolog(experiment_name="autolog-early", log_model=False)
        assert "tensorflow" not in sys.modules and "keras" not in sys.modules and "mlflow" not in sys.modules
        import numpy as np
        import tensorflow as tf
        x = np.ones((8, 2), "float32")
        model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(2,))])
        model.compile(optimizer="sgd", loss="mse")
        model.fit(x, x[:, 0], epochs=2, verbose=0)
    """)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = runs("autolog-early")
    assert losses(run) == [0, 1]


def test_without_tensorflow_it_warns_and_returns(tmp_path):
    # -S: no site-packages, so no TensorFlow; tfrepro itself comes from PYTHONPATH
    done = python("import tfrepro; tfrepro.autolog(); print('returned')", "-S")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "returned"
    assert "TensorFlow is not importable" in done.stderr
