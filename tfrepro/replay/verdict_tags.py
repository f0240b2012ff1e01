"""A verdict on the tracking server: on the replay (or --repeat summary) run, and on the original
so the run table can filter on it. A failure is only warned: the verdict is printed anyway."""

from __future__ import annotations

from tfrepro import schema
from tfrepro.inspect import explain
from tfrepro.tracking import runs


def set_verdict(client, run_id: str, verdict) -> None:
    """Tag a replay (or --repeat summary) run with its verdict and what can explain it."""
    why = getattr(verdict, "why", ())
    detail = verdict.detail + (" | why: " + explain.detail(why) if why else "")
    tags = {schema.REPLAY_VERDICT: verdict.verdict, schema.REPLAY_DETAIL: schema.truncate(detail)}
    runs.tag_run(client, run_id, tags, "the verdict on run %s" % run_id)


def mark_original(client, original_id: str, replay_id: str, verdict: str) -> None:
    """On the original: its latest replay and that verdict."""
    tags = {schema.REPLAYED_BY: replay_id, schema.REPLAY_LAST_VERDICT: verdict}
    runs.tag_run(client, original_id, tags, "the verdict on the original run %s" % original_id)
