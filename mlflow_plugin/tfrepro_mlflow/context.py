"""MLflow run-context provider: every mlflow.start_run() gets the tfrepro.* tags.

Registered through the `mlflow.run_context_provider` entry point. Set TFREPRO_CONTEXT=0
to turn it off. The environment is collected once per process; this never raises.
"""
from __future__ import annotations

import logging
import os
from typing import Dict, Optional

from mlflow.tracking.context.abstract_context import RunContextProvider

log = logging.getLogger("tfrepro")

_tags: Optional[Dict[str, str]] = None


def environment_tags() -> Dict[str, str]:
    global _tags
    if _tags is None:
        try:
            import tfrepro

            _tags = tfrepro.collect_environment().to_tags()
        except Exception as exc:  # must never break start_run
            log.warning("tfrepro: environment not collected: %s", exc)
            _tags = {}
    return dict(_tags)


class TfreproContextProvider(RunContextProvider):
    def in_context(self) -> bool:
        return os.environ.get("TFREPRO_CONTEXT", "1") != "0"

    def tags(self) -> Dict[str, str]:
        return environment_tags()
