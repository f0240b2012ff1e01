"""Real cluster engines for tests: a one-node Slurm cluster and Podman, set up by the project's
scripts (idempotent: seconds when already up). Missing -> `missing()`: a skip, a failure in CI.

A pytest plugin: registered in tests/conftest.py (pytest_plugins).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers.requirements import missing

ROOT = Path(__file__).resolve().parents[2]


def _up(script: str, *args: str) -> str:
    if os.geteuid() != 0:
        missing("%s needs root" % script)
    result = subprocess.run(["bash", str(ROOT / "scripts" / script)] + list(args), capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        missing("%s failed: %s" % (script, tail))
    return result.stdout


@pytest.fixture(scope="session")
def slurm() -> str:
    """The cluster's one partition, once `sinfo` shows its node idle."""
    _up("slurm-up.sh")
    return "debug"


@pytest.fixture(scope="session")
def podman() -> str:
    _up("podman-up.sh")
    return "podman"


def last_job_id() -> int:
    """The highest job id slurmctld still knows (jobs are kept MinJobAge, 300 s)."""
    out = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i"], capture_output=True, text=True).stdout
    ids = [int(i) for i in out.split() if i.isdigit()]
    return max(ids) if ids else 0
