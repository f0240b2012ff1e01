"""What one logged point costs the background: tfrepro's writer threads and the tracking server.

    .venv/bin/python benchmarks/point_cost.py [--points 40000] [--rate 3200] [--repeats 1]
        [--before REV] [--proposed] [--profile] [--no-stages]

Starts a local `mlflow server` (sqlite, 1 worker), opens a TrackingSession against it and logs
--points points (two metrics a step, as Keras' logs give them: scalar EagerTensors) at
--rate points a second from this thread, which otherwise sleeps; then closes the session and
waits for the upload. Reports CPU microseconds per point:
  - of each writer thread (spooler, uploader), from the kernel's per-thread CPU clock;
  - of this whole process (the training thread's put() and the benchmark's own loop included);
  - of the server's process tree (its worker and, with sqlite, the database), from /proc.
--before REV: the same, side by side (interleaved, --repeats each), with the hot functions of
tfrepro/tracking/spool.py as they were at git revision REV (read, encode_metrics).
--proposed: a column with the writer.py and upload.py changes benchmarks/README.md proposes
(the writer's queue.Queue -> tracking/pointqueue.py's PointQueue; upload.plan merging a chunk's
metric points in place), patched in from here.
--profile: each writer thread under cProfile with a CPU clock; its own time grouped by stage
(tensor read, JSON encode, spool write, queue, spool read, plan, request body, quick ACK,
HTTP client). The stages table (skip: --no-stages) times each stage alone on 20,000 points, as the
threads run it, so the figures add up without the profiler's overhead. Prints; writes nothing.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
TICK = os.sysconf("SC_CLK_TCK")
HOT = ("read", "encode_metrics")  # spool.py's per-point functions, swapped by --before

# (stage, predicate on (file, function name)) in order: the first that matches takes the time
STAGES = (
    ("tensor read", lambda f, n: "tensorflow" in f or "tensorflow" in n or n in ("__float__", "_numpy")),
    ("JSON encode (spool line)", lambda f, n: n in ("encode_metrics", "_encode") or n.startswith("<method 'join")),
    ("spool write", lambda f, n: n in ("write", "flush", "writelines") or "'flush'" in n or "'write" in n),
    ("queue get/put", lambda f, n: f.endswith("queue.py") or f.endswith("pointqueue.py")),
    ("spool read (JSON decode)", lambda f, n: f.endswith("spool.py") or "json/decoder" in f or "readline" in n),
    ("spool read (JSON decode)", lambda f, n: "json/__init__" in f and n == "loads"),
    ("plan", lambda f, n: f.endswith("upload.py")),
    ("request body (JSON)", lambda f, n: "json/" in f or f.endswith("backend.py")),
    ("quick ACK", lambda f, n: f.endswith("quickack.py") or "setsockopt" in n),
    ("HTTP client: MLflow's request headers (import probes)", lambda f, n: "importlib" in f or "databricks" in f),
    (
        "HTTP client",
        lambda f, n: any(s in f for s in ("requests", "urllib3", "http/client", "mlflow", "socket", "ssl")),
    ),
)


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its descendants (alive ones)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK
            with open("/proc/%d/task/%d/children" % (p, p)) as f:
                todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return total


def thread_cpu(native_id: int) -> float:
    """A thread of this process's CPU seconds, ns resolution (its sum_exec_runtime)."""
    with open("/proc/self/task/%d/schedstat" % native_id) as f:
        return int(f.read().split()[0]) / 1e9


def merge_in_place(merge):
    """upload._merge as proposed: a chunk's metric points appended in place, not `a + b` per record."""

    def merged(kind, a, b):
        if kind == "metrics":
            a.extend(b)
            return a
        return merge(kind, a, b)

    return merged


def spool_at(rev: str):
    """tfrepro/tracking/spool.py as it was at git revision `rev`, as a module."""
    source = subprocess.run(
        ["git", "-C", ROOT, "show", "%s:tfrepro/tracking/spool.py" % rev], capture_output=True, text=True, check=True
    ).stdout
    module = types.ModuleType("spool_at_%s" % rev)
    exec(compile(source, "spool.py@%s" % rev, "exec"), module.__dict__)
    return module


class Threads:
    """The writer's threads, watched: their ids, their CPU at the end, their profiles."""

    def __init__(self, profile: bool):
        self.profile = profile
        self.ids, self.end_cpu, self.profiles = {}, {}, {}
        from tfrepro.tracking import writer as writer_mod

        for name in ("_spool_loop", "_upload_loop"):
            setattr(writer_mod.Writer, name, self.watched(name, getattr(writer_mod.Writer, name)))

    def watched(self, name, loop):
        label = "spooler" if name == "_spool_loop" else "uploader"

        def run(writer):
            self.ids[label] = threading.get_native_id()
            try:
                if self.profile:
                    prof = cProfile.Profile(time.thread_time)
                    self.profiles[label] = prof
                    return prof.runcall(loop, writer)
                return loop(writer)
            finally:
                self.end_cpu[label] = time.thread_time()

        run.__wrapped__ = loop
        return run


