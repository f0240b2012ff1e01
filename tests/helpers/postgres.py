"""A throwaway PostgreSQL 15 cluster for tests, started by scripts/team-server.sh.

The script owns the steps (install if missing, initdb as the postgres user, loopback-only
TCP, create the database); this class gives it a private directory and cleans up.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "team-server.sh"


class PostgresCluster:
    def __init__(self, port: int, db: str = "mlflow"):
        self.port, self.db = port, db
        # under /tmp, not pytest's 0700 tmp tree: the postgres user must reach the data dir
        self.dir = tempfile.mkdtemp(prefix="tfrepro-pg-")
        os.chmod(self.dir, 0o711)
        self.uri = None

    def _script(self, *args, timeout=300) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(SCRIPT), "--dir", self.dir, "--pg-port", str(self.port), "--python", sys.executable, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self) -> "PostgresCluster":
        done = self._script("--postgres-only", "--db", self.db)
        if done.returncode != 0:
            raise RuntimeError("PostgreSQL did not start: %s" % (done.stderr.strip() or done.stdout.strip()))
        self.uri = done.stdout.strip().splitlines()[-1]
        return self

    def stop(self) -> None:
        self._script("--stop", timeout=120)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def available() -> str:
    """'' when a cluster can be started here, else why not."""
    try:
        import psycopg2  # noqa: F401 (the server's backend driver)
    except ImportError:
        return "psycopg2 is not installed (pip install 'tfrepro[server]')"
    if not os.path.exists("/usr/lib/postgresql/15/bin/pg_ctl") and os.geteuid() != 0:
        return "PostgreSQL 15 is not installed"
    return ""
