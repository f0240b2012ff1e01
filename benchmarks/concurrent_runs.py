"""Many trainings at once against the team server (PostgreSQL + mlflow server, proxied artifacts).

    .venv/bin/python benchmarks/concurrent_runs.py [--writers 8] [--seconds 60]
        [--phases bare,repro,mlflow,restarts] [--store team|sqlite] [--no-write]

Starts scripts/team-server.sh in a fresh directory, then per phase starts N training processes
at once (a barrier after imports), each fitting a small Keras MLP for --seconds and logging
every step (2 metrics: loss, mae):
  bare      no tracking (the baseline for steps/s and memory)
  repro     tfrepro.ReproCallback(log_every_n_steps=1)
  mlflow    mlflow.tensorflow.MlflowCallback(log_every_epoch=False, log_every_n_steps=1)
  restarts  as repro, with PostgreSQL restarted at 1/4 of the load and the mlflow server
            at 1/2 (separately)
Reports the points per second the server accepted, the p50/p95 delay from log (the point's
timestamp) to visible in the server (polled every 0.25 s with runs/search), each writer's
memory, whether every point of every run is in the server exactly once, and the share of points
the trainings' own writers uploaded while they ran ("live") rather than `tfrepro sync` after
them. --store sqlite: a plain `mlflow server --workers 2` on sqlite instead of the team server
(no restarts phase). Writes the table to benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
KEYS = {"bare": "loss", "repro": "batch_loss", "restarts": "batch_loss", "mlflow": "loss"}  # the per-step metric
BEGIN, END = "<!-- concurrent_runs: last run -->", "<!-- concurrent_runs: end -->"
BEGIN_SQLITE, END_SQLITE = "<!-- concurrent_runs sqlite: last run -->", "<!-- concurrent_runs sqlite: end -->"


# -- the team server -------------------------------------------------------------------------
class Team:
    def __init__(self, directory):
        from tests.helpers.ports import free_port

        self.dir, self.port, self.pg_port = directory, free_port(), free_port()
        self.uri = "http://127.0.0.1:%d" % self.port

    def script(self, *args):
        done = subprocess.run(
            [
                "bash",
                os.path.join(ROOT, "scripts", "team-server.sh"),
                "--dir",
                self.dir,
                "--port",
                str(self.port),
                "--pg-port",
                str(self.pg_port),
                "--python",
                sys.executable,
                *args,
            ],
            stdout=subprocess.DEVNULL,
        )
        if done.returncode:
            with open(os.path.join(self.dir, "mlflow.log"), errors="replace") as f:
                sys.stderr.write("".join(f.readlines()[-15:]))
            raise RuntimeError("team-server.sh %s failed" % " ".join(args))

    def restart_mlflow(self):
        with open(os.path.join(self.dir, "mlflow.pid")) as f:
            pid = int(f.read())
        os.killpg(pid, 15)
        while _alive(pid) or not _port_free(self.port):  # its workers may hold the port a little longer
            time.sleep(0.1)
        self.script()  # PostgreSQL still runs: starts the server alone

    def restart_postgres(self):
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                "/usr/lib/postgresql/15/bin/pg_ctl",
                "-D",
                os.path.join(self.dir, "pg", "data"),
                "-m",
                "fast",
                "-w",
                "restart",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )


class SqliteServer:
    """`mlflow server --workers 2` on sqlite, with the Team interface the phases use."""

    def __init__(self, directory):
        from tests.helpers.mlflow_server import MlflowServer

        self.server = MlflowServer(directory, extra_args=["--workers", "2"])
        self.uri = self.server.uri

    def script(self, *args):
        if "--stop" in args:
            self.server.stop()
        else:
            self.server.start()

    def restart_mlflow(self):
        self.server.restart()


def _port_free(port) -> bool:
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _alive(pid) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Poller(threading.Thread):
    """Every 0.25 s: each run's latest step of `key`, as the server shows it."""

    def __init__(self, uri, experiment_id, key):
        super().__init__(daemon=True)
        self.uri, self.experiment_id, self.key = uri, experiment_id, key
        self.seen = []  # (time the answer came, {run name: latest step})
        self.stop = threading.Event()

    def poll(self):
        body = json.dumps({"experiment_ids": [self.experiment_id], "max_results": 100}).encode()
        req = urllib.request.Request(
            self.uri + "/api/2.0/mlflow/runs/search", body, {"Content-Type": "application/json"}
        )
        runs = json.load(urllib.request.urlopen(req, timeout=5)).get("runs", [])
        latest = {}
        for run in runs:
            name = run["info"].get("run_name")
            for m in run.get("data", {}).get("metrics", []):
                if m["key"] == self.key:
                    latest[name] = int(m.get("step", 0))
        return latest

    def run(self):
        while not self.stop.is_set():
            try:
                latest = self.poll()
                self.seen.append((time.time(), latest))
            except Exception:  # the server is restarting
                pass
            self.stop.wait(0.25)


