"""What ReproCallback records of where a fit() ran, besides the training itself.

record()            the record thread of a chief's fit(): the environment, fit()'s inputs, then,
                    once the run exists, the environment's tags and artifacts and the card
record_worker()     the thread of a worker that is not the chief: its environment only
is_chief()          whether this worker logs the training (the others record only their environment)
log_environment()   the environment as tags (our source tags win over MLflow's) and artifacts:
                    environment.json, requirements.txt, the uncommitted patch (or the tag saying it
                    was withheld) and environment.md
log_worker()        tfrepro/workers/<index>.json: a worker's own environment, in a multi-worker job
log_card()          the environment card in the run's description, merged with what it holds

Each step goes through the callback's guard: a failure is warned about (once per kind), never
raised into fit().
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Callable, Dict, Optional

from tfrepro import schema

log = logging.getLogger(__name__)

RUN_TIMEOUT = 10.0  # s the recording thread waits for the run to exist before naming it


def once_imported(imported, fn, *args):
    """Run fn(*args) once the session's thread has imported MLflow (bounded)."""
    if imported is not None:
        imported.wait(120)
    fn(*args)


def record(callback, since, fit_args, replica_count) -> None:
    """The record thread's work for the callback's session: sets `callback.environment` (and
    `callback._environment_ready`: the model's params wait for it)."""
    from tfrepro import fingerprint
    from tfrepro.tracking.inputs import log_fit_inputs  # MLflow dataset inputs: see that module

    guard = callback._guard
    try:  # the plugin's, when it collected for this run
        callback.environment = guard("collecting the environment", fingerprint.shared, since)
    finally:
        callback._environment_ready.set()
    inputs = guard("logging fit()'s inputs", log_fit_inputs, callback.session, fit_args, replica_count)
    if callback.environment is None:
        return
    # After MLflow's context tags (ours name the script and win) and once the run exists
    # (the card and environment.md name its real id): the run is created off the training
    # thread, so this thread waits for it, bounded.
    guard("waiting for the MLflow run", callback.session.wait_for_run, RUN_TIMEOUT)
    withheld = guard("logging the environment", callback._log_environment, callback.environment)
    session, environment = callback.session, callback.environment
    guard("writing the run's description", log_card, session, environment, callback.seed, inputs or {}, bool(withheld))


def record_worker(guard) -> None:
    """A worker's own environment, into the launcher's run (MLFLOW_RUN_ID)."""
    from tfrepro import fingerprint

    guard("recording this worker's environment", log_worker, fingerprint.shared())


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


def log_environment(session, env, seed, log_patch, guard: Callable[..., Any]) -> bool:
    """The environment as tags (MLflow's source tags among them) and artifacts; returns
    whether the uncommitted patch was kept off the server."""
    from tfrepro.tracking import card, runpage
    from tfrepro.tracking.upload import is_local

    tags = env.to_tags()
    if seed is not None and schema.SEED not in tags:
        tags[schema.SEED] = str(seed)
    tags.update(runpage.source_tags(env, os.environ))  # after MLflow's own: ours name the script
    session.set_tags(tags)
    session.log_text(env.to_json(), schema.ENVIRONMENT_JSON)
    guard("recording this worker's environment", log_worker, env, session.log_text)
    session.log_text(env.requirements(), schema.REQUIREMENTS_TXT)
    withheld = False
    if env.git and env.git.dirty and env.git.patch:
        from tfrepro.redact import patch_withheld

        withheld = patch_withheld(log_patch)
        if withheld:
            session.set_tags({schema.GIT_PATCH_WITHHELD: "true"})
        else:
            session.log_text(env.git.patch, schema.GIT_PATCH)
    run_id = None if is_local(session.run_id) else session.run_id  # `sync` gives it its id
    session.log_text(card.environment_markdown(env, run_id, withheld), schema.ENVIRONMENT_MD)
    return withheld


def log_worker(env, log_text=None) -> None:
    """tfrepro/workers/<index>.json: this worker's own environment, in a multi-worker job;
    through `log_text` (the chief's session), else into the launcher's run (MLFLOW_RUN_ID)."""
    from tfrepro.tracking import workers

    index = workers.own_index(os.environ)
    run_id = os.environ.get(schema.ENV_MLFLOW_RUN_ID)
    if index is None or (log_text is None and not run_id):
        return
    workers.write_own(run_id or "", workers.worker_record(env, index), log_text)


def log_card(session, env, seed, input_tags: Dict[str, str], patch_withheld: bool) -> None:
    """The environment card in the run's description, merged with what the description
    holds already (a user's text, a launcher's card); spooled like every tag. Left alone
    when the server cannot say what the description holds."""
    from tfrepro.tracking import runpage

    page = session.run_page()
    if page is None:
        log.info("the run's description is not known (server unreachable); it is left as it is")
        return
    current = page.tags.get(schema.MLFLOW_NOTE)
    page = page._replace(tags=dict(page.tags, **input_tags))
    block = runpage.run_card(env, session.run_id, page, seed, patch_withheld)
    description = runpage.describe(current, block)
    if description != (current or ""):
        session.set_tags({schema.MLFLOW_NOTE: description})
