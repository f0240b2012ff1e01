"""ReproCallback's settings, checked without importing TensorFlow.

CallbackSettings is ReproCallback's constructor: it checks each setting and stores it, so a
bad one fails at once, where it was written, and never later inside fit(). tfrepro.autolog()
builds one to check its options the same way, before TensorFlow is imported.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping
from typing import Any, Dict, Optional


def _integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _name(what: str, value) -> None:
    if value is not None and not (isinstance(value, str) and value):
        raise TypeError("%s must be a non-empty string or None, not %r" % (what, value))


class CallbackSettings:
    """The settings of a ReproCallback (its docstring says what each does). A bad one is a
    TypeError or ValueError naming it; an unknown one a TypeError too (Python's own, for an
    unexpected keyword)."""

    def __init__(
        self,
        experiment_name: Optional[str] = None,
        run_name: Optional[str] = None,
        params: Optional[Dict[str, Any]] = None,
        log_every_n_steps: Optional[int] = None,
        log_model: bool = True,
        log_tensorboard=False,
        seed: Optional[int] = None,
        log_patch: bool = True,
    ):
        _name("experiment_name", experiment_name)
        _name("run_name", run_name)
        if params is not None and not isinstance(params, Mapping):
            raise TypeError("params must be a dict, not %s" % type(params).__name__)
        if log_every_n_steps is not None:
            if not _integer(log_every_n_steps):
                raise TypeError("log_every_n_steps must be a positive integer or None, not %r" % (log_every_n_steps,))
            if log_every_n_steps < 1:
                raise ValueError("log_every_n_steps must be a positive integer or None, not %r" % (log_every_n_steps,))
        if not isinstance(log_model, bool):
            raise TypeError("log_model must be True or False, not %r" % (log_model,))
        if not isinstance(log_tensorboard, (bool, str, os.PathLike)) or log_tensorboard == "":
            raise TypeError("log_tensorboard must be True, False or a directory, not %r" % (log_tensorboard,))
        if not isinstance(log_patch, bool):
            raise TypeError("log_patch must be True or False, not %r" % (log_patch,))
        if seed is not None and not _integer(seed):
            raise TypeError("seed must be an integer or None, not %r" % (seed,))
        super().__init__()  # in a ReproCallback: Keras' Callback
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.user_params = dict(params or {})  # a Keras callback's `params` are Keras' own
        self.log_every_n_steps = int(log_every_n_steps) if log_every_n_steps else None
        self.log_model = log_model
        self.log_tensorboard = (
            os.fspath(log_tensorboard) if isinstance(log_tensorboard, os.PathLike) else log_tensorboard
        )
        self.seed = int(seed) if seed is not None else None
        self.log_patch = log_patch
        self._start()

    def _start(self) -> None:
        """What a subclass holds besides its settings (ReproCallback: the state of a fit())."""
