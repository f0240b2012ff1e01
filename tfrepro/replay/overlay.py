"""Data beside the code on replay: the recorded untracked and ignored inputs, found in the
replayer's clone, checked against the record, and mounted read-only over the checkout.

Trust (SECURITY.md): the record only names paths relative to the repository; the files come
from the replayer's own clone (the local repository that has the commit), and nothing
outside it is mounted. A recorded path must be relative, without `..` or `.git`; every
folder on the way must be a real folder (no symlink is followed) and the real path must stay
inside the clone. A recorded symlink is never mounted: one that points inside the repository
is recreated as a link in the checkout, one that leaves it is reported.

Each recorded input ends in one state:
    match      found with the recorded fingerprint: mounted read-only
    drift      changed (one blocking row per path): mounted only with --allow-drift
    absent     not in the clone, or no local clone has the commit (another machine): blocking,
               with how to provide it (`-v SRC:/workspace/PATH:ro`)
    provided   the replayer mounts it with -v: fingerprinted there and checked, not mounted again
    written    it changed while the original ran (an output): not restored, not checked
    link       a symlink: recreated when it stays inside the repository, else reported
    off        --no-untracked
"""

from __future__ import annotations

import os
import posixpath
import stat
from dataclasses import dataclass
from typing import Callable, List, Mapping, Optional, Sequence, Tuple

from tfrepro.errors import RecordError, SourceError
from tfrepro.fingerprint.data import scan
from tfrepro.fingerprint.data_record import CONTENT, MISSING, DataDrift, DataSource, compare, human_bytes
from tfrepro.fingerprint.untracked import LABELS, SECRET_RE, SKIP_NAMES, rescan
from tfrepro.launch import spec

MATCH, DRIFT, ABSENT, PROVIDED, WRITTEN, LINK, OFF = "match", "drift", "absent", "provided", "written", "link", "off"
PREFIX = "data beside the code: "


@dataclass(frozen=True)
class Input:
    recorded: DataSource
    state: str
    host_path: Optional[str] = None  # the clone's copy, confined
    current: Optional[DataSource] = None  # its fingerprint now
    rows: Tuple[DataDrift, ...] = ()
    note: str = ""

    def mountable(self, allow_drift: bool) -> bool:
        kind = self.current.kind if self.current else None
        return (
            bool(self.host_path)
            and kind in ("dir", "file")
            and (self.state == MATCH or (self.state == DRIFT and allow_drift))
        )

    def line(self, workdir: str) -> str:
        recorded = self.recorded
        size = "%d file%s, %s" % (recorded.files, "" if recorded.files == 1 else "s", human_bytes(recorded.bytes))
        head = "%s%s (%s, %s)" % (PREFIX, recorded.path, recorded.label, size)
        if self.state == PROVIDED:
            head += ", provided with -v %s" % self.host_path
        if self.state in (MATCH, PROVIDED) and not self.rows:
            return head + ", matches the record"
        if self.state in (DRIFT, PROVIDED):
            return head + ", differs from the record:"
        if self.state == ABSENT:
            return "%s is not %s, or pass -v SRC:%s:ro" % (head, self.note, posixpath.join(workdir, recorded.path))
        if self.state == WRITTEN:
            return head + ": written by the original run, not restored (the replay writes its own)"
        if self.state == LINK:
            return "%s%s (%s symlink): %s" % (PREFIX, recorded.path, recorded.label, self.note)
        return head + ": not restored (--no-untracked)"


