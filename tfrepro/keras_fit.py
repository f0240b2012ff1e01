"""A Keras fit() as ReproCallback records it: its params, and what Keras does not tell a callback.

fit_params() turns the model and fit's arguments into the run's params. Keras hands a
callback only `params` (epochs, steps, verbose) and the model; the rest is still in the
frames that call it: Keras' Model.fit (its arguments and DataHandler) and the
CallbackList (the siblings). FitContext reads them once, in on_train_begin, and never
raises: whatever cannot be found is None.
"""

from __future__ import annotations

import inspect
import json
import logging
from typing import Any, Dict, List, Optional

import numpy as np

log = logging.getLogger(__name__)

MAX_DEPTH = 40  # frames to walk up: mlflow's and tfrepro's autolog patches sit between
FIT_ARGS = (
    "batch_size",
    "epochs",
    "initial_epoch",
    "validation_split",
    "shuffle",
    "steps_per_epoch",
    "x",
    "y",
    "validation_data",
)  # x, y, validation_data: tracking/inputs.py records them


def describe_loss(loss: Any) -> Optional[str]:
    if loss is None or isinstance(loss, str):
        return loss
    if isinstance(loss, dict):
        return json.dumps({k: describe_loss(v) for k, v in sorted(loss.items())})
    if isinstance(loss, (list, tuple)):
        return json.dumps([describe_loss(v) for v in loss])
    return getattr(loss, "name", None) or getattr(loss, "__name__", None) or type(loss).__name__


def fit_params(model, keras_params: Dict[str, Any], user_params: Dict[str, Any]) -> Dict[str, Any]:
    """The run's params: fit arguments, optimizer, loss, size, then the user's (which win).

    keras_params: Keras' callback params (epochs, steps) plus what FitContext read from fit().
    """
    params: Dict[str, Any] = {}
    for key in ("epochs", "steps", "batch_size", "initial_epoch", "validation_split", "shuffle"):
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


class FitContext:
    """fit_args: fit()'s arguments (FIT_ARGS); data_handler: its DataHandler;
    callbacks: every callback of this fit() (ours included), or None when not found."""

    def __init__(self, fit_args: Optional[Dict[str, Any]] = None, data_handler=None, callbacks: Optional[List] = None):
        self.fit_args = fit_args
        self.data_handler = data_handler
        self.callbacks = callbacks

    @classmethod
    def find(cls, callback) -> "FitContext":
        context = cls()
        try:
            context._walk(callback)
        except Exception as exc:  # a Keras whose frames look different: go without
            log.debug("tfrepro: fit() arguments unavailable: %s", exc)
        return context

    def _walk(self, callback) -> None:
        frame = inspect.currentframe()
        try:
            for _ in range(MAX_DEPTH):
                frame = frame.f_back if frame is not None else None
                if frame is None:
                    return
                local = frame.f_locals
                owner = local.get("self")
                siblings = getattr(owner, "callbacks", None)
                if self.callbacks is None and isinstance(siblings, list) and any(c is callback for c in siblings):
                    self.callbacks = list(siblings)
                elif frame.f_code.co_name == "fit" and owner is callback.model and "data_handler" in local:
                    self.fit_args = {k: local[k] for k in FIT_ARGS if k in local}
                    self.data_handler = local["data_handler"]
                    return
        finally:
            del frame

    def params(self) -> Dict[str, Any]:
        """fit()'s arguments users compare runs on: batch_size (when Keras knows it),
        initial_epoch, validation_split, shuffle. epochs and steps come from Keras' params."""
        args = self.fit_args
        if args is None:
            return {}
        out: Dict[str, Any] = {k: args[k] for k in ("initial_epoch", "validation_split", "shuffle") if k in args}
        size = batch_size(args.get("batch_size"), self.data_handler, args.get("x"))
        if size is not None:
            out["batch_size"] = size
        return out

    def steps(self) -> Optional[int]:
        """Steps per epoch as Keras knows them now (after the first epoch for an input of
        unknown length)."""
        try:
            steps = self.data_handler.inferred_steps
            return int(steps) if steps is not None else None
        except Exception:
            return None

    def mlflow_callback(self) -> bool:
        """Whether an MLflow callback (mlflow.tensorflow.autolog()'s) logs this fit()'s epochs too."""
        return any(
            type(c).__module__.startswith("mlflow.") and getattr(c, "log_every_epoch", False)
            for c in self.callbacks or []
        )


def batch_size(given, data_handler, x) -> Optional[int]:
    """The batch size: as given to fit(); else as Keras sliced arrays (32 by default);
    else the first batch of a generator or Sequence; else a batched tf.data.Dataset's."""
    if given is not None:
        return int(given)
    adapter = getattr(data_handler, "_adapter", None)
    for read in ("batch_size", "representative_batch_size"):
        try:
            size = getattr(adapter, read)()
            if size is not None:
                return int(size)
        except Exception:
            pass
    for _ in range(20):  # dataset.batch(n).map(...).prefetch(...): look through the chain
        size = getattr(x, "_batch_size", None)
        if size is not None:
            try:
                return int(size.numpy() if hasattr(size, "numpy") else size)
            except Exception:
                return None
        x = getattr(x, "_input_dataset", None)
        if x is None:
            return None
    return None


def mlflow_autolog_logs_models() -> bool:
    """Whether mlflow.tensorflow.autolog() is on and logs the model after fit()."""
    try:
        from mlflow.utils.autologging_utils import autologging_is_disabled, get_autologging_config

        return not autologging_is_disabled("tensorflow") and bool(
            get_autologging_config("tensorflow", "log_models", True)
        )
    except Exception:
        return False
