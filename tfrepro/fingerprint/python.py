"""Python source: interpreter and the full package lock ("name==version", sorted).

Versions come from *.dist-info / *.egg-info folder names on sys.path (no METADATA parsing,
which is what makes importlib.metadata slow for hundreds of packages); a folder whose name
carries no version falls back to importlib.metadata. Python 3.8 compatible.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, Dict, Iterable, List, Optional, Tuple

from tfrepro.environment import PythonInfo

_SUFFIXES = (".dist-info", ".egg-info")


def normalize(name: str) -> str:
    """PEP 503 name: lowercase, runs of -_. become one dash."""
    return re.sub(r"[-_.]+", "-", name).lower()


def query(paths: Optional[Iterable[str]] = None) -> Dict[str, object]:
    """List metadata folder names per sys.path entry (in import order)."""
    listing: List[Tuple[str, List[str]]] = []
    for entry in paths if paths is not None else sys.path:
        try:
            names = [n for n in os.listdir(entry or ".") if n.endswith(_SUFFIXES)]
        except OSError:  # a zip file, a missing folder
            continue
        listing.append((entry, names))
    return {
        "version": "%d.%d.%d" % sys.version_info[:3],
        # the names platform.python_implementation() gives, without importing platform
        "implementation": {"cpython": "CPython", "pypy": "PyPy"}.get(sys.implementation.name, sys.implementation.name),
        "executable": sys.executable,
        "listing": listing,
    }


def split_folder(folder: str) -> Tuple[str, Optional[str]]:
    """'numpy-1.23.5.dist-info' -> ('numpy', '1.23.5'); 'pkg.egg-info' -> ('pkg', None)."""
    stem = folder
    for suffix in _SUFFIXES:
        if folder.endswith(suffix):
            stem = folder[: -len(suffix)]
    # dist-info: {name}-{version}; egg-info may add -py3.8[-platform]
    parts = stem.split("-")
    if len(parts) < 2:
        return stem, None
    name, version = parts[0], parts[1]
    if not version or not version[0].isdigit():
        return stem, None
    return name, version


def _metadata_version(entry: str, folder: str) -> Tuple[Optional[str], Optional[str]]:
    from importlib import metadata

    try:
        dist = metadata.PathDistribution.at(os.path.join(entry or ".", folder))
        return dist.metadata["Name"], dist.version
    except Exception:
        return None, None


def parse(raw: Dict[str, Any], resolve=_metadata_version) -> PythonInfo:
    """Folder listing -> sorted, deduplicated lock; the first entry on sys.path wins."""
    seen: Dict[str, str] = {}
    for entry, folders in raw.get("listing") or ():
        for folder in sorted(folders):
            name, version = split_folder(folder)
            if version is None:
                name, version = resolve(entry, folder)
            if not name or not version:
                continue
            seen.setdefault(normalize(name), version)
    return PythonInfo(
        version=str(raw.get("version") or ""),
        implementation=str(raw.get("implementation") or ""),
        executable=str(raw.get("executable") or ""),
        packages=tuple("%s==%s" % item for item in sorted(seen.items())),
    )


def collect() -> PythonInfo:
    return parse(query())
