"""Fixed cost of tracking a fit() on the training thread, with the server local and slow.

    .venv/bin/python benchmarks/fixed_cost.py [--repeats 3] [--delay 0.2] [--variants ...] [--no-write]

Starts a local `mlflow server` (sqlite, served artifacts) and, in front of it, a loopback
proxy that holds every request --delay s before passing it on (a server that answers slowly).
For each server and variant, a fresh process (as a user's script runs) imports TensorFlow and
MLflow, fits once untimed (tracing), then times a bare fit and the variant's fit of the same
small MLP (3 epochs x 128 steps, about 0.3 s bare). Reported per variant, medians over
--repeats processes:
  hooks ms   the time the training thread spends in the tracking callback's hooks, plus, for
             MLflow's MlflowCallback (which needs a run), the user's own mlflow.start_run() and
             end_run() around fit(): what a user of it pays on the training thread
  fit ratio  the variant's whole fit() (with that start_run/end_run) over the bare fit of the
             same process
  per step   mean us in on_train_batch_end, for the variants logging every step
Variants: repro (ReproCallback(log_model=False), per epoch), repro-step (log_every_n_steps=1),
mlflow (MlflowCallback(log_every_n_steps=1)), wandb (WandbMetricsLogger, offline; only when
`wandb` imports). MLflow is imported before the timing, as by a script that uses it
(--no-preimport: not, so ReproCallback imports it on a background thread, 1.5-3 s of CPU
that overlaps the fit). ReproCallback's background close is then waited for outside the timing
(callback.wait()), as the process does at exit.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
STEPS, EPOCHS = 128, 3
BEGIN, END = "<!-- fixed_cost: last run -->", "<!-- fixed_cost: end -->"
NAMES = {
    "repro": "ReproCallback(log_model=False), per epoch",
    "repro-step": "ReproCallback(log_model=False, log_every_n_steps=1)",
    "mlflow": "MlflowCallback(log_every_n_steps=1) + start_run/end_run",
    "wandb": "WandbMetricsLogger (W&B offline) + init/finish",
}


# -- a slow server: a proxy that holds each request ---------------------------------------------
def slow_proxy(upstream_port: int, delay: float):
    """A threaded HTTP proxy on a free loopback port; returns (server, port)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _relay(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            time.sleep(delay)
            conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=120)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            conn.close()

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


# -- in a child process --------------------------------------------------------------------------
def child(variant: str, experiment: str, preimport: bool = True) -> dict:
    import numpy as np
    import tensorflow as tf

    rng = np.random.RandomState(0)
    x, y = rng.rand(STEPS * 32, 32).astype("float32"), rng.rand(STEPS * 32, 1).astype("float32")

    def model():
        m = tf.keras.Sequential(
            [tf.keras.layers.Dense(64, activation="relu", input_shape=(32,)), tf.keras.layers.Dense(1)]
        )
        m.compile(optimizer="adam", loss="mse", metrics=["mae"])
        return m

    def fit(callbacks=()):
        m = model()
        start = time.perf_counter()
        m.fit(x, y, batch_size=32, epochs=EPOCHS, verbose=0, callbacks=list(callbacks))
        return time.perf_counter() - start

    if preimport:  # as a script that uses MLflow itself does, before fit()
        import mlflow  # noqa: F401
    fit()  # tracing, TensorFlow's first-fit costs
    bare = fit()
    hooks = {"begin": 0.0, "end": 0.0, "batch": 0.0, "epoch": 0.0, "run": 0.0}
    batches = [0]

    def timed(cls, name, slot):
        real = getattr(cls, name)

        def wrapper(self, *args, **kwargs):
            t = time.perf_counter()
            try:
                return real(self, *args, **kwargs)
            finally:
                hooks[slot] += time.perf_counter() - t
                if slot == "batch":
                    batches[0] += 1

        setattr(cls, name, wrapper)

    def instrument(cls):
        for name, slot in (
            ("on_train_begin", "begin"),
            ("on_train_end", "end"),
            ("on_train_batch_end", "batch"),
            ("on_epoch_end", "epoch"),
            ("on_epoch_begin", "epoch"),
        ):
            timed(cls, name, slot)

    after = None
    if variant in ("repro", "repro-step"):
        from tfrepro import ReproCallback

        instrument(ReproCallback)
        callback = ReproCallback(
            experiment_name=experiment, log_model=False, log_every_n_steps=1 if variant == "repro-step" else None
        )
        after = getattr(callback, "wait", None)  # older tfrepro: fit() waited itself
        whole = fit([callback])
    elif variant == "mlflow":
        import mlflow
        from mlflow.tensorflow import MlflowCallback

        instrument(MlflowCallback)
        mlflow.set_experiment(experiment)
        t = time.perf_counter()
        mlflow.start_run()
        hooks["run"] += time.perf_counter() - t
        whole = fit([MlflowCallback(log_every_epoch=False, log_every_n_steps=1)])
        t = time.perf_counter()
        mlflow.end_run()
        hooks["run"] += time.perf_counter() - t
        whole += hooks["run"]
    elif variant == "wandb":
        import wandb
        from wandb.integration.keras import WandbMetricsLogger

        instrument(WandbMetricsLogger)
        t = time.perf_counter()
        run = wandb.init(mode="offline", project=experiment)
        hooks["run"] += time.perf_counter() - t
        whole = fit([WandbMetricsLogger(log_freq="batch")])
        t = time.perf_counter()
        run.finish()
        hooks["run"] += time.perf_counter() - t
        whole += hooks["run"]
    else:
        whole = fit()
    if after is not None:
        after(60)  # the background close, outside the timing (the process waits for it at exit)
    total_hooks = sum(hooks.values())
    return {
        "bare": bare,
        "fit": whole,
        "hooks_ms": total_hooks * 1000,
        "begin_ms": hooks["begin"] * 1000,
        "end_ms": hooks["end"] * 1000,
        "run_ms": hooks["run"] * 1000,
        "per_step_us": hooks["batch"] / batches[0] * 1e6 if batches[0] else None,
    }