def measure(server, spool_dir, points, rate, threads):
    """One session: log, close, wait; CPU seconds by thread, process and server."""
    import tensorflow as tf

    from tfrepro.tracking.session import TrackingSession

    loss, mae = tf.constant(0.5123), tf.constant(0.25)
    threads.ids.clear(), threads.end_cpu.clear(), threads.profiles.clear()
    session = TrackingSession.open("point-cost", spool_dir=spool_dir, background=True)
    time.sleep(2)  # the run exists, MLflow is imported: not counted
    start = {label: thread_cpu(tid) for label, tid in threads.ids.items()}
    cpu0, server0, wall0 = time.process_time(), tree_cpu(server.proc.pid), time.monotonic()
    steps = points // 2
    in_put = 0.0
    for step in range(1, steps + 1):
        t = time.perf_counter()
        session.log_metrics({"batch_loss": loss, "batch_mae": mae}, step)
        in_put += time.perf_counter() - t
        delay = wall0 + step * 2 / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    logged = time.monotonic()
    session.close(background=True)
    session.wait(300)
    result = {
        "points": steps * 2,
        "log_s": logged - wall0,
        "after_s": time.monotonic() - logged,
        "process": time.process_time() - cpu0,
        "server": tree_cpu(server.proc.pid) - server0,
        "live": session._writer.live_points,
        "put_us": in_put / steps * 1e6,
        "profiles": dict(threads.profiles),
    }
    for label in ("spooler", "uploader"):
        result[label] = threads.end_cpu.get(label, float("nan")) - start.get(label, float("nan"))
    return result


def stage_table(profiles, points):
    """{stage: CPU seconds} from per-thread profiles (own time, CPU clock)."""
    import pstats

    totals, other = {}, {}
    for label, prof in profiles.items():
        stats = pstats.Stats(prof).stats
        for (path, _line, name), (_cc, _nc, tottime, _ct, _callers) in stats.items():
            stage = next((s for s, match in STAGES if match(path, name)), "other (loops, locks, queue)")
            if stage.startswith("other"):
                other[(path, 0, name)] = other.get((path, 0, name), 0.0) + tottime
            key = (label, stage)
            totals[key] = totals.get(key, 0.0) + tottime
    others = sorted(((t, "%s:%s" % (os.path.basename(f), n)) for (f, _l, n), t in other.items()), reverse=True)[:6]
    lines = ["| thread | stage | CPU us per point (profiled) |", "|---|---|---:|"]
    for (label, stage), seconds in sorted(totals.items(), key=lambda kv: (kv[0][0], -kv[1])):
        lines.append("| %s | %s | %.2f |" % (label, stage, seconds / points * 1e6))
    lines.append("")
    lines.append("largest in other: " + ", ".join("%s %.2f us" % (name, t / points * 1e6) for t, name in others))
    return "\n".join(lines)


