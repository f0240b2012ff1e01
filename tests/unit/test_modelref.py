"""tracking/modelref.py: model references resolved to their source run, against a real sqlite
store (MLflow 3 here; MLflow 2.17 under Python 3.8, where logged model ids do not exist)."""

import pytest

from tests.helpers.mlflow_server import global_tracking_uri
from tfrepro.errors import RecordError, UsageError
from tfrepro.tracking import modelref


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A sqlite store with a run, two registered versions of one model (the second aliased), and
    on MLflow 3 a logged model of the run and a version registered from it."""
    from mlflow.tracking import MlflowClient

    uri = "sqlite:///%s/mlflow.db" % tmp_path_factory.mktemp("modelref")
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("models")
    run = client.create_run(experiment).info.run_id
    other = client.create_run(experiment).info.run_id
    client.create_registered_model("classifier")
    client.create_model_version("classifier", "runs:/%s/model" % run, run_id=run)
    client.create_model_version("classifier", "runs:/%s/model" % other, run_id=other)
    client.set_registered_model_alias("classifier", "production", "2")
    client.create_registered_model("external")
    client.create_model_version("external", "runs:/%s/exported" % run)  # no run_id: from its source
    client.create_model_version("external", "s3://bucket/model")
    facts = {"client": client, "run": run, "other": other, "experiment": experiment, "model_id": None}
    if hasattr(client, "create_logged_model"):
        model = client.create_logged_model(experiment, name="model", source_run_id=run)
        facts["model_id"] = model.model_id
        client.create_registered_model("from-logged")
        with global_tracking_uri(uri):  # MLflow 3 looks the logged model up through the global client
            client.create_model_version("from-logged", "models:/%s" % model.model_id, model_id=model.model_id)
    return facts


@pytest.mark.parametrize(
    "text, expected",
    [
        ("models:/a/1", True),
        ("models:/a@prod", True),
        ("runs:/abc/model", True),
        ("m-0123456789abcdef0123456789abcdef", True),
        ("0123456789abcdef0123456789abcdef", False),
        ("", False),
    ],
)
def test_is_model_ref(text, expected):
    assert modelref.is_model_ref(text) is expected


def test_runs_uri_needs_no_server():
    found = modelref.resolve(None, "runs:/0123456789abcdef/model/data")
    assert (found.run_id, found.kind) == ("0123456789abcdef", "run")
    with pytest.raises(UsageError):
        modelref.resolve(None, "runs:/../x")


def test_registered_version_alias_and_latest(store):
    client, run, other = store["client"], store["run"], store["other"]
    found = modelref.resolve(client, "models:/classifier/1")
    assert (found.run_id, found.kind, found.name, found.version) == (run, "model-version", "classifier", "1")
    assert modelref.resolve(client, "models:/classifier@production").run_id == other
    assert modelref.resolve(client, "models:/classifier/latest").version == "2"


def test_version_without_run_id_uses_its_source(store):
    assert modelref.resolve(store["client"], "models:/external/1").run_id == store["run"]
    with pytest.raises(RecordError, match="no source run"):
        modelref.resolve(store["client"], "models:/external/2")


@pytest.mark.parametrize(
    "ref, message",
    [
        ("models:/classifier/9", "no version 9 of registered model 'classifier'"),
        ("models:/nothing/1", "no version 1 of registered model 'nothing'"),
        ("models:/classifier@staging", "model 'classifier' has no alias 'staging'"),
        ("models:/nothing/latest", "no registered model 'nothing'"),
    ],
)
def test_missing_models_are_record_errors(store, ref, message):
    with pytest.raises(RecordError) as raised:
        modelref.resolve(store["client"], ref)
    assert message in str(raised.value)


@pytest.mark.parametrize("ref", ["models:/", "models:/classifier", "models:/classifier/v1", "models:/@x", "train.py"])
def test_malformed_refs_are_usage_errors(store, ref):
    with pytest.raises(UsageError):
        modelref.resolve(store["client"], ref)


def test_logged_model_id(store):
    client = store["client"]
    if store["model_id"] is None:  # MLflow 2.17: one clear error
        with pytest.raises(UsageError, match="MLflow 3 on"):
            modelref.resolve(client, "m-0123456789abcdef0123456789abcdef")
        return
    for ref in (store["model_id"], "models:/" + store["model_id"]):
        found = modelref.resolve(client, ref)
        assert (found.run_id, found.kind, found.model_id) == (store["run"], "logged-model", store["model_id"])
        assert found.experiment_id == store["experiment"]
    assert modelref.resolve(client, "models:/from-logged/1").run_id == store["run"]
    with pytest.raises(RecordError, match="no logged model"):
        modelref.resolve(client, "m-0123456789abcdef0123456789abcdef")


class Version:
    name, version, run_id = "m", "3", ""

    def __init__(self, source, model_id=None):
        self.source, self.model_id = source, model_id


class Logged:
    def __init__(self, run_id):
        self.source_run_id, self.experiment_id = run_id, "7"


class Registry:
    """A client whose version names its logged model only in its source (an MLflow 3 server
    that does not fill the version's run id)."""

    tracking_uri = "http://u:p@h:5000"

    def __init__(self, version, source_run="0123456789abcdef"):
        self.version, self.source_run = version, source_run

    def get_model_version(self, name, version):
        return self.version

    def get_logged_model(self, model_id):
        return Logged(self.source_run)


def test_version_made_from_a_logged_model_resolves_through_it():
    found = modelref.resolve(Registry(Version("models:/m-0123456789abcdef")), "models:/m/3")
    assert (found.run_id, found.model_id, found.experiment_id) == ("0123456789abcdef", "m-0123456789abcdef", "7")
    with pytest.raises(RecordError, match="not logged from a run"):
        modelref.resolve(Registry(Version("x", model_id="m-0123456789abcdef"), source_run=None), "models:/m/3")
    with pytest.raises(RecordError, match="not a run id"):
        modelref.resolve(Registry(Version("runs:/../x")), "models:/m/3")
