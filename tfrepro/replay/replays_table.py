"""The original run's table of its replays (link, date, engine, verdict), in its description:
read back (replay_rows) and updated (add_replay), one row per replay run. Pure: replay/links.py
writes the description through card.merge."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import List, Optional, Sequence

from tfrepro import markdown as md
from tfrepro import schema
from tfrepro.replay.report import run_link
from tfrepro.tracking import card

MAX_ROWS = 20  # replays listed on the original; all of them are one search away (the line below)
HEADERS = ("replay", "date", "engine", "verdict")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{7,127}$")  # MLflow's are 32 hex digits


@dataclass(frozen=True)
class ReplayRow:
    run_id: str
    date: str  # "2026-12-07 03:56 UTC" (format_date)
    engine: str = ""
    verdict: str = ""  # e.g. "identical", "within noise (5 replays)"
    url: Optional[str] = None  # the replay's run page (ui.run_url), None without an http server

    def cells(self) -> List[str]:
        return [run_link(self.run_id, self.url), md.text(self.date), md.text(self.engine), md.text(self.verdict)]


def format_date(ms: Optional[int]) -> str:
    """A run's start_time (ms since the epoch) as "YYYY-MM-DD HH:MM UTC"."""
    if not ms:
        return ""
    stamp = datetime.datetime.fromtimestamp(ms / 1000.0, tz=datetime.timezone.utc)
    return stamp.strftime("%Y-%m-%d %H:%M UTC")


def _search_hint(original_run_id: str) -> str:
    return "%s %s" % (md.text("Every replay:"), md.code("tags.`%s` = '%s'" % (schema.REPLAY_OF, original_run_id)))


def replays_block(original_run_id: str, rows: Sequence[ReplayRow]) -> str:
    body = [
        md.bold("Replays"),
        "",
        md.table(HEADERS, [r.cells() for r in rows]),
        "",
        _search_hint(original_run_id) if _RUN_ID.match(original_run_id) else "",
    ]
    return card.block(schema.REPLAYS_BLOCK, "\n".join(body).rstrip())


_LINK_CELL = re.compile(r"^\[(.*)\]\((https?://[^()\s]+)\)$")


def _parse_row(line: str) -> Optional[ReplayRow]:
    line = line.strip()
    if not (line.startswith("|") and line.endswith("|")):
        return None
    cells = [c.strip() for c in line[1:-1].split("|")]  # our cells escape every | they hold
    if len(cells) != len(HEADERS):
        return None
    first, url = cells[0], None
    linked = _LINK_CELL.match(first)
    if linked:
        first, url = linked.group(1), linked.group(2)
    run_id = md.unescape(first)
    if not _RUN_ID.match(run_id):
        return None  # the header, the rule, or a row someone edited into something else
    if url is not None and not md.is_safe_url(url):
        url = None
    date, engine, verdict = (md.unescape(c)[:100] for c in cells[1:])
    return ReplayRow(run_id, date, engine, verdict, url)


def replay_rows(description: Optional[str]) -> List[ReplayRow]:
    """The rows of the replays table in a description (as shown: newest first). The description
    is untrusted like any record: a row that does not parse is left out."""
    body = card.find_block(description, schema.REPLAYS_BLOCK)
    if body is None:
        return []
    lines = body.splitlines()
    rule = next((i for i, line in enumerate(lines) if re.match(r"^\|(?:\s*:?-+:?\s*\|)+\s*$", line)), None)
    if rule is None:
        return []
    return [row for row in map(_parse_row, lines[rule + 1 :]) if row is not None]


def add_replay(
    description: Optional[str],
    original_run_id: str,
    row: ReplayRow,
    max_rows: int = MAX_ROWS,
    limit: int = schema.MAX_TAG_VALUE,
) -> str:
    """The original's description with `row` first in its replays table (replacing the row of the
    same run, e.g. a verdict written again), the oldest beyond `max_rows` left out."""
    rows = [row] + [r for r in replay_rows(description) if r.run_id != row.run_id]
    max_rows = min(max_rows, len(rows))
    while True:
        block = replays_block(original_run_id, rows[:max_rows])
        merged = card.merge(description, block, limit, after=schema.CARD_BLOCK)
        if block in merged or max_rows <= 1:
            return merged
        max_rows -= 1  # too long for the tag: list fewer
