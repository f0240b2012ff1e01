"""Collect the environment from independent sources.

Each source module has `query()` (the only I/O, lazy imports), `parse(raw)` (pure)
and `collect()`. A source that does not apply raises NotApplicable(reason); any
other failure is recorded too. A source's collect() may also return
(section, reason) when it answered only in part. collect() never raises.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import os
import threading
import time
from typing import Dict, Iterable, Optional, Tuple

from tfrepro.environment import SECTIONS, Environment
from tfrepro.versions import __version__

SOURCES = tuple(SECTIONS)


class NotApplicable(Exception):
    """The source does not apply here (no git repo, no driver...): str() is the reason."""


def read_text(root: str, path: str) -> Optional[str]:
    """The text of the absolute `path` under `root` ("/", or a folder of recorded files in
    tests); None when it cannot be read."""
    try:
        with open(os.path.join(root, path.lstrip("/")), encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def first_values(text: str, separator: str) -> Dict[str, str]:
    """`key<separator>value` lines -> {key: value}, both stripped. A repeated key keeps its first
    value (/proc/cpuinfo repeats its fields for each core); a line without the separator is skipped."""
    fields: Dict[str, str] = {}
    for line in text.splitlines():
        key, found, value = line.partition(separator)
        if found:
            fields.setdefault(key.strip(), value.strip())
    return fields


def collect(sources: Iterable[str] = SOURCES) -> Environment:
    sections, reasons = {}, {}
    for name in sources:
        try:
            module = importlib.import_module(__name__ + "." + name)
            section = module.collect()
            reason = None
            if isinstance(section, tuple):
                section, reason = section
            sections[name] = section
        except NotApplicable as exc:
            reasons[name] = str(exc)
        except Exception as exc:  # one broken source must never break the others
            reasons[name] = "%s: %s" % (type(exc).__name__, exc)
        else:
            reason = reason or getattr(section, "reason", None)
            if reason:
                reasons[name] = reason
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return Environment(collected_at=now, tfrepro_version=__version__, reasons=reasons, **sections)


_last: Optional[Tuple[float, Environment]] = None  # (time.time() when collecting began, the record)
_lock = threading.Lock()


def shared(since: Optional[float] = None) -> Environment:
    """The process's last full collection if it began at or after `since` (epoch seconds;
    None: any), else a new one. The MLflow plugin and ReproCallback share it, so a run
    started by one and recorded by the other costs one collection; two threads asking at
    once wait for the same one."""
    global _last
    with _lock:
        if _last is not None and (since is None or _last[0] >= since):
            return _last[1]
        began = time.time()
        env = collect()
        _last = (began, env)
        return env


def collected() -> bool:
    """A full collection is there for shared() to give at once."""
    return _last is not None


_recording = threading.local()


@contextlib.contextmanager
def recorded_by_caller():
    """While inside (this thread): a run started here gets its environment from the caller
    (ReproCallback records it off the training thread), so the MLflow plugin adds none."""
    _recording.active = True
    try:
        yield
    finally:
        _recording.active = False


def caller_records() -> bool:
    return getattr(_recording, "active", False)
