"""A replay and its original linked both ways on their MLflow run pages (replay/report.py and
replay/replays_table.py say what is written; this module writes it).

    parent_tags(prepared)              mlflow.parentRunId = the original, for a single replay in
                                       the original's experiment (it nests there in the runs table)
    link_replay(prepared, replayed, verdict)
                                       the replay's card (replay of, verdict, causes, compare link),
                                       the original's replays table, tfrepro/replay.md
    link_repeat(prepared, summary, replayed, verdict)
                                       the same for a --repeat summary, with its interval
    addresses(...)                     the UI addresses printed by `tfrepro replay`

Each write is its own try: a failure is one warning, and the verdict is printed regardless.
"""

from __future__ import annotations

import logging
from typing import Dict, Optional, Sequence

from tfrepro import schema
from tfrepro.inspect import compare
from tfrepro.replay import noise, replays_table, report, verify
from tfrepro.tracking import card, runs, ui

log = logging.getLogger(__name__)


def parent_tags(prepared) -> Dict[str, str]:
    """Nest a single replay under its original when both are in one experiment."""
    if prepared.destination.experiment_id and prepared.destination.experiment_id == prepared.record.experiment_id:
        return {schema.MLFLOW_PARENT_RUN_ID: prepared.record.run_id}
    return {}


def addresses(prepared, run_ids: Sequence[str]) -> Dict[str, Optional[str]]:
    """{"original_url", "replay_url" (the first run id: the replay, or the summary), "compare_url"}:
    None each where the tracking store has no web UI."""
    uri, record = prepared.destination.tracking_uri, prepared.record
    experiment = prepared.destination.experiment_id
    return {
        "original_url": ui.run_url(uri, record.experiment_id, record.run_id),
        "replay_url": ui.run_url(uri, experiment, run_ids[0]) if run_ids else None,
        "compare_url": ui.compare_url(uri, [record.run_id] + list(run_ids), [record.experiment_id, experiment]),
    }


def _warn(what: str, exc: Exception) -> None:
    log.warning("could not write %s: %s", what, (str(exc).strip().splitlines() or ["?"])[0])


def _describe(client, run_id: str, block_text: str, before: Optional[str] = None) -> None:
    current = client.get_run(run_id).data.tags.get(schema.MLFLOW_NOTE)
    merged = card.merge(current, block_text, before=before)
    if merged != (current or ""):
        client.set_tag(run_id, schema.MLFLOW_NOTE, merged)


def _add_row(client, original_id: str, row: replays_table.ReplayRow) -> None:
    current = client.get_run(original_id).data.tags.get(schema.MLFLOW_NOTE)
    merged = replays_table.add_replay(current, original_id, row)
    if merged != (current or ""):
        client.set_tag(original_id, schema.MLFLOW_NOTE, merged)


def _log_report(client, record, run_id: str, verdict, replayed, original_url, compare_url) -> None:
    """schema.REPLAY_MD on run `run_id`: the verdict, and `replayed` (a RunRecord) against the original's `record`."""
    try:
        text = report.replay_markdown(
            record.run_id,
            run_id,
            verdict,
            record.metrics,
            replayed.metrics,
            _differences(record, replayed),
            original_url,
            compare_url,
        )
        runs.log_text(client, run_id, text, schema.REPLAY_MD)
    except Exception as exc:
        _warn("%s on run %s" % (schema.REPLAY_MD, run_id), exc)


def _differences(original, replayed):
    try:
        return compare.compare_runs(original, replayed)
    except Exception:  # a record compare cannot read: the report goes without the table
        return []


def link_replay(prepared, replayed, verdict, verdict_label: Optional[str] = None) -> None:
    """`replayed`: the replay's RunRecord (None when the job failed before its record was read)."""
    client, record = prepared.client, prepared.record
    run_id = replayed.run_id if replayed is not None else None
    if not run_id:
        return
    links = addresses(prepared, [run_id])
    uri, experiment = prepared.destination.tracking_uri, prepared.destination.experiment_id
    report_url = ui.artifact_url(uri, experiment, run_id, schema.REPLAY_MD)
    try:
        block = report.replay_card(
            record.run_id, verdict, links["original_url"], links["compare_url"], record.run_name, report_url
        )
        _describe(client, run_id, block, before=schema.CARD_BLOCK)
    except Exception as exc:
        _warn("the replay's card on run %s" % run_id, exc)
    row = replays_table.ReplayRow(
        run_id,
        replays_table.format_date(replayed.start_time),
        replayed.tags.get(schema.LAUNCH_BACKEND, ""),
        verdict_label or verdict.verdict,
        links["replay_url"],
    )
    try:
        _add_row(client, record.run_id, row)
    except Exception as exc:
        _warn("the replays table on the original run %s" % record.run_id, exc)
    if verdict.verdict == verify.FAILED:
        return
    _log_report(client, record, run_id, verdict, replayed, links["original_url"], links["compare_url"])


def link_repeat(prepared, summary: str, replayed: Sequence, verdict: noise.RepeatVerdict) -> None:
    """The summary run's card and report, and its row in the original's replays table."""
    client, record = prepared.client, prepared.record
    uri, experiment = prepared.destination.tracking_uri, prepared.destination.experiment_id
    summary_url = ui.run_url(uri, experiment, summary)
    links = addresses(prepared, [run.run_id for run in replayed])
    original_url, compare_url = links["original_url"], links["compare_url"]
    report_url = ui.artifact_url(uri, experiment, summary, schema.REPLAY_MD)
    try:
        block = report.replay_card(record.run_id, verdict, original_url, compare_url, record.run_name, report_url)
        _describe(client, summary, block, before=schema.CARD_BLOCK)
    except Exception as exc:
        _warn("the summary's card on run %s" % summary, exc)
    first = replayed[0] if replayed else None
    try:
        summary_run = client.get_run(summary)
        row = replays_table.ReplayRow(
            summary,
            replays_table.format_date(summary_run.info.start_time),
            first.tags.get(schema.LAUNCH_BACKEND, "") if first is not None else "",
            "%s (%d replays)" % (verdict.verdict, verdict.replays),
            summary_url,
        )
        _add_row(client, record.run_id, row)
    except Exception as exc:
        _warn("the replays table on the original run %s" % record.run_id, exc)
    if first is None:
        return
    _log_report(client, record, summary, verdict, first, original_url, compare_url)
