"""Zero-code capture for `tfrepro run` / `tfrepro replay`: autolog and --seed applied inside
the container before the user's code, through a generated `sitecustomize` directory.

The launcher writes tfrepro/launch/sitecustomize.py into a private temporary directory,
mounts it read-only at HOOK_DIR and puts HOOK_DIR first on PYTHONPATH (ahead of the user's
or the image's PYTHONPATH). Nothing is read from the image but its PYTHONPATH. Pure apart
from hook_directory() and image_env().
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Dict, Iterator, Mapping, Optional, Tuple

from tfrepro import schema
from tfrepro.launch import spec
from tfrepro.tracking import launch_record

HOOK_DIR = "/opt/tfrepro-hook"  # where the generated directory is mounted in the container
HOOK_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sitecustomize.py")
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the hook and the two standalone modules it runs on (sitecustomize.COMPANIONS), copied beside it
HOOK_FILES = {
    "sitecustomize.py": HOOK_SOURCE,
    "tfrepro_import_hook.py": os.path.join(_PACKAGE, "import_hook.py"),
    "tfrepro_determinism.py": os.path.join(_PACKAGE, "determinism.py"),
}
ENV_AUTOLOG = schema.ENV_AUTOLOG
ENV_DETERMINISTIC = schema.ENV_DETERMINISTIC
ENV_SEED = schema.ENV_SEED  # tfrepro.determinism reads it too
AUTOLOG_TAG = schema.AUTOLOG
SEED_TAG = schema.SEED
LAUNCH_SEED_TAG = schema.LAUNCH_SEED


def wanted(autolog: bool, seed: Optional[int]) -> bool:
    return autolog or seed is not None


@contextlib.contextmanager
def hook_directory(enabled: bool = True) -> Iterator[Optional[str]]:
    """A fresh directory holding only the hook (HOOK_FILES), readable by any container user,
    writable by nobody else; removed afterwards. None when not enabled."""
    if not enabled:
        yield None
        return
    path = tempfile.mkdtemp(prefix="tfrepro-hook-")
    try:
        for name, source in HOOK_FILES.items():
            target = os.path.join(path, name)
            shutil.copyfile(source, target)
            os.chmod(target, 0o644)
        os.chmod(path, 0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def hook_source() -> str:
    """The hook's text, for engines that cannot mount a directory (a Kubernetes pod)."""
    with open(HOOK_SOURCE, encoding="utf-8") as f:
        return f.read()


def hook_sources() -> Dict[str, str]:
    """Every file of the hook directory (HOOK_FILES) by name, as text, for a Kubernetes pod."""
    sources = {}
    for name, path in HOOK_FILES.items():
        with open(path, encoding="utf-8") as f:
            sources[name] = f.read()
    return sources


def image_env(docker_client, image: str) -> Dict[str, str]:
    """The image's own ENV (to keep its PYTHONPATH); {} when it cannot be read."""
    try:
        items = docker_client.images.get(image).attrs.get("Config", {}).get("Env") or []
    except Exception:
        return {}
    return dict(item.split("=", 1) for item in items if "=" in item)


def python_path(*candidates: Optional[str]) -> str:
    """HOOK_DIR first, then the first PYTHONPATH given (the user's -e, else the image's),
    without an earlier HOOK_DIR entry (a replayed -e PYTHONPATH carries one)."""
    rest = next((c for c in candidates if c is not None), "")
    entries = [p for p in rest.split(":") if p and p.rstrip("/") != HOOK_DIR]
    return ":".join([HOOK_DIR] + entries)


def hook_env(
    autolog: bool, seed: Optional[int], user_env: Mapping[str, str], image_environment: Mapping[str, str]
) -> Dict[str, str]:
    """The variables that turn the hook on; {} when neither autolog nor a seed is wanted."""
    if not wanted(autolog, seed):
        return {}
    env = {"PYTHONPATH": python_path(user_env.get("PYTHONPATH"), image_environment.get("PYTHONPATH"))}
    if autolog:
        env[ENV_AUTOLOG] = "1"
    if seed is not None:
        env[ENV_DETERMINISTIC] = "1"
        env[ENV_SEED] = str(seed)
    return env


def hook_mounts(directory: Optional[str]) -> Tuple[spec.Mount, ...]:
    return (spec.Mount(directory, HOOK_DIR, True, "hook"),) if directory else ()


def hook_tags(autolog: bool, seed: Optional[int]) -> Dict[str, str]:
    """Recorded on the run: whether autolog was on, and the seed the launcher applied."""
    tags = {AUTOLOG_TAG: "true" if autolog else "false"}
    if seed is not None:
        tags[SEED_TAG] = tags[LAUNCH_SEED_TAG] = str(seed)
    return tags


def hook_record(autolog: bool, seed: Optional[int]) -> Dict[str, object]:
    """The same in tfrepro/launch.json."""
    return {"autolog": autolog, "seed": seed}


def from_record(launch: Mapping[str, object], tags: Mapping[str, str]) -> Tuple[bool, Optional[str]]:
    """(autolog, the seed the launcher applied, unvalidated) of a recorded run: what
    tracking/launch_record.py parses a record's launch with."""
    return launch_record.hook_settings(launch, tags)
