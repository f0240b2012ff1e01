"""Mounted data at launch and before a replay: fingerprint it, record it, compare it.

`tfrepro run -v SRC:DST` fingerprints every bind-mounted path (`fingerprint_mounts`) and
records it on the run (`record`: tfrepro.data.* tags and tfrepro/data.json). `tfrepro replay`
scans the recorded sources again on this host, in the mode they were recorded with
(`check`); every path that is missing or changed is a blocking drift row: `--allow-drift`
runs anyway, and the verdict then names the data. Sources other than mounts (untracked,
ignored) are left to the code that restores them.
"""

from __future__ import annotations

import json
from typing import List, Sequence, Tuple

from tfrepro import schema
from tfrepro.fingerprint.data_record import CONTENT, DataDrift, DataSource, compare_all, to_json_data, to_tags

SHOWN = 10  # drift rows printed; the rest are counted


def fingerprint_mounts(mounts, hash_data: bool = False, log=None) -> List[DataSource]:
    """One DataSource per user bind mount (named volumes and the Docker socket are not data)."""
    from tfrepro.fingerprint.data import scan

    sources = []
    for mount in mounts:
        if mount.kind == "user" and mount.source.startswith("/"):
            sources.append(scan(mount.source, "mount", mount.target, hash_data=hash_data))
            if log:
                log("data: " + sources[-1].summary())
    return sources


def record(client, run_id: str, sources: Sequence[DataSource], tags: bool = False) -> None:
    """tfrepro/data.json on the run; its tags (`to_tags`) go with the run's creation, or now
    with `tags` (when a source changed after the run was created)."""
    if sources:
        from tfrepro.launch import launcher as launch

        launch.log_text(client, run_id, json.dumps(to_json_data(sources), sort_keys=True), schema.DATA_JSON)
        if tags:
            from mlflow.entities import RunTag

            items = [RunTag(k, v) for k, v in sorted(to_tags(sources).items())]
            try:
                for i in range(0, len(items), 100):
                    client.log_batch(run_id, tags=items[i : i + 100])
            except Exception as exc:
                raise launch.tracking_error(exc, "tagging the data of run %s" % run_id) from None


def rescan(recorded: Sequence[DataSource]) -> List[DataSource]:
    from tfrepro.fingerprint.data import scan

    return [scan(s.path, s.label, s.target, hash_data=s.mode == CONTENT) for s in recorded if s.label == "mount"]


def check(recorded: Sequence[DataSource]) -> Tuple[List[DataSource], List[DataDrift]]:
    """(this host's fingerprints, drift rows) for the recorded mounts."""
    mounts = [s for s in recorded if s.label == "mount"]
    current = rescan(mounts)
    return current, compare_all(mounts, current)


def render(recorded: Sequence[DataSource], rows: Sequence[DataDrift]) -> str:
    """The plan's data section: each recorded source, then what changed (! blocks)."""
    lines = ["    recorded  " + s.summary() for s in recorded if s.label == "mount"]
    if not rows:
        lines.append("    matches the record on this host")
    lines += ["  ! %s" % r.line() for r in rows[:SHOWN]]
    if len(rows) > SHOWN:
        lines.append("  ! ... %d more changed path(s)" % (len(rows) - SHOWN))
    return "\n".join(lines)


def refusal(rows: Sequence[DataDrift]) -> str:
    """One line: why replay will not run on this data."""
    first = rows[0]
    more = " (+%d more)" % (len(rows) - 1) if len(rows) > 1 else ""
    return "data changed since the run: %s %s%s (pass --allow-drift to run anyway)" % (first.path, first.kind, more)
