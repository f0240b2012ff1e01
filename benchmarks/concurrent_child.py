"""One training process of benchmarks/concurrent_runs.py (it starts this file N times).

    python benchmarks/concurrent_child.py ROLE EXPERIMENT NAME SECONDS GO READY OUT

Fits a small MLP for SECONDS, logging every step with the ROLE's callback, after waiting for
the GO file (so that all start at once); writes steps, times and memory to OUT as JSON.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
END_WAIT = 120  # seconds a training process may spend ending its run after fit()


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(role, experiment, name, seconds, go, ready, out):
    import mlflow
    import numpy as np
    import tensorflow as tf

    rng = np.random.RandomState(0)
    x, y = rng.rand(1024, 8).astype("float32"), rng.rand(1024, 1).astype("float32")
    model = tf.keras.Sequential(
        [tf.keras.layers.Dense(16, activation="relu", input_shape=(8,)), tf.keras.layers.Dense(1)]
    )
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    result = {"name": name, "role": role}

    class Clock(tf.keras.callbacks.Callback):  # stop after `seconds`; note memory at the ends
        def on_train_begin(self, logs=None):
            result["t_begin"], result["rss_begin_mb"], self.steps = time.time(), rss_mb(), 0

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1
            if time.time() - result["t_begin"] >= seconds:
                self.model.stop_training = True

        def on_train_end(self, logs=None):
            result["steps"], result["t_fit_end"], result["rss_end_mb"] = self.steps, time.time(), rss_mb()

    if role == "bare":
        callbacks = [Clock()]
    elif role == "mlflow":
        from mlflow.tensorflow import MlflowCallback

        mlflow.start_run(experiment_id=experiment, run_name=name)
        callbacks = [Clock(), MlflowCallback(log_every_epoch=False, log_every_n_steps=1)]
    else:
        from tfrepro import ReproCallback

        callbacks = [
            Clock(),
            ReproCallback(experiment_name=experiment, run_name=name, log_every_n_steps=1, log_model=False),
        ]
    open(ready, "w").close()
    while not os.path.exists(go):
        time.sleep(0.01)
    try:
        model.fit(x, y, batch_size=8, epochs=10**6, verbose=0, callbacks=callbacks)
        result["ok"] = True
        if role != "mlflow" and role != "bare":  # fit() returned before the bounded final flush: as at exit
            repro = callbacks[1]
            result["uploaded"] = repro.wait(END_WAIT)
            result["live_points"] = repro.session._writer.live_points
        if role == "mlflow":  # MLflow's async logging queue drains at exit: give it END_WAIT s

            def end():
                mlflow.flush_async_logging()
                mlflow.end_run()

            ender = threading.Thread(target=end, daemon=True)
            ender.start()
            ender.join(END_WAIT)
            if ender.is_alive():
                result["note"] = "MLflow's logging queue not drained %d s after fit()" % END_WAIT
    except Exception as exc:  # reported, not raised: the table says which training failed
        result["ok"], result["error"] = False, "%s: %s" % (type(exc).__name__, exc)
    result["t_done"] = time.time()
    result["rss_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open(out, "w") as f:
        json.dump(result, f)
    sys.stdout.flush()
    os._exit(0)  # not atexit: MLflow's would wait for its queue again


if __name__ == "__main__":
    child(*sys.argv[1:4], float(sys.argv[4]), *sys.argv[5:8])
