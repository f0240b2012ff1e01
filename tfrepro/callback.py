"""ReproCallback: Keras training lifecycle -> MLflow, through TrackingSession.

    model.fit(x, y, callbacks=[tfrepro.ReproCallback(experiment_name="demo")])

__init__ only stores settings; the run opens in on_train_begin and closes in
on_train_end. Tracking failures are logged and swallowed: training never stops for them.
Seeds must be set before the model is built, so call tfrepro.deterministic(seed) first;
the callback only records the seed.
"""
from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
import tempfile
from typing import Any, Dict, Optional

import numpy as np
import tensorflow as tf

log = logging.getLogger("tfrepro")

STEP_PREFIX = "batch_"  # per-step metrics, as TensorBoard names them; epoch metrics keep Keras' names


def is_chief(tf_config: Optional[str]) -> bool:
    """Whether this worker logs: the chief, or worker 0 when the cluster has no chief."""
    if not tf_config:
        return True
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


def describe_loss(loss: Any) -> Optional[str]:
    if loss is None or isinstance(loss, str):
        return loss
    if isinstance(loss, dict):
        return json.dumps({k: describe_loss(v) for k, v in sorted(loss.items())})
    if isinstance(loss, (list, tuple)):
        return json.dumps([describe_loss(v) for v in loss])
    return getattr(loss, "name", None) or getattr(loss, "__name__", None) or type(loss).__name__


def fit_params(model, keras_params: Dict[str, Any], user_params: Dict[str, Any]) -> Dict[str, Any]:
    """The run's params: fit arguments, optimizer, loss, size, then the user's (which win)."""
    params: Dict[str, Any] = {}
    for key in ("epochs", "steps", "batch_size"):
        if keras_params.get(key) is not None:
            params[key] = keras_params[key]
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        params["optimizer"] = type(optimizer).__name__
        try:
            for key, value in optimizer.get_config().items():
                if key != "name":
                    params["optimizer." + key] = value
        except Exception as exc:
            log.debug("tfrepro: optimizer config unavailable: %s", exc)
    loss = describe_loss(getattr(model, "loss", None))
    if loss:
        params["loss"] = loss
    try:
        params["model.params"] = model.count_params()
        params["model.trainable_params"] = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    except Exception as exc:  # an unbuilt model has no weights yet
        log.debug("tfrepro: parameter count unavailable: %s", exc)
    params.update(user_params)
    return params


def floats(logs) -> Dict[str, float]:
    """Keras logs (tensors or numbers) as floats; values that are not scalars are dropped."""
    out = {}
    for key, value in (logs or {}).items():
        try:
            out[key] = float(value)
        except Exception:  # arrays, strings, remote values: not a metric
            pass
    return out


