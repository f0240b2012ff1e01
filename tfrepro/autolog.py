"""tfrepro.autolog(): every Keras `fit()` gets a ReproCallback, with no change to the script.

    import tfrepro
    tfrepro.autolog()              # options as for ReproCallback(...)
    model.fit(x, y)                # tracked
    tfrepro.autolog(disable=True)  # fit() is Keras' own again

A fit() that already has a ReproCallback is left alone, so nothing is logged twice.
`tfrepro run` turns this on inside the container (see tfrepro/launch/sitecustomize.py).
"""
from __future__ import annotations

import functools
import logging
from typing import Any, Dict, Optional

log = logging.getLogger("tfrepro")

CALLBACKS_POSITION = 5  # fit(x, y, batch_size, epochs, verbose, callbacks, ...): index in *args

_original_fit = None  # Keras' own Model.fit while patched
_options: Dict[str, Any] = {}


def autolog(disable: bool = False, **options) -> None:
    """Patch tf.keras.Model.fit to add a ReproCallback(**options) where none is passed.

    Idempotent: calling it again only replaces the options. disable=True restores fit().
    """
    global _original_fit, _options
    import tensorflow as tf

    model_class = tf.keras.Model
    if disable:
        if _original_fit is not None:
            model_class.fit = _original_fit
            _original_fit = None
        return
    if options:
        from tfrepro.callback import ReproCallback

        ReproCallback(**options)  # a bad option fails here, not inside a later fit()
    _options = dict(options)
    if _original_fit is not None:
        return
    original = model_class.fit

    @functools.wraps(original)
    def fit(self, *args, **kwargs):
        try:
            args, kwargs = _with_callback(args, kwargs)
        except Exception as exc:  # tracking never stops training
            log.warning("tfrepro: autolog could not add its callback: %s; training goes on", exc)
        return original(self, *args, **kwargs)

    model_class.fit = fit
    _original_fit = original


def _with_callback(args: tuple, kwargs: Dict[str, Any]):
    from tfrepro.callback import ReproCallback

    positional = "callbacks" not in kwargs and len(args) > CALLBACKS_POSITION
    callbacks: Optional[Any] = args[CALLBACKS_POSITION] if positional else kwargs.get("callbacks")
    if hasattr(callbacks, "callbacks"):  # a CallbackList: Keras uses it as given
        if not any(isinstance(c, ReproCallback) for c in callbacks.callbacks):
            callbacks.append(ReproCallback(**_options))
        return args, kwargs
    existing = list(callbacks or [])
    if any(isinstance(c, ReproCallback) for c in existing):
        return args, kwargs
    added = existing + [ReproCallback(**_options)]
    if positional:
        args = args[:CALLBACKS_POSITION] + (added,) + args[CALLBACKS_POSITION + 1:]
    else:
        kwargs = dict(kwargs, callbacks=added)
    return args, kwargs
