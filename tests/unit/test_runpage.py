"""tracking/runpage.py and what carries it to the run: MLflow's source tags, the card the
callback and the plugin write in the description, the session's read of the run's page."""

import dataclasses

import pytest

from tests.helpers.inspect_envs import DIGEST_A, make_env
from tfrepro import markdown as md
from tfrepro import schema
from tfrepro.environment import Environment
from tfrepro.tracking import card, runpage
from tfrepro.tracking.session import RunPage, TrackingSession

RUN = "0123456789abcdef0123456789abcdef"
NOWHERE = runpage.RunPage(None, None, {})  # a run whose page is not known yet
HTTP = "http://127.0.0.1:5000"


def with_process(env, argv, cwd="/workspace"):
    return dataclasses.replace(env, process=dataclasses.replace(env.process, argv=tuple(argv), cwd=cwd))


def test_source_tags_name_the_script_relative_to_the_repository():
    assert runpage.source_tags(make_env()) == {
        schema.MLFLOW_SOURCE_NAME: "train.py",
        schema.MLFLOW_SOURCE_TYPE: "LOCAL",
    }
    env = with_process(make_env(), ["python", "../src/train.py"], cwd="/workspace/notebooks")
    assert runpage.source_tags(env)[schema.MLFLOW_SOURCE_NAME] == "src/train.py"
    module = with_process(make_env(), ["python", "-m", "project.train"])
    assert runpage.source_tags(module)[schema.MLFLOW_SOURCE_NAME] == "-m project.train"


@pytest.mark.parametrize(
    "argv",
    [
        ["python", "-m", "ipykernel_launcher", "-f", "/run/kernel.json"],
        ["python", "-c", "import train"],
        [],
    ],
)
def test_no_source_tags_without_a_script_or_in_a_notebook(argv):
    env = with_process(make_env(), argv)
    env = dataclasses.replace(env, process=dataclasses.replace(env.process, entry_script=None))
    assert runpage.source_tags(env) == {}
    assert runpage.source_tags(Environment()) == {}


def test_databricks_names_its_own_source():
    assert runpage.source_tags(make_env(), {"DATABRICKS_RUNTIME_VERSION": "15.4"}) == {}
    assert runpage.source_tags(make_env(), {"HOME": "/root"})


def test_run_card_takes_the_launchers_facts_from_the_runs_tags():
    tags = {
        schema.LAUNCH_BACKEND: "slurm",
        schema.LAUNCH_SEED: "1234",
        schema.DATA_SOURCES: "1",
        schema.DATA_PREFIX + "0.label": "mount",
        schema.DATA_PREFIX + "0.path": "/srv/data",
        schema.DATA_PREFIX + "0.target": "/data",
        schema.DATA_PREFIX + "0.files": "3",
        schema.DATA_PREFIX + "0.mode": "metadata",
        schema.INPUT_PREFIX + "training.kind": "numpy",
        schema.INPUT_PREFIX + "training.shape": "(64, 4)",
    }
    text = md.unescape(runpage.run_card(make_env(), RUN, runpage.RunPage(HTTP, "7", tags), seed=5))
    assert "Ran on: slurm" in text.replace("**", "")
    assert "seed 1234" in text  # the launcher's seed is the one that was applied
    assert "mount /srv/data -> /data: 3 files" in text and "fit() training: numpy (64, 4)" in text
    assert "tfrepro replay " + RUN in text
    assert "(%s/#/experiments/7/runs/%s/artifacts/tfrepro/environment.md)" % (HTTP, RUN) in text


def test_run_card_leaves_out_data_tags_it_cannot_read():
    tags = {schema.DATA_SOURCES: "1", schema.DATA_PREFIX + "0.label": "<img src=x>"}
    assert "no data fingerprinted" in md.unescape(runpage.run_card(make_env(), RUN, runpage.RunPage(None, None, tags)))


def test_run_card_links_only_where_the_ui_has_an_address():
    for uri, experiment in (("sqlite:///mlflow.db", "7"), (HTTP, None), (None, None)):
        text = runpage.run_card(make_env(), RUN, runpage.RunPage(uri, experiment, {}), seed=5)
        assert "](" not in text and "seed 5" in md.unescape(text)


def test_run_card_says_the_patch_was_withheld():
    env = make_env()
    env = dataclasses.replace(env, git=dataclasses.replace(env.git, dirty=True))
    assert "patch withheld" in md.unescape(
        runpage.run_card(env, RUN, runpage.RunPage(None, None, {schema.GIT_PATCH_WITHHELD: "true"}))
    )
    assert "patch withheld" in md.unescape(runpage.run_card(env, RUN, NOWHERE, patch_withheld=True))
    assert "patch withheld" not in md.unescape(runpage.run_card(env, RUN, NOWHERE))


def test_plugin_card_names_the_id_it_cannot_know():
    text = runpage.plugin_card(make_env())
    assert md.code("tfrepro replay " + runpage.PLACEHOLDER_RUN_ID) in text and md.code(DIGEST_A) in text


