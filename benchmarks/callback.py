"""What ReproCallback adds to model.fit(): the training loop, and the fixed start/end cost.

    python benchmarks/callback.py [--steps 3000] [--repeat 3] [--tracking-uri URI]

Times the loop from on_train_begin to the last on_epoch_end (a timing callback placed after
ReproCallback, so the callback's own start and end work is outside it), for a bare fit and
with the callback logging per epoch and every N steps. Also prints the whole fit() time.
Tracking goes to a sqlite store in a temp dir unless --tracking-uri is given.
Target: loop <= 1.03x bare with per-epoch logging.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time


class LoopTimer:
    def __init__(self, tf):
        class _Timer(tf.keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.begin, self.cpu_begin = time.perf_counter(), time.process_time()

            def on_epoch_end(self, epoch, logs=None):
                self.end, self.cpu_end = time.perf_counter(), time.process_time()

        self.callback = _Timer()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3000, help="training steps per fit")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tracking-uri")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="tfrepro-bench-")
    os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri or "sqlite:///%s/mlflow.db" % tmp
    os.environ.setdefault("TFREPRO_SPOOL_DIR", os.path.join(tmp, "spool"))
    os.environ["TFREPRO_CONTEXT"] = "0"  # time the callback alone
    import mlflow
    import numpy as np
    import tensorflow as tf

    import tfrepro

    if not mlflow.get_experiment_by_name("bench"):  # artifacts (models) in the temp dir, not ./mlruns
        mlflow.create_experiment("bench", artifact_location=os.path.join(tmp, "artifacts"))

    batch = 32
    rng = np.random.RandomState(0)
    x = rng.rand(args.steps * batch // args.epochs, 16).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    modes = {
        "bare": lambda: [],
        "callback, per epoch": lambda: [tfrepro.ReproCallback(experiment_name="bench", log_model=False)],
        "callback, every 100 steps": lambda: [
            tfrepro.ReproCallback(experiment_name="bench", log_model=False, log_every_n_steps=100)
        ],
        "callback, every step": lambda: [
            tfrepro.ReproCallback(experiment_name="bench", log_model=False, log_every_n_steps=1)
        ],
        "callback, per epoch + model": lambda: [tfrepro.ReproCallback(experiment_name="bench")],
    }
    loops = {name: [] for name in modes}
    cpus = {name: [] for name in modes}
    totals = {name: [] for name in modes}
    names = list(modes)
    for round_ in range(args.repeat):
        # interleaved and rotated, so drift and leftovers of the previous fit hit every mode alike
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            make = modes[name]
            tf.keras.utils.set_random_seed(0)
            model = tf.keras.Sequential(
                [tf.keras.layers.Dense(32, activation="relu", input_shape=(16,)), tf.keras.layers.Dense(1)]
            )
            model.compile(optimizer="adam", loss="mse", metrics=["mae"])
            timer = LoopTimer(tf).callback
            start = time.perf_counter()
            model.fit(x, y, epochs=args.epochs, batch_size=batch, verbose=0, callbacks=make() + [timer])
            totals[name].append(time.perf_counter() - start)
            loops[name].append(timer.end - timer.begin)
            cpus[name].append(timer.cpu_end - timer.cpu_begin)
    bare, bare_cpu = statistics.median(loops["bare"]), statistics.median(cpus["bare"])
    print(
        "%d steps (%d epochs), median of %d, tracking %s"
        % (args.steps, args.epochs, args.repeat, os.environ["MLFLOW_TRACKING_URI"])
    )
    print("%-30s %8s %7s %9s %7s %8s" % ("mode", "loop s", "ratio", "loop cpu", "ratio", "fit() s"))
    for name in modes:
        loop, cpu = statistics.median(loops[name]), statistics.median(cpus[name])
        print(
            "%-30s %8.3f %6.3fx %9.3f %6.3fx %8.3f"
            % (name, loop, loop / bare, cpu, cpu / bare_cpu, statistics.median(totals[name]))
        )
    hook_cost(tf, tfrepro)


def hook_cost(tf, tfrepro, calls=20000):
    """The callback's own per-batch work, called directly: what a due / not-due step costs."""
    logs = {"loss": tf.constant(0.5), "mae": tf.constant(0.25)}
    for every in (1, 100):
        callback = tfrepro.ReproCallback(experiment_name="bench", log_model=False, log_every_n_steps=every)
        callback.set_model(tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(2,))]))
        callback.on_train_begin()
        start = time.perf_counter()
        for batch in range(calls):
            callback.on_train_batch_end(batch, logs)
        spent = time.perf_counter() - start
        callback.session.close()
        print("on_train_batch_end, log_every_n_steps=%-4d %6.2f us/call" % (every, 1e6 * spent / calls))
    print("per-epoch logging only: Keras never calls the batch hooks (0 us/step)")


if __name__ == "__main__":
    main()
