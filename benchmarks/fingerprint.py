"""How long collecting the environment takes, and what the MLflow plugin adds to start_run().

    python benchmarks/fingerprint.py [--repeat 7] [--files 20000] [--keep REPO_DIR]

1. collect_environment() in a real git repo of --files files with a dirty tree (20 modified,
   5 staged, 10 untracked), with this interpreter's installed packages:
   cold = a fresh interpreter per sample (import tfrepro + collect), warm = again in-process.
   The cold run also times each source on its own.
2. mlflow.start_run()/end_run() against a sqlite store in a temp dir, with the tfrepro
   context provider off (TFREPRO_CONTEXT=0) and on: the first run of a fresh process and the
   next ones. Prints medians. Target: collect_environment() <= 0.3 s cold.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

# CPU time of the measuring process and its git children, shared by the scripts below.
CPU = r"""
import json, resource, time
def cpu():
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
"""

COLD = (
    CPU
    + r"""
t0, c0 = time.perf_counter(), cpu()
import tfrepro
env = tfrepro.collect_environment()
total, total_cpu = time.perf_counter() - t0, cpu() - c0
import importlib
parts = {}
for name in ("container", "git", "gpu", "tensorflow", "python", "system", "process"):
    t = time.perf_counter()
    try:
        importlib.import_module("tfrepro.fingerprint." + name).collect()
    except Exception:
        pass
    parts[name] = time.perf_counter() - t
t = time.perf_counter()
for _ in range(5):
    tfrepro.collect_environment()
warm = (time.perf_counter() - t) / 5
print(json.dumps({"cold": total, "cold_cpu": total_cpu, "warm": warm, "parts": parts,
                  "dirty": bool(env.git and env.git.dirty), "packages": len(env.python.packages),
                  "reasons": dict(env.reasons)}))
"""
)

IN_TRAINING = (
    CPU
    + r"""
import tensorflow as tf  # what a Keras training process holds when the callback collects
import tfrepro
t0, c0 = time.perf_counter(), cpu()
env = tfrepro.collect_environment()
print(json.dumps({"first": time.perf_counter() - t0, "cpu": cpu() - c0, "imported": env.tensorflow.imported}))
"""
)

START_RUN = (
    CPU
    + r"""
import sys
import mlflow
mlflow.set_tracking_uri(sys.argv[1])
mlflow.set_experiment("bench")
times, cpus = [], []
for _ in range(int(sys.argv[2])):
    t, c = time.perf_counter(), cpu()
    run = mlflow.start_run()
    mlflow.end_run()
    times.append(time.perf_counter() - t)
    cpus.append(cpu() - c)
