"""A custom tf.GradientTape loop that logs with MLflow's fluent API every step (issue 21).

    .venv/bin/python benchmarks/fluent_logging.py [--steps 10000]

Starts a local `mlflow server` (sqlite backend) on a free loopback port, then runs the same
loop in a fresh process per mode, side by side in one run:
  none      the loop with the logging calls removed (run first and again last: the noise)
  sync      mlflow.log_metric("loss", float(loss), step=i): MLflow's synchronous REST call
  async     the same with MLFLOW_ENABLE_ASYNC_LOGGING=true (MLflow's in-memory queue)
  tfrepro   the same after tfrepro.tracking.fluent.enable() (what `tfrepro run` will do)
Each script resumes a run created beforehand through MLFLOW_RUN_ID, as under `tfrepro run`,
inside its own `with mlflow.start_run():`. Reported: the loop's wall time, the loop plus the
run's end (MLflow's flush, tfrepro's bounded flush), the training thread's time per step in
the statement `mlflow.log_metric("loss", float(loss), step=i)` (the tensor read included:
"us/log call"), ratios against the bare loop, and whether every point arrived (checked on
the server after each script exits). Prints a table; writes nothing. On a shared machine
the two bare runs show how noisy the ratios are.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = ("none", "sync", "async", "tfrepro", "none")

LOOP = textwrap.dedent("""
    import json, os, sys, time
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import mlflow
    import numpy as np
    import tensorflow as tf

    steps, mode = int(sys.argv[1]), sys.argv[2]
    if mode == "tfrepro":
        from tfrepro.tracking import fluent
        assert fluent.enable()

    tf.random.set_seed(0)
    x = tf.constant(np.random.RandomState(0).rand(32, 8), tf.float32)
    y = tf.reduce_sum(x, axis=1, keepdims=True)
    model = tf.keras.Sequential([tf.keras.layers.Dense(16, activation="relu"), tf.keras.layers.Dense(1)])
    optimizer = tf.keras.optimizers.SGD(0.01)

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True) - y))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    train_step(x, y)  # trace outside the measurement
    with mlflow.start_run():
        in_log = 0.0
        begin = time.perf_counter()
        for i in range(steps):
            loss = train_step(x, y)
            if mode != "none":
                t = time.perf_counter()
                mlflow.log_metric("loss", float(loss), step=i)
                in_log += time.perf_counter() - t
        loop = time.perf_counter() - begin
    total = time.perf_counter() - begin  # with the run's end: MLflow's flush, or tfrepro's
    print(json.dumps({"loop": loop, "total": total, "per_call_us": in_log / steps * 1e6}))
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(root: str):
    port = free_port()
    uri = "http://127.0.0.1:%d" % port
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", "sqlite:///%s/mlflow.db" % root]
    cmd += ["--artifacts-destination", "%s/artifacts" % root, "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", "1"]
    log = open(os.path.join(root, "server.log"), "ab")
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(uri + "/health", timeout=1).read()
            return proc, uri
        except Exception:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("mlflow server did not start; see %s/server.log" % root)


def run_mode(mode: str, steps: int, uri: str, spool_dir: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("fluent-bench") or client.get_experiment(
        client.create_experiment("fluent-bench")
    )
    run_id = client.create_run(experiment.experiment_id, run_name=mode).info.run_id
    env = dict(
        os.environ,
        MLFLOW_TRACKING_URI=uri,
        MLFLOW_RUN_ID=run_id,
        TFREPRO_SPOOL_DIR=spool_dir,
        PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "mlflow_plugin")]),
        CUDA_VISIBLE_DEVICES="",
    )
    env.pop("MLFLOW_ENABLE_ASYNC_LOGGING", None)
    if mode == "async":
        env["MLFLOW_ENABLE_ASYNC_LOGGING"] = "true"
    done = subprocess.run(
        [sys.executable, "-c", LOOP, str(steps), mode], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit("%s failed:\n%s" % (mode, done.stderr[-3000:]))
    result = json.loads(done.stdout.strip().splitlines()[-1])
    history = client.get_metric_history(run_id, "loss")
    result["arrived"] = len(history)
    result["once"] = sorted(m.step for m in history) == list(range(steps)) if mode != "none" else True
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tfrepro-fluent-bench-") as root:
        proc, uri = start_server(root)
        try:
            results = []
            for mode in MODES:
                result = run_mode(mode, args.steps, uri, os.path.join(root, "spool"))
                results.append((mode, result))
                print("  %-8s done: %.1f s" % (mode, result["total"]), file=sys.stderr, flush=True)
        finally:
            os.killpg(proc.pid, 9)
            proc.wait()
    bare = statistics.mean(r["loop"] for mode, r in results if mode == "none")
    print("GradientTape loop, %d steps, per-step mlflow.log_metric, local mlflow server (sqlite)" % args.steps)
    print("%-8s %9s %9s %8s %8s %12s %9s" % ("mode", "loop s", "+end s", "x loop", "x +end", "us/log call", "arrived"))
    ok = True
    for mode, r in results:
        expected = 0 if mode == "none" else args.steps
        arrived = "%d/%d" % (r["arrived"], expected) if expected else "-"
        ok = ok and r["arrived"] == expected and r["once"]
        print(
            "%-8s %9.2f %9.2f %8.3f %8.3f %12.1f %9s"
            % (mode, r["loop"], r["total"], r["loop"] / bare, r["total"] / bare, r["per_call_us"], arrived)
        )
    print("bare loop: mean of the two 'none' runs (%.2f s); every point arrived once: %s" % (bare, ok))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
