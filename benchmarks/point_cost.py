"""What one logged point costs the background: tfrepro's writer threads and the tracking server.

    .venv/bin/python benchmarks/point_cost.py [--points 40000] [--rate 3200] [--profile]

Starts a local `mlflow server` (sqlite), opens a TrackingSession against it and logs
--points points (two metrics a step, as Keras' logs give them: scalar EagerTensors) at
--rate points a second from this thread, which otherwise sleeps; then closes the session
and waits for the upload. Reports CPU microseconds per point of this process (the writer's
spooler and uploader threads, the training thread's put() included) and of the server
process tree (its workers and, with sqlite, the database), measured from /proc. --profile
runs each writer thread under cProfile and prints where its time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
TICK = os.sysconf("SC_CLK_TCK")


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


def profiled(profiles, name, fn):
    def run(*args, **kwargs):
        prof = cProfile.Profile()
        profiles[name] = prof
        return prof.runcall(fn, *args, **kwargs)

    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=40000)
    parser.add_argument("--rate", type=float, default=3200.0)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    import mlflow
    import tensorflow as tf

    from tests.helpers.mlflow_server import MlflowServer
    from tfrepro.tracking import writer as writer_mod
    from tfrepro.tracking.session import TrackingSession

    profiles = {}
    if args.profile:
        writer_mod.Writer._spool_loop = profiled(profiles, "spooler", writer_mod.Writer._spool_loop)
        writer_mod.Writer._upload_loop = profiled(profiles, "uploader", writer_mod.Writer._upload_loop)
    loss, mae = tf.constant(0.5), tf.constant(0.25)
    with tempfile.TemporaryDirectory(prefix="tfrepro-points-") as tmp:
        server = MlflowServer(os.path.join(tmp, "server")).start()
        try:
            mlflow.set_tracking_uri(server.uri)
            session = TrackingSession.open("point-cost", spool_dir=os.path.join(tmp, "spool"), background=True)
            time.sleep(2)  # the run exists, MLflow is imported: not counted
            cpu0, server0, wall0 = time.process_time(), tree_cpu(server.proc.pid), time.monotonic()
            steps = args.points // 2
            for step in range(1, steps + 1):
                session.log_metrics({"batch_loss": loss, "batch_mae": mae}, step)
                due = wall0 + step * 2 / args.rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            logged = time.monotonic()
            session.close(background=True)
            session.wait(300)
            wall = time.monotonic() - wall0
            cpu, server_cpu = time.process_time() - cpu0, tree_cpu(server.proc.pid) - server0
            live = session._writer.live_points
        finally:
            server.stop()
    n = steps * 2
    print(
        "points: %d logged in %.1f s (%.0f/s), all uploaded %.1f s after the last"
        % (n, logged - wall0, n / (logged - wall0), wall0 + wall - logged)
    )
    print("uploaded live by the writer: %d of %d" % (live, n))
    print("this process (put + spooler + uploader), CPU us per point: %.1f" % (cpu / n * 1e6))
    print("mlflow server process tree, CPU us per point: %.1f" % (server_cpu / n * 1e6))
    print(
        "batch size at the end: %d points, call timeout %.0f s"
        % (session._writer.pace.batch, session._writer.pace.timeout)
    )
    for name, prof in profiles.items():
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats(os.environ.get("SORT", "tottime")).print_stats(
            int(os.environ.get("TOP", "14"))
        )
        print("\n== %s thread, by own time ==" % name)
        print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:4000])


if __name__ == "__main__":
    main()
