"""The data fingerprint record: `DataSource`, its tags and JSON, and drift between two. Pure.

Tags (one group per source, n from 0 in launch order):
    tfrepro.data.sources                 how many sources were fingerprinted
    tfrepro.data.<n>.label               mount | untracked | ignored
    tfrepro.data.<n>.path                host path (mount) or path relative to the repository
    tfrepro.data.<n>.target              where it was mounted in the container (mounts)
    tfrepro.data.<n>.kind                dir | file | symlink | special | missing
    tfrepro.data.<n>.mode                metadata (path, size, mtime) | content (sha256)
    tfrepro.data.<n>.files, .bytes       totals over the whole tree
    tfrepro.data.<n>.hash                sha256 tree hash
    tfrepro.data.<n>.summarised          "true" when per-file detail was dropped (budget)
    tfrepro.data.<n>.reasons             unreadable entries and the summary note
    tfrepro.data.<n>.written             "true": it changed while the run ran (an output, not an input)
The artifact tfrepro/data.json holds the same plus per-file (or per-top-level) detail.
Every field read back is validated: a run's record is untrusted input. Python 3.8 compatible.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Mapping, Optional, Sequence

from tfrepro import schema

DATA_ARTIFACT = schema.DATA_JSON
TAG_PREFIX = schema.DATA_PREFIX
SCHEMA = "1"
LABELS = ("mount", "untracked", "ignored")
KINDS = ("dir", "file", "symlink", "special", "missing")
METADATA, CONTENT = "metadata", "content"

# drift kinds, one per path
MISSING, ADDED, SIZE, CONTENT_CHANGED, MODIFIED = "missing", "added", "size changed", "content changed", "modified"


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("%s is not a count: %.40r" % (what, value))
    return value


def entry_row(raw: Any) -> Dict[str, Any]:
    """One file's detail, validated: size, mtime_ns, sha256, link, unreadable, special."""
    if not isinstance(raw, Mapping):
        raise ValueError("a data entry is not an object")
    row: Dict[str, Any] = {}
    for key in ("size", "mtime_ns"):
        if key in raw:
            row[key] = _count(raw[key], key)
    for key in ("sha256", "link"):
        if key in raw:
            if not isinstance(raw[key], str):
                raise ValueError("%s is not text" % key)
            row[key] = raw[key]
    for key in ("unreadable", "special"):
        if raw.get(key):
            row[key] = True
    return row


@dataclass(frozen=True)
class DataSource:
    label: str  # mount | untracked | ignored
    path: str
    target: Optional[str] = None
    kind: str = "dir"
    mode: str = METADATA
    files: int = 0
    bytes: int = 0
    hash: Optional[str] = None
    summarised: bool = False
    entries: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # relative path -> detail
    parts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # top-level -> files/bytes/hash
    reasons: Mapping[str, str] = field(default_factory=dict)
    seconds: Optional[float] = None
    written: bool = False  # changed while the run ran: what it wrote, not what it read

    def to_dict(self) -> Dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out.update(
            entries={k: dict(v) for k, v in self.entries.items()},
            parts={k: dict(v) for k, v in self.parts.items()},
            reasons=dict(self.reasons),
        )
        return out

    @classmethod
    def from_dict(cls, data: Any) -> "DataSource":
        if not isinstance(data, Mapping):
            raise ValueError("a data source is not an object")
        label, path, kind, mode = data.get("label"), data.get("path"), data.get("kind", "dir"), data.get("mode")
        if label not in LABELS or kind not in KINDS or mode not in (METADATA, CONTENT):
            raise ValueError("bad data source label/kind/mode: %.40r/%.20r/%.20r" % (label, kind, mode))
        if not isinstance(path, str) or not path or "\0" in path:
            raise ValueError("bad data source path %.80r" % (path,))
        target = data.get("target")
        if target is not None and not isinstance(target, str):
            raise ValueError("bad data source target")
        digest = data.get("hash")
        if digest is not None and not (isinstance(digest, str) and digest.startswith("sha256:")):
            raise ValueError("bad data source hash %.80r" % (digest,))
        entries, parts, reasons = data.get("entries") or {}, data.get("parts") or {}, data.get("reasons") or {}
        if not all(isinstance(x, Mapping) for x in (entries, parts, reasons)):
            raise ValueError("data source entries/parts/reasons are not objects")
        return cls(
            label=label,
            path=path,
            target=target,
            kind=kind,
            mode=mode,
            files=_count(data.get("files", 0), "files"),
            bytes=_count(data.get("bytes", 0), "bytes"),
            hash=digest,
            summarised=bool(data.get("summarised")),
            entries={str(k): entry_row(v) for k, v in entries.items()},
            parts={
                str(k): {
                    "files": _count(v.get("files", 0), "files"),
                    "bytes": _count(v.get("bytes", 0), "bytes"),
                    "hash": str(v.get("hash")),
                }
                for k, v in parts.items()
                if isinstance(v, Mapping)
            },
            reasons={str(k): str(v) for k, v in reasons.items()},
            seconds=data["seconds"] if isinstance(data.get("seconds"), (int, float)) else None,
            written=data.get("written") is True,
        )

    def summary(self) -> str:
        """One line: "mount /data -> /data: 120 files, 3.1 MB, sha256:ab12cd34ef56 (metadata)"."""
        where = self.path + (" -> " + self.target if self.target else "")
        if self.kind == "missing":
            return "%s %s: missing" % (self.label, where)
        note = ", summarised" if self.summarised else ""
        unread = sum(1 for k in self.reasons if k != "summary")
        note += ", %d unreadable" % unread if unread else ""
        note += ", written by the run" if self.written else ""
        return "%s %s: %d file%s, %s, %s (%s%s)" % (
            self.label,
            where,
            self.files,
            "" if self.files == 1 else "s",
            human_bytes(self.bytes),
            (self.hash or "-")[:19],
            self.mode,
            note,
        )


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return ("%d %s" if unit == "B" else "%.1f %s") % (n, unit)
        n /= 1000.0
    return "%d B" % n  # not reached


