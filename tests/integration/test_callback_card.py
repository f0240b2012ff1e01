"""What a real fit() with ReproCallback leaves on its run's page (issue 20), on a real `mlflow server`:
the environment card in the description, tfrepro/environment.md, MLflow's source tags and, on
MLflow 3, the logged model's params; a user's description kept; a crafted record inert."""

import dataclasses
import html
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers.git_repos import git, make_repo
from tests.helpers.mlflow_server import tracking_into
from tests.helpers.mlflow_ui import BRANCH, COMMAND, GPU, artifact_renderer, parse, renderer
from tests.helpers.ports import free_port

pytestmark = [pytest.mark.slow, pytest.mark.py38]

tf = pytest.importorskip("tensorflow")
mlflow = pytest.importorskip("mlflow")

import tfrepro  # noqa: E402
import tfrepro.fingerprint  # noqa: E402
from tfrepro import markdown as md  # noqa: E402
from tfrepro import schema  # noqa: E402
from tfrepro.callback import ReproCallback  # noqa: E402
from tfrepro.environment import GpuDevice, GpuInfo  # noqa: E402
from tfrepro.tracking import card, runpage, ui  # noqa: E402

TRAIN = """
import json, numpy as np, tensorflow as tf, tfrepro
tfrepro.deterministic(3)
x = np.random.RandomState(0).rand(64, 4).astype("float32")
model = tf.keras.Sequential([tf.keras.layers.Dense(8, activation="relu", input_shape=(4,)), tf.keras.layers.Dense(1)])
model.compile(optimizer="adam", loss="mse")
callback = tfrepro.ReproCallback(experiment_name="card-e2e")
model.fit(x, x.sum(axis=1, keepdims=True), epochs=2, batch_size=16, validation_split=0.25, verbose=1,
          callbacks=[callback])
print("RECORDED " + json.dumps([callback.session.run_id, callback.model_uri]))
"""


@pytest.fixture(scope="module")
def repo(mlflow_server, tmp_path_factory):
    """Module-wide: MLflow pointed at the shared server, cwd inside a clean git repo whose
    script is src/train.py."""
    path = make_repo(tmp_path_factory.mktemp("card") / "repo", {"src/train.py": TRAIN})
    with tracking_into(mlflow_server.uri, path):
        yield path


@pytest.fixture(scope="module")
def script_run(repo, mlflow_server):
    """`python train.py` run from src/, as a user runs it: MLflow's own provider names the
    script "train.py" (argv[0] as typed); tfrepro names it from the repository root."""
    environ = dict(os.environ, MLFLOW_TRACKING_URI=mlflow_server.uri, TF_CPP_MIN_LOG_LEVEL="2")
    environ.pop(schema.ENV_MLFLOW_RUN_ID, None)
    done = subprocess.run(
        [sys.executable, "train.py"], cwd=str(repo / "src"), env=environ, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = [x for x in done.stdout.splitlines() if x.startswith("RECORDED ")][-1]
    run_id, model_uri = json.loads(line[len("RECORDED ") :])
    return mlflow.tracking.MlflowClient().get_run(run_id), model_uri


def card_url(run):
    return ui.artifact_url(mlflow.get_tracking_uri(), run.info.experiment_id, run.info.run_id, schema.ENVIRONMENT_MD)


def test_the_script_is_the_runs_source(script_run):
    run, _ = script_run
    assert run.data.tags[schema.MLFLOW_SOURCE_NAME] == "src/train.py"
    assert run.data.tags[schema.MLFLOW_SOURCE_TYPE] == "LOCAL"


def test_the_description_holds_the_card(script_run, repo):
    run, _ = script_run
    note = run.data.tags[schema.MLFLOW_NOTE]
    assert note.startswith(card.open_marker(schema.CARD_BLOCK)) and len(note) < card.CARD_LIMIT
    shown = md.unescape(note)
    assert git(repo, "rev-parse", "HEAD") in shown and "tfrepro replay " + run.info.run_id in shown
    assert "seed 3, op determinism on" in shown and "fit() training: numpy" in shown
    assert "(%s)" % card_url(run) in note
    render = renderer()
    if render is not None:  # as the run page shows it: one link, to environment.md
        parsed = parse(render(note))
        assert [a.get("href") for t, a in parsed.tags if t == "a"] == [card_url(run)]


def test_environment_md_is_logged_beside_environment_json(script_run, tmp_path):
    run, _ = script_run
    local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="tfrepro", dst_path=str(tmp_path))
    assert {"environment.json", "environment.md"} <= set(os.listdir(local))
    text = md.unescape(open(os.path.join(local, "environment.md")).read())
    assert "# Environment of run " + run.info.run_id in text and run.data.tags[schema.GIT_COMMIT] in text


