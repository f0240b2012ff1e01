"""Data fingerprints: what a run read besides its code (mounted data, files git does not track).

One `DataSource` per source: a label (`mount`, `untracked`, `ignored`), its path, file count,
total bytes and a tree hash, plus per-file detail while it is cheap. The walk (`scan`) is the
only I/O; the record schema and the drift comparison are in `tfrepro.fingerprint.data_record`.

By default the tree hash covers (relative path, size, mtime) of every file: a stat per file,
fast on large trees. `hash_data=True` hashes content instead (sha256 of every byte).
Symlinks are recorded as links (their target text) and never followed; sockets, FIFOs and
devices are recorded by kind and never opened. A file or folder that cannot be read is named
in `reasons`, never raised. Every directory source also gets one summary per top-level entry
(files, bytes, hash). Per-file detail is kept up to DETAIL_FILES files and DETAIL_SECONDS of
walking; past either only those summaries remain, and the record says so (`summarised`).
The totals and the tree hash always cover the whole tree.
Python 3.8 compatible.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from dataclasses import replace
from typing import Dict, Iterator, List, Optional, Tuple

from tfrepro.fingerprint.data_record import CONTENT, METADATA, DataSource, entry_row

DETAIL_FILES = 100_000
DETAIL_SECONDS = 1.0
MAX_PARTS = 1000  # top-level entries summarised; past that only the totals remain
MAX_REASONS = 50
ROOT_PART = "."  # the files directly in a source directory, in a summary
CHUNK = 1 << 20


def _line(rel: str, kind: str, size: int, stamp: str) -> bytes:
    # NUL-terminated fields: no path, link target or number contains a NUL, so it is unambiguous
    return b"%s\0%s\0%d\0%s\0" % (os.fsencode(rel), kind.encode(), size, os.fsencode(stamp))


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK)  # one buffer, reused: no allocation per read
    view = memoryview(buffer)
    # O_NOFOLLOW: a file swapped for a symlink between the stat and the open is refused, not followed
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb", buffering=0) as fh:
        while True:
            n = fh.readinto(buffer)
            if not n:
                return digest.hexdigest()
            digest.update(view[:n])


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


class _Walk:
    """One pass over a source; `scan` is its only caller."""

    def __init__(
        self, hash_data: bool, started: float, detail_files: int, detail_seconds: float, skip_names=frozenset()
    ):
        self.hash_data = hash_data
        self.skip_names = skip_names  # left out entirely (caches, virtualenvs): not data
        self.started = started
        self.detail_files, self.detail_seconds = detail_files, detail_seconds
        self.total = hashlib.sha256()
        self.parts: Dict[str, list] = {}  # top-level name -> [files, bytes, hasher]
        self.entries: Optional[Dict[str, dict]] = {}  # None once over budget
        self.reasons: Dict[str, str] = {}
        self.files = self.bytes = 0

    def reason(self, rel: str, why: str) -> None:
        if len(self.reasons) < MAX_REASONS:
            self.reasons[rel or "."] = why
        else:
            self.reasons["..."] = "more unreadable entries not listed"

    def add(self, rel: str, part: str, kind: str, size: int = 0, stamp: str = "", entry=None) -> None:
        line = _line(rel, kind, size, stamp)
        self.total.update(line)
        counts = self.parts.get(part)
        if counts is None:
            counts = self.parts[part] = [0, 0, hashlib.sha256()]
        counts[2].update(line)
        if kind == "file" or (kind == "unreadable" and entry is not None):  # a file we could not read
            self.files += 1
            self.bytes += size
            counts[0] += 1
            counts[1] += size
        if self.entries is not None and entry is not None:
            self.entries[rel] = entry
            if len(self.entries) > self.detail_files or time.monotonic() - self.started > self.detail_seconds:
                self.entries = None  # over budget: keep the per-top-level summary only

    def file(self, path: str, rel: str, part: str, st: os.stat_result) -> None:
        size, mtime_ns = st.st_size, st.st_mtime_ns
        if not os.access(path, os.R_OK):
            self.reason(rel, "unreadable: %s" % os.strerror(13))
            self.add(
                rel, part, "unreadable", size, str(mtime_ns), {"size": size, "mtime_ns": mtime_ns, "unreadable": True}
            )
            return
        entry: Dict[str, object] = {"size": size, "mtime_ns": mtime_ns}
        stamp = str(mtime_ns)
        if self.hash_data:
            try:
                stamp = entry["sha256"] = _sha256(path)
            except OSError as exc:
                self.reason(rel, "unreadable: %s" % _why(exc))
                self.add(rel, part, "unreadable", size, str(mtime_ns), dict(entry, unreadable=True))
                return
        self.add(rel, part, "file", size, stamp, entry)

    def entry(self, path: str, rel: str, part: str, st: os.stat_result) -> None:
        """Record one entry that is not a directory (those are walked by `tree`)."""
        mode = st.st_mode
        if stat.S_ISLNK(mode):
            try:
                target = os.readlink(path)
            except OSError as exc:
                target = ""
                self.reason(rel, "unreadable link: %s" % _why(exc))
            self.add(rel, part, "symlink", 0, target, {"link": target})
        elif stat.S_ISREG(mode):
            self.file(path, rel, part, st)
        else:  # a FIFO would block a read forever; devices and sockets are not data
            self.add(rel, part, "special", 0, "", {"special": True})

    def tree(self, top: str, rel_top: str, part: str) -> None:
        """Walk a directory, sorted depth first, without following symlinks."""
        self.add(rel_top, part, "dir")
        stack = [(top, rel_top)]
        while stack:
            path, rel = stack.pop()
            children = self.children(path, rel)
            if children is None:
                self.add(rel, part, "unreadable")
                continue
            subdirs = []
            for child, child_rel, st in children:
                if stat.S_ISDIR(st.st_mode):
                    self.add(child_rel, part, "dir")
                    subdirs.append((child.path, child_rel))
                else:
                    self.entry(child.path, child_rel, part, st)
            stack.extend(reversed(subdirs))

    def children(self, path: str, rel: str) -> Optional[Iterator[Tuple[os.DirEntry, str, os.stat_result]]]:
        """A folder's entries, sorted by name, but those in skip_names: each with its path
        relative to the source and its lstat, taken as the caller gets to it. None when the
        folder cannot be read. What cannot be read is recorded as a reason."""
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            self.reason(rel, "unreadable folder: %s" % _why(exc))
            return None
        return self._stat_each(entries, rel)

    def _stat_each(self, entries: List[os.DirEntry], rel: str) -> Iterator[Tuple[os.DirEntry, str, os.stat_result]]:
        for child in entries:
            if child.name in self.skip_names:
                continue
            child_rel = rel + "/" + child.name if rel else child.name
            try:
                st = child.stat(follow_symlinks=False)
            except OSError as exc:
                self.reason(child_rel, "cannot stat: %s" % _why(exc))
                continue
            yield child, child_rel, st


def scan(
    path: str,
    label: str = "mount",
    target: Optional[str] = None,
    hash_data: bool = False,
    follow_root: bool = True,
    name: Optional[str] = None,
    detail_files: int = DETAIL_FILES,
    detail_seconds: float = DETAIL_SECONDS,
    skip_names=frozenset(),
) -> DataSource:
    """Fingerprint a directory or file. Never raises for what it finds on disk.

    `name` is what the record calls the source (default: `path`); `follow_root` resolves a
    symlink at the root itself, as Docker does for a bind mount source (pass False for paths
    inside a repository, where a link is recorded as one and never followed). Entries named
    in `skip_names` are left out at every depth (a rescan must pass the same names).
    """
    started = time.monotonic()
    source = DataSource(label=label, path=name or path, target=target, mode=CONTENT if hash_data else METADATA)
    try:
        st = os.stat(path) if follow_root else os.lstat(path)
    except OSError as exc:
        return replace(source, kind="missing", reasons={".": _why(exc)})
    walk = _Walk(hash_data, started, detail_files, detail_seconds, skip_names)
    if stat.S_ISDIR(st.st_mode):
        for child, _rel, child_st in walk.children(path, "") or []:
            if stat.S_ISDIR(child_st.st_mode):
                walk.tree(child.path, child.name, child.name)
            else:
                walk.entry(child.path, child.name, ROOT_PART, child_st)
    else:
        kind = "symlink" if stat.S_ISLNK(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "special"
        source = replace(source, kind=kind)
        walk.entry(path, "", ROOT_PART, st)
    return _walked(source, walk, time.monotonic() - started)


def _walked(source: DataSource, walk: _Walk, seconds: float) -> DataSource:
    """`source` (its name, kind and mode) with what the walk found: totals, tree hash, detail, reasons."""
    summarised = walk.entries is None
    parts: Dict[str, dict] = {}
    reasons = dict(walk.reasons)
    if source.kind == "dir" and len(walk.parts) <= MAX_PARTS:  # kept always: a replay's scan may summarise
        parts = {
            k: {"files": v[0], "bytes": v[1], "hash": "sha256:" + v[2].hexdigest()}
            for k, v in sorted(walk.parts.items())
        }
    if summarised:
        why = "over %d files or %.0f s" % (walk.detail_files, walk.detail_seconds)
        reasons["summary"] = (
            "summarised per top-level entry (%s): per-file detail not recorded" % why
            if parts
            else "summarised (%s, %d top-level entries): totals only" % (why, len(walk.parts))
        )
    return replace(
        source,
        files=walk.files,
        bytes=walk.bytes,
        hash="sha256:" + walk.total.hexdigest(),
        summarised=summarised,
        entries={} if walk.entries is None else {k: entry_row(v) for k, v in walk.entries.items()},
        parts=parts,
        reasons=reasons,
        seconds=round(seconds, 3),
    )


def scan_all(items: List[Tuple[str, Optional[str]]], label: str = "mount", hash_data: bool = False) -> List[DataSource]:
    """Fingerprint each (host path, container target) in order."""
    return [scan(path, label, target, hash_data) for path, target in items]