def to_json_data(sources: Sequence[DataSource]) -> Dict[str, Any]:
    return {"schema": SCHEMA, "sources": [s.to_dict() for s in sources]}


def from_json_data(data: Any) -> List[DataSource]:
    if not isinstance(data, Mapping) or not isinstance(data.get("sources"), list):
        raise ValueError("%s has no list of sources" % DATA_ARTIFACT)
    return [DataSource.from_dict(s) for s in data["sources"]]


def to_tags(sources: Sequence[DataSource], limit: int = schema.MAX_TAG_VALUE) -> Dict[str, str]:
    tags = {schema.DATA_SOURCES: str(len(sources))} if sources else {}
    for n, source in enumerate(sources):
        prefix = "%s%d." % (TAG_PREFIX, n)
        tags.update(
            {
                prefix + "label": source.label,
                prefix + "path": source.path,
                prefix + "kind": source.kind,
                prefix + "mode": source.mode,
                prefix + "files": str(source.files),
                prefix + "bytes": str(source.bytes),
            }
        )
        if source.target:
            tags[prefix + "target"] = source.target
        if source.hash:
            tags[prefix + "hash"] = source.hash
        if source.summarised:
            tags[prefix + "summarised"] = "true"
        if source.written:
            tags[prefix + "written"] = "true"
        if source.reasons:
            text = "; ".join("%s: %s" % kv for kv in sorted(source.reasons.items()))
            tags[prefix + "reasons"] = schema.truncate(text, limit)
    return tags


def from_tags(tags: Mapping[str, str]) -> List[DataSource]:
    """The sources as tagged (no per-file detail): for runs whose data.json is unreadable."""
    count = tags.get(schema.DATA_SOURCES, "0")
    out = []
    for n in range(int(count) if count.isdigit() else 0):
        prefix = "%s%d." % (TAG_PREFIX, n)
        files, size = tags.get(prefix + "files", "0"), tags.get(prefix + "bytes", "0")
        out.append(
            DataSource.from_dict(
                {
                    "label": tags.get(prefix + "label"),
                    "path": tags.get(prefix + "path"),
                    "target": tags.get(prefix + "target"),
                    "kind": tags.get(prefix + "kind", "dir"),
                    "mode": tags.get(prefix + "mode"),
                    "hash": tags.get(prefix + "hash"),
                    "files": int(files) if files.isdigit() else 0,
                    "bytes": int(size) if size.isdigit() else 0,
                    "summarised": tags.get(prefix + "summarised") == "true",
                    "written": tags.get(prefix + "written") == "true",
                }
            )
        )
    return out


@dataclass(frozen=True)
class DataDrift:
    """One path that differs between the record and now."""

    label: str
    path: str  # the source path, joined with the file's relative path when known
    kind: str  # missing | added | size changed | content changed | modified
    detail: str = ""

    def line(self) -> str:
        return "%s %s: %s%s" % (self.label, self.path, self.kind, " (" + self.detail + ")" if self.detail else "")


