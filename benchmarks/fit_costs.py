"""What users pay for tracking a Keras fit(), against the team server over HTTP.

    .venv/bin/python benchmarks/fit_costs.py [--processes 5] [--repeats 3] [--long-seconds 60] [--no-write]

Starts scripts/team-server.sh (PostgreSQL + mlflow server, proxied artifacts) in a fresh
directory, then measures, side by side in one run, on the same 32-64-1 MLP on the CPU:
  fixed     fresh processes, each one fit with ReproCallback(log_model=False) as a user's script
            runs it (the MLflow plugin installed): the 0.6 s fit and a --fixed-seconds fit logging
            every step, and that fit logging per epoch (--processes of each): the ms the training
            thread spends opening the run, logging the first params, flushing and ending the run;
            what tfrepro's recording thread spends on the environment and fit()'s inputs; how
            many times the environment was collected;
  per step  the training thread's time in on_train_batch_end of ReproCallback(log_every_n_steps=1)
            and of mlflow.tensorflow.MlflowCallback(log_every_n_steps=1), in us per step;
  ratio     fit() wall time against a bare fit, interleaved in one process: the old 0.6 s fit
            (3 epochs) and a fit of about --long-seconds (--repeats each; MlflowCallback's long
            fit once, it is far slower).
Writes the tables to benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # a CPU benchmark
STEPS, SHORT_EPOCHS = 128, 3
TRAINING_THREAD = (
    "run open",
    "of which MLflow's start_run",
    "of which the MLflow plugin",
    "first params",
    "final flush and end run (overlapped)",
    "of which MLflow's end_run",
    "signing",
)
RECORDER_THREAD = ("environment (collect and queue)", "fit()'s inputs (hash and queue)")
BEGIN, END = "<!-- fit_costs: last run -->", "<!-- fit_costs: end -->"
CPU = []  # process CPU seconds of each _fit, in order


# -- in a child process: TensorFlow and MLflow are imported here only ---------------------------
MODELS = {
    # the old benchmark's model: ~0.6 ms a step here, a worst case for per-step logging
    "mlp": "32-64-1 MLP, batch 32",
    # a small image CNN: ~20 ms a step on these 2 CPU cores, closer to what users train
    "cnn": "CNN (2 conv, 32x32x3 inputs, 10 classes), batch 64",
}
_cache = {}


def _data(kind):
    import numpy as np

    if kind not in _cache:
        rng = np.random.RandomState(0)
        if kind == "mlp":
            x, y = rng.rand(STEPS * 32, 32).astype("float32"), rng.rand(STEPS * 32, 1).astype("float32")
        else:
            x, y = rng.rand(STEPS * 64, 32, 32, 3).astype("float32"), rng.randint(0, 10, STEPS * 64)
        _cache[kind] = (x, y)
    return _cache[kind]


def _model(kind):
    import tensorflow as tf

    layers = tf.keras.layers
    if kind == "mlp":
        model = tf.keras.Sequential([layers.Dense(64, activation="relu", input_shape=(32,)), layers.Dense(1)])
        model.compile(optimizer="adam", loss="mse")
        return model, 32
    model = tf.keras.Sequential(
        [
            layers.Conv2D(32, 3, activation="relu", input_shape=(32, 32, 3)),
            layers.MaxPool2D(),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPool2D(),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(10),
        ]
    )
    model.compile(
        optimizer="adam", metrics=["accuracy"], loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    return model, 64


def _fit(callbacks=(), epochs=SHORT_EPOCHS, kind="mlp"):
    x, y = _data(kind)
    model, batch = _model(kind)
    start, cpu = time.perf_counter(), time.process_time()
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, callbacks=list(callbacks))
    CPU.append(time.process_time() - cpu)  # every thread of this process: TensorFlow's and tfrepro's
    return time.perf_counter() - start


class Timers:
    """Wraps functions by attribute to add up the time spent in them on this thread."""

    def __init__(self):
        self.ms, self.calls = {}, {}

    def wrap(self, owner, attribute, name):
        real = getattr(owner, attribute)
        raw = owner.__dict__.get(attribute) if isinstance(owner, type) else real
        timers = self

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                timers.ms[name] = timers.ms.get(name, 0.0) + (time.perf_counter() - start) * 1000
                timers.calls[name] = timers.calls.get(name, 0) + 1

        setattr(
            owner,
            attribute,
            classmethod(lambda cls, *a, **k: timed(*a, **k)) if isinstance(raw, classmethod) else timed,
        )


def child_fixed(epochs, every, kind):
    """One fresh process, one fit: the fixed costs on the training thread, by phase."""
    import mlflow

    import tfrepro.fingerprint
    import tfrepro.signing
    import tfrepro.tracking.inputs
    from tfrepro import ReproCallback
    from tfrepro.tracking.session import TrackingSession

    mlflow.set_experiment("fit-costs")
    t = Timers()
    t.wrap(tfrepro.fingerprint, "collect", "environment collections")
    t.wrap(TrackingSession, "open", "run open")
    t.wrap(mlflow, "start_run", "of which MLflow's start_run")
    t.wrap(ReproCallback, "_log_params", "first params")
    t.wrap(TrackingSession, "close", "final flush and end run (overlapped)")
    t.wrap(mlflow, "end_run", "of which MLflow's end_run")
    t.wrap(tfrepro.signing, "sign_session", "signing")
    t.wrap(ReproCallback, "on_train_begin", "on_train_begin")
    t.wrap(ReproCallback, "on_train_end", "on_train_end")
    t.wrap(ReproCallback, "_log_environment", "environment (collect and queue)")
    t.wrap(tfrepro.tracking.inputs, "log_fit_inputs", "fit()'s inputs (hash and queue)")
    try:
        import tfrepro_mlflow.context as plugin

        t.wrap(plugin, "environment_tags", "of which the MLflow plugin")
    except ImportError:
        pass
    seconds = _fit([ReproCallback(log_every_n_steps=every or None, log_model=False)], epochs, kind)
    print(json.dumps({"ms": t.ms, "calls": t.calls, "fit_s": seconds}))


def child_steps():
    """Training-thread time per call of on_train_batch_end, both callbacks, one long-ish fit each."""
    import mlflow
    import mlflow.tensorflow

    from tfrepro import ReproCallback

    mlflow.set_experiment("fit-costs")
    _fit(epochs=1)  # tracing, first connections
    out = {}
    for name, make in (
        ("ReproCallback(log_every_n_steps=1)", lambda: ReproCallback(log_every_n_steps=1, log_model=False)),
        (
            "MlflowCallback(log_every_n_steps=1)",
            lambda: mlflow.tensorflow.MlflowCallback(log_every_epoch=False, log_every_n_steps=1),
        ),
    ):
        callback, times = make(), []
        real = callback.on_train_batch_end

        def timed(batch, logs=None, real=real, times=times):
            start = time.perf_counter()
            real(batch, logs)
            times.append(time.perf_counter() - start)

        callback.on_train_batch_end = timed
        if isinstance(callback, ReproCallback):
            _fit([callback], epochs=10)
        else:
            with mlflow.start_run():
                _fit([callback], epochs=10)
        times.sort()
        out[name] = {
            "mean_us": statistics.mean(times) * 1e6,
            "p50_us": times[len(times) // 2] * 1e6,
            "p99_us": times[int(len(times) * 0.99)] * 1e6,
            "steps": len(times),
        }
    print(json.dumps(out))


def child_ratios(repeats, long_seconds, kind, short):
    """Interleaved fit() wall times: bare, ReproCallback per step and per epoch, MlflowCallback;
    the 0.6 s fit (`short`, the MLP) and a fit of about long_seconds."""
    import mlflow
    import mlflow.tensorflow

    from tfrepro import ReproCallback

    mlflow.set_experiment("fit-costs")

    def mlflow_callback(epochs):
        with mlflow.start_run():
            callback = mlflow.tensorflow.MlflowCallback(log_every_epoch=False, log_every_n_steps=1)
            return _fit([callback], epochs, kind)

    variants = [
        ("bare fit", lambda e: _fit(epochs=e, kind=kind)),
        ("ReproCallback() (per epoch, the default)", lambda e: _fit([ReproCallback(log_model=False)], e, kind)),
        (
            "ReproCallback(log_every_n_steps=1)",
            lambda e: _fit([ReproCallback(log_every_n_steps=1, log_model=False)], e, kind),
        ),
        ("MlflowCallback(log_every_n_steps=1)", mlflow_callback),
    ]
    for _, fn in variants:  # warm-up
        fn(1)
    one, three = _fit(epochs=1, kind=kind), _fit(epochs=3, kind=kind)
    epoch = max((three - one) / 2, 1e-3)  # a fit's own start-up cost aside
    long_epochs = max(SHORT_EPOCHS, int(round((long_seconds - max(one - epoch, 0)) / epoch)))
    out = {"kind": kind, "epochs": {}, "times": {}, "cpu": {}}
    runs = ([("short", SHORT_EPOCHS, max(repeats, 5))] if short else []) + [("long", long_epochs, repeats)]
    for label, epochs, n in runs:
        times = {name: [] for name, _ in variants}
        cpu = {name: [] for name, _ in variants}
        ours = variants[:-1]  # MlflowCallback's fits come after all of ours: see below
        for r in range(n):
            for name, fn in ours if r % 2 == 0 else ours[::-1]:
                times[name].append(fn(epochs))
                cpu[name].append(CPU[-1])
            print("  %s %s fits: repeat %d/%d" % (kind, label, r + 1, n), file=sys.stderr, flush=True)
        out["epochs"][label], out["times"][label], out["cpu"][label] = epochs, times, cpu
    # MLflow's async queue goes on uploading long after its fit() returns (minutes for a long
    # per-step fit), slowing whatever runs next: so its fits run last, the long one once, and
    # this process exits without draining that queue.
    name, fn = variants[-1]
    for label, epochs, n in runs:
        for _ in range(n if label == "short" else 1):
            out["times"][label][name].append(fn(epochs))
            out["cpu"][label][name].append(CPU[-1])
    print(json.dumps(out), flush=True)
    os._exit(0)


# -- the parent: the team server, the children, the tables ------------------------------------
def _child(uri, mode, *args, timeout=3600):
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, PYTHONPATH=ROOT, PYTHONWARNINGS="ignore")
    done = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", mode, *map(str, args)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        timeout=timeout,
    )
    if done.returncode:
        raise RuntimeError("child %s failed (rc %d)" % (mode, done.returncode))
    return json.loads(done.stdout.strip().splitlines()[-1])


def fixed_table(fixed):
    """fixed: {label: [samples]}, one column pair per label."""
    labels = list(fixed)
    rows = [
        "| phase | %s |" % " | ".join("%s: median ms (min-max)" % label for label in labels),
        "|---|%s" % ("---:|" * len(labels)),
    ]

    def cell(values):
        return "%.1f (%.0f-%.0f)" % (statistics.median(values), min(values), max(values))

    def row(name, pick):
        rows.append("| %s | %s |" % (name, " | ".join(cell([pick(s) for s in fixed[label]]) for label in labels)))

    rows.append("| **on the training thread** |%s" % (" |" * len(labels)))
    for phase in TRAINING_THREAD:
        row(phase, lambda s, phase=phase: s["ms"].get(phase, 0.0))
    row(
        "**all of on_train_begin + on_train_end**",
        lambda s: s["ms"].get("on_train_begin", 0.0) + s["ms"].get("on_train_end", 0.0),
    )
    rows.append("| **on tfrepro's recording thread** (overlaps training) |%s" % (" |" * len(labels)))
    for phase in RECORDER_THREAD:
        row(phase, lambda s, phase=phase: s["ms"].get(phase, 0.0))
    rows.append(
        "| environment collections per fit | %s |"
        % " | ".join(
            "/".join(str(n) for n in sorted({s["calls"].get("environment collections", 0) for s in fixed[label]}))
            for label in labels
        )
    )
    rows.append("")
    rows.append(
        "A fresh process per fit (%d per column), as a user's script runs: ReproCallback(log_model=False), "
        "per step = log_every_n_steps=1, the MLflow plugin installed. MLflow's start_run and end_run "
        "are the calls the callback makes through MLflow's fluent API." % len(fixed[labels[0]])
    )
    return "\n".join(rows)


def steps_table(steps):
    rows = ["| callback | on_train_batch_end, mean us | p50 us | p99 us | steps |", "|---|---:|---:|---:|---:|"]
    for name, s in steps.items():
        rows.append("| %s | %.0f | %.0f | %.0f | %d |" % (name, s["mean_us"], s["p50_us"], s["p99_us"], s["steps"]))
    return "\n".join(rows)


def ratio_table(results):
    rows = [
        "| model | fit | variant | median fit() s | min-max s | ratio to bare fit, medians | ratio, minimums "
        "| (fit - bare) / step, us | process CPU s | fits |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for ratios in results:
        for label in ratios["times"]:
            epochs, times = ratios["epochs"][label], ratios["times"][label]
            bare, fastest = statistics.median(times["bare fit"]), min(times["bare fit"])
            for name, ts in times.items():
                med = statistics.median(ts)
                rows.append(
                    "| %s | %d epochs x %d steps | %s | %.2f | %.2f-%.2f | %.3fx | %.3fx | %.0f | %.2f | %d |"
                    % (
                        ratios["kind"].upper(),
                        epochs,
                        STEPS,
                        name,
                        med,
                        min(ts),
                        max(ts),
                        med / bare,
                        min(ts) / fastest,
                        (med - bare) * 1e6 / (epochs * STEPS),
                        statistics.median(ratios["cpu"][label][name]),
                        len(ts),
                    )
                )
    rows.append("")
    rows.append(
        "Models: %s. Interleaved in one process per model; MlflowCallback's fits run after all "
        "the others (its async queue keeps uploading after fit() returns), the long one once. On a shared "
        "2-core VM a fit's time varies by more than 1%%: the minimums are the steadier comparison."
        % "; ".join("%s: %s" % (k.upper(), v) for k, v in MODELS.items())
    )
    return "\n".join(rows)


def keepalive_stall(uri, calls=50):
    """ms per MLflow REST call (GET experiment by name) on a kept-alive connection, with and
    without tfrepro's quick ACKs (tfrepro/tracking/quickack.py), interleaved."""
    from mlflow.utils.rest_utils import http_request

    from tfrepro.tracking import quickack
    from tfrepro.tracking.backend import backend_for

    backend_for(uri)  # turns quick ACKs on for this server, as tfrepro does
    host = set(quickack._hosts)
    creds = __import__("mlflow").tracking.MlflowClient(uri)._tracking_client.store.get_host_creds()
    times = {"on": [], "off": []}
    for i in range(calls * 2):
        mode = "on" if i % 2 == 0 else "off"
        quickack._hosts.clear()
        quickack._hosts.update(host if mode == "on" else ())
        start = time.perf_counter()
        http_request(
            creds, "/api/2.0/mlflow/experiments/get-by-name", "GET", params={"experiment_name": "Default"}
        ).close()
        times[mode].append((time.perf_counter() - start) * 1000)
    quickack._hosts.update(host)
    return times