# -- each stage alone ---------------------------------------------------------------------
def per_point(fn, points, repeats=5):
    """Best of `repeats` runs of fn(), in us per point."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best / points * 1e6


def stages(modules, n_steps=10000):
    """{stage: [us per point for each spool module]}: each stage the writer threads run, alone."""
    import tensorflow as tf

    loss, mae = tf.constant(0.5123), tf.constant(0.25)
    items = [(step, 1700000000000 + step, {"batch_loss": loss, "batch_mae": mae}) for step in range(n_steps)]

    def tensor_read():
        for item in items:
            {str(k): float(v) for k, v in item[2].items()}

    rows = {"tensor read (float() of 2 scalar tensors a step)": [per_point(tensor_read, n_steps * 2)] * len(modules)}
    values = [(step, ts, {k: float(v) for k, v in m.items()}) for step, ts, m in items]
    work = tempfile.mkdtemp(prefix="tfrepro-stages-")
    for column, module in enumerate(modules):
        for stage, us in module_stages(module, values, os.path.join(work, str(column))).items():
            rows.setdefault(stage, []).append(us)
    return rows


def module_stages(module, values, work):
    """The spool-side stages with one spool module, then plan and the request body on what it read."""
    from tfrepro.tracking import backend, upload

    points = sum(len(m) for _step, _ts, m in values)
    out = {}
    lines = [module.encode_metrics(step, ts, m) for step, ts, m in values]
    out["JSON encode (spool line)"] = per_point(lambda: [module.encode_metrics(*v) for v in values], points)
    spool_file = module.SpoolFile(work, "run", {"run_id": "run"})

    def write():
        for i in range(0, len(lines), 160):  # what the spooler drains in 0.05 s at 3,200 points/s
            spool_file.write(lines[i : i + 160])
        spool_file.flush()

    out["spool write (160-line writes, one flush)"] = per_point(write, points, repeats=1)
    spool_file.close()
    chunks = []

    def read():
        chunks.clear()
        with open(spool_file.path, "rb") as handle:
            offset = module.read(spool_file.path, 0, max_entities=1, handle=handle)[1]  # the header
            while True:
                records, end = module.read(spool_file.path, offset, handle=handle)
                if end == offset:
                    return
                chunks.append(records)
                offset = end

    out["spool read (1000-point chunks, JSON decode)"] = per_point(read, points)
    plans = []

    def plan():
        plans[:] = [upload.plan(chunk) for chunk in chunks]

    out["plan (upload.plan)"] = per_point(plan, points)

    def body():
        for calls in plans:
            for _kind, batch in calls:
                payload = [
                    {"key": k, "value": backend._json_float(v), "timestamp": t, "step": s} for k, v, t, s in batch
                ]
                json.dumps({"run_id": "0" * 32, "metrics": payload})

    out["request body (dicts + json.dumps, as backend.log_batch and requests)"] = per_point(body, points)
    return out


def queue_cost(steps=10000):
    """us per point (2 a step) of a put_nowait() and a get_nowait() per step: queue.Queue, PointQueue."""
    from tfrepro.tracking.pointqueue import PointQueue

    item = (1, 1700000000000, {"batch_loss": 0.5, "batch_mae": 0.25})
    out = []
    for q in (queue.Queue(10000), PointQueue(10000)):

        def cycle(q=q):
            for _ in range(steps):
                q.put_nowait(item)
            for _ in range(steps):
                q.get_nowait()

        out.append(per_point(cycle, steps * 2))
    return tuple(out)


def http_cost(uri, calls=20):
    """CPU us of one 1000-point log_batch through tfrepro's RestBackend (body, MLflow's
    http_request, requests), and of MLflow's request-header resolution it runs each call."""
    from mlflow.tracking import MlflowClient
    from mlflow.tracking.request_header.registry import resolve_request_headers

    from tfrepro.tracking.backend import RestBackend

    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("http-cost")).info.run_id
    rest = RestBackend(uri)
    rest.reachable()
    spent, headers = [], []
    for call in range(calls):
        points = [("batch_loss", 0.5 + i, 1700000000000 + call * 1000 + i, call * 1000 + i) for i in range(1000)]
        t = time.thread_time()
        rest.log_batch(run_id, metrics=points)
        spent.append(time.thread_time() - t)
        t = time.thread_time()
        resolve_request_headers()
        headers.append(time.thread_time() - t)
    return statistics.median(spent) * 1e6, statistics.median(headers) * 1e6


