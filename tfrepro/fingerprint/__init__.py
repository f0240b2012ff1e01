"""Collect the environment from independent sources.

Each source module has `query()` (the only I/O, lazy imports), `parse(raw)` (pure)
and `collect()`. A source that does not apply raises NotApplicable(reason); any
other failure is recorded too. A source's collect() may also return
(section, reason) when it answered only in part. collect() never raises.
"""
from __future__ import annotations

import datetime
import importlib
from typing import Iterable

from tfrepro.environment import SECTIONS, Environment

SOURCES = tuple(SECTIONS)


class NotApplicable(Exception):
    """The source does not apply here (no git repo, no driver...): str() is the reason."""


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
    from tfrepro import __version__

    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return Environment(collected_at=now, tfrepro_version=__version__, reasons=reasons, **sections)
