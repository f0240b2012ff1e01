"""The script's own MLflow calls through tracking/fluent.py, against a real `mlflow server`.

Each script runs in a subprocess, as under `tfrepro run`: MLFLOW_RUN_ID names a run created
beforehand, the script calls fluent.enable() itself (the launch hook will, once wired) and
logs with MLflow's fluent API or MlflowClient, every step.
"""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from tests.helpers.mlflow_server import MlflowServer
from tfrepro.cli import main
from tfrepro.tracking import spool

pytestmark = [pytest.mark.slow, pytest.mark.py38]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    import mlflow
    from tfrepro.tracking import fluent

    steps, pause, mode = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    print(json.dumps({"enabled": fluent.enable(), "marked": hasattr(mlflow.log_metric, "__tfrepro_fluent__")}), flush=True)
    run_id = os.environ["MLFLOW_RUN_ID"]
    client = mlflow.MlflowClient()
    out = {}

    def log_step(i):
        if mode == "client":  # no mlflow.start_run(): it needs the server
            client.log_metric(run_id, "loss", 1.0 / (i + 1), step=i)
        else:
            mlflow.log_metric("loss", 1.0 / (i + 1), step=i)

    def loop(first, last):
        for i in range(first, last):
            log_step(i)
            if i % 100 == 0:
                print(json.dumps({"step": i}), flush=True)
            if i == steps // 2 and mode == "wait":  # the test restarts the server meanwhile
                print(json.dumps({"waiting": i}), flush=True)
                sys.stdin.readline()
            if pause:
                time.sleep(pause)

    if mode == "client":
        loop(0, steps)
        client.set_terminated(run_id)
    else:
        with mlflow.start_run():  # resumes MLFLOW_RUN_ID, as a script under `tfrepro run`
            out["start"] = int(time.time() * 1000)
            mlflow.log_param("lr", 0.1)
            begin = time.perf_counter()
            loop(0, steps)
            out["per_call_us"] = (time.perf_counter() - begin) / steps * 1e6
            out["end"] = int(time.time() * 1000)
            mlflow.log_metric("explicit", 5.0, step=7, timestamp=123456)
            other = os.environ.get("OTHER_RUN_ID")
            if other:  # not tfrepro's run: MLflow's own synchronous call
                client.log_metric(other, "loss", 7.0, step=1)
                out["other_now"] = [m.value for m in client.get_metric_history(other, "loss")]
            if mode == "errors":
                for name, call in [
                    ("key", lambda: mlflow.log_metric("bad key!!", 1.0)),
                    ("param_key", lambda: mlflow.log_param("k" * 300, 1)),
                    ("changed", lambda: mlflow.log_param("lr", 0.2)),
                    ("elsewhere", lambda: mlflow.log_param("epochs", 2)),
                ]:
                    try:
                        call()
                        out[name] = None
                    except Exception as exc:
                        out[name] = type(exc).__module__ + "." + type(exc).__name__
            router = fluent.current()
            out["routed"] = router.calls if router else None
    print(json.dumps(out), flush=True)
