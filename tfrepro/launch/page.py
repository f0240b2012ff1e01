"""What the launcher (`tfrepro run`, a replay) writes on its run's page in the MLflow UI.

source_tags(command, subdir)   mlflow.source.name/type from the launched command and its
                               directory in the repository, set when the run is created (the
                               callback inside may name the script more exactly)
refresh_card(client, run_id, tracking_uri)
                               after the job: the run's card (tracking/runpage.run_card) written
                               or refreshed from the record as the server holds it, the engine
                               it ran on included; merged with the description (a user's text
                               kept). A failure only warns: the run's result stands.
"""

from __future__ import annotations

import logging
import posixpath
from typing import Dict, Optional, Sequence

from tfrepro import schema
from tfrepro.tracking import facts, runpage

log = logging.getLogger(__name__)

_ROOT = "/repository"  # any absolute path: the name is made relative to it


def source_tags(command: Sequence[str], subdir: Optional[str]) -> Dict[str, str]:
    """MLflow's source tags for a launched command run in `subdir` of the repository; {} when
    the command names no script (python -c, a shell line)."""
    cwd = posixpath.normpath(posixpath.join(_ROOT, subdir or "."))
    if not cwd.startswith(_ROOT):
        return {}  # a recorded directory outside the repository: nothing to name
    name = facts.source_name(list(command), cwd, _ROOT)
    if not name or posixpath.isabs(name):
        return {}
    return {schema.MLFLOW_SOURCE_NAME: name, schema.MLFLOW_SOURCE_TYPE: runpage.SOURCE_TYPE}


def refresh_card(client, run_id: str, tracking_uri: Optional[str] = None) -> bool:
    """Write the run's card from its record; True when the description changed."""
    from tfrepro.tracking import record as run_record

    try:
        record = run_record.load(client, run_id)
        page = runpage.RunPage(tracking_uri or record.tracking_uri, record.experiment_id, record.tags)
        block = runpage.run_card(record.environment, run_id, page)
        current = record.tags.get(schema.MLFLOW_NOTE)
        description = runpage.describe(current, block)
        if description == (current or ""):
            return False
        client.set_tag(run_id, schema.MLFLOW_NOTE, description)
        return True
    except Exception as exc:  # the card only describes: the run's result stands
        log.warning("could not write the card on run %s: %s", run_id, (str(exc).strip().splitlines() or ["?"])[0])
        return False
