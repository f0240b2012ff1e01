"""The MLflow plugin: a callback-free mlflow.start_run() gets tfrepro.* tags."""
import json
import os
import subprocess
import sys

import pytest

mlflow = pytest.importorskip("mlflow")

pytestmark = [pytest.mark.py38]

START_RUN = "import mlflow; r = mlflow.start_run(); print('run_id:', r.info.run_id); mlflow.end_run()"


def start_run(cwd, uri, **env):
    environ = dict(os.environ, MLFLOW_TRACKING_URI=uri, **env)
    environ.pop("MLFLOW_RUN_ID", None)
    out = subprocess.run([sys.executable, "-c", START_RUN], cwd=str(cwd), env=environ,
                         check=True, capture_output=True, text=True).stdout
    run_id = [line.split()[1] for line in out.splitlines() if line.startswith("run_id: ")][0]
    return mlflow.tracking.MlflowClient(uri).get_run(run_id).data.tags


def test_plugin_is_registered():
    from mlflow.tracking.context.registry import _run_context_provider_registry

    names = [type(p).__name__ for p in _run_context_provider_registry]
    assert "TfreproContextProvider" in names


def test_plain_start_run_is_tagged(tracking_uri, dirty_repo):
    tags = start_run(dirty_repo, tracking_uri)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=str(dirty_repo), check=True,
                          capture_output=True, text=True).stdout.strip()
    assert tags["tfrepro.git.commit"] == head
    assert tags["tfrepro.git.dirty"] == "true"
    assert tags["tfrepro.schema"] and tags["tfrepro.version"]
    assert "s3cret" not in json.dumps(tags)
    assert json.loads(tags["tfrepro.command"])[-2] == "-c"


def test_tfrepro_context_0_turns_it_off(tracking_uri, dirty_repo):
    tags = start_run(dirty_repo, tracking_uri, TFREPRO_CONTEXT="0")
    assert not [k for k in tags if k.startswith("tfrepro.")]