""")


def child(uri, run_id, spool_dir, steps, pause=0.0, mode="fluent", env=None):
    environment = dict(
        os.environ,
        MLFLOW_TRACKING_URI=uri,
        MLFLOW_RUN_ID=run_id,
        TFREPRO_SPOOL_DIR=str(spool_dir),
        PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "mlflow_plugin")]),
        **(env or {}),
    )
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(steps), str(pause), mode],
        env=environment,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc, timeout=240):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return lines[0], lines[-1], err


def new_run(uri, name):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name) or client.get_experiment(client.create_experiment(name))
    return client, client.create_run(experiment.experiment_id).info.run_id


def points(client, run_id, key="loss"):
    history = client.get_metric_history(run_id, key)
    return sorted((m.step, m.value, m.timestamp) for m in history)


def assert_every_point_once(client, run_id, steps):
    got = points(client, run_id)
    assert [p[0] for p in got] == list(range(steps))  # each step once: nothing lost, nothing twice
    assert all(value == 1.0 / (step + 1) for step, value, _ in got)


def test_every_step_arrives_with_its_step_and_call_time(mlflow_server, tmp_path):
    client, run_id = new_run(mlflow_server.uri, "fluent-steps")
    other = client.create_run(client.get_run(run_id).info.experiment_id).info.run_id
    started, result, err = finish(
        child(mlflow_server.uri, run_id, tmp_path, 2000, env={"OTHER_RUN_ID": other}), timeout=180
    )
    assert started == {"enabled": True, "marked": True}
    assert result["routed"] == 2000 + 2  # the param, the steps, the explicit timestamp
    assert result["per_call_us"] < 5000  # plain MLflow: ~20 ms a call against this server
    got = points(client, run_id)
    assert_every_point_once(client, run_id, 2000)
    stamps = [ts for _, _, ts in got]
    assert stamps == sorted(stamps) and result["start"] <= stamps[0] and stamps[-1] <= result["end"]
    assert [(m.step, m.timestamp) for m in client.get_metric_history(run_id, "explicit")] == [(7, 123456)]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params["lr"] == "0.1"
    assert result["other_now"] == [7.0]  # another run's call was MLflow's own, synchronous
    assert spool.pending_files(str(tmp_path)) == []  # all uploaded by the writer


def test_server_killed_mid_run_and_restarted_every_point_once(tmp_path):
    server = MlflowServer(tmp_path / "server").start()
    try:
        client, run_id = new_run(server.uri, "fluent-outage")
        proc = child(server.uri, run_id, tmp_path / "spool", 2000, pause=0.002, mode="wait")
        for line in proc.stdout:
            event = json.loads(line)
            if event.get("step") == 600:
                server.stop()
            if "waiting" in event:
                server.start()
                proc.stdin.write("go\n")
                proc.stdin.flush()
                break
        _, result, err = finish(proc)
        if spool.pending_files(str(tmp_path / "spool")):  # the rest waits for `tfrepro sync`
            os.environ["TFREPRO_SPOOL_DIR"] = str(tmp_path / "spool")
            try:
                assert main(["sync"]) == 0
            finally:
                del os.environ["TFREPRO_SPOOL_DIR"]
        assert_every_point_once(client, run_id, 2000)
        assert client.get_run(run_id).info.status == "FINISHED"
    finally:
        server.stop()


def test_server_down_until_after_the_run_then_sync_uploads_every_point_once(tmp_path, monkeypatch):
    server = MlflowServer(tmp_path / "server").start()
    try:
        client, run_id = new_run(server.uri, "fluent-offline")
        server.stop()
        begin = time.monotonic()
        started, _, err = finish(child(server.uri, run_id, tmp_path / "spool", 500, mode="client"))
        assert started["enabled"] and time.monotonic() - begin < 60  # never MLflow's minutes of retries
        assert "tfrepro sync" in err
        server.start()
        monkeypatch.setenv("TFREPRO_SPOOL_DIR", str(tmp_path / "spool"))
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
        assert main(["sync"]) == 0
        assert_every_point_once(client, run_id, 500)
        assert client.get_run(run_id).info.status == "FINISHED"
        assert main(["sync"]) == 0  # nothing left: nothing uploaded twice
        assert_every_point_once(client, run_id, 500)
    finally:
        server.stop()


def test_invalid_calls_raise_as_plain_mlflow_and_a_changed_param_is_reported_once(mlflow_server, tmp_path):
    client, run_id = new_run(mlflow_server.uri, "fluent-errors")
    client.log_param(run_id, "epochs", 1)  # logged by someone else: only the server knows
    _, routed, err = finish(child(mlflow_server.uri, run_id, tmp_path, 5, mode="errors"))
    client, plain_run = new_run(mlflow_server.uri, "fluent-errors")
    client.log_param(plain_run, "epochs", 1)
    started, plain, _ = finish(
        child(mlflow_server.uri, plain_run, tmp_path, 5, mode="errors", env={"TFREPRO_FLUENT": "0"})
    )
    assert not started["enabled"]
    assert routed["key"] == plain["key"] == "mlflow.exceptions.RestException"
    assert routed["param_key"] == plain["param_key"] == "mlflow.exceptions.MlflowException"
    assert plain["changed"] and plain["elsewhere"]  # plain MLflow raises; here: the one line at the end
    assert routed["changed"] is None and routed["elsewhere"] is None
    lines = [line for line in err.splitlines() if "refused" in line]
    assert len(lines) == 1, err
    assert "'lr'" in lines[0] and "Changing param values is not allowed" in lines[0]
    assert client.get_run(run_id).data.params == {"lr": "0.1", "epochs": "1"}


def test_opt_out_is_plain_mlflow(mlflow_server, tmp_path):
    client, run_id = new_run(mlflow_server.uri, "fluent-off")
    started, result, _ = finish(child(mlflow_server.uri, run_id, tmp_path, 20, env={"TFREPRO_FLUENT": "0"}))
    assert started == {"enabled": False, "marked": False} and result["routed"] is None
    assert_every_point_once(client, run_id, 20)
    assert not os.path.exists(tmp_path) or spool.pending_files(str(tmp_path)) == []