tags = mlflow.get_run(run.info.run_id).data.tags
print(json.dumps({"times": times, "cpus": cpus, "tfrepro_tags": len([k for k in tags if k.startswith("tfrepro.")])}))
"""
)


def make_repo(path: str, files: int) -> None:
    """A committed repo of `files` small files, then a dirty working tree."""
    if os.path.exists(os.path.join(path, ".git", "bench-ready")):
        return
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    for i in range(files):
        folder = os.path.join(path, "pkg%03d" % (i // 100))
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "mod%03d.py" % (i % 100)), "w") as f:
            f.write("VALUE = %d\n\ndef f(x):\n    return x + VALUE\n" % i)

    def git(*args):
        subprocess.run(["git", *args], cwd=path, check=True, stdout=subprocess.DEVNULL)

    git("init", "-q", "-b", "main")
    git("config", "user.email", "bench@example.com")
    git("config", "user.name", "bench")
    git("add", "-A")
    git("commit", "-q", "-m", "bench")
    git("remote", "add", "origin", "https://example.com/bench.git")
    for i in range(20):
        with open(os.path.join(path, "pkg%03d" % i, "mod000.py"), "a") as f:
            f.write("# edited\n")
    for i in range(5):
        name = os.path.join("pkg%03d" % i, "new.py")
        with open(os.path.join(path, name), "w") as f:
            f.write("NEW = %d\n" % i)
        git("add", name)
    for i in range(10):
        with open(os.path.join(path, "scratch%d.txt" % i), "w") as f:
            f.write("untracked\n")
    open(os.path.join(path, ".git", "bench-ready"), "w").close()


def run_json(args, cwd=None, env=None):
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def ms(seconds: float) -> str:
    return "%.1f ms" % (seconds * 1000)


def bench_collect(repo: str, repeat: int):
    samples = [run_json([sys.executable, "-c", COLD], cwd=repo) for _ in range(repeat)]
    first = samples[0]
    load = os.getloadavg()[0]
    print(
        "\n## collect_environment() in a %d-file dirty repo (%d packages), median of %d"
        % (args.files, first["packages"], repeat)
    )
    print("load average at the start: %.1f on %d CPUs" % (load, os.cpu_count() or 1))
    print("reasons on this machine: %s" % (first["reasons"] or "none"))
    print("\n| measure | median |\n|---|---|")
    print(
        "| cold: fresh interpreter, import tfrepro + collect | %s |" % ms(statistics.median(s["cold"] for s in samples))
    )
    print(
        "| cold, CPU time (tfrepro + its git children) | %s |" % ms(statistics.median(s["cold_cpu"] for s in samples))
    )
    print("| warm: collect again in the same process | %s |" % ms(statistics.median(s["warm"] for s in samples)))
    for name in first["parts"]:
        print(
            "| source `%s` (after the first collect) | %s |"
            % (name, ms(statistics.median(s["parts"][name] for s in samples)))
        )
    trained = [run_json([sys.executable, "-c", IN_TRAINING], cwd=repo) for _ in range(max(3, repeat // 2))]
    print(
        "| first collect in a process that imported TensorFlow (%d runs) | %s |"
        % (len(trained), ms(statistics.median(s["first"] for s in trained)))
    )
    print("| the same, CPU time | %s |" % ms(statistics.median(s["cpu"] for s in trained)))


def bench_start_run(tmp: str, repeat: int, runs: int):
    uri = "sqlite:///%s/mlflow.db" % tmp
    base = dict(os.environ, MLFLOW_TRACKING_URI=uri, GIT_PYTHON_REFRESH="quiet")
    run_json([sys.executable, "-c", START_RUN, uri, "1"], cwd=tmp, env=base)  # create the schema once
    rows = {}
    for label, flag in (("off (TFREPRO_CONTEXT=0)", "0"), ("on (default)", "1")):
        samples = [
            run_json(
                [sys.executable, "-c", START_RUN, uri, str(runs)],
                cwd=args.repo_dir,
                env=dict(base, TFREPRO_CONTEXT=flag),
            )
            for _ in range(repeat)
        ]
        rows[label] = (
            statistics.median(s["times"][0] for s in samples),
            statistics.median(statistics.median(s["times"][1:]) for s in samples),
            samples[0]["tfrepro_tags"],
            statistics.median(s["cpus"][0] for s in samples),
        )
    print("\n## mlflow.start_run() + end_run(), sqlite store, median of %d processes x %d runs" % (repeat, runs))
    print(
        "\n| tfrepro context provider | first run in process | its CPU time | later runs | tfrepro.* tags |"
        "\n|---|---|---|---|---|"
    )
    for label, (first, later, tags, first_cpu) in rows.items():
        print("| %s | %s | %s | %s | %d |" % (label, ms(first), ms(first_cpu), ms(later), tags))
    off, on = rows["off (TFREPRO_CONTEXT=0)"], rows["on (default)"]
    print("| **added by tfrepro** | %s | %s | %s | |" % (ms(on[0] - off[0]), ms(on[3] - off[3]), ms(on[1] - off[1])))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5, help="start_run calls per process")
    parser.add_argument("--keep", dest="repo_dir", default=None, help="reuse/keep the benchmark repo here")
    parser.add_argument("--skip-mlflow", action="store_true")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="tfrepro-bench-")
    args.repo_dir = args.repo_dir or os.path.join(tmp, "repo")
    try:
        started = time.time()
        make_repo(args.repo_dir, args.files)
        print(
            "# tfrepro fingerprint benchmark\n\npython %s, %s; repo ready in %.0f s"
            % (sys.version.split()[0], sys.executable, time.time() - started)
        )
        bench_collect(args.repo_dir, args.repeat)
        if not args.skip_mlflow:
            bench_start_run(tmp, args.repeat, args.runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