def test_the_logged_model_says_where_it_was_made(script_run):
    run, model_uri = script_run
    if not model_uri.startswith("models:/"):
        pytest.skip("MLflow %s: logged models have no params (MLflow 3 only)" % mlflow.__version__)
    params = mlflow.tracking.MlflowClient().get_logged_model(model_uri[len("models:/") :]).params
    assert params[schema.GIT_COMMIT] == run.data.tags[schema.GIT_COMMIT]
    assert params[schema.MODEL_HASH] == run.data.tags[schema.MODEL_HASH]
    assert params[schema.TF_VERSION] == tf.__version__


def fit(callback, epochs=1):
    tfrepro.deterministic(1)
    x = np.random.RandomState(0).rand(32, 4).astype("float32")
    model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(4,))])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, x[:, :1], epochs=epochs, batch_size=16, validation_split=0.25, verbose=1, callbacks=[callback])
    callback.wait(60)  # a run the callback started is finished off the training thread (issue 21)


def description(run_id):
    return mlflow.tracking.MlflowClient().get_run(run_id).data.tags.get(schema.MLFLOW_NOTE, "")


def test_in_a_users_run_the_plugins_card_is_replaced_and_their_text_kept(repo):
    with mlflow.start_run() as plain:
        assert runpage.PLACEHOLDER_RUN_ID in md.unescape(description(plain.info.run_id))  # the plugin's
        fit(ReproCallback(log_model=False))
    note = description(plain.info.run_id)
    assert note.count(card.open_marker(schema.CARD_BLOCK)) == 1
    assert "tfrepro replay " + plain.info.run_id in md.unescape(note)
    assert runpage.PLACEHOLDER_RUN_ID not in md.unescape(note)

    with mlflow.start_run(description="Baseline: *lr* 0.1") as described:
        fit(ReproCallback(log_model=False))
    note = description(described.info.run_id)
    assert note.startswith("Baseline: *lr* 0.1\n\n" + card.open_marker(schema.CARD_BLOCK))


def crafted(env):
    """The real record with the values of a hostile one (issue 20's list)."""
    gpu = GpuInfo(count=1, driver_version="580.1", cuda_driver_version="13.0", devices=(GpuDevice(index=0, name=GPU),))
    git_info = dataclasses.replace(env.git, branch=BRANCH, dirty=True, patch="+x\n")
    return dataclasses.replace(
        env, git=git_info, gpu=gpu, process=dataclasses.replace(env.process, argv=tuple(COMMAND.split(" ")))
    )


def test_a_crafted_record_renders_inert(repo, monkeypatch, tmp_path):
    env = crafted(tfrepro.fingerprint.shared())
    monkeypatch.setattr(tfrepro.fingerprint, "shared", lambda since=None: env)
    callback = ReproCallback(experiment_name="card-crafted", log_model=False)
    fit(callback)
    run = mlflow.tracking.MlflowClient().get_run(callback.session.run_id)
    note = run.data.tags[schema.MLFLOW_NOTE]
    render = renderer()
    if render is None:
        pytest.skip("needs node and the installed mlflow's UI bundle")
    parsed = parse(render(note))
    assert [a.get("href") for t, a in parsed.tags if t == "a"] == [card_url(run)]
    assert not {"img", "script", "table", "iframe"} & {t for t, _ in parsed.tags}
    text = html.unescape("".join(parsed.text))
    assert BRANCH in text and GPU.replace("\n", "\\n") in text
    local = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path=schema.ENVIRONMENT_MD, dst_path=str(tmp_path)
    )
    viewer = artifact_renderer()
    shown = viewer(open(local).read()) if viewer else None
    if shown is not None:  # MLflow 3's artifact viewer
        parsed = parse(shown)
        assert not {"a", "img", "script"} & {t for t, _ in parsed.tags}
        assert COMMAND in html.unescape("".join(parsed.text))


def test_a_spooled_run_gets_its_card_at_sync(repo, mlflow_server, monkeypatch, tmp_path):
    from tfrepro.tracking.sync import sync_all

    monkeypatch.setenv("TFREPRO_SPOOL_DIR", str(tmp_path / "spool"))
    down = "http://127.0.0.1:%d" % free_port()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", down)
    mlflow.set_tracking_uri(down)
    try:
        callback = ReproCallback(experiment_name="card-offline", log_model=False)
        fit(callback)
    finally:
        while mlflow.active_run():
            mlflow.end_run()
        monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
        mlflow.set_tracking_uri(mlflow_server.uri)
    local_id = callback.session.run_id
    assert local_id.startswith("local-")
    result = sync_all(str(tmp_path / "spool"), tracking_uri=mlflow_server.uri)[0]
    note = description(result.run_id)
    assert "tfrepro replay " + result.run_id in md.unescape(note) and local_id not in note
    tags = mlflow.tracking.MlflowClient().get_run(result.run_id).data.tags
    expected = runpage.source_tags(callback.environment)  # MLflow's default (argv[0]) replaced
    assert tags[schema.MLFLOW_SOURCE_NAME] == expected[schema.MLFLOW_SOURCE_NAME]
