"""Mounted data before a replay: compare it with the record.

`tfrepro run -v SRC:DST` fingerprints every bind-mounted path (launch/mounted_data.py) and
records it on the run (tracking/runs.record_data: tfrepro.data.* tags and tfrepro/data.json). `tfrepro replay`
scans the recorded sources again on this host, in the mode they were recorded with
(`check`); every path that is missing or changed is a blocking drift row: `--allow-drift`
runs anyway, and the verdict then names the data. Sources other than mounts (untracked,
ignored) are left to the code that restores them.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

from tfrepro.fingerprint.data import scan
from tfrepro.fingerprint.data_record import CONTENT, DataDrift, DataSource, compare_all

SHOWN = 10  # drift rows printed; the rest are counted


def rescan(recorded: Sequence[DataSource]) -> List[DataSource]:
    return [
        scan(source.path, source.label, source.target, hash_data=source.mode == CONTENT)
        for source in recorded
        if source.label == "mount"
    ]


def check(recorded: Sequence[DataSource]) -> Tuple[List[DataSource], List[DataDrift]]:
    """(this host's fingerprints, drift rows) for the recorded mounts."""
    mounts = [source for source in recorded if source.label == "mount"]
    current = rescan(mounts)
    return current, compare_all(mounts, current)


def render(recorded: Sequence[DataSource], rows: Sequence[DataDrift]) -> str:
    """The plan's data section: each recorded source, then what changed (! blocks)."""
    lines = ["    recorded  " + source.summary() for source in recorded if source.label == "mount"]
    if not rows:
        lines.append("    matches the record on this host")
    lines += ["  ! %s" % row.line() for row in rows[:SHOWN]]
    if len(rows) > SHOWN:
        lines.append("  ! ... %d more changed path(s)" % (len(rows) - SHOWN))
    return "\n".join(lines)


def refusal(rows: Sequence[DataDrift]) -> str:
    """One line: why replay will not run on this data."""
    first = rows[0]
    more = " (+%d more)" % (len(rows) - 1) if len(rows) > 1 else ""
    return "data changed since the run: %s %s%s (pass --allow-drift to run anyway)" % (first.path, first.kind, more)
