"""What a fit() leaves behind, as ReproCallback logs it at the end: the trained model and
TensorBoard's logs (tracking/inputs.py logs what went in).

log_model()           the model saved (a SavedModel, in a scratch directory) and hashed, then logged
                      into the session's run: as artifacts in a multi-worker job (saving again would
                      block), not at all when mlflow.tensorflow.autolog() logs it (its hash only),
                      else with the mlflow.tensorflow flavour and where it was made as its params
upload_tensorboard()  a TensorBoard callback's log_dir (or a directory given), under `tensorboard/`

No TensorFlow import here: the callback asks TensorFlow whether fit() runs on several workers.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from typing import Callable

from tfrepro import schema
from tfrepro.keras_fit import mlflow_autolog_logs_models

log = logging.getLogger(__name__)

ENVIRONMENT_TIMEOUT = 60.0  # s the model's logging waits for the environment (its params); bounded anyway


def log_model(callback, in_multi_worker: Callable[[], bool]) -> None:
    """Sets `callback.model_hash`, then, with a session, `callback.model_uri` once the model is
    logged. `in_multi_worker()`: whether fit() runs under a multi-worker strategy."""
    from tfrepro.tracking import model as model_io

    scratch = tempfile.mkdtemp(prefix="tfrepro-model-")
    try:
        path = model_io.save_model(callback.model, os.path.join(scratch, "model"))
        callback.model_hash = model_io.saved_model_hash(path, model_io.canonical_config(callback.model))
        if callback.session is None:
            return
        callback.session.set_tags({schema.MODEL_HASH: callback.model_hash})
        if in_multi_worker():
            callback.session.log_artifacts(path, schema.SAVED_MODEL)  # saving again would block
            callback.model_uri = "runs:/%s/%s" % (callback.session.run_id, schema.SAVED_MODEL)
        elif callback._mlflow_logs_epochs and mlflow_autolog_logs_models():
            log.info("tfrepro: mlflow.tensorflow.autolog() logs the model; recorded its hash only")
        else:
            from tfrepro.tracking import facts

            environment = callback.environment
            if environment is None:  # collected while training ran: rarely waits
                callback._environment_ready.wait(ENVIRONMENT_TIMEOUT)
                environment = callback.environment
            # where the model was made, as its params (MLflow 3's logged model page)
            params = facts.model_params(environment, callback.model_hash) if environment else None
            callback.model_uri = callback.session.log_keras_model(callback.model, params=params)
        if callback.model_uri:
            callback.session.set_tags({schema.MODEL_URI: callback.model_uri})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def upload_tensorboard(session, log_tensorboard, tensorboard) -> None:
    """log_tensorboard: True (the log_dir of `tensorboard`, the fit()'s TensorBoard callback)
    or a directory."""
    log_dir = log_tensorboard
    if log_dir is True:
        if tensorboard is None:
            log.warning("tfrepro: log_tensorboard=True but fit() has no TensorBoard callback")
            return
        for writer in getattr(tensorboard, "_writers", {}).values():
            writer.flush()  # it may close its writers after us
        log_dir = tensorboard.log_dir
    if os.path.isdir(str(log_dir)):
        session.log_artifacts(str(log_dir), "tensorboard")
