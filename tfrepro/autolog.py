"""tfrepro.autolog(): a ReproCallback in every Keras fit(), with no change to the script.

    import tfrepro
    tfrepro.autolog(experiment_name="digits")   # before or after TensorFlow is imported
    model.fit(x, y, epochs=5)                   # as if callbacks=[ReproCallback(experiment_name="digits")]

It wraps keras' Model.fit (tf.keras.Model is that class) once: calling autolog() again
only replaces the options, and autolog(disable=True) puts fit back. A fit() that already
has a ReproCallback (in its list or CallbackList) is left alone, and each fit() gets a
new callback, so each is its own run. Called before TensorFlow is imported (a
sitecustomize: tfrepro/launch/sitecustomize.py), it imports nothing heavy: the wrap happens
when keras is first imported (tfrepro.import_hook).

Under `tfrepro run` (MLFLOW_RUN_ID set) it also routes the script's own mlflow.log_* calls on
that run through tfrepro's spool (tfrepro/tracking/fluent.py; TFREPRO_FLUENT=0 turns it off).
"""

from __future__ import annotations

import functools
import logging
import sys
from typing import Any, Dict, Optional

from tfrepro.import_hook import AfterImport
from tfrepro.options import CallbackSettings
from tfrepro.tracking import fluent
from tfrepro.tracking.fluent_hooks import find_spec

log = logging.getLogger(__name__)

CALLBACKS_POSITION = 5  # Model.fit(x, y, batch_size, epochs, verbose, callbacks, ...)
_options: Optional[Dict[str, Any]] = None  # None: off
_hook: Optional[AfterImport] = None


def autolog(disable: bool = False, **options) -> None:
    """Give every Keras fit() a ReproCallback(**options). Bad options raise here
    (TypeError/ValueError); a missing TensorFlow only warns."""
    global _options
    if disable:
        _options = None
        _remove_hook()
        _unwrap()
        fluent.disable()
        return
    CallbackSettings(**options)  # a bad option raises here, not in fit()
    fluent.enable()  # under `tfrepro run` (MLFLOW_RUN_ID): the script's own mlflow.log_* go through the spool
    checked = dict(options)
    if checked.get("params") is not None:
        checked["params"] = dict(checked["params"])  # as it is now, whatever the caller does to it later
    if "keras" in sys.modules:
        if _wrap():
            _options = checked
        return
    if find_spec("tensorflow") is None and find_spec("keras") is None:
        log.warning("tfrepro: autolog: TensorFlow is not importable here; nothing to capture")
        return
    _options = checked
    _install_hook()


def _model_class():
    return sys.modules["keras"].Model


def _wrap() -> bool:
    """Wrap Model.fit unless already wrapped. False (after a warning) if it cannot be."""
    try:
        model = _model_class()
        if not _is_ours(model.__dict__.get("fit")):
            model.fit = _wrapped(model.__dict__["fit"])
        return True
    except Exception as exc:
        log.warning("tfrepro: autolog cannot wrap keras Model.fit (%s); nothing is captured", exc)
        return False


def _unwrap() -> None:
    """Put the original fit back. If someone wrapped fit after us (mlflow's autolog), keep
    our wrapper under theirs: with no options it only passes through."""
    keras = sys.modules.get("keras")
    model = getattr(keras, "Model", None)
    fit = getattr(model, "__dict__", {}).get("fit")
    if _is_ours(fit):
        model.fit = fit._tfrepro_original


def _is_ours(fit) -> bool:
    return getattr(fit, "_tfrepro_original", None) is not None


def _wrapped(original):
    @functools.wraps(original)
    def fit(self, *args, **kwargs):
        if _options is not None:
            try:
                args, kwargs = with_callback(args, kwargs, _options)
            except Exception as exc:  # tracking never stops training
                log.warning("tfrepro: autolog could not add its callback (%s); training goes on", exc)
        return original(self, *args, **kwargs)

    fit._tfrepro_original = original
    return fit


def with_callback(args: tuple, kwargs: dict, options: Dict[str, Any]):
    """fit()'s (args, kwargs) with a new ReproCallback(**options) among the callbacks,
    unless one is there already. The caller's list is not changed."""
    import keras

    from tfrepro.callback import ReproCallback

    positional = len(args) > CALLBACKS_POSITION
    callbacks = args[CALLBACKS_POSITION] if positional else kwargs.get("callbacks")
    if isinstance(callbacks, keras.callbacks.CallbackList):
        if any(isinstance(c, ReproCallback) for c in callbacks.callbacks):
            return args, kwargs
        repro = ReproCallback(**options)
        callbacks = keras.callbacks.CallbackList(
            callbacks.callbacks + [repro],
            model=getattr(callbacks, "model", None),
            **(getattr(callbacks, "params", None) or {}),
        )
    else:
        listed = list(callbacks or [])
        if any(isinstance(c, ReproCallback) for c in listed):
            return args, kwargs
        callbacks = listed + [ReproCallback(**options)]
    if positional:
        args = args[:CALLBACKS_POSITION] + (callbacks,) + args[CALLBACKS_POSITION + 1 :]
    else:
        kwargs = dict(kwargs, callbacks=callbacks)
    return args, kwargs


def _install_hook() -> None:
    """Wrap fit once the program has imported keras (tfrepro.import_hook)."""
    global _hook
    if _hook is None:
        _hook = AfterImport(_keras_imported, wanted=("keras",))
        _hook.install()


def _keras_imported() -> None:
    global _hook
    _hook = None
    if _options is not None:
        _wrap()


def _remove_hook() -> None:
    global _hook
    if _hook is not None:
        _hook.remove()
        _hook = None
