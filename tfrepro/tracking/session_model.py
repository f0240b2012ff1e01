"""TrackingSession.log_keras_model() (session.py holds the contract): the trained model into
the session's run, with the mlflow.tensorflow flavour (tracking/model.py does the logging).

The flavour logs into MLflow's active run. A session that joined or started one logs into it;
one opened in the background resumes the run its writer created, logs, and ends it again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Dict, Optional

from tfrepro.tracking.session_close import FLUSH_TIMEOUT

if TYPE_CHECKING:
    from tfrepro.tracking.session import TrackingSession

log = logging.getLogger(__name__)

UNREACHABLE = "tfrepro: tracking server unreachable; the model was not logged (its hash was recorded)"
ANOTHER_RUN = "tfrepro: another MLflow run is active; the model was not logged"


def log_keras_model(session: TrackingSession, model, params: Optional[Dict[str, str]] = None) -> Optional[str]:
    import mlflow

    active = mlflow.active_run()
    if session.background and not session.has_fluent_run:
        return _log_into_created_run(session, model, active, params)
    if not (session.has_fluent_run and session.online):
        log.warning(UNREACHABLE)
        return None
    if active is None or active.info.run_id != session.run_id:
        log.warning(ANOTHER_RUN)
        return None
    from tfrepro.tracking import model as model_io

    return model_io.log_keras_model(model, params=params)


def _log_into_created_run(session: TrackingSession, model, active, params=None) -> Optional[str]:
    """The flavour logs into MLflow's active run: resume the run the writer created, log,
    and end it (the spooled end record then sets the final status and time)."""
    import mlflow

    if active is not None:
        log.warning(ANOTHER_RUN)
        return None
    run_id = session._writer.wait_for_run(FLUSH_TIMEOUT)
    if run_id is None:
        log.warning(UNREACHABLE)
        return None
    from tfrepro.tracking import model as model_io
    from tfrepro.tracking.backend import short_http

    uploader = session._writer.uploader
    if uploader.header.get("experiment_name") and uploader.experiment_id:
        mlflow.set_experiment(experiment_id=uploader.experiment_id)  # as a foreground open does
    with short_http(timeout=10, retries=1):
        mlflow.start_run(run_id=run_id)
    try:
        return model_io.log_keras_model(model, params=params)
    finally:
        with short_http(timeout=5):
            mlflow.end_run()
