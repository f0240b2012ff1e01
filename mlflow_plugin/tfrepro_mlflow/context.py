"""MLflow run-context provider: every mlflow.start_run() gets the tfrepro.* tags.

Registered through the `mlflow.run_context_provider` entry point. Set TFREPRO_CONTEXT=0
to turn it off. The environment is collected once per process (and shared with
ReproCallback); this never raises.
"""

from __future__ import annotations

import logging
import os
from typing import Dict, Optional, Tuple

from mlflow.tracking.context.abstract_context import RunContextProvider

from tfrepro import schema

log = logging.getLogger("tfrepro")  # tfrepro_mlflow is outside the tfrepro logger tree

_tags: Optional[Tuple[object, Dict[str, str]]] = None  # (the Environment, its tags)


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
            _tags = (env, env.to_tags())
        return dict(_tags[1])
    except Exception as exc:  # must never break start_run
        log.warning("tfrepro: environment not collected: %s", exc)
        return {}


class TfreproContextProvider(RunContextProvider):
    def in_context(self) -> bool:
        return os.environ.get(schema.ENV_CONTEXT, "1") != "0"

    def tags(self) -> Dict[str, str]:
        return environment_tags()