def _join(source: DataSource, rel: str) -> str:
    return posixpath.join(source.path, rel) if rel and rel != "." else source.path


def _entry_drift(recorded: DataSource, current: DataSource) -> List[DataDrift]:
    rows = []
    a, b = recorded.entries, current.entries
    for rel in sorted(set(a) | set(b)):
        old, new = a.get(rel), b.get(rel)
        path = _join(recorded, rel)
        if new is None:
            rows.append(DataDrift(recorded.label, path, MISSING))
        elif old is None:
            rows.append(DataDrift(recorded.label, path, ADDED))
        elif old.get("size") != new.get("size"):
            rows.append(DataDrift(recorded.label, path, SIZE, "%s -> %s bytes" % (old.get("size"), new.get("size"))))
        elif (
            old.get("sha256") != new.get("sha256")
            or old.get("link") != new.get("link")
            or bool(old.get("special")) != bool(new.get("special"))
        ):
            rows.append(DataDrift(recorded.label, path, CONTENT_CHANGED))
        elif old.get("mtime_ns") != new.get("mtime_ns") and recorded.mode == METADATA:
            rows.append(DataDrift(recorded.label, path, MODIFIED, "same size, new mtime"))
    return rows


def _part_drift(recorded: DataSource, current: DataSource) -> List[DataDrift]:
    rows = []
    for name in sorted(set(recorded.parts) | set(current.parts)):
        old, new = recorded.parts.get(name), current.parts.get(name)
        path = _join(recorded, name)
        if new is None:
            rows.append(DataDrift(recorded.label, path, MISSING, "%d files" % old["files"]))
        elif old is None:
            rows.append(DataDrift(recorded.label, path, ADDED, "%d files" % new["files"]))
        elif (old["files"], old["bytes"]) != (new["files"], new["bytes"]):
            rows.append(
                DataDrift(
                    recorded.label,
                    path,
                    SIZE,
                    "%d files, %d bytes -> %d files, %d bytes"
                    % (old["files"], old["bytes"], new["files"], new["bytes"]),
                )
            )
        elif old["hash"] != new["hash"]:
            rows.append(DataDrift(recorded.label, path, CONTENT_CHANGED if recorded.mode == CONTENT else MODIFIED))
    return rows


def compare(recorded: DataSource, current: DataSource) -> List[DataDrift]:
    """Drift rows for one source (empty: unchanged). `current` should be scanned in `recorded.mode`."""
    label, path = recorded.label, recorded.path
    if recorded.kind == "missing":
        return [] if current.kind == "missing" else [DataDrift(label, path, ADDED, "absent when recorded")]
    if current.kind == "missing":
        return [DataDrift(label, path, MISSING, current.reasons.get(".", ""))]
    if recorded.mode != current.mode:
        return [
            DataDrift(label, path, CONTENT_CHANGED, "fingerprinted by %s, now by %s" % (recorded.mode, current.mode))
        ]
    if recorded.hash == current.hash and recorded.kind == current.kind:
        return []
    if recorded.kind != current.kind:
        return [DataDrift(label, path, CONTENT_CHANGED, "was a %s, now a %s" % (recorded.kind, current.kind))]
    if not recorded.summarised and not current.summarised and recorded.hash and (recorded.entries or current.entries):
        rows = _entry_drift(recorded, current)
    elif recorded.parts and current.parts:
        rows = _part_drift(recorded, current)
    else:
        rows = []
    if rows:
        return rows
    if (recorded.files, recorded.bytes) != (current.files, current.bytes):
        return [
            DataDrift(
                label,
                path,
                SIZE,
                "%d files, %d bytes -> %d files, %d bytes"
                % (recorded.files, recorded.bytes, current.files, current.bytes),
            )
        ]
    return [DataDrift(label, path, CONTENT_CHANGED if recorded.mode == CONTENT else MODIFIED, "tree hash differs")]


def compare_all(recorded: Sequence[DataSource], current: Sequence[DataSource]) -> List[DataDrift]:
    """Drift of every recorded source against the same (label, path) now; unmatched ones are missing."""
    now = {(s.label, s.path): s for s in current}
    rows: List[DataDrift] = []
    for source in recorded:
        match = now.get((source.label, source.path))
        rows += (
            compare(source, match) if match else [DataDrift(source.label, source.path, MISSING, "not fingerprinted")]
        )
    return rows
