"""What `show`, `diff` and `replay` take for a run, and the MLflow UI links they print.

run_id(client, ref)    a run id as given, or the run that produced a model reference
                       (models:/NAME/VERSION, models:/NAME@ALIAS, runs:/ID/PATH, m-ID;
                       tracking/modelref.py); a bad reference is one error line (UsageError,
                       RecordError, TrackingError: exit codes per cli/status.py)
show_link(label, url)  "tfrepro: LABEL: URL" on stderr, when the store has a web UI
"""

from __future__ import annotations

from typing import Optional

from tfrepro.cli import output


def is_model_ref(ref: str) -> bool:
    from tfrepro.tracking import modelref

    return modelref.is_model_ref(ref)


def run_id(client, ref: str) -> str:
    from tfrepro.tracking import modelref

    if not modelref.is_model_ref(ref):
        return ref
    source = modelref.resolve(client, ref)
    output.note("%s was produced by run %s" % (ref.strip(), source.run_id))
    return source.run_id


def show_link(label: str, url: Optional[str]) -> None:
    if url:
        output.note("%s: %s" % (label, url))
