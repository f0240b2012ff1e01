"""An experiment name -> its id, race-free. Every place tfrepro creates a run passes this id.

A sweep's trainings start together into a new experiment: all try to create it, and all but
one lose the race (RESOURCE_ALREADY_EXISTS). MLflow's `set_experiment` then returns before
it sets the active experiment, so the next `start_run()` lands in `Default` (id 0), where
everyone who can read Default can read it. Here a lost race means: fetch the one that won.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

from tfrepro import schema
from tfrepro.errors import TrackingError

ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"


def lost_race(exc: Optional[BaseException]) -> bool:
    """The create failed because the experiment exists (an MlflowException, a REST answer,
    or an error that wraps one)."""
    while exc is not None:
        if getattr(exc, "error_code", None) == ALREADY_EXISTS or ALREADY_EXISTS in str(exc):
            return True
        exc = exc.__cause__
    return False


def check_active(name: str, lifecycle_stage: Optional[str]) -> None:
    if lifecycle_stage == "deleted":
        raise TrackingError(
            "experiment %r is deleted: restore it (`mlflow experiments restore`) or choose another name" % name
        )


def resolve(name: str, get: Callable[[str], Optional[str]], create: Callable[[str], str]) -> str:
    """get(name) -> id or None; create(name) -> id, raising when it lost the race."""
    found = get(name)
    if found is not None:
        return str(found)
    try:
        return str(create(name))
    except Exception as exc:
        if not lost_race(exc):
            raise
    found = get(name)  # the winner's experiment
    if found is None:
        raise TrackingError("experiment %r: the create lost a race, but no experiment has that name" % name)
    return str(found)


def experiment_id(client, name: str) -> str:
    """Through an MlflowClient (any store: http, sqlite, postgresql, file)."""

    def get(n):
        exp = client.get_experiment_by_name(n)
        if exp is None:
            return None
        check_active(n, exp.lifecycle_stage)
        return exp.experiment_id

    return resolve(name, get, client.create_experiment)


def fluent_experiment_id(name: Optional[str]) -> Optional[str]:
    """The experiment a fluent `mlflow.start_run()` should get explicitly: `name`, else
    $MLFLOW_EXPERIMENT_NAME unless the program chose one with `mlflow.set_experiment`
    (MLflow's own precedence); None leaves the choice to MLflow (no name given anywhere)."""
    if not name:
        from mlflow.tracking import fluent

        name = os.environ.get(schema.ENV_MLFLOW_EXPERIMENT_NAME)
        if not name or getattr(fluent, "_active_experiment_id", None):
            return None
    from mlflow.tracking import MlflowClient

    return experiment_id(MlflowClient(), name)
