"""A sweep: 8 processes start together into a new experiment on a PostgreSQL-backed server.

All 8 runs land in that experiment, none in Default (issue 14, "Found under load": with
`mlflow.set_experiment(name)` + `start_run()`, the processes that lose the create race put
their runs in experiment 0). Every way tfrepro creates a run is raced: the callback's
session, the launcher (`tfrepro run` / `replay`) and `tfrepro sync` of a spooled run.
"""

import os
import subprocess
import sys
import time
import uuid

import pytest

from tests.helpers.ports import free_port

pytestmark = [pytest.mark.slow, pytest.mark.py38]  # the callback session runs in NGC images: Python 3.8, mlflow 2.17

PROCESSES = 8

# Imports first, then wait for the go file, so that all processes race on the create.
CHILD = r"""
import os, sys, time
import mlflow
from mlflow.tracking import MlflowClient
from tfrepro.tracking.session import TrackingSession
from tfrepro.tracking import runs
from tfrepro.tracking.sync import sync_all

role, uri, experiment, go, ready = sys.argv[1:6]
spool = None
if role == "sync":  # trained while the server was unreachable: spooled under a local id
    mlflow.set_tracking_uri(sys.argv[6])
    s = TrackingSession.open(experiment_name=experiment)
    s.log_metrics({"x": 1.0}, 0)
    s.close(timeout=1)
    spool = s.spool_path
mlflow.set_tracking_uri(uri)
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.001)
if role == "session":
    s = TrackingSession.open(experiment_name=experiment, run_name=role)
    s.log_metrics({"x": 1.0}, 0)
    s.close()
    print(s.errors, file=sys.stderr)  # a slow server may time a call out: where it lands is the point
    print(s.run_id)
elif role == "launch":
    client = MlflowClient(uri)
    print(runs.create_run(client, runs.experiment_id(client, experiment), role, {}))
else:
    (result,) = sync_all(paths=[spool], tracking_uri=uri)
    assert result.failure is None and not result.errors, (result.failure, result.errors)
    print(result.run_id)
"""


def race(tmp_path, uri, roles):
    experiment = "sweep-" + uuid.uuid4().hex[:8]
    go = tmp_path / "go"
    dead = "http://127.0.0.1:%d" % free_port()
    procs = []
    for i, role in enumerate(roles):
        env = dict(os.environ, TFREPRO_SPOOL_DIR=str(tmp_path / ("spool%d" % i)))
        env.pop("MLFLOW_TRACKING_URI", None)
        env.pop("MLFLOW_EXPERIMENT_NAME", None)
        ready = tmp_path / ("ready%d" % i)
        procs.append(
            (
                ready,
                subprocess.Popen(
                    [sys.executable, "-c", CHILD, role, uri, experiment, str(go), str(ready), dead],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
    deadline = time.time() + 300
    while not all(r.exists() for r, _ in procs):
        assert time.time() < deadline, "the processes did not get ready"
        assert all(p.poll() is None for _, p in procs), [p.communicate() for _, p in procs if p.poll() is not None]
        time.sleep(0.05)
    from mlflow.tracking import MlflowClient

    MlflowClient(uri).search_experiments()  # a warm server: the race, not its first request, is tested
    go.touch()
    run_ids = []
    for _, p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        run_ids.append(out.strip().splitlines()[-1])
    return experiment, run_ids


def assert_all_in(uri, experiment, run_ids):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    assert len(set(run_ids)) == len(run_ids) and not [r for r in run_ids if r.startswith("local-")]
    assert {client.get_run(r).info.experiment_id for r in run_ids} == {exp.experiment_id}
    landed = {r.info.run_id for r in client.search_runs([exp.experiment_id], max_results=100)}
    assert landed == set(run_ids)
    default = {r.info.run_id for r in client.search_runs(["0"], max_results=1000)}
    assert not default & set(run_ids)


def test_eight_callback_sessions_land_in_their_new_experiment(postgres_server, tmp_path):
    experiment, run_ids = race(tmp_path, postgres_server.uri, ["session"] * PROCESSES)
    assert_all_in(postgres_server.uri, experiment, run_ids)


def test_launcher_and_sync_race_the_callback_into_one_new_experiment(postgres_server, tmp_path):
    roles = ["session", "launch", "sync", "launch", "sync", "session", "launch", "sync"]
    experiment, run_ids = race(tmp_path, postgres_server.uri, roles)
    assert_all_in(postgres_server.uri, experiment, run_ids)
