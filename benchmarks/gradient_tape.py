"""The GradientTape pattern at full size, under `tfrepro run` semantics (issue 21).

    .venv/bin/python benchmarks/gradient_tape.py [--steps 10000] [--servers sqlite,team]
        [--mlflow-steps N] [--no-outage] [--no-write]

A user's script, unmodified: a custom `tf.GradientTape` loop inside its own `with
mlflow.start_run():`, `mlflow.log_metric("loss", float(loss), step=i)` every step. Per
server (a local `mlflow server` on sqlite, 1 worker; the team server: scripts/team-server.sh,
PostgreSQL 15 + `mlflow server --workers 2`), each row a fresh process, side by side:

  no logging          the same script with the log_metric line removed (first and last: the noise)
  no logging, hook    the same under `tfrepro run`'s launch hook (what the hook costs alone)
  plain MLflow        the script as it is, no tfrepro
  MLflow async        the same with MLFLOW_ENABLE_ASYNC_LOGGING=true
  tfrepro run         the script as it is under `tfrepro run --seed 0` semantics: the run is
                      created beforehand (MLFLOW_RUN_ID), and tfrepro/launch/sitecustomize.py
                      goes first on PYTHONPATH with TFREPRO_AUTOLOG=1, TFREPRO_SEED=0, as the
                      launcher mounts it into the container (launch/hooks.py); the hook's
                      autolog routes the script's own mlflow.log_* (tracking/fluent.py). No
                      container: the same process tree, on the host.
Then one row with the server paused (SIGSTOP) from the script's first step to its last: the
loop pays only what tfrepro does in the script's process (the call, the spooler; the uploader
waits on its call), not the server's ingest on the same cores. Then the outage rows: the mlflow server killed (SIGKILL, its process group) when the script
reaches step 3,000 (30% of --steps) and restarted when it reaches step 6,000 (60%); a script
blocked inside a call (plain MLflow retries a refused connection for about 2 minutes) gets its
server back OUTAGE_MAX s after the kill instead. Every run's points are counted per step on the
server after the script exits: all arrived, none twice. Points still spooled at exit go up
through `tfrepro sync` (the CLI's code), and the row says how many.

Also per row: the script's CPU seconds over the loop and the run's end (all its threads) and the server's
(its process trees from /proc: the mlflow server; on the team server PostgreSQL too) while the
script ran, what competes with the loop for the same 2 cores (an outage row: the restarted
server's only, so not comparable).

--mlflow-steps runs the plain and async MLflow rows with fewer steps (their ratio is per step;
the table says so), for a machine where 10,000 synchronous calls do not fit the time there is.
Writes the tables into benchmarks/README.md (--no-write: print only).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
OUTAGE_MAX = 20.0  # s: a script that cannot reach step 6,000 while the server is down gets it back then
MARKERS = "<!-- gradient_tape %s: last run -->", "<!-- gradient_tape %s: end -->"

SCRIPT = textwrap.dedent("""
    # the user's script (train.py): tfrepro appears nowhere in it
    import json, os, sys, time
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import mlflow
    import numpy as np
    import tensorflow as tf

    steps, log_every_step = int(sys.argv[1]), sys.argv[2] == "log"
    marks = {int(m) for m in sys.argv[3].split(",") if m}  # the benchmark's outage triggers

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

    train_step(x, y)  # traced outside the measurement
    with mlflow.start_run():
        in_log = 0.0
        cpu_begin = time.process_time()
        begin = time.perf_counter()
        for i in range(steps):
            if i in marks:
                print("mark %d %.3f" % (i, time.perf_counter() - begin), flush=True)
            loss = train_step(x, y)
            if log_every_step:
                t = time.perf_counter()
                mlflow.log_metric("loss", float(loss), step=i)
                in_log += time.perf_counter() - t
        loop = time.perf_counter() - begin
    total = time.perf_counter() - begin  # with the run's end: MLflow's flush, or tfrepro's bounded one
    print(json.dumps({"loop": loop, "total": total, "per_call_us": in_log / steps * 1e6, "cpu": time.process_time() - cpu_begin}), flush=True)
