"""ReproCallback: Keras training lifecycle -> MLflow, through TrackingSession.

    model.fit(x, y, callbacks=[tfrepro.ReproCallback(experiment_name="demo")])

__init__ only checks and stores settings (a bad one raises there); the run opens in
on_train_begin and closes in on_train_end, so each fit() is its own run, also when one
callback instance is passed to several fit() calls. Inside an active MLflow run every
fit() logs into that run instead. Tracking failures are logged and swallowed: no hook
raises into fit().
Seeds must be set before the model is built, so call tfrepro.deterministic(seed) first;
the callback only records the seed.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from typing import Dict, Optional

import tensorflow as tf

from tfrepro.keras_fit import FitContext, describe_loss, fit_params, mlflow_autolog_logs_models  # noqa: F401
from tfrepro.options import CallbackSettings
from tfrepro.tracking import inputs as _inputs  # noqa: F401  (imported with the callback, not in fit())
from tfrepro.tracking import session as _session  # noqa: F401
from tfrepro.tracking.writer import join_started, start_later

log = logging.getLogger(__name__)

PLUGIN_SLACK = 30.0  # s: a cold collection in a big repository can take seconds
RUN_TIMEOUT = 10.0  # s the recording thread waits for the run to exist before naming it
ENVIRONMENT_TIMEOUT = 60.0  # s the model's logging waits for the environment (its params); bounded anyway
STEP_PREFIX = "batch_"  # per-step metrics, as TensorBoard names them; epoch metrics keep Keras' names


def is_chief(tf_config: Optional[str], environ: Optional[Dict[str, str]] = None) -> bool:
    """Whether this worker logs: the chief, or worker 0 when the cluster has no chief.

    Without TF_CONFIG (SlurmClusterResolver sets none), the worker's index comes from
    TFREPRO_WORKER_INDEX, SLURM_PROCID (a job of several tasks) or JOB_COMPLETION_INDEX
    (tracking/workers.own_index): only index 0 logs."""
    if not tf_config:
        if environ is None:
            return True
        from tfrepro.tracking.workers import own_index

        return (own_index(environ) or 0) == 0
    try:
        config = json.loads(tf_config)
        task = config.get("task") or {}
        task_type, index = task.get("type"), int(task.get("index", 0))
    except (ValueError, TypeError, AttributeError):
        return True
    if not task_type or task_type == "chief":
        return True
    if task_type == "worker":
        return index == 0 and "chief" not in (config.get("cluster") or {})
    return False  # ps, evaluator


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
        self._chief = is_chief(os.environ.get("TF_CONFIG"), dict(os.environ))
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
        self._recorder = threading.Thread(target=_once_imported, args=work, name="tfrepro-record", daemon=True)
        self._recorder_started = start_later(self._recorder)  # Thread.start() would wait for it to run

    def _record(self, since, fit_args, replica_count):
        from tfrepro import fingerprint
        from tfrepro.tracking.inputs import log_fit_inputs  # MLflow dataset inputs: see that module

        try:  # the plugin's, when it collected for this run
            self.environment = self._guard("collecting the environment", fingerprint.shared, since)
        finally:
            self._environment_ready.set()  # the model's params wait for it
        inputs = self._guard("logging fit()'s inputs", log_fit_inputs, self.session, fit_args, replica_count)
        if self.environment is None:
            return
        # After MLflow's context tags (ours name the script and win) and once the run exists
        # (the card and environment.md name its real id): the run is created off the training
        # thread, so this thread waits for it, bounded.
        self._guard("waiting for the MLflow run", self.session.wait_for_run, RUN_TIMEOUT)
        withheld = self._guard("logging the environment", self._log_environment, self.environment)
        self._guard("writing the run's description", self._log_card, inputs or {}, bool(withheld))

    def _log_environment(self, env) -> bool:
        """The environment as tags (MLflow's source tags among them) and artifacts; returns
        whether the uncommitted patch was kept off the server."""
        from tfrepro import schema
        from tfrepro.tracking import card, runpage
        from tfrepro.tracking.upload import is_local

        tags = env.to_tags()
        if self.seed is not None and schema.SEED not in tags:
            tags[schema.SEED] = str(self.seed)
        tags.update(runpage.source_tags(env, os.environ))  # after MLflow's own: ours name the script
        self.session.set_tags(tags)
        self.session.log_text(env.to_json(), schema.ENVIRONMENT_JSON)
        self._guard("recording this worker's environment", self._log_worker, env, self.session.log_text)
        self.session.log_text(env.requirements(), schema.REQUIREMENTS_TXT)
        withheld = False
        if env.git and env.git.dirty and env.git.patch:
            from tfrepro.redact import patch_withheld

            withheld = patch_withheld(self.log_patch)
            if withheld:
                self.session.set_tags({schema.GIT_PATCH_WITHHELD: "true"})
            else:
                self.session.log_text(env.git.patch, schema.GIT_PATCH)
        run_id = None if is_local(self.session.run_id) else self.session.run_id  # `sync` gives it its id
        self.session.log_text(card.environment_markdown(env, run_id, withheld), schema.ENVIRONMENT_MD)
        return withheld

    def _log_worker(self, env, log_text=None):
        """tfrepro/workers/<index>.json: this worker's own environment, in a multi-worker job."""
        from tfrepro.tracking import workers

        index = workers.own_index(os.environ)
        run_id = os.environ.get("MLFLOW_RUN_ID")
        if index is None or (log_text is None and not run_id):
            return
        workers.write_own(run_id or "", workers.worker_record(env, index), log_text)

    def _record_worker_elsewhere(self):
        """A worker that is not the chief logs nothing of the training, but its environment
        goes to the launcher's run (MLFLOW_RUN_ID), off the training thread."""
        from tfrepro.tracking import workers

        if workers.own_index(os.environ) is None or not os.environ.get("MLFLOW_RUN_ID"):
            return

        def record():
            from tfrepro import fingerprint

            self._guard("recording this worker's environment", self._log_worker, fingerprint.shared())

        self._recorder = threading.Thread(target=record, name="tfrepro-worker-record", daemon=True)
        self._recorder_started = start_later(self._recorder)

    def _log_card(self, input_tags, patch_withheld):
        """The environment card in the run's description, merged with what the description
        holds already (a user's text, a launcher's card); spooled like every tag. Left alone
        when the server cannot say what the description holds."""
        from tfrepro import schema
        from tfrepro.tracking import runpage

        page = self.session.run_page()
        if page is None:
            log.info("the run's description is not known (server unreachable); it is left as it is")
            return
        current = page.tags.get(schema.MLFLOW_NOTE)
        page = page._replace(tags=dict(page.tags, **input_tags))
        block = runpage.run_card(self.environment, self.session.run_id, page, self.seed, patch_withheld)
        description = runpage.describe(current, block)
        if description != (current or ""):
            self.session.set_tags({schema.MLFLOW_NOTE: description})

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
            self._guard("uploading TensorBoard logs", self._upload_tensorboard)
        # What the server still has to get (the environment being recorded, the last points,
        # the run's end, the signature) finishes on a thread of its own, within the bounded
        # flush; the process waits for it at exit. callback.wait() waits for it now.
        self._guard(
            "closing the MLflow run",
            self.session.close,
            background=True,
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
        that thread at exit anyway (bounded), so a script that only trains needs no call.
        Inside a run of your own (`with mlflow.start_run():`) fit() returns once it is all
        uploaded, as before."""
        session = self.session
        return bool(session is not None and session.wait(timeout))

    def _log_model(self):
        from tfrepro import schema
        from tfrepro.tracking import model as model_io

        scratch = tempfile.mkdtemp(prefix="tfrepro-model-")
        try:
            path = model_io.save_model(self.model, os.path.join(scratch, "model"))
            self.model_hash = model_io.saved_model_hash(path, model_io.canonical_config(self.model))
            if self.session is None:
                return
            self.session.set_tags({schema.MODEL_HASH: self.model_hash})
            if _multi_worker():
                self.session.log_artifacts(path, schema.SAVED_MODEL)  # saving again would block
                self.model_uri = "runs:/%s/%s" % (self.session.run_id, schema.SAVED_MODEL)
            elif self._mlflow_logs_epochs and mlflow_autolog_logs_models():
                log.info("tfrepro: mlflow.tensorflow.autolog() logs the model; recorded its hash only")
            else:
                from tfrepro.tracking import facts

                if self.environment is None:  # collected while training ran: rarely waits
                    self._environment_ready.wait(ENVIRONMENT_TIMEOUT)
                # where the model was made, as its params (MLflow 3's logged model page)
                params = facts.model_params(self.environment, self.model_hash) if self.environment else None
                self.model_uri = self.session.log_keras_model(self.model, params=params)
            if self.model_uri:
                self.session.set_tags({schema.MODEL_URI: self.model_uri})
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _upload_tensorboard(self):
        log_dir = self.log_tensorboard
        if log_dir is True:
            if self._tensorboard is None:
                log.warning("tfrepro: log_tensorboard=True but fit() has no TensorBoard callback")
                return
            for writer in getattr(self._tensorboard, "_writers", {}).values():
                writer.flush()  # it may close its writers after us
            log_dir = self._tensorboard.log_dir
        if os.path.isdir(str(log_dir)):
            self.session.log_artifacts(str(log_dir), "tensorboard")


def _once_imported(imported, fn, *args):
    """Run fn(*args) once the session's thread has imported MLflow (bounded)."""
    if imported is not None:
        imported.wait(120)
    fn(*args)


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
