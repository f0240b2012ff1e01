"""Opting out of code upload: ReproCallback(log_patch=False) or TFREPRO_NO_PATCH=1 keeps the
uncommitted patch off a real `mlflow server` and tags the run so replay can say so."""

import numpy as np
import pytest

from tests.helpers.git_repos import make_repo

pytestmark = [pytest.mark.slow, pytest.mark.py38]

tf = pytest.importorskip("tensorflow")
mlflow = pytest.importorskip("mlflow")

SECRET_CODE = "API_ENDPOINT = 'internal-only'  # FAKE unreleased code"


@pytest.fixture
def dirty_cwd(tmp_path, monkeypatch, tracking_uri):
    repo = make_repo(tmp_path / "repo")
    (repo / "train.py").write_text(SECRET_CODE + "\n")
    monkeypatch.chdir(repo)
    return repo


def fit(callback):
    x = np.random.RandomState(0).rand(16, 2).astype("float32")
    model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(2,))])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, x[:, :1], epochs=1, verbose=0, callbacks=[callback])
    callback.wait(60)  # a run the callback started is finished off the training thread (issue 21)


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_patch_is_withheld(dirty_cwd, monkeypatch, how, tmp_path):
    from tfrepro.callback import ReproCallback

    if how == "environment":
        monkeypatch.setenv("TFREPRO_NO_PATCH", "1")
    callback = ReproCallback(experiment_name="no-patch", log_model=False, log_patch=how != "argument")
    fit(callback)
    client = mlflow.tracking.MlflowClient()
    run_id = callback.session.run_id
    names = sorted(f.path for f in client.list_artifacts(run_id, "tfrepro"))
    assert names == ["tfrepro/environment.json", "tfrepro/environment.md", "tfrepro/requirements.txt"]
    run = client.get_run(run_id)
    assert run.data.tags["tfrepro.git.dirty"] == "true"
    assert run.data.tags["tfrepro.git.patch_withheld"] == "true"
    env_json = open(client.download_artifacts(run_id, "tfrepro/environment.json", str(tmp_path))).read()
    assert "internal-only" not in env_json and "internal-only" not in str(run.data.tags)
    env_md = open(client.download_artifacts(run_id, "tfrepro/environment.md", str(tmp_path))).read()
    assert "internal-only" not in env_md and "patch withheld" in env_md
    assert "patch withheld" in run.data.tags["mlflow.note.content"]


def test_patch_is_uploaded_by_default(dirty_cwd):
    from tfrepro.callback import ReproCallback

    callback = ReproCallback(experiment_name="no-patch", log_model=False)
    fit(callback)
    client = mlflow.tracking.MlflowClient()
    names = [f.path for f in client.list_artifacts(callback.session.run_id, "tfrepro")]
    assert "tfrepro/git.patch" in names
    assert "tfrepro.git.patch_withheld" not in client.get_run(callback.session.run_id).data.tags
