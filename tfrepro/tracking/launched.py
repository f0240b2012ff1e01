"""Runs a launcher created (`tfrepro run`, `tfrepro replay`): which experiment they are in.

The launcher creates the run before the container starts, in its own experiment (--experiment,
else MLflow's default), and passes MLFLOW_RUN_ID; the callback inside resumes that run. MLflow
cannot move a run to another experiment, so ReproCallback(experiment_name="digits") cannot be
honoured there: the callback warns and records what was asked (REQUESTED_TAG), and the
launcher says where the run went and how to put it in "digits" next time.
"""

from __future__ import annotations

import logging
from typing import Dict, Optional

from tfrepro import schema

log = logging.getLogger("tfrepro")  # in the container: the callback's messages carry their own "tfrepro: "
launcher_log = logging.getLogger(__name__)  # on the launcher's side: shown by the command layer

REQUESTED_TAG = schema.EXPERIMENT_REQUESTED


def fix(requested: str) -> str:
    return "launch with `tfrepro run --experiment %s ...` to put it there" % requested


def experiment_note(experiment_name: Optional[str], launcher_run_id: Optional[str]) -> Dict[str, str]:
    """In the container, right after the launcher's run (MLFLOW_RUN_ID, which start_run
    consumes) is resumed: {} when the run is where the script asked for, else a warning
    and {REQUESTED_TAG: experiment_name}. Never raises."""
    if not experiment_name or not launcher_run_id:
        return {}
    try:
        import mlflow

        from tfrepro.tracking.backend import short_http

        active = mlflow.active_run()
        if active is None or active.info.run_id != launcher_run_id:
            return {}
        with short_http():
            actual = mlflow.get_experiment(active.info.experiment_id).name
    except Exception as exc:
        log.debug("tfrepro: experiment of the launcher's run unknown: %s", exc)
        return {}
    if actual == experiment_name:
        return {}
    log.warning(
        "tfrepro: experiment_name=%r is not used: this run (%s) was created by `tfrepro run` in experiment %r; %s",
        experiment_name,
        active.info.run_id,
        actual,
        fix(experiment_name),
    )
    return {REQUESTED_TAG: experiment_name}


def where_the_run_went(client, run_id: str, experiment_id: str) -> None:
    """Launcher side, after the container: one line naming the run's experiment, and a
    warning when the script asked for another one. Never raises."""
    try:
        name = client.get_experiment(experiment_id).name
        requested = client.get_run(run_id).data.tags.get(REQUESTED_TAG)
    except Exception:
        return
    launcher_log.info("run %s is in experiment %r (id %s)", run_id, name, experiment_id)
    if requested and requested != name:
        launcher_log.warning(
            "the script asked for experiment %r (ReproCallback(experiment_name=...)); the run stays in %r: %s",
            requested,
            name,
            fix(requested),
        )