""")

# name -> (logs every step, under tfrepro run's hook, MLflow async logging)
ROWS = {
    "no logging": (False, False, False),
    "no logging, hook": (False, True, False),
    "plain MLflow": (True, False, False),
    "MLflow async": (True, False, True),
    "tfrepro run": (True, True, False),
}
# the short rows twice, interleaved: a 2-core machine's noise shows in their spread
ORDER = (
    "no logging",
    "tfrepro run",
    "no logging, hook",
    "MLflow async",
    "plain MLflow",
    "no logging",
    "tfrepro run",
    "no logging, hook",
)
EVENTS = {
    None: "",
    "pause": ", server paused during the loop (the client's own cost)",
    "kill": ", server killed and restarted",
}
# the team server takes about a minute to restart on 2 busy cores: only tfrepro's outage row there
OUTAGE_ROWS = {"sqlite": ("tfrepro run", "MLflow async", "plain MLflow"), "team": ("tfrepro run",)}


# -- servers ------------------------------------------------------------------------------
class SqliteServer:
    name = "local mlflow server, sqlite, 1 worker"

    def __init__(self, directory):
        from tests.helpers.mlflow_server import MlflowServer

        self.server = MlflowServer(directory)
        self.uri = self.server.uri

    def start(self):
        self.server.start()

    def pids(self):
        return [self.server.proc.pid] if self.server.proc else []

    def signal(self, number):
        os.killpg(self.server.proc.pid, number)

    def kill(self):
        self.server.stop()  # SIGKILL to its process group

    def stop(self):
        self.server.stop()


class TeamServer:
    name = "team server: PostgreSQL 15 + mlflow server, 2 workers, on the same machine"

    def __init__(self, directory):
        from concurrent_runs import Team  # benchmarks/ is sys.path[0] when run as a script

        self.team = Team(directory)
        self.uri = self.team.uri

    def start(self):
        self.team.script()

    def pids(self):
        """The mlflow server's and PostgreSQL's postmaster (their workers are their children)."""
        pids = []
        for path in ("mlflow.pid", os.path.join("pg", "data", "postmaster.pid")):
            try:
                with open(os.path.join(self.team.dir, path)) as f:
                    pids.append(int(f.readline()))
            except (OSError, ValueError):
                pass
        return pids

    def signal(self, number):
        os.killpg(self.pids()[0], number)  # the mlflow server and its workers (PostgreSQL idles meanwhile)

    def kill(self):
        from concurrent_runs import _alive, _port_free

        with open(os.path.join(self.team.dir, "mlflow.pid")) as f:
            pid = int(f.read())
        os.killpg(pid, 9)
        while _alive(pid) or not _port_free(self.team.port):
            time.sleep(0.05)

    def stop(self):
        self.team.script("--stop")


SERVERS = {"sqlite": SqliteServer, "team": TeamServer}


# -- one row ------------------------------------------------------------------------------
def _env(uri, run_id, spool_dir, hook_dir, async_logging):
    from tfrepro.launch import hooks

    code_path = os.pathsep.join([ROOT, os.path.join(ROOT, "mlflow_plugin")])  # tfrepro as installed
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, MLFLOW_RUN_ID=run_id, TFREPRO_SPOOL_DIR=spool_dir)
    env.update(CUDA_VISIBLE_DEVICES="", PYTHONPATH=code_path)
    for name in ("MLFLOW_ENABLE_ASYNC_LOGGING", hooks.ENV_AUTOLOG, hooks.ENV_DETERMINISTIC, hooks.ENV_SEED):
        env.pop(name, None)
    if async_logging:
        env["MLFLOW_ENABLE_ASYNC_LOGGING"] = "true"
    if hook_dir:  # what `tfrepro run --seed 0` puts in the container's environment
        env.update(hooks.hook_env(True, 0, {"PYTHONPATH": code_path}, {}))
        env["PYTHONPATH"] = env["PYTHONPATH"].replace(hooks.HOOK_DIR, hook_dir)  # mounted there; here it is this
    return env


def run_row(server, client, experiment_id, row, steps, script, hook_dir, work, event=None):
    """One script run. event: None, "kill" (killed at 30%, restarted at 60%) or "pause" (the
    server SIGSTOPped from the first step to the last: the client's own cost, no server work)."""
    logs, hooked, async_logging = ROWS[row]
    run_id = client.create_run(experiment_id, run_name=row + (" " + event if event else "")).info.run_id
    spool_dir = os.path.join(work, "spool-" + run_id)
    env = _env(server.uri, run_id, spool_dir, hook_dir if hooked else None, async_logging)
    marks = {"kill": (int(steps * 0.3), int(steps * 0.6)), "pause": (0, steps - 1)}.get(event, ())
    cmd = [sys.executable, script, str(steps), "log" if logs else "none", ",".join(map(str, marks))]
    from point_cost import tree_cpu

    server_cpu = sum(tree_cpu(pid) for pid in server.pids())
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events, lines = [], []
    stderr = []
    threading.Thread(target=lambda: stderr.append(proc.stderr.read()), daemon=True).start()
    killed_at = None
    restarted = threading.Event()

    def restart(reason):
        if restarted.is_set():
            return
        restarted.set()
        t = time.monotonic()
        server.start()
        events.append(
            "back after %.1f s down (%s; restart took %.1f s)"
            % (time.monotonic() - killed_at, reason, time.monotonic() - t)
        )

    def watchdog():
        if not restarted.wait(OUTAGE_MAX):
            restart("script blocked: restarted %.0f s after the kill" % OUTAGE_MAX)

    for line in proc.stdout:
        lines.append(line)
        if line.startswith("mark "):
            mark = int(line.split()[1])
            if event == "pause":
                server.signal(signal.SIGSTOP if mark == marks[0] else signal.SIGCONT)
                if mark == marks[1]:
                    events.append("server paused from step 0 to step %d" % mark)
            elif mark == marks[0]:
                server.kill()
                killed_at = time.monotonic()
                events.append("killed at step %d" % mark)
                threading.Thread(target=watchdog, daemon=True).start()
            elif mark == marks[1] and killed_at is not None and not restarted.is_set():
                threading.Thread(target=restart, args=("restarted at step %d" % mark,), daemon=True).start()
    proc.wait()
    if event == "pause":
        server.signal(signal.SIGCONT)  # in case the script died mid-loop
    wall = time.monotonic() - started
    server_cpu = sum(tree_cpu(pid) for pid in server.pids()) - server_cpu  # a restarted server: from 0
    if killed_at is not None and not restarted.wait(OUTAGE_MAX + 120):
        restart("after the script exited")
    result = {
        "row": row,
        "steps": steps,
        "wall": wall,
        "events": events,
        "rc": proc.returncode,
        "server_cpu": server_cpu,
    }
    result["stderr_tail"] = "".join(stderr)[-1500:]
    measured = [json.loads(line) for line in lines if line.startswith("{")]
    if measured:
        result.update(measured[-1])
    if logs:
        result["synced"] = sync_left(spool_dir)
        result["counts"] = step_counts(client, run_id)
    return result


def sync_left(spool_dir) -> int:
    """Points a script left in its spool: uploaded with `tfrepro sync`'s code; how many it sent."""
    from tfrepro.tracking.sync import sync_all

    pending = (
        [os.path.join(spool_dir, f) for f in os.listdir(spool_dir) if f.endswith(".jsonl")]
        if os.path.isdir(spool_dir)
        else []
    )
    synced = 0
    for _ in range(30):  # again while the server still refuses (it resumes, uploads once)
        done = sync_all(paths=pending)
        synced += sum(r.counts.get("points", 0) for r in done)
        pending = [r.path for r in done if r.failure]
        if not pending:
            break
        time.sleep(2)
    return synced


def step_counts(client, run_id):
    """{step: how many points of `loss` the server holds at that step}."""
    return collections.Counter(m.step for m in client.get_metric_history(run_id, "loss"))


# -- the tables ---------------------------------------------------------------------------
def arrival(result):
    counts, steps = result.get("counts"), result["steps"]
    if counts is None:
        return "-", True
    twice = sum(1 for s, n in counts.items() if n > 1)
    missing = sum(1 for s in range(steps) if s not in counts)
    text = "%d/%d" % (sum(counts.values()), steps)
    if twice or missing:
        text += " (%d missing, %d steps twice)" % (missing, twice)
    else:
        text += ", each once"
    if result.get("synced"):
        text += "; %d by `sync`" % result["synced"]
    return text, not twice and not missing


def table(results, bare_per_step):
    lines = [
        "| row | steps | loop s | loop + run end s | until exit s | ratio: loop | ratio: loop + end | us per log call"
        " | script CPU s | server CPU s | points on the server |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    ok = True
    for r in results:
        if "loop" not in r:
            lines.append(
                "| %s | %d | failed (exit %s) | | | | | | %s |" % (r["label"], r["steps"], r["rc"], arrival(r)[0])
            )
            continue
        text, fine = arrival(r)
        ok = ok and (fine or r["row"] == "plain MLflow" and r.get("events"))
        per_step = bare_per_step * r["steps"]
        lines.append(
            "| %s | %d | %.2f | %.2f | %.1f | %.3fx | %.3fx | %s | %.1f | %s | %s |"
            % (
                r["label"],
                r["steps"],
                r["loop"],
                r["total"],
                r["wall"],
                r["loop"] / per_step,
                r["total"] / per_step,
                "%.1f" % r["per_call_us"] if ROWS[r["row"]][0] else "-",
                r["cpu"],
                "%.1f" % r["server_cpu"] if r["server_cpu"] >= 0 else "-",
                text,
            )
        )
    return lines, ok


def machine():
    import mlflow
    import tensorflow as tf

    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), platform.processor())
    return "%s, %d cores, Python %s, TensorFlow %s, MLflow %s" % (
        cpu.split()[0] + " " + cpu.split()[1] if cpu else "?",
        os.cpu_count() or 0,
        platform.python_version(),
        tf.__version__,
        mlflow.__version__,
    )