def test_describe_replaces_the_plugins_card_and_keeps_the_users_text():
    plugin = runpage.describe("Trying a smaller batch.", runpage.plugin_card(make_env()))
    recorded = runpage.describe(plugin, runpage.run_card(make_env(), RUN, NOWHERE))
    assert recorded.startswith("Trying a smaller batch.\n\n")
    assert recorded.count(card.open_marker(schema.CARD_BLOCK)) == 1
    assert runpage.PLACEHOLDER_RUN_ID not in md.unescape(recorded) and RUN in recorded
    assert runpage.describe(recorded, runpage.run_card(make_env(), RUN, NOWHERE)) == recorded


# -- the session's read of the run's page ---------------------------------------------------------


class StubBackend:
    tracking_uri = "http://user:secret@127.0.0.1:5000"

    def __init__(self):
        self.asked = []

    def run_tags(self, run_id):
        self.asked.append(run_id)
        return "7", {schema.MLFLOW_NOTE: "notes"}


class StubUploader:
    def __init__(self, run_id):
        self.run_id, self.backend = run_id, StubBackend()


class StubWriter:
    def __init__(self, online, uploader):
        self.online, self.uploader = online, uploader


def session(run_id, online, uploader_run_id, started=True):
    return TrackingSession(run_id, started, StubWriter(online, StubUploader(uploader_run_id)), True)


def test_run_page_asks_the_server_for_a_real_run():
    s = session("r1", True, "r1", started=False)
    assert s.run_page() == RunPage("http://127.0.0.1:5000", "7", {schema.MLFLOW_NOTE: "notes"})
    assert s._writer.uploader.backend.asked == ["r1"]


def test_run_page_of_a_spooled_run_is_empty_and_of_an_unreachable_one_unknown():
    local = session("local-abc", False, None)
    assert local.run_page() == RunPage("http://127.0.0.1:5000", None, {})
    assert local._writer.uploader.backend.asked == []
    assert session("r1", False, "r1", started=False).run_page() is None  # a user's run: its text unknown
    assert TrackingSession("local-x", True, StubWriter(False, None)).run_page() == RunPage(None, None, {})


def test_backend_reads_a_runs_tags(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from tfrepro.tracking.backend import backend_for

    uri = "sqlite:///%s" % (tmp_path / "mlflow.db")
    client = MlflowClient(uri)
    experiment = client.create_experiment("page")
    run = client.create_run(experiment, tags={schema.MLFLOW_NOTE: "mine"})
    assert backend_for(uri).run_tags(run.info.run_id) == (
        experiment,
        {schema.MLFLOW_NOTE: "mine", "mlflow.runName": run.info.run_name},
    )


def test_sync_gives_a_spooled_card_its_real_run_id():
    from tfrepro.tracking.upload import RunUploader

    class Recording:
        def __init__(self):
            self.tags = []

        def log_batch(self, run_id, tags=None, **_):
            self.tags.append((run_id, tags))

    backend = Recording()
    uploader = RunUploader(backend, {"run_id": "local-abc"}, run_id="real1")
    note = runpage.describe("", runpage.run_card(make_env(), "local-abc", NOWHERE))
    uploader.upload([{"tags": {schema.MLFLOW_NOTE: note, "other": "local-abc"}}], dedupe=False)
    run_id, tags = backend.tags[0]
    assert run_id == "real1" and "tfrepro replay real1" in tags[schema.MLFLOW_NOTE]
    assert "local-abc" not in tags[schema.MLFLOW_NOTE] and tags["other"] == "local-abc"


def test_the_logged_model_gets_params_only_where_mlflow_takes_them(monkeypatch):
    mlflow_tensorflow = pytest.importorskip("mlflow.tensorflow")
    from tfrepro.tracking import model as model_io

    calls = []

    class Info:
        model_uri = "models:/m-1"

    def log_model_3(model, artifact_path=None, name=None, params=None, **kwargs):
        calls.append((name, artifact_path, params))
        return Info()

    def log_model_2(model, artifact_path, pip_requirements=None, keras_model_kwargs=None):
        calls.append((None, artifact_path, None))
        return Info()

    monkeypatch.setattr(model_io, "pip_requirements", lambda: [])
    monkeypatch.setattr(mlflow_tensorflow, "log_model", log_model_3)
    assert model_io.log_keras_model(object(), params={"tfrepro.git.commit": "abc"}) == "models:/m-1"
    monkeypatch.setattr(mlflow_tensorflow, "log_model", log_model_2)
    model_io.log_keras_model(object(), params={"tfrepro.git.commit": "abc"})
    assert calls == [("model", None, {"tfrepro.git.commit": "abc"}), (None, "model", None)]


def test_the_plugins_placeholder_shows_as_text():
    from tests.helpers.mlflow_ui import renderer

    render = renderer()
    if render is None:
        pytest.skip("needs node and the installed mlflow's UI bundle")
    out = render(runpage.describe(None, runpage.plugin_card(make_env())))
    assert "<code>tfrepro replay &lt;run id&gt;</code>" in out