@dataclass(frozen=True)
class Overlay:
    clone: Optional[str] = None
    inputs: Tuple[Input, ...] = ()
    allow_drift: bool = False

    @property
    def drift(self) -> List[DataDrift]:
        """The blocking rows: each missing or changed path."""
        return [row for item in self.inputs for row in item.rows]

    @property
    def unrestored(self) -> List[DataDrift]:
        """Inputs the replay goes without, by choice or by rule (not blocking): for the verdict."""
        return [
            DataDrift(
                i.recorded.label,
                i.recorded.path,
                "not restored",
                "--no-untracked" if i.state == OFF else "a symlink out of the repository",
            )
            for i in self.inputs
            if i.state == OFF or (i.state == LINK and not i.host_path)
        ]

    @property
    def current(self) -> List[DataSource]:
        """What this replay reads, for its own record."""
        return [
            item.current
            for item in self.inputs
            if item.current is not None and (item.mountable(self.allow_drift) or item.state == PROVIDED)
        ]

    def mounts(self, workdir: str) -> Tuple[spec.Mount, ...]:
        return tuple(
            spec.Mount(item.host_path, posixpath.join(workdir, item.recorded.path), True, "beside")
            for item in self.inputs
            if item.host_path and item.mountable(self.allow_drift)
        )

    def links(self) -> List[Tuple[str, str]]:
        """(path, link text) to recreate in the checkout."""
        return [(i.recorded.path, _link_text(i.recorded)) for i in self.inputs if i.state == LINK and i.host_path]

    def render(self, workdir: str, shown: int = 10) -> str:
        lines = []
        if self.clone and any(i.mountable(self.allow_drift) for i in self.inputs):
            lines.append("%sread-only from %s" % (PREFIX, self.clone))
        for item in self.inputs:
            lines.append(item.line(workdir))
            lines += ["  ! %s" % row.line() for row in item.rows[:shown]]
            if len(item.rows) > shown:
                lines.append("  ! ... %d more changed path(s)" % (len(item.rows) - shown))
        return "\n".join(lines)


def _link_text(source: DataSource) -> str:
    entry = source.entries.get("") or {}
    return str(entry.get("link") or "")


def check_path(path: str) -> str:
    """A recorded path relative to the repository that stays inside it (RecordError if not)."""
    parts = path.split("/")
    if (
        path.startswith("/")
        or "\\" in path
        or not path.isprintable()
        or ":" in path
        or "," in path
        or any(p in ("", ".", "..") for p in parts)
        or any(p in SKIP_NAMES for p in parts)
    ):
        raise RecordError("data beside the code: %.100r is not a path inside the repository" % path)
    return path


def confine(clone: str, path: str) -> Tuple[Optional[str], str]:
    """(`path` inside `clone`, "") or (None, why not). Follows no symlink: a link at the end
    is returned as is, to be fingerprinted as a link and never mounted."""
    here = clone
    parts = path.split("/")
    for n, part in enumerate(parts):
        here = os.path.join(here, part)
        try:
            mode = os.lstat(here).st_mode
        except OSError:
            return None, MISSING
        if stat.S_ISLNK(mode):
            return (here, "") if n == len(parts) - 1 else (None, "a symlink on the way, not followed")
        if n < len(parts) - 1 and not stat.S_ISDIR(mode):
            return None, "not a folder on the way"
    real = os.path.realpath(here)
    if not real.startswith(clone.rstrip("/") + "/"):
        return None, "resolves outside the clone"
    return real, ""


def _link(source: DataSource, clone: Optional[str]) -> Input:
    text = _link_text(source)
    text = text if text.isprintable() else ""  # a record's text never reaches the terminal raw
    target = posixpath.normpath(posixpath.join(posixpath.dirname(source.path), text)) if text else ""
    if text and not text.startswith("/") and target != ".." and not target.startswith("../") and clone:
        # host_path set: restorable (as a link made in the checkout, never mounted)
        return Input(source, LINK, host_path=clone, note="-> %s, recreated in the checkout" % text)
    return Input(source, LINK, note="-> %s: a symlink out of the repository, not followed, not mounted" % (text or "?"))


def _provided(target: str, provided: Mapping[str, str]) -> Optional[str]:
    """The host path a replay-time -v mount gives for container path `target`, if one covers it."""
    for mount_target, host in provided.items():
        mount_target = mount_target.rstrip("/")
        if target == mount_target or target.startswith(mount_target + "/"):
            return host.rstrip("/") + target[len(mount_target) :]
    return None