def write_readme(text, name):
    begin, end = MARKERS[0] % name, MARKERS[1] % name
    path = os.path.join(ROOT, "benchmarks", "README.md")
    with open(path) as f:
        readme = f.read()
    if begin not in readme:
        readme += "\n%s\n%s\n" % (begin, end)
    head, rest = readme.split(begin, 1)
    with open(path, "w") as f:
        f.write("%s%s\n%s%s%s" % (head, begin, text, end, rest.split(end, 1)[1]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--mlflow-steps", type=int, default=None, help="steps of the plain and async MLflow rows")
    parser.add_argument("--servers", default="sqlite,team")
    parser.add_argument("--no-outage", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    from mlflow.tracking import MlflowClient

    from tfrepro.launch import hooks

    mlflow_steps = args.mlflow_steps or args.steps
    all_ok = True
    with tempfile.TemporaryDirectory(prefix="tfrepro-tape-") as work, hooks.hook_directory() as hook_dir:
        os.chmod(work, 0o711)  # the postgres user must reach its cluster inside
        script = os.path.join(work, "train.py")
        with open(script, "w") as f:
            f.write(SCRIPT)
        for name in args.servers.split(","):
            load = os.getloadavg()[0]
            server = SERVERS[name](os.path.join(work, name))
            server.start()
            try:
                client = MlflowClient(server.uri)
                experiment_id = client.create_experiment("gradient-tape")
                results = []
                plan = [(row, None) for row in ORDER] + [("tfrepro run", "pause")]
                if not args.no_outage:
                    plan += [(row, "kill") for row in OUTAGE_ROWS[name]]
                for row, event in plan:
                    steps = mlflow_steps if row in ("plain MLflow", "MLflow async") else args.steps
                    result = run_row(server, client, experiment_id, row, steps, script, hook_dir, work, event)
                    result["label"] = row + EVENTS[event]
                    results.append(result)
                    print(
                        "  %s / %s: %.1f s, %s %s"
                        % (name, result["label"], result["wall"], arrival(result)[0], "; ".join(result["events"])),
                        file=sys.stderr,
                        flush=True,
                    )
                    if result["rc"]:
                        print(result["stderr_tail"], file=sys.stderr)
            finally:
                server.stop()
            bare = [r["loop"] / r["steps"] for r in results if r["row"] == "no logging" and "loop" in r]
            lines, ok = table(results, statistics.mean(bare))
            all_ok = all_ok and ok
            notes = [
                "",
                "Ratios against the mean of the `no logging` rows (%s s per 1,000 steps; loops of %s)."
                % ("%.3f" % (statistics.mean(bare) * 1000), " and ".join("%.2f s" % (b * args.steps) for b in bare)),
            ]
            repro = [r for r in results if r["label"] == "tfrepro run" and "loop" in r]
            if repro:
                ratios = sorted(r["total"] / (statistics.mean(bare) * r["steps"]) for r in repro)
                notes.append(
                    "tfrepro run, loop + run end against no logging: %s (target 1.1x)."
                    % ", ".join("%.3fx" % ratio for ratio in ratios)
                )
            for r in results:
                if r.get("events"):
                    notes.append("%s: %s." % (r["label"], "; ".join(r["events"])))
                if r["rc"]:
                    last = [line for line in r["stderr_tail"].splitlines() if line.strip()][-1:]
                    notes.append(
                        "%s: the script exited %d (%s)." % (r["label"], r["rc"], last[0][:200] if last else "")
                    )
            text = "Last run, %s (%s, load average %.1f at start):\n\n%s\n" % (
                server.name,
                machine(),
                load,
                "\n".join(lines + notes),
            )
            print(text, flush=True)
            if not args.no_write:  # each server's table as soon as it is measured
                write_readme(text, name)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