# -- one phase ---------------------------------------------------------------------------------
def phase(team, role, writers, seconds, tmp):
    from mlflow.tracking import MlflowClient

    from tfrepro.tracking.experiments import experiment_id
    from tfrepro.tracking.sync import sync_all

    client = MlflowClient(team.uri)
    experiment = "concurrent-%s-%d" % (role, int(time.time()))
    eid = patient(experiment_id, client, experiment)
    work = tempfile.mkdtemp(prefix=role + "-", dir=tmp)
    go = os.path.join(work, "go")
    procs = []
    for i in range(writers):
        env = dict(os.environ, MLFLOW_TRACKING_URI=team.uri, TFREPRO_SPOOL_DIR=os.path.join(work, "spool%d" % i))
        args = [
            sys.executable,
            os.path.join(ROOT, "benchmarks", "concurrent_child.py"),
            role,
            eid if role == "mlflow" else experiment,
            "w%d" % i,
            str(seconds),
            go,
            os.path.join(work, "ready%d" % i),
            os.path.join(work, "w%d.json" % i),
        ]
        procs.append(subprocess.Popen(args, env=env, stderr=open(os.path.join(work, "w%d.err" % i), "w")))
    while not all(os.path.exists(os.path.join(work, "ready%d" % i)) for i in range(writers)):
        time.sleep(0.1)
    poller = Poller(team.uri, eid, KEYS[role])
    poller.start()
    open(go, "w").close()
    events = []
    if role == "restarts":  # one at a time: PostgreSQL restarts in seconds, the server takes longer
        started = time.time()
        time.sleep(seconds / 4)
        t = time.time()
        team.restart_postgres()
        events.append("PostgreSQL restarted at %.0f s (%.1f s)" % (t - started, time.time() - t))
        time.sleep(max(0, started + seconds / 2 - time.time()))
        t = time.time()
        team.restart_mlflow()
        events.append("mlflow server restarted at %.0f s (down %.1f s)" % (t - started, time.time() - t))
    codes = [p.wait() for p in procs]
    results = []
    for i in range(writers):
        try:
            with open(os.path.join(work, "w%d.json" % i)) as f:
                results.append(json.load(f))
        except OSError:
            results.append({"name": "w%d" % i, "ok": False, "error": "exit status %d" % codes[i]})
    spools = [os.path.join(work, "spool%d" % i) for i in range(writers)]
    pending = [os.path.join(d, f) for d in spools if os.path.isdir(d) for f in os.listdir(d) if f.endswith(".jsonl")]
    synced = 0
    for _ in range(60):  # `tfrepro sync` again while the server still refuses (it resumes, uploads once)
        done = sync_all(paths=pending)
        synced += sum(r.counts.get("points", 0) for r in done)
        pending = [r.path for r in done if r.failure]
        if not pending:
            break
        time.sleep(10)
    deadline = time.time() + (0 if role == "bare" else 120)
    expected = {r["name"]: r.get("steps", 0) for r in results}
    while time.time() < deadline and not (
        poller.seen and all(poller.seen[-1][1].get(n, -1) >= s for n, s in expected.items())
    ):
        time.sleep(0.5)
    poller.stop.set()
    poller.join()
    return summarize(client, eid, role, results, poller.seen, events, synced)


def patient(fn, *args, **kwargs):
    """Read back after the load: an overloaded server may still be refusing for a while."""
    deadline = time.time() + 600
    while True:
        try:
            return fn(*args, **kwargs)
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(5)


def summarize(client, eid, role, results, seen, events, synced):
    key = KEYS[role]
    runs = {r.info.run_name: r.info.run_id for r in patient(client.search_runs, [eid], max_results=100)}
    delays, exact, points, first, last = [], True, 0, None, None
    for r in results:
        run_id = runs.get(r["name"])
        history = patient(client.get_metric_history, run_id, key) if run_id else []
        steps = sorted(m.step for m in history)
        r["exactly_once"] = steps == list(range(1, r.get("steps", 0) + 1))
        exact = exact and (r["exactly_once"] or role == "bare")
        points += 2 * len(history)  # loss and mae, logged together
        times, shown, top = [], [], -1  # when the server first showed each latest step
        for t, latest in seen:
            if latest.get(r["name"], -1) > top:
                top = latest[r["name"]]
                times.append(t)
                shown.append(top)
        for m in history:
            i = bisect.bisect_left(shown, m.step)
            if i < len(shown):
                logged, visible = m.timestamp / 1000.0, times[i]
                delays.append(max(0.0, visible - logged))
                first, last = min(first or logged, logged), max(last or visible, visible)
    delays.sort()

    def pct(q):
        return delays[min(len(delays) - 1, int(q * len(delays)))] if delays else float("nan")

    ok = [r for r in results if r.get("ok")]
    return {
        "role": role,
        "writers": len(results),
        "failed": len(results) - len(ok),
        "steps_per_s": statistics.median([r["steps"] / (r["t_fit_end"] - r["t_begin"]) for r in ok]) if ok else 0,
        "accepted_per_s": points / (last - first) if delays else 0.0,
        "points": points,
        "p50": pct(0.50),
        "p95": pct(0.95),
        "exact": exact,
        "synced": synced,
        "live": sum(r.get("live_points", 0) for r in ok),
        "flush": max((r["t_done"] - r["t_fit_end"] for r in ok), default=0),
        "rss_peak": max((r.get("rss_peak_mb", 0) for r in results), default=0),
        "rss_growth": statistics.median([r["rss_end_mb"] - r["rss_begin_mb"] for r in ok]) if ok else 0,
        "events": events
        + [
            "%s (%d of %d trainings)" % (note, [r.get("note") for r in results].count(note), len(results))
            for note in sorted({r["note"] for r in results if r.get("note")})
        ],
        "errors": [r.get("error") for r in results if not r.get("ok")],
    }