def check_one(
    source: DataSource,
    clone: Optional[str],
    given: Optional[str] = None,
    refuse: Callable[[str], Optional[str]] = lambda path: None,
) -> Input:
    if source.written:
        return Input(source, WRITTEN)
    if source.kind == "symlink":
        return _link(source, clone)
    if given:  # the replayer's own -v: checked like a mount, and mounted by it, not here
        current = scan(
            given, source.label, source.target, source.mode == CONTENT, name=source.path, skip_names=SKIP_NAMES
        )
        return Input(source, PROVIDED, given, current, tuple(compare(source, current)))
    if clone is None:
        return Input(
            source,
            ABSENT,
            rows=(DataDrift(source.label, source.path, MISSING, "no local clone"),),
            note="on this host (no local clone has the commit): replay from a clone that has it at " + source.path,
        )
    if SECRET_RE.match(posixpath.basename(source.path)):
        return Input(
            source, DRIFT, rows=(DataDrift(source.label, source.path, MISSING, "named like a secret: never mounted"),)
        )
    host, why = confine(clone, source.path)
    if why == MISSING:
        return Input(
            source,
            ABSENT,
            rows=(DataDrift(source.label, source.path, MISSING),),
            note="in %s: put it at %s there" % (clone, source.path),
        )
    if host and not why:
        why = refuse(host) or ("cannot bind a path with ':' or ','" if ":" in host or "," in host else "")
    if host is None or why:  # never mounted
        return Input(source, DRIFT, rows=(DataDrift(source.label, source.path, MISSING, why),))
    current = rescan(source, clone)
    rows = tuple(compare(source, current))
    return Input(source, DRIFT if rows else MATCH, host, current, rows)


def check(
    sources: Sequence[DataSource],
    clone: Optional[str],
    enabled: bool = True,
    allow_drift: bool = False,
    workdir: str = spec.DEFAULT_WORKDIR,
    provided: Optional[Mapping[str, str]] = None,
    refuse: Callable[[str], Optional[str]] = lambda path: None,
) -> Overlay:
    """The recorded untracked and ignored inputs against `clone` (None: no local clone), or
    against what the replayer mounts at their place (`provided`: container path -> host path).
    `refuse(host path)` says why a path in the clone must never be mounted (launch/hostpaths.py)."""
    beside = [s for s in sources if s.label in LABELS]
    for source in beside:
        check_path(source.path)
    if not beside:
        return Overlay()
    if not enabled:
        return Overlay(None, tuple(Input(s, OFF) for s in beside))
    clone = os.path.realpath(clone) if clone else None
    given = [_provided(posixpath.join(workdir, s.path), provided or {}) for s in beside]
    return Overlay(clone, tuple(check_one(s, clone, g, refuse) for s, g in zip(beside, given)), allow_drift)


def prepare_checkout(checkout: str, overlay: Overlay, log=None) -> None:
    """Create each mount point (and recorded in-repository link) in the temporary checkout
    ourselves, as this user: Docker would create them as root. Nothing is followed: a tracked
    file or link in the way stops the replay (SourceError) before anything runs."""
    for item in overlay.inputs:
        if item.current is not None and item.mountable(overlay.allow_drift):
            try:
                _make(checkout, item.recorded.path, item.current.kind == "dir", None)
            except OSError as exc:
                raise SourceError(
                    "%s%s: cannot mount it over the checkout: %s" % (PREFIX, item.recorded.path, exc.strerror or exc)
                ) from None
    for path, text in overlay.links():
        try:
            _make(checkout, path, False, text)
        except OSError as exc:  # a link is a convenience: say so and go on
            if log:
                log("%s%s: not recreated in the checkout: %s" % (PREFIX, path, exc.strerror or exc))


def _make(root: str, path: str, is_dir: bool, link: Optional[str]) -> None:
    here = root
    parts = path.split("/")
    for part in parts[:-1]:
        here = os.path.join(here, part)
        if os.path.islink(here) or (os.path.lexists(here) and not os.path.isdir(here)):
            raise OSError("%s is not a folder in the checkout" % posixpath.relpath(here, root))
        if not os.path.lexists(here):
            os.mkdir(here)
    final = os.path.join(here, parts[-1])
    if link is not None:
        if not os.path.lexists(final):
            os.symlink(link, final)
        return
    if os.path.islink(final) or (os.path.lexists(final) and os.path.isdir(final) != is_dir):
        raise OSError("the checkout has a %s there" % ("link" if os.path.islink(final) else "file or folder"))
    if os.path.lexists(final):
        return
    if is_dir:
        os.mkdir(final)
    else:
        os.close(os.open(final, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0), 0o644))
