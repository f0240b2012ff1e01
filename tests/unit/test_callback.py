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


# -- what the record thread writes on the run's page (issue 20) -------------------------------------


class PageSession:
    """The session calls the record thread and _log_model make, recorded."""

    def __init__(self, run_id="0123456789abcdef0123456789abcdef", page=None):
        from tfrepro.tracking.runpage import RunPage

        self.run_id = run_id
        self.page = page if page is not None else RunPage("http://127.0.0.1:5000", "3", {})
        self.tags, self.texts, self.model_params = {}, {}, []

    def set_tags(self, tags):
        self.tags.update(tags)

    def log_text(self, text, path):
        self.texts[path] = text

    def log_inputs(self, datasets):
        pass

    def run_page(self):
        return self.page

    def wait_for_run(self, timeout):
        self.run_id = self.__dict__.pop("created", self.run_id)  # the writer created the run meanwhile
        return self.run_id

    def log_keras_model(self, model, params=None):
        self.model_params.append(params)
        return "models:/m-1"


def recorded(monkeypatch, session, seed=None):
    import tfrepro.fingerprint
    from tests.helpers.inspect_envs import make_env
    from tfrepro.callback import ReproCallback

    monkeypatch.setattr(tfrepro.fingerprint, "shared", lambda since=None: make_env())
    callback = ReproCallback(seed=seed)
    callback.session = session
    x = np.zeros((8, 2), dtype="float32")
    callback._record(0.0, {"x": x, "y": x[:, :1]}, 1)
    return callback


def test_the_record_thread_writes_the_card_the_source_and_environment_md(monkeypatch):
    from tfrepro import markdown as md
    from tfrepro import schema
    from tfrepro.tracking.runpage import RunPage

    user = RunPage(
        "http://127.0.0.1:5000", "3", {schema.MLFLOW_NOTE: "Baseline, lr 0.01.", schema.LAUNCH_BACKEND: "docker"}
    )
    session = PageSession(page=user)
    recorded(monkeypatch, session, seed=9)
    tags = session.tags
    assert tags[schema.MLFLOW_SOURCE_NAME] == "train.py" and tags[schema.MLFLOW_SOURCE_TYPE] == "LOCAL"
    note = tags[schema.MLFLOW_NOTE]
    assert note.startswith("Baseline, lr 0.01.\n\n<!-- tfrepro:card -->")
    shown = md.unescape(note)
    assert "tfrepro replay %s" % session.run_id in shown and "docker" in shown
    assert "fit() training: numpy x float32[8, 2]" in shown  # fit()'s inputs, hashed on the same thread
    assert "/#/experiments/3/runs/%s/artifacts/tfrepro/environment.md" % session.run_id in note
    assert set(session.texts) >= {schema.ENVIRONMENT_JSON, schema.ENVIRONMENT_MD}
    assert "Environment of run " + session.run_id in md.unescape(session.texts[schema.ENVIRONMENT_MD])


def test_an_unknown_description_is_left_alone(monkeypatch):
    from tfrepro import schema
    from tfrepro.tracking.runpage import RunPage

    session = PageSession()
    session.page = None  # the server could not say what the user's run holds
    callback = recorded(monkeypatch, session)
    assert schema.MLFLOW_NOTE not in session.tags and schema.ENVIRONMENT_MD in session.texts
    assert callback.environment is not None
    unchanged = PageSession(page=RunPage(None, None, {}))
    recorded(monkeypatch, unchanged)
    first = unchanged.tags[schema.MLFLOW_NOTE]
    again = PageSession(page=RunPage(None, None, {schema.MLFLOW_NOTE: first}))
    recorded(monkeypatch, again)
    assert schema.MLFLOW_NOTE not in again.tags  # the same card: nothing to write


def test_a_spooled_runs_environment_md_names_no_local_id(monkeypatch):
    from tfrepro import schema

    session = PageSession(run_id="local-0123")
    recorded(monkeypatch, session)
    assert "local-0123" not in session.texts[schema.ENVIRONMENT_MD]
    assert "tfrepro replay local-0123" in session.tags[schema.MLFLOW_NOTE]  # sync puts the real id in


def test_the_logged_model_carries_where_it_was_made(monkeypatch):
    from tests.helpers.inspect_envs import DIGEST_A, make_env
    from tfrepro import schema
    from tfrepro.callback import ReproCallback

    model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(2,))])
    callback = ReproCallback()
    callback.set_model(model)
    callback.session, callback.environment = PageSession(), make_env()
    callback._log_model()
    params = callback.session.model_params[0]
    assert params[schema.IMAGE_DIGEST] == DIGEST_A and params[schema.MODEL_HASH] == callback.model_hash
    assert params[schema.GIT_COMMIT] == make_env().git.commit and params[schema.TF_VERSION] == "2.9.1"
    assert callback.model_uri == "models:/m-1"


def test_the_plugin_gives_a_plain_start_run_the_source_and_the_card(monkeypatch):
    pytest.importorskip("mlflow")
    import tfrepro.fingerprint
    from tests.helpers.inspect_envs import make_env
    from tfrepro import schema
    from tfrepro.tracking import runpage
    from tfrepro_mlflow import context

    monkeypatch.setattr(context, "_tags", None)
    monkeypatch.setattr(tfrepro.fingerprint, "shared", lambda since=None: make_env())
    tags = context.TfreproContextProvider().tags()
    assert tags[schema.MLFLOW_SOURCE_NAME] == "train.py" and tags[schema.GIT_COMMIT]
    assert tags[schema.MLFLOW_NOTE].startswith("<!-- tfrepro:card -->")

    def broken(env):
        raise RuntimeError("boom")

    monkeypatch.setattr(context, "_tags", None)
    monkeypatch.setattr(runpage, "plugin_card", broken)
    tags = context.TfreproContextProvider().tags()
    assert schema.MLFLOW_NOTE not in tags and tags[schema.GIT_COMMIT]  # the environment still tagged


def test_the_record_thread_names_the_run_once_it_exists(monkeypatch):
    """A run opened in the background has a local id until the writer creates it: the card and
    environment.md name the real one (issue 21)."""
    from tfrepro import markdown as md
    from tfrepro import schema

    created = "fedcba9876543210fedcba9876543210"
    session = PageSession(run_id="local-0123")
    session.created = created
    recorded(monkeypatch, session)
    assert "tfrepro replay %s" % created in md.unescape(session.tags[schema.MLFLOW_NOTE])
    assert "Environment of run " + created in md.unescape(session.texts[schema.ENVIRONMENT_MD])