def quickack_per_call(uri, calls=300):
    """CPU us of one reply read on a kept-alive connection: through the quick-ACK wrapper, and not."""
    import http.client
    from urllib.parse import urlparse

    from tfrepro.tracking import quickack

    quickack.enable(uri)
    url = urlparse(uri)
    conn = http.client.HTTPConnection(url.hostname, url.port)
    spent = {True: [], False: []}
    for i in range(calls):
        conn.request("GET", "/health")
        wrapped = i % 2 == 0
        t = time.thread_time()
        (conn.getresponse() if wrapped else quickack._real_getresponse(conn)).read()
        spent[wrapped].append(time.thread_time() - t)
    conn.close()
    return statistics.median(spent[True]) * 1e6, statistics.median(spent[False]) * 1e6


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=40000)
    parser.add_argument("--rate", type=float, default=3200.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--before", metavar="REV", help="also measure spool.py's hot functions as of this revision")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--no-stages", action="store_true")
    parser.add_argument(
        "--proposed",
        action="store_true",
        help="also a column with the writer on PointQueue and upload.plan merging metric batches in place",
    )
    args = parser.parse_args(argv)
    import mlflow

    from tests.helpers.mlflow_server import MlflowServer
    from tfrepro.tracking import pointqueue, spool, upload
    from tfrepro.tracking import writer as writer_mod

    # (column, [(module, attribute, value)]): what each column runs with
    variants = [("now", [(spool, name, getattr(spool, name)) for name in HOT])]
    variants[0][1].append((writer_mod, "queue", queue))
    modules = [spool]
    if args.before:
        old = spool_at(args.before)
        patches = [(spool, name, getattr(old, name)) for name in HOT] + [(writer_mod, "queue", queue)]
        patches.append((upload, "_merge", upload._merge))
        variants.insert(0, ("before (%s)" % args.before, patches))
        modules.insert(0, old)
    variants[-1][1].append((upload, "_merge", upload._merge))
    if args.proposed:  # the writer.py and upload.py changes proposed (benchmarks/README.md)
        drop_in = types.SimpleNamespace(Queue=pointqueue.PointQueue, Full=queue.Full, Empty=queue.Empty)
        patches = [(spool, name, getattr(spool, name)) for name in HOT] + [(writer_mod, "queue", drop_in)]
        patches.append((upload, "_merge", merge_in_place(upload._merge)))
        variants.append(("now + proposed writer/upload changes", patches))
    threads, profiled = Threads(False), {}
    load = os.getloadavg()[0]
    results = {label: [] for label, _ in variants}
    with tempfile.TemporaryDirectory(prefix="tfrepro-points-") as tmp:
        server = MlflowServer(os.path.join(tmp, "server")).start()
        try:
            mlflow.set_tracking_uri(server.uri)
            for repeat in range(args.repeats):
                for column, (label, patches) in enumerate(variants):
                    for module, name, value in patches:
                        setattr(module, name, value)
                    spool_dir = os.path.join(tmp, "spool-%d-%d" % (repeat, column))
                    results[label].append(measure(server, spool_dir, args.points, args.rate, threads))
                    r = results[label][-1]
                    print("  %s: %d points, %d live" % (label, r["points"], r["live"]), file=sys.stderr, flush=True)
            if args.profile:  # one more run per column, profiled: the stages' shares, not the totals
                threads.profile = True
                for column, (label, patches) in enumerate(variants):
                    for module, name, value in patches:
                        setattr(module, name, value)
                    profiled[label] = measure(
                        server, os.path.join(tmp, "prof-%d" % column), args.points, args.rate, threads
                    )
            now = next(patches for label, patches in variants if label == "now")
            for module, name, value in now:  # the stages alone run today's code
                setattr(module, name, value)
            ack_us = quickack_per_call(server.uri)
            call_us = http_cost(server.uri)
        finally:
            server.stop()
    print(
        "%d points a run (2 metrics a step, scalar EagerTensors) at %.0f points/s into a local mlflow server "
        "(sqlite, 1 worker); load average %.1f at start; median of %d run(s) per column"
        % (args.points, args.rate, load, args.repeats)
    )
    print("\n| CPU us per point | %s |" % " | ".join(label for label, _ in variants))
    print("|---|%s" % ("---:|" * len(variants)))
    rows = (
        ("spooler thread", "spooler"),
        ("uploader thread", "uploader"),
        ("this process (put() on the logging thread, both threads, the loop)", "process"),
        ("mlflow server process tree", "server"),
    )
    for title, key in rows:
        cells = [
            "%.1f" % statistics.median(r[key] / r["points"] * 1e6 for r in results[label]) for label, _ in variants
        ]
        print("| %s | %s |" % (title, " | ".join(cells)))
    cells = ["%.2f" % statistics.median(r["put_us"] for r in results[label]) for label, _ in variants]
    print("| the logging thread's session.log_metrics() call, us per step (2 points) | %s |" % " | ".join(cells))
    cells = [
        "%d of %d" % (min(r["live"] for r in results[label]), results[label][0]["points"]) for label, _ in variants
    ]
    print("| uploaded live by the writer (fewest) | %s |" % " | ".join(cells))
    cells = ["%.1f" % max(r["after_s"] for r in results[label]) for label, _ in variants]
    print("| all uploaded, s after the last point (most) | %s |" % " | ".join(cells))
    print(
        "\nquick ACK: reading one reply costs %.1f us CPU through the wrapper, %.1f us without "
        "(one call per up to 1,000 points)" % ack_us
    )
    print(
        "one 1000-point log_batch through RestBackend: %.0f us CPU on the calling thread (%.2f us a point), "
        "of which MLflow's request headers (resolve_request_headers: the Databricks provider's import probes) %.0f us"
        % (call_us[0], call_us[0] / 1000, call_us[1])
    )
    if args.profile:
        for label, _ in variants:
            print("\n%s, writer threads under cProfile (CPU clock), by stage:\n" % label)
            print(stage_table(profiled[label]["profiles"], profiled[label]["points"]))
    if not args.no_stages:
        print("\nEach stage alone, us per point (best of 5, 20,000 points):\n")
        labels = [label for label, _ in variants][: len(modules)]
        print("| stage | %s |" % " | ".join(labels))
        print("|---|%s" % ("---:|" * len(labels)))
        for stage, cells in stages(modules).items():
            print("| %s | %s |" % (stage, " | ".join("%.2f" % c for c in cells)))
        put_get = queue_cost()
        print("\nThe writer's queue alone, one put_nowait() and one get_nowait() a step, us per point:")
        print("queue.Queue %.2f, PointQueue %.2f" % put_get)


if __name__ == "__main__":
    main()
