"""ReproCallback under MultiWorkerMirroredStrategy: two real CPU workers on loopback; only the
chief (worker 0 here) logs, every worker saves the model (saving is collective) and hashes alike."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers.ports import free_port

pytestmark = [pytest.mark.slow, pytest.mark.py38]
mlflow = pytest.importorskip("mlflow")

WORKER = r"""
import json, os
import numpy as np, tensorflow as tf, tfrepro
strategy = tf.distribute.MultiWorkerMirroredStrategy()
tfrepro.deterministic(0)
x = np.random.RandomState(0).rand(64, 4).astype("float32")
with strategy.scope():
    model = tf.keras.Sequential([tf.keras.layers.Dense(8, input_shape=(4,)), tf.keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
callback = tfrepro.ReproCallback(experiment_name="multiworker")
model.fit(x, x.sum(1, keepdims=True), epochs=2, batch_size=16, verbose=0, callbacks=[callback])
print("RESULT " + json.dumps({"run_id": callback.session.run_id if callback.session else None,
                              "hash": callback.model_hash, "uri": callback.model_uri}), flush=True)
# TF 2.9's multi-worker collectives sometimes abort at interpreter teardown ("terminate called
# without an active exception"), after all the work is done: leave without the teardown.
os._exit(0)
"""


def test_only_the_chief_logs(tmp_path):
    uri = "sqlite:///%s/mlflow.db" % tmp_path
    mlflow.MlflowClient(uri).create_experiment("multiworker", artifact_location=str(tmp_path / "artifacts"))
    cluster = {"worker": ["127.0.0.1:%d" % free_port(), "127.0.0.1:%d" % free_port()]}
    procs = []
    for index in (0, 1):
        env = dict(
            os.environ,
            MLFLOW_TRACKING_URI=uri,
            TFREPRO_SPOOL_DIR=str(tmp_path / "spool"),
            TF_CPP_MIN_LOG_LEVEL="2",
            TFREPRO_CONTEXT="0",
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
        )
        env.pop("MLFLOW_RUN_ID", None)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", WORKER],
                env=env,
                cwd=str(tmp_path),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-3000:]
        results.append(json.loads([line for line in out.splitlines() if line.startswith("RESULT ")][0][7:]))
    chief, other = results
    assert chief["run_id"] and other["run_id"] is None and other["uri"] is None
    assert chief["hash"] == other["hash"]
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("multiworker").experiment_id])
    assert [r.info.run_id for r in runs] == [chief["run_id"]]
    assert runs[0].data.tags["tfrepro.model.uri"] == chief["uri"]
    assert "loss" in runs[0].data.metrics
