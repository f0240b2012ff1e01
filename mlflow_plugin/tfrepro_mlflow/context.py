"""MLflow run-context provider: every mlflow.start_run() gets the tfrepro.* tags.

Registered through the `mlflow.run_context_provider` entry point. Set TFREPRO_CONTEXT=0
to turn it off. The environment is collected once per process (and shared with
ReproCallback), off start_run's thread when nothing is collected yet (later.py); this never
raises.

Besides the tfrepro.* tags, a run gets MLflow's own mlflow.source.name (the script, relative
to the repository root) and mlflow.source.type: MLflow applies its default provider's
(argv[0] as typed) first and a plugin's after, so ours show in the UI's Source field. And it
gets the environment card as its description (mlflow.note.content): start_run applies the
caller's description= (and tags=) after every provider, on MLflow 2.17 and 3.x alike, so a
description the user passes replaces the card and is never overwritten by it. ReproCallback,
when it records into the run, puts its own card (with the run's id) in the card's place.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Dict, Optional, Tuple

from mlflow.tracking.context.abstract_context import RunContextProvider

from tfrepro import schema
from tfrepro_mlflow import later

log = logging.getLogger("tfrepro")  # tfrepro_mlflow is outside the tfrepro logger tree

_tags: Optional[Tuple[object, Dict[str, str]]] = None  # (the Environment, its tags)


def _run_page_tags(env) -> Dict[str, str]:
    """MLflow's source tags and the card, for the run page; {} (warned) when they fail."""
    try:
        from tfrepro.tracking import runpage

        tags = runpage.source_tags(env, os.environ)
        tags[schema.MLFLOW_NOTE] = runpage.describe(None, runpage.plugin_card(env))
        return tags
    except Exception as exc:
        log.warning("tfrepro: run description not written: %s", exc)
        return {}


def environment_tags() -> Dict[str, str]:
    """The process's environment as tags: collected once, shared with ReproCallback
    (tfrepro.fingerprint.shared); none while ReproCallback opens its own run (it records
    the environment itself, off the training thread)."""
    global _tags
    try:
        from tfrepro import fingerprint

        if fingerprint.caller_records():
            return {}
        env = fingerprint.shared()
        if _tags is None or _tags[0] is not env:
            tags = env.to_tags()
            tags.update(_run_page_tags(env))
            _tags = (env, tags)
        return dict(_tags[1])
    except Exception as exc:  # must never break start_run
        log.warning("tfrepro: environment not collected: %s", exc)
        return {}


class TfreproContextProvider(RunContextProvider):
    def in_context(self) -> bool:
        return os.environ.get(schema.ENV_CONTEXT, "1") != "0" and self._first_registered()

    def _first_registered(self) -> bool:
        """One provider acts per start_run: MLflow 2.17 registers the entry point once per copy
        of the distribution it finds on sys.path (an editable install and PYTHONPATH: twice),
        and each call of a first start_run would start its own recording."""
        try:
            from mlflow.tracking.context.registry import _run_context_provider_registry as registry

            ours = [p for p in registry if isinstance(p, TfreproContextProvider)]
            return self not in ours[1:]  # the first, or one MLflow did not register
        except Exception:
            return True

    def tags(self) -> Dict[str, str]:
        """At once while the environment is collected already; else (a process's first
        start_run) a token now, and the tags from a thread (later.py)."""
        try:
            fingerprint = sys.modules.get("tfrepro.fingerprint")  # not imported: nothing collected, no callback
            if fingerprint is None or not (fingerprint.caller_records() or fingerprint.collected()):
                if later.from_start_run():
                    return later.start(environment_tags)
        except Exception as exc:  # must never break start_run
            log.debug("tfrepro: environment tags at once: %s", exc)
        return environment_tags()