class ReproCallback(tf.keras.callbacks.Callback):
    """Log the environment, params, metrics and trained model of a Keras fit() to MLflow.

    experiment_name, run_name: used only when the callback starts the run itself (no active
        run); MLFLOW_RUN_ID, set by `tfrepro run`, resumes the launcher's run.
    params: extra params to log (they override the ones the callback derives).
    log_every_n_steps: also log metrics every N training steps, as `batch_<name>` against
        a global step. Epoch metrics (incl. validation) are always logged against the epoch.
    log_model: log the trained model (SavedModel, mlflow.tensorflow flavour) and its hash.
    log_tensorboard: True to upload the log_dir of a tf.keras.callbacks.TensorBoard in the
        same fit(), or a directory to upload; artifacts go under `tensorboard/`.
    seed: the seed passed to tfrepro.deterministic(), when set up by other means.
    """

    def __init__(self, experiment_name: Optional[str] = None, run_name: Optional[str] = None,
                 params: Optional[Dict[str, Any]] = None, log_every_n_steps: Optional[int] = None,
                 log_model: bool = True, log_tensorboard=False, seed: Optional[int] = None):
        super().__init__()
        if log_every_n_steps is not None and int(log_every_n_steps) < 1:
            raise ValueError("log_every_n_steps must be a positive integer or None")
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.user_params = dict(params or {})
        self.log_every_n_steps = int(log_every_n_steps) if log_every_n_steps else None
        self.log_model = log_model
        self.log_tensorboard = log_tensorboard
        self.seed = seed
        self.session = None
        self.environment = None
        self.model_uri: Optional[str] = None
        self.model_hash: Optional[str] = None
        self._chief = True
        self._global_step = 0
        self._tensorboard = None
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
        self._global_step = 0
        self._chief = is_chief(os.environ.get("TF_CONFIG"))
        if self.log_tensorboard is True:
            self._tensorboard = _find_tensorboard()
        if not self._chief:
            return
        from tfrepro.tracking.session import TrackingSession

        self.session = self._guard("opening the MLflow run", TrackingSession.open,
                                   experiment_name=self.experiment_name, run_name=self.run_name)
        if self.session is None:
            return
        self._guard("logging the environment", self._log_environment)
        self._guard("logging params", self._log_params)

    def _log_environment(self):
        import tfrepro
        from tfrepro import schema

        env = self.environment = tfrepro.collect_environment()
        tags = env.to_tags()
        if self.seed is not None and schema.SEED not in tags:
            tags[schema.SEED] = str(self.seed)
        self.session.set_tags(tags)
        self.session.log_text(env.to_json(), schema.ENVIRONMENT_JSON)
        self.session.log_text(env.requirements(), schema.REQUIREMENTS_TXT)
        if env.git and env.git.dirty and env.git.patch:
            self.session.log_text(env.git.patch, schema.GIT_PATCH)

    def _log_params(self):
        params = fit_params(self.model, getattr(self, "params", None) or {}, self.user_params)
        if self.seed is not None:
            params.setdefault("seed", self.seed)
        self.session.log_params(params)

    def on_train_batch_end(self, batch, logs=None):
        self._guard("logging step metrics", self._train_batch_end, logs)

    def _train_batch_end(self, logs):
        self._global_step += 1
        every = self.log_every_n_steps
        if self.session is not None and every and self._global_step % every == 0:
            metrics = {STEP_PREFIX + k: v for k, v in floats(logs).items()}
            self.session.log_metrics(metrics, self._global_step)

    def on_epoch_end(self, epoch, logs=None):
        if self.session is not None:
            self._guard("logging epoch metrics", lambda: self.session.log_metrics(floats(logs), epoch))

    def on_train_end(self, logs=None):
        self._guard("finishing tracking", self._train_end)

    def _train_end(self):
        if self.log_model:
            # Every worker saves (MultiWorkerMirroredStrategy saves collectively); the chief logs.
            self._guard("logging the model", self._log_model)
        if self.session is None:
            return
        if self.log_tensorboard:
            self._guard("uploading TensorBoard logs", self._upload_tensorboard)
        self._guard("closing the MLflow run", self.session.close)

    def _log_model(self):
        from tfrepro import schema
        from tfrepro.tracking import model as model_io

        tmp = tempfile.mkdtemp(prefix="tfrepro-model-")
        try:
            path = model_io.save_model(self.model, os.path.join(tmp, "model"))
            self.model_hash = model_io.saved_model_hash(path, model_io.canonical_config(self.model))
            if self.session is None:
                return
            self.session.set_tags({schema.MODEL_HASH: self.model_hash})
            if _multi_worker():
                self.session.log_artifacts(path, schema.SAVED_MODEL)  # saving again would block
                self.model_uri = "runs:/%s/%s" % (self.session.run_id, schema.SAVED_MODEL)
            else:
                self.model_uri = self._log_flavour(model_io)
            if self.model_uri:
                self.session.set_tags({schema.MODEL_URI: self.model_uri})
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _log_flavour(self, model_io) -> Optional[str]:
        import mlflow

        active = mlflow.active_run()
        fluent = getattr(self.session, "has_fluent_run", active is not None)
        if not (fluent and getattr(self.session, "online", True)):
            log.warning("tfrepro: tracking server unreachable; the model was not logged "
                        "(its hash was recorded)")
            return None
        if active is None or active.info.run_id != self.session.run_id:
            log.warning("tfrepro: another MLflow run is active; the model was not logged")
            return None
        return model_io.log_keras_model(self.model)

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


def _multi_worker() -> bool:
    try:
        return bool(tf.distribute.get_strategy().extended._in_multi_worker_mode())
    except Exception:
        return False


def _find_tensorboard():
    """The TensorBoard callback of the running fit(): Keras gives a callback no handle on
    its siblings, so look for the CallbackList that is calling us."""
    frame = inspect.currentframe()
    try:
        for _ in range(8):
            frame = frame.f_back if frame else None
            if frame is None:
                break
            owner = frame.f_locals.get("self")
            siblings = getattr(owner, "callbacks", None)
            if isinstance(siblings, list):
                for callback in siblings:
                    if isinstance(callback, tf.keras.callbacks.TensorBoard):
                        return callback
    finally:
        del frame
    return None