NAMES = {
    "bare": "no tracking (baseline)",
    "repro": "ReproCallback(log_every_n_steps=1)",
    "mlflow": "MlflowCallback(log_every_n_steps=1)",
    "restarts": "ReproCallback, PostgreSQL + server restarted",
}


def table(rows, seconds):
    lines = [
        "| load | trainings ok | steps/s per training | after fit() until exit, max s | points accepted/s "
        "| log to visible p50 / p95 s | writer RSS peak / growth in fit, MB | every point once | uploaded live |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        if r["role"] == "bare":
            lines.append(
                "| %s | %d/%d | %.0f | %.1f | - | - | %.0f / %+.0f | - | - |"
                % (
                    NAMES["bare"],
                    r["writers"] - r["failed"],
                    r["writers"],
                    r["steps_per_s"],
                    r["flush"],
                    r["rss_peak"],
                    r["rss_growth"],
                )
            )
            continue
        lines.append(
            "| %s | %d/%d | %.0f | %.1f | %.0f | %.2f / %.2f | %.0f / %+.0f | %s | %s |"
            % (
                NAMES[r["role"]],
                r["writers"] - r["failed"],
                r["writers"],
                r["steps_per_s"],
                r["flush"],
                r["accepted_per_s"],
                r["p50"],
                r["p95"],
                r["rss_peak"],
                r["rss_growth"],
                ("yes" if r["exact"] else "NO") + (" (%d points by `sync`)" % r["synced"] if r["synced"] else ""),
                "%.0f%%" % min(100.0, 100.0 * r["live"] / r["points"])
                if r["points"] and r["role"] != "mlflow"
                else "-",
            )
        )
    notes = [
        "",
        "%d trainings at once per row, each fitting for %d s and logging loss and mae every step."
        % (rows[0]["writers"], seconds)
        if rows
        else "",
    ]
    notes += ["%s: %s." % (NAMES[r["role"]], "; ".join(r["events"])) for r in rows if r["events"]]
    notes += ["%s failures: %s" % (NAMES[r["role"]], "; ".join(r["errors"])) for r in rows if r["errors"]]
    return "\n".join(lines + notes) + "\n"


def machine(store="team"):
    import mlflow

    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), platform.processor())
    return "%s, %d cores, Python %s, MLflow %s, %s, load average %.1f at start" % (
        cpu,
        os.cpu_count() or 0,
        platform.python_version(),
        mlflow.__version__,
        "team server (PostgreSQL 15, 2 workers)" if store == "team" else "mlflow server --workers 2 on sqlite",
        os.getloadavg()[0],
    )


def write_readme(text, info, store="team"):
    begin, end = (BEGIN, END) if store == "team" else (BEGIN_SQLITE, END_SQLITE)
    path = os.path.join(ROOT, "benchmarks", "README.md")
    with open(path) as f:
        readme = f.read()
    if begin not in readme:
        readme += "\n## concurrent_runs.py\n\n%s\n%s\n" % (begin, end)
    head, rest = readme.split(begin, 1)
    with open(path, "w") as f:
        f.write("%s%s\nLast run (%s):\n\n%s%s%s" % (head, begin, info, text, end, rest.split(end, 1)[1]))
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--phases", default="bare,repro,mlflow,restarts")
    parser.add_argument("--store", choices=("team", "sqlite"), default="team")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    info = machine(args.store)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tfrepro-concurrent-") as tmp:
        os.chmod(tmp, 0o711)  # the postgres user must reach its cluster inside
        team = Team(os.path.join(tmp, "team")) if args.store == "team" else SqliteServer(os.path.join(tmp, "sqlite"))
        team.script()
        try:
            for role in args.phases.split(","):
                if rows:  # each row starts with a fresh server: a backlog left by one load is not the next's
                    team.restart_mlflow()
                print("phase %s ..." % role, file=sys.stderr)
                rows.append(phase(team, role, args.writers, args.seconds, tmp))
                print(json.dumps(rows[-1]), file=sys.stderr)
        finally:
            team.script("--stop")
    text = table(rows, args.seconds)
    print(info)
    print(text)
    if not args.no_write:
        print("wrote", write_readme(text, info, args.store))


if __name__ == "__main__":
    main()