# -- the driver ----------------------------------------------------------------------------------
def run_child(variant, uri, experiment, tmp, preimport=True):
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, TFREPRO_SPOOL_DIR=os.path.join(tmp, "spool"), WANDB_DIR=tmp)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (ROOT, os.path.join(ROOT, "mlflow_plugin"), env.get("PYTHONPATH")) if p
    )
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", variant, experiment]
        + ([] if preimport else ["--no-preimport"]),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        timeout=600,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else None


def wandb_importable() -> bool:
    try:
        import wandb  # noqa: F401
        from wandb.integration.keras import WandbMetricsLogger  # noqa: F401

        return True
    except Exception:
        return False


def med(rows, key):
    values = [r[key] for r in rows if r and r.get(key) is not None]
    return statistics.median(values) if values else None


def table(results, repeats):
    lines = [
        "| server | variant | training thread in hooks, ms: median (min-max) | of which on_train_begin / on_train_end"
        " / start+end run, ms | whole fit / bare fit, median (min-max) | on_train_batch_end, us |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for (server, variant), rows in results.items():
        rows = [r for r in rows if r]
        if not rows:
            lines.append("| %s | %s | failed | | | |" % (server, NAMES[variant]))
            continue
        hooks = [r["hooks_ms"] for r in rows]
        ratios = [r["fit"] / r["bare"] for r in rows]
        step = med(rows, "per_step_us")
        lines.append(
            "| %s | %s | %.1f (%.1f-%.1f) | %.1f / %.1f / %.1f | %.3fx (%.3f-%.3f) | %s |"
            % (
                server,
                NAMES[variant],
                statistics.median(hooks),
                min(hooks),
                max(hooks),
                med(rows, "begin_ms"),
                med(rows, "end_ms"),
                med(rows, "run_ms"),
                statistics.median(ratios),
                min(ratios),
                max(ratios),
                "%.0f" % step if step is not None else "-",
            )
        )
    lines.append("")
    lines.append(
        "A fresh process per fit (%d per row), 3 epochs x 128 steps of a 32-64-1 MLP (batch 32), after one "
        "untimed fit; the bare fit is timed in the same process." % repeats
    )
    return "\n".join(lines) + "\n"


def machine():
    import mlflow

    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), platform.processor())
    return "%s, %d cores, Python %s, MLflow %s, sqlite server, load average %.1f at start" % (
        cpu,
        os.cpu_count() or 0,
        platform.python_version(),
        mlflow.__version__,
        os.getloadavg()[0],
    )


def write_readme(text, info):
    path = os.path.join(ROOT, "benchmarks", "README.md")
    with open(path) as f:
        readme = f.read()
    if BEGIN not in readme:
        readme += "\n## fixed_cost.py\n\n%s\n%s\n" % (BEGIN, END)
    head, rest = readme.split(BEGIN, 1)
    with open(path, "w") as f:
        f.write("%s%s\nLast run (%s):\n\n%s%s%s" % (head, BEGIN, info, text, END, rest.split(END, 1)[1]))
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--variants", default="repro,repro-step,mlflow,wandb")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--no-preimport", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "EXPERIMENT"))
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child, preimport=not args.no_preimport)))
        sys.stdout.flush()
        return
    from tests.helpers.mlflow_server import MlflowServer

    variants = [v for v in args.variants.split(",") if v != "wandb" or wandb_importable()]
    info = machine()
    results = {}
    with tempfile.TemporaryDirectory(prefix="tfrepro-fixed-") as tmp:
        server = MlflowServer(os.path.join(tmp, "server")).start()
        proxy, port = slow_proxy(server.port, args.delay)
        servers = [("local", server.uri), ("+%d ms per call" % (args.delay * 1000), "http://127.0.0.1:%d" % port)]
        try:
            for i in range(args.repeats):  # interleaved: drifts in the machine's load hit every row alike
                for name, uri in servers:
                    for variant in variants:
                        print("repeat %d %s %s ..." % (i, name, variant), file=sys.stderr)
                        row = run_child(variant, uri, "fixed-%s" % variant, tmp, not args.no_preimport)
                        results.setdefault((name, variant), []).append(row)
                        print(json.dumps(row), file=sys.stderr)
        finally:
            proxy.shutdown()
            server.stop()
    text = table(results, args.repeats)
    if "wandb" in args.variants and "wandb" not in variants:
        text += "W&B: `wandb` does not import in this environment; not measured.\n"
    print(info)
    print(text)
    if not args.no_write:
        print("wrote", write_readme(text, info))


if __name__ == "__main__":
    main()
