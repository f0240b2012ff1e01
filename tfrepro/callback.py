"""ReproCallback: Keras training lifecycle -> MLflow, through TrackingSession.

    model.fit(x, y, callbacks=[tfrepro.ReproCallback(experiment_name="demo")])

__init__ only checks and stores settings (a bad one raises there); the run opens in
on_train_begin and closes in on_train_end, so each fit() is its own run, also when one
callback instance is passed to several fit() calls. Inside an active MLflow run every
fit() logs into that run instead. Tracking failures are logged and swallowed: no hook
raises into fit().
Seeds must be set before the model is built, so call tfrepro.deterministic(seed) first;
the callback only records the seed.

Beside it: recording.py (the record thread's work: the environment, environment.md, the card)
and fit_outputs.py (the trained model and TensorBoard's logs, at the end).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from typing import Dict, Optional

import tensorflow as tf

from tfrepro import fit_outputs, recording, schema
from tfrepro.keras_fit import FitContext, describe_loss, fit_params  # noqa: F401
from tfrepro.options import CallbackSettings
from tfrepro.recording import is_chief
from tfrepro.tracking import inputs as _inputs  # noqa: F401  (imported with the callback, not in fit())
from tfrepro.tracking import session as _session  # noqa: F401
from tfrepro.tracking.threads import join_started, start_later

log = logging.getLogger(__name__)

PLUGIN_SLACK = 30.0  # s: a cold collection in a big repository can take seconds
STEP_PREFIX = "batch_"  # per-step metrics, as TensorBoard names them; epoch metrics keep Keras' names


def floats(logs) -> Dict[str, float]:
    """Keras logs (tensors or numbers) as floats; values that are not scalars are dropped."""
    out = {}
    for key, value in (logs or {}).items():
        try:
            out[key] = float(value)
        except Exception:  # arrays, strings, remote values: not a metric
            pass
    return out


def _scalar(value) -> bool:
    return isinstance(value, (int, float)) or getattr(value, "shape", None) == ()


class ReproCallback(CallbackSettings, tf.keras.callbacks.Callback):
    """Log the environment, params, metrics and trained model of a Keras fit() to MLflow.

    One run per fit(), also when one instance is passed to several fit() calls; with an
    MLflow run active, every fit() logs into it (pass initial_epoch to continue the epochs).
    A run the callback starts is created and ended off the training thread: fit() waits for
    neither, so call `callback.wait()` before reading that run back (the process waits for
    it at exit anyway).

    experiment_name, run_name: used only when the callback starts the run itself (no active
        run); MLFLOW_RUN_ID, set by `tfrepro run`, resumes the launcher's run.
    params: extra params to log (they override the ones the callback derives). Params
        the run already has (an active run, mlflow.tensorflow.autolog()) are not logged again.
    log_every_n_steps: also log metrics every N training steps, as `batch_<name>` against
        a global step. Epoch metrics (incl. validation) are always logged against the epoch.
    log_model: log the trained model (SavedModel, mlflow.tensorflow flavour) and its hash.
    log_tensorboard: True to upload the log_dir of a tf.keras.callbacks.TensorBoard in the
        same fit(), or a directory to upload; artifacts go under `tensorboard/`.
    seed: the seed passed to tfrepro.deterministic(), when set up by other means.
    log_patch: upload the uncommitted changes (tfrepro/git.patch). False, or TFREPRO_NO_PATCH=1,
        keeps the code off the server; the run is then tagged so replay says the dirty
        state cannot be restored.

    With mlflow.tensorflow.autolog() on (its MlflowCallback in the same fit()), MLflow logs
    the epoch metrics and, with its log_models, the model; this callback then logs neither
    (no key twice) and adds the environment, its params and the model hash.
    """

    def _start(self):  # after CallbackSettings.__init__ (options.py) checked and stored the settings
        self.session = None
        self.environment = None
        self.model_uri: Optional[str] = None
        self.model_hash: Optional[str] = None
        self._chief = True
        self._global_step = 0
        self._tensorboard = None
        self._recorder: Optional[threading.Thread] = None
        self._recorder_started = threading.Event()
        self._environment_ready = threading.Event()
        self._fit = FitContext()
        self._mlflow_logs_epochs = False  # mlflow.tensorflow.autolog() logs them into our run
        self._steps_logged = False
        self._last_epoch = None  # (epoch, its logs, keys logged): siblings may add keys after us
        self._supports_tf_logs = True  # Keras then skips converting logs on every batch for us

    # Keras calls on_train_batch_* only when a callback asks for them: ask only when due.
    # It calls them anyway when a sibling asks (verbose=1's progress bar), so every hook
    # below must cope with being called when nothing is due.
    def _implements_train_batch_hooks(self):
        return self.log_every_n_steps is not None

    def _guard(self, what, fn, *args, **kwargs):
        """Run one tracking step; a failure is warned about (once per kind), never raised."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            warned = self.__dict__.setdefault("_warned", set())
            if what not in warned:
                warned.add(what)
                log.warning("tfrepro: %s failed: %s; training goes on", what, exc)
            return None

    def on_train_begin(self, logs=None):
        self._guard("starting tracking", self._train_begin)

    def _train_begin(self):
        self.session = self.environment = self.model_uri = self.model_hash = None  # a new fit()
        self._global_step = 0
        self._last_epoch = None
        self._environment_ready = threading.Event()
        self._chief = is_chief(os.environ.get(schema.ENV_TF_CONFIG), dict(os.environ))
        self._fit = FitContext.find(self)
        self._tensorboard = _tensorboard_in(self._fit.callbacks)
        if not self._chief:
            self._guard("recording this worker's environment", self._record_worker_elsewhere)
            return
        from tfrepro.tracking.session import TrackingSession

        began = time.time()
        self.session = self._guard(
            "opening the MLflow run",
            TrackingSession.open,
            experiment_name=self.experiment_name,
            run_name=self.run_name,
            background=True,  # no server call before the first step: the writer creates the run
            caller_records=True,  # the plugin leaves the environment to us
        )
        if self.session is None:
            return
        self._mlflow_logs_epochs = self._fit.mlflow_callback() and getattr(self.session, "has_fluent_run", False)
        self._guard("logging params", self._log_params)
        from tfrepro.tracking.inputs import replicas

        # The environment and fit()'s inputs take tens to hundreds of ms (git, hashing
        # arrays): recorded on a thread of their own while training starts; joined at the end.
        since = began
        if not self.session.started_run and self.session.run_start_time is not None:
            # the plugin collected the environment while the run was being started, just before
            since = self.session.run_start_time - PLUGIN_SLACK
        work = (
            getattr(self.session, "imported", None),
            self._record,
            since,
            self._fit.fit_args,
            self._guard("reading the replicas", replicas),
        )
        self._recorder = threading.Thread(target=recording.once_imported, args=work, name="tfrepro-record", daemon=True)
        self._recorder_started = start_later(self._recorder)  # Thread.start() would wait for it to run

    def _record(self, since, fit_args, replica_count):
        recording.record(self, since, fit_args, replica_count)  # the record thread's work

    def _log_environment(self, env) -> bool:
        """The environment as tags and artifacts (recording.py); returns whether the
        uncommitted patch was kept off the server."""
        return recording.log_environment(self.session, env, self.seed, self.log_patch, self._guard)

    def _record_worker_elsewhere(self):
        """A worker that is not the chief logs nothing of the training, but its environment
        goes to the launcher's run (MLFLOW_RUN_ID), off the training thread."""
        from tfrepro.tracking import workers

        if workers.own_index(os.environ) is None or not os.environ.get(schema.ENV_MLFLOW_RUN_ID):
            return
        self._recorder = threading.Thread(
            target=recording.record_worker, args=(self._guard,), name="tfrepro-worker-record", daemon=True
        )
        self._recorder_started = start_later(self._recorder)

    def _log_params(self):
        known = dict(getattr(self, "params", None) or {})
        known.update(self._fit.params())
        params = fit_params(self.model, known, self.user_params)
        if self.seed is not None:
            params.setdefault("seed", self.seed)
        self._steps_logged = "steps" in params
        self._log_new_params(params)

    def _log_new_params(self, params):
        """Log the params the run does not have yet: MLflow rejects a param that changes
        value, and with it the whole batch."""
        existing = self._guard("reading the run's params", self.session.run_params) or {}
        for key in sorted(k for k in params if k in existing and existing[k] != str(params[k])):
            log.warning(
                "tfrepro: param %s is already %r in run %s; not logging %r",
                key,
                existing[key],
                self.session.run_id,
                params[key],
            )
        params = {k: v for k, v in params.items() if k not in existing}
        if params:
            self.session.log_params(params)

    def on_train_batch_end(self, batch, logs=None):
        self._guard("logging step metrics", self._train_batch_end, logs)

    def _train_batch_end(self, logs):
        self._global_step += 1
        every = self.log_every_n_steps
        if self.session is not None and every and self._global_step % every == 0:
            # tensors as they are: the writer's thread reads their values, so the training
            # thread never waits for the device here
            metrics = {STEP_PREFIX + k: v for k, v in (logs or {}).items() if _scalar(v)}
            self.session.log_metrics(metrics, self._global_step)

    def on_epoch_end(self, epoch, logs=None):
        if self.session is not None:
            self._guard("logging epoch metrics", self._epoch_end, epoch, logs)

    def _epoch_end(self, epoch, logs):
        metrics = floats(logs)
        self._last_epoch = (epoch, logs, set(metrics))
        if not self._mlflow_logs_epochs:
            self.session.log_metrics(metrics, epoch)
        if not self._steps_logged:  # an input of unknown length: Keras knows after one epoch
            steps = self._fit.steps()
            if steps is not None:
                self._steps_logged = True
                self._log_new_params({"steps": steps})

    def on_epoch_begin(self, epoch, logs=None):
        self._guard("logging epoch metrics", self._log_late_metrics)

    def _log_late_metrics(self):
        """Keys that callbacks after us added to the last epoch's logs (ReduceLROnPlateau's
        `lr`): Keras gives every callback the same dict, so they are there now."""
        if self._last_epoch is None or self.session is None or self._mlflow_logs_epochs:
            return
        epoch, logs, logged = self._last_epoch
        self._last_epoch = None
        late = {k: v for k, v in floats(logs).items() if k not in logged}
        if late:
            self.session.log_metrics(late, epoch)

    def on_train_end(self, logs=None):
        self._guard("logging epoch metrics", self._log_late_metrics)
        self._guard("finishing tracking", self._train_end)

    def _train_end(self):
        self._fit = FitContext()  # holds fit()'s data: let it go
        recorder, self._recorder = self._recorder, None
        if recorder is None:
            self._environment_ready.set()  # nothing is collecting it: the model does not wait
        # bounded: git and NVML calls time out
        join = functools.partial(join_started, self._recorder_started, recorder) if recorder is not None else None
        if self.log_model:
            # Every worker saves (MultiWorkerMirroredStrategy saves collectively); the chief logs.
            self._guard("logging the model", self._log_model)
        if self.session is None:
            if join is not None:
                join()
            return
        if self.log_tensorboard:
            self._guard(
                "uploading TensorBoard logs",
                fit_outputs.upload_tensorboard,
                self.session,
                self.log_tensorboard,
                self._tensorboard,
            )
        # What the server still has to get (the environment being recorded, the last points,
        # the run's end, the signature) finishes on a thread of its own, within the bounded
        # flush; the process waits for it at exit. callback.wait() waits for it now. Not under a
        # multi-worker strategy (TF_CONFIG or a Slurm resolver alike): TF 2.9's collectives can
        # abort at teardown, so such scripts often leave by os._exit(), which no exit hook
        # survives; a long job spares the wait.
        self._guard(
            "closing the MLflow run",
            self.session.close,
            background=not _multi_worker(),
            before=join,
            after=_sign,
        )

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait (at most `timeout` s; None: the bounded flush) until the last fit()'s run is
        fully uploaded and ended. True when nothing is left for `tfrepro sync`; False when
        the time ran out, the server is down (the run is in the spool) or no run was recorded.

        When the callback started the run, fit() returns without waiting for the tracking
        server: the environment, the card, the last points and the run's end go up on a thread
        of their own. Call wait() before reading the run back (mlflow.get_run, search_runs,
        `callback.session.run_id` of a run created in the background). The process waits for
        that thread at exit anyway (bounded), so a script that only trains needs no call; one
        that leaves by os._exit() must call wait() first, or what was left stays in the spool
        for `tfrepro sync`. Inside a run of your own (`with mlflow.start_run():`) fit() returns once it is all
        uploaded, as before."""
        session = self.session
        return bool(session is not None and session.wait(timeout))

    def _log_model(self):
        fit_outputs.log_model(self, _multi_worker)  # sets model_hash, and model_uri once logged


def _sign(session) -> None:
    from tfrepro.signing import sign_session

    sign_session(session)


def _multi_worker() -> bool:
    try:
        return bool(tf.distribute.get_strategy().extended._in_multi_worker_mode())
    except Exception:
        return False


def _tensorboard_in(callbacks):
    """The TensorBoard callback of the running fit(), if any."""
    for callback in callbacks or []:
        if isinstance(callback, tf.keras.callbacks.TensorBoard):
            return callback
    return None
