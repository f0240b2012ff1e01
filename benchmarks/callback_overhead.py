"""Cost of tracking a Keras fit(): ReproCallback vs MLflow's own callback and autolog.

    .venv/bin/python benchmarks/callback_overhead.py [--repeats 5] [--backends http,sqlite] [--no-write]

Runs every variant in one process, interleaved, on the same 32-64-1 MLP (3 epochs x 128
steps, batch 32, CPU), against a real `mlflow server` over loopback HTTP and against a
sqlite store. Only model.fit() is timed: ReproCallback opens and closes its run inside
fit() (on_train_begin/on_train_end), so that cost is in its numbers; MlflowCallback needs
a run started beforehand (outside the timing). Prints medians and ratios to the bare fit
and writes the last table to benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # a CPU benchmark, as in the issue
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

EPOCHS, STEPS, BATCH = 3, 128, 32


def data():
    import numpy as np

    rng = np.random.RandomState(0)
    return rng.rand(STEPS * BATCH, 32).astype("float32"), rng.rand(STEPS * BATCH, 1).astype("float32")


def model():
    import tensorflow as tf

    m = tf.keras.Sequential([tf.keras.layers.Dense(64, activation="relu", input_shape=(32,)), tf.keras.layers.Dense(1)])
    m.compile(optimizer="adam", loss="mse")
    return m


def timed_fit(x, y, callbacks=()):
    m = model()
    start = time.perf_counter()
    m.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0, callbacks=list(callbacks))
    return time.perf_counter() - start


def variants():
    """name -> fn(x, y) returning seconds of fit() alone."""
    import mlflow
    import mlflow.tensorflow

    from tfrepro import ReproCallback

    def bare(x, y):
        return timed_fit(x, y)

    def repro_step(x, y):
        return timed_fit(x, y, [ReproCallback(experiment_name="bench", log_every_n_steps=1, log_model=False)])

    def repro_epoch(x, y):
        return timed_fit(x, y, [ReproCallback(experiment_name="bench", log_model=False)])

    def repro_step_active(x, y):  # run created before fit(), as MlflowCallback needs
        with mlflow.start_run():
            return timed_fit(x, y, [ReproCallback(log_every_n_steps=1, log_model=False)])

    def mlflow_callback(x, y):
        with mlflow.start_run():  # log_every_epoch must be off for per-step logging
            cb = mlflow.tensorflow.MlflowCallback(log_every_epoch=False, log_every_n_steps=1)
            return timed_fit(x, y, [cb])

    def autolog(x, y):
        mlflow.tensorflow.autolog(silent=True)
        try:
            return timed_fit(x, y)
        finally:
            mlflow.tensorflow.autolog(disable=True)
            while mlflow.active_run():
                mlflow.end_run()

    return [
        ("bare fit", bare),
        ("ReproCallback per step", repro_step),
        ("ReproCallback per epoch", repro_epoch),
        ("ReproCallback per step, run started before fit", repro_step_active),
        ("mlflow MlflowCallback(log_every_n_steps=1)", mlflow_callback),
        ("mlflow.tensorflow.autolog()", autolog),
    ]


def run_backend(uri, repeats):
    import mlflow

    mlflow.set_tracking_uri(uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_experiment("bench")
    x, y = data()
    found = variants()
    times = {name: [] for name, _ in found}
    for _name, fn in found:  # warm-up: tracing, first connections, experiment creation
        fn(x, y)
    for r in range(repeats):
        order = found if r % 2 == 0 else found[::-1]  # interleaved, alternating order
        for name, fn in order:
            times[name].append(fn(x, y))
        print("  repeat %d/%d done" % (r + 1, repeats), file=sys.stderr)
    return times


def machine():
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import mlflow
    import tensorflow as tf

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return "%s, %d cores, %s, Python %s, TensorFlow %s, MLflow %s, load average %.1f at start" % (
        cpu,
        os.cpu_count() or 0,
        platform.platform(),
        platform.python_version(),
        tf.__version__,
        mlflow.__version__,
        load,
    )


def table(results, repeats):
    lines = [
        "| variant | store | median fit() s | ratio to bare fit | (fit - bare) / steps, ms |",
        "|---|---|---:|---:|---:|",
    ]
    for store, times in results:
        bare = statistics.median(times["bare fit"])
        for name, ts in times.items():
            med = statistics.median(ts)
            lines.append(
                "| %s | %s | %.3f | %.2fx | %.2f |"
                % (name, store, med, med / bare, (med - bare) * 1000 / (EPOCHS * STEPS))
            )
    lines.append("")
    lines.append(
        "Medians of %d interleaved repeats; %d epochs x %d steps, batch %d, 32-64-1 MLP on CPU."
        % (repeats, EPOCHS, STEPS, BATCH)
    )
    return "\n".join(lines)


BEGIN, END = "<!-- callback_overhead: last run -->", "<!-- callback_overhead: end -->"


def write_readme(text, info):
    """Replace the last-run block of benchmarks/README.md; the prose around it is kept."""
    path = os.path.join(ROOT, "benchmarks", "README.md")
    with open(path) as f:
        readme = f.read()
    head, rest = readme.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    with open(path, "w") as f:
        f.write("%s%s\nLast run (%s):\n\n%s\n%s%s" % (head, BEGIN, info, text, END, tail))
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backends", default="http,sqlite")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite benchmarks/README.md")
    args = parser.parse_args(argv)
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore")
    from tests.helpers.mlflow_server import MlflowServer

    info = machine()
    results = []
    with tempfile.TemporaryDirectory(prefix="tfrepro-bench-") as tmp:
        os.environ["TFREPRO_SPOOL_DIR"] = os.path.join(tmp, "spool")
        for backend in args.backends.split(","):
            print("backend %s" % backend, file=sys.stderr)
            if backend == "http":
                server = MlflowServer(os.path.join(tmp, "server")).start()
                try:
                    results.append(("http", run_backend(server.uri, args.repeats)))
                finally:
                    server.stop()
            elif backend == "sqlite":
                results.append(("sqlite", run_backend("sqlite:///%s/mlflow.db" % tmp, args.repeats)))
            else:
                parser.error("unknown backend %r" % backend)
    text = table(results, args.repeats)
    print(info)
    print(text)
    if not args.no_write:
        print("wrote", write_readme(text, info))


if __name__ == "__main__":
    main()
