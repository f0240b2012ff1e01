"""Data beside the code: the files under a repository that git does not track, fingerprinted.

`tfrepro run` calls `collect` on the host before the container starts (it knows the
repository; the in-process fingerprint does not walk data, to keep `mlflow.start_run()`
fast), and `written` after it exits: a path that changed while the run ran is what the run
wrote, not what it read, so replay does not restore it.

Git answers what is untracked (`ls-files --others --exclude-standard`) and ignored (the same
with `--ignored`), with `--directory` so a folder git does not track is one path (`data/`),
not one per file. Each such path becomes one `DataSource` (label `untracked` or `ignored`,
path relative to the repository, target where the container sees it), fingerprinted by
`tfrepro.fingerprint.data.scan` in the same schema as mounted data. Left out: `.git`,
virtual environments, caches, the tracking store, tfrepro's spool, and files named like
secrets (`.env`, `*.pem`, ...): they are never fingerprinted, so never restored.
The cost is bounded as one walk: past DETAIL_SECONDS or DETAIL_FILES over all paths, the
rest is summarised per top-level entry, and the record says so. Python 3.8 compatible.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import time
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple

from tfrepro.fingerprint import git
from tfrepro.fingerprint.data import DETAIL_FILES, DETAIL_SECONDS, scan
from tfrepro.fingerprint.data_record import DataSource, compare, human_bytes

LABELS = ("untracked", "ignored")
# never data: left out at every depth, at record time and on replay alike
SKIP_NAMES = frozenset(
    {
        ".git",
        "__pycache__",
        ".pytest_cache",
        ".mypy_cache",
        ".ipynb_checkpoints",
        ".tox",
        ".nox",
        ".venv",
        "venv",
        "mlruns",
        "mlartifacts",
        "mlflow.db",
        "mlflow.db-journal",
    }
)
SECRET_RE = re.compile(
    r"^(\.env(\..+)?|\.netrc|\.pypirc|\.npmrc|\.git-credentials|id_(rsa|dsa|ecdsa|ed25519)(\.pub)?"
    r"|.+\.(pem|key|p12|pfx|kdbx))$",
    re.I,
)
MAX_PATHS = 64  # one record group per path; past that the rest are only counted
GIT_TIMEOUT = 60
SLOW_SECONDS = 5.0  # past this the note says how to skip it


@dataclass(frozen=True)
class Capture:
    """What `collect` found: the sources, what it left out and why, and how long it took."""

    sources: Tuple[DataSource, ...] = ()
    skipped: Dict[str, str] = field(default_factory=dict)  # path -> why it was left out
    over: Tuple[str, ...] = ()  # paths past MAX_PATHS: not fingerprinted
    seconds: float = 0.0
    error: Optional[str] = None  # git could not list them

    @property
    def found(self) -> bool:
        """Anything to say: git listed something, or could not list."""
        return bool(self.sources or self.skipped or self.over or self.error)

    def note(self) -> str:
        """One line for the record and the terminal: what was fingerprinted, what replay restores."""
        if self.error:
            return "data beside the code: not fingerprinted (%s)" % self.error
        counts = ", ".join(
            "%d %s" % (n, label)
            for label, n in ((lb, sum(1 for s in self.sources if s.label == lb)) for lb in LABELS)
            if n
        )
        files = sum(s.files for s in self.sources)
        text = (
            "data beside the code: %s path(s) fingerprinted (%s; %d file%s, %s, %.2f s)"
            % (
                counts,
                _listed([s.path for s in self.sources]),
                files,
                "" if files == 1 else "s",
                human_bytes(sum(s.bytes for s in self.sources)),
                self.seconds,
            )
            if self.sources
            else "data beside the code: nothing fingerprinted"
        )
        if any(s.summarised for s in self.sources):
            text += ", summarised per top-level entry (over %d files or %.0f s)" % (DETAIL_FILES, DETAIL_SECONDS)
        if self.sources:
            text += "; a replay restores them read-only from the replayer's clone"
        if self.skipped:
            text += "; left out: %s" % _listed(["%s (%s)" % kv for kv in sorted(self.skipped.items())])
        if self.over:
            text += "; %d more path(s) not fingerprinted (over %d)" % (len(self.over), MAX_PATHS)
        if self.seconds > SLOW_SECONDS:
            text += "; --no-untracked skips this"
        return text


def _listed(items: Sequence[str], limit: int = 4) -> str:
    return ", ".join(items[:limit]) + (" (+%d more)" % (len(items) - limit) if len(items) > limit else "")


def parse_ls_files(raw: bytes) -> List[str]:
    """`git ls-files -z --directory` output -> repository-relative paths, folders without their '/'."""
    paths = []
    for item in raw.split(b"\0"):
        text = os.fsdecode(item).rstrip("/")
        if text:
            paths.append(text)
    return paths


# git's files that are not tracked (and with --ignored, those ignored), folders whole, NUL-separated
LS_OTHERS = "-c core.quotepath=off ls-files -z --others --exclude-standard --directory --no-empty-directory".split()


def list_paths(root: str) -> Dict[str, str]:
    """{path: "untracked" | "ignored"} under `root`, from git (both listings run at once).
    Raises OSError or RuntimeError."""
    executable = shutil.which("git")
    if executable is None:
        raise OSError("git is not installed")
    listings: Tuple[Tuple[str, List[str]], ...] = (("untracked", []), ("ignored", ["--ignored"]))
    started = [(label, git.start(executable, LS_OTHERS + extra, root)) for label, extra in listings]
    found: Dict[str, str] = {}
    for label, proc in started:
        code, out, err = git.finish(proc, GIT_TIMEOUT)
        if code != 0:  # a timeout is a kill: no stderr, a negative status
            raise RuntimeError("git ls-files: %s" % (git.first_line(err) if err.strip() else "status %d" % code))
        for path in parse_ls_files(out):
            found.setdefault(path, label)
    return found


def outermost(paths: Sequence[str]) -> List[str]:
    """Sorted paths without those inside another listed folder (each file is walked once)."""
    kept: List[str] = []
    for path in sorted(paths):
        if not any(path.startswith(k + "/") for k in kept):
            kept.append(path)
    return kept


def skip_reason(root: str, path: str, skip_paths: Sequence[str] = ()) -> Optional[str]:
    """Why `path` (relative to `root`) is not data, or None."""
    parts = path.split("/")
    if not path.isprintable():
        return "unprintable name"  # it would reach a replayer's terminal
    if any(p in SKIP_NAMES for p in parts):
        return "cache, virtualenv or tracking store"
    if any(p.endswith(".egg-info") or p == ".eggs" for p in parts):
        return "build metadata"  # written by `pip install -e .`, not read by training
    if SECRET_RE.match(parts[-1]):
        return "named like a secret"
    full = os.path.join(root, path)
    if os.path.isfile(os.path.join(full, "pyvenv.cfg")) or os.path.isdir(os.path.join(full, "conda-meta")):
        return "virtualenv"
    real = os.path.realpath(full)
    for other in skip_paths:
        if real == other or real.startswith(other.rstrip("/") + "/"):
            return "tracking store or spool"
    return None


def collect(
    root: str,
    workdir: str,
    hash_data: bool = False,
    skip_paths: Sequence[str] = (),
    budget: float = DETAIL_SECONDS,
    max_files: int = DETAIL_FILES,
) -> Capture:
    """Fingerprint every untracked and ignored path under the repository at `root`. Never raises."""
    started = time.monotonic()
    try:
        listed = list_paths(root)
    except (OSError, RuntimeError) as exc:
        return Capture(error=str(exc) or type(exc).__name__, seconds=time.monotonic() - started)
    skip_real = [os.path.realpath(p) for p in skip_paths if p]
    skipped: Dict[str, str] = {}
    wanted: List[str] = []
    for path in outermost(list(listed)):
        why = skip_reason(root, path, skip_real)
        if why:
            skipped[path] = why
        else:
            wanted.append(path)
    sources: List[DataSource] = []
    files, walking = 0, time.monotonic()  # the budget is for the walk; git's listing is not data
    for path in wanted[:MAX_PATHS]:
        left = budget - (time.monotonic() - walking)
        source = scan(
            os.path.join(root, path),
            listed[path],
            posixpath.join(workdir, path),
            hash_data,
            follow_root=False,
            name=path,
            detail_files=max(0, max_files - files),
            detail_seconds=max(0.0, left),
            skip_names=SKIP_NAMES,
        )
        if source.kind == "dir" and not source.files and not source.reasons:
            skipped[path] = "only caches"  # e.g. a folder holding nothing but __pycache__
            continue
        files += source.files
        sources.append(source)
    return Capture(tuple(sources), skipped, tuple(wanted[MAX_PATHS:]), time.monotonic() - started)


def rescan(source: DataSource, root: str) -> DataSource:
    """`source` fingerprinted again under `root`, the way it was recorded."""
    return scan(
        os.path.join(root, source.path),
        source.label,
        source.target,
        source.mode == "content",
        follow_root=False,
        name=source.path,
        skip_names=SKIP_NAMES,
    )


def written(capture: Capture, root: str) -> Tuple[Capture, List[str]]:
    """After the run: the capture with every path that changed meanwhile marked `written`,
    and those paths."""
    marked, changed = [], []
    for source in capture.sources:
        if compare(source, rescan(source, root)):
            marked.append(replace(source, written=True))
            changed.append(source.path)
        else:
            marked.append(source)
    return replace(capture, sources=tuple(marked)), changed