def http_table(times):
    rows = ["| one MLflow REST call on a kept-alive connection | median ms | p90 ms |", "|---|---:|---:|"]
    for mode, label in (("off", "as MLflow's client does it"), ("on", "with tfrepro's quick ACK (TCP_QUICKACK)")):
        ts = sorted(times[mode])
        rows.append("| %s | %.1f | %.1f |" % (label, statistics.median(ts), ts[int(len(ts) * 0.9)]))
    return "\n".join(rows)


def write_readme(text):
    path = os.path.join(ROOT, "benchmarks", "README.md")
    with open(path) as f:
        readme = f.read()
    head, rest = readme.split(BEGIN, 1)
    with open(path, "w") as f:
        f.write("%s%s\n%s\n%s%s" % (head, BEGIN, text, END, rest.split(END, 1)[1]))
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--long-seconds", type=float, default=60.0)
    parser.add_argument("--fixed-seconds", type=float, default=10.0, help="the longer fit of the fixed-cost rows")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the server on a CPU of its own, the trainings on the others (default: shared)",
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        mode, rest = args.child[0], args.child[1:]
        return {
            "fixed": lambda: child_fixed(int(rest[0]), int(rest[1]), rest[2]),
            "steps": child_steps,
            "ratios": lambda: child_ratios(int(rest[0]), float(rest[1]), rest[2], rest[3] == "1"),
        }[mode]()
    from benchmarks.callback_overhead import machine
    from benchmarks.concurrent_runs import Team

    info = machine()
    with tempfile.TemporaryDirectory(prefix="tfrepro-fit-costs-") as tmp:
        os.chmod(tmp, 0o711)  # the postgres user must reach its cluster inside
        os.environ["TFREPRO_SPOOL_DIR"] = os.path.join(tmp, "spool")
        team = Team(os.path.join(tmp, "team"))
        cpus = sorted(os.sched_getaffinity(0))
        if args.pin and len(cpus) > 1:  # the server on a core of its own
            os.sched_setaffinity(0, {cpus[-1]})
            team.script()
            os.sched_setaffinity(0, set(cpus[:-1]))  # the trainings (children inherit it)
            where = "pinned to CPU %d, the trainings to CPU %s" % (cpus[-1], ",".join(map(str, cpus[:-1])))
        else:
            team.script()
            where = "sharing the CPUs with the trainings"
        try:
            print("team server %s" % team.uri, file=sys.stderr)
            _child(team.uri, "fixed", SHORT_EPOCHS, 1, "mlp")  # warm-up: the server's workers, PostgreSQL's caches
            http = keepalive_stall(team.uri)
            fixed = {}
            cnn_epoch = _child(team.uri, "fixed", 1, 0, "cnn")["fit_s"]
            long_epochs = max(1, int(round(args.fixed_seconds / cnn_epoch)))
            columns = (
                ("0.6 s MLP fit, per step", SHORT_EPOCHS, 1, "mlp"),
                ("%.0f s CNN fit, per step" % args.fixed_seconds, long_epochs, 1, "cnn"),
                ("%.0f s CNN fit, per epoch (default)" % args.fixed_seconds, long_epochs, 0, "cnn"),
            )
            for i in range(args.processes):
                for label, epochs, every, kind in columns:
                    fixed.setdefault(label, []).append(_child(team.uri, "fixed", epochs, every, kind))
                print("  fixed costs: round %d/%d" % (i + 1, args.processes), file=sys.stderr, flush=True)
            steps = _child(team.uri, "steps")
            ratios = [
                _child(team.uri, "ratios", args.repeats, args.long_seconds, "mlp", 1),
                _child(team.uri, "ratios", args.repeats, args.long_seconds, "cnn", 0),
            ]
        finally:
            team.script("--stop")
    text = "\n\n".join(
        [
            "Last run (%s; team server: PostgreSQL 15 + mlflow server, 2 workers, proxied "
            "artifacts, on the same machine over loopback HTTP, %s):" % (info, where),
            fixed_table(fixed),
            steps_table(steps),
            ratio_table(ratios),
            http_table(http),
        ]
    )
    print(text)
    if not args.no_write:
        print("wrote", write_readme(text))


if __name__ == "__main__":
    main()
