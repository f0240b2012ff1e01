"""The data a launch mounts, fingerprinted before the container starts (`tfrepro run -v`);
tracking/runs.record_data records it, replay/data.py compares it again before a replay."""

from __future__ import annotations

import logging
from typing import List

from tfrepro.fingerprint.data import scan
from tfrepro.fingerprint.data_record import DataSource

log = logging.getLogger(__name__)


def fingerprint_mounts(mounts, hash_data: bool = False) -> List[DataSource]:
    """One DataSource per user bind mount (named volumes and the Docker socket are not data)."""
    sources = []
    for mount in mounts:
        if mount.kind == "user" and mount.source.startswith("/"):
            sources.append(scan(mount.source, "mount", mount.target, hash_data=hash_data))
            log.info("data: %s", sources[-1].summary())
    return sources
