"""What ReproCallback and the MLflow plugin write on a run's page in the MLflow UI. Pure.

    source_tags(env)          mlflow.source.name (the script, relative to the repository root)
                              and mlflow.source.type, so MLflow's Source field fills in; none in a
                              notebook kernel or on Databricks, whose own providers say it better
    RunPage(tracking_uri, experiment_id, tags)   the run as its page shows it now
    run_card(env, run_id, page, ...)   the card block of a recorded run: the facts of its
                              environment, plus what its tags add (the engine and seed of
                              `tfrepro run`, the mounted data, fit()'s inputs)
    plugin_card(env)          the card the plugin puts in a plain mlflow.start_run(): the run has no
                              id yet, so its replay line names the id as a placeholder
    describe(current, block)  the run description with the card merged in (card.merge): the
                              user's text before and after it kept

MLflow applies a run-context provider's tags first and the caller's own (start_run's tags=, and
description=, which it turns into mlflow.note.content) after them, on 2.17 and 3.x alike
(fluent.start_run -> context.registry.resolve_tags): the plugin's card never overwrites a
description the user passed; the user's text replaces it.
"""

from __future__ import annotations

from typing import Dict, Mapping, NamedTuple, Optional

from tfrepro import schema
from tfrepro.environment import Environment
from tfrepro.fingerprint import data_record
from tfrepro.tracking import card, facts, ui

SOURCE_TYPE = "LOCAL"  # mlflow.entities.SourceType.LOCAL: a script run on a machine
PLACEHOLDER_RUN_ID = "<run id>"
_NOTEBOOK_KERNELS = ("ipykernel", "kernel_launcher", "colab")


def source_tags(env: Environment, environ: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """MLflow's source tags for a recorded process; {} where there is no script to name."""
    if environ is not None and environ.get("DATABRICKS_RUNTIME_VERSION"):
        return {}  # Databricks' providers name the notebook or job
    name = facts.environment_source_name(env)
    if not name or any(kernel in name for kernel in _NOTEBOOK_KERNELS):
        return {}  # MLflow's Jupyter provider names the notebook
    return {schema.MLFLOW_SOURCE_NAME: name, schema.MLFLOW_SOURCE_TYPE: SOURCE_TYPE}


class RunPage(NamedTuple):
    """The run as its page shows it: the tracking URI (credentials stripped), its experiment id
    (None while unknown) and its tags (the description among them)."""

    tracking_uri: Optional[str]
    experiment_id: Optional[str]
    tags: Mapping[str, str]


def run_card(env: Environment, run_id: str, page: RunPage, seed=None, patch_withheld: bool = False) -> str:
    """The card block for run `run_id`. page.tags: the run's tags as known (the launcher's engine,
    seed and data sources; fit()'s input tags). The title links to tfrepro/environment.md where
    the UI has an address for it (an http tracking server and a known experiment)."""
    tags = page.tags
    launch_seed = tags.get(schema.LAUNCH_SEED)
    return card.environment_card(
        env,
        run_id,
        engine=tags.get(schema.LAUNCH_BACKEND),
        data=card.data_line(_data_sources(tags), tags),
        seed=launch_seed if launch_seed is not None else seed,
        patch_withheld=patch_withheld or tags.get(schema.GIT_PATCH_WITHHELD) == "true",
        environment_url=ui.artifact_url(page.tracking_uri, page.experiment_id or "", run_id, schema.ENVIRONMENT_MD),
    )


def _data_sources(tags: Mapping[str, str]):
    try:
        return data_record.from_tags(tags)
    except (ValueError, TypeError):  # tags are untrusted: unreadable ones are left out of the card
        return []


def plugin_card(env: Environment) -> str:
    """The card of a run the plugin tags before it exists: no id, no environment.md yet."""
    return card.environment_card(env, PLACEHOLDER_RUN_ID)


def describe(current: Optional[str], block_text: str) -> str:
    """The description `current` with `block_text` in place of its card (or after the user's
    text); unchanged when the result would pass MLflow's tag limit."""
    return card.merge(current, block_text)
