"""A real `mlflow server` for tests, and the fixtures on it (a pytest plugin, registered in
tests/conftest.py): `mlflow_server` (shared by the session), `postgres_server`, `tracking_uri`
(this test's MLflow pointed at the shared server) and `client` (an MlflowClient on it).

TFREPRO_TEST_BACKEND=postgres runs the shared `mlflow_server` on PostgreSQL (a fresh
cluster and database per session, started by scripts/team-server.sh) instead of sqlite.
"""

import contextlib
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.helpers.ports import free_port
from tests.helpers.requirements import missing

BACKEND = os.environ.get("TFREPRO_TEST_BACKEND", "sqlite")


class MlflowServer:
    """A real `mlflow server` subprocess: sqlite (or `backend_uri`) backend, served artifacts,
    loopback port. `extra_args`/`env`: e.g. MLflow's basic-auth app."""

    def __init__(self, root, port=None, backend_uri=None, extra_args=(), env=None):
        self.root = str(root)
        self.port = port or free_port()
        self.backend_uri = backend_uri or "sqlite:///%s/mlflow.db" % self.root
        self.extra_args, self.env = list(extra_args), env
        self.proc = None

    @property
    def uri(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self, timeout=90):
        os.makedirs(self.root, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            self.backend_uri,
            "--artifacts-destination",
            "%s/artifacts" % self.root,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            *self.extra_args,
        ]
        self.log = open(os.path.join(self.root, "server.log"), "ab")
        # MLflow 3's job runner (a dozen huey workers) serves no test: leave it off
        env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", **(self.env or {}))
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mlflow server exited; see %s/server.log" % self.root)
            try:
                urllib.request.urlopen(self.uri + "/health", timeout=1).read()
                return self
            except Exception:
                time.sleep(0.3)
        raise RuntimeError("mlflow server did not answer on %s" % self.uri)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()


def postgres_cluster():
    """A started throwaway PostgreSQL cluster on a free port; missing() when there is none."""
    from tests.helpers import postgres

    why = postgres.available()
    if why:
        missing(why)
    cluster = postgres.PostgresCluster(free_port())
    try:
        cluster.start()
    except Exception as exc:
        cluster.cleanup()
        missing(str(exc))
    return cluster


def _postgres_server(tmp_path_factory):
    """A PostgreSQL-backed MlflowServer and its cluster; missing() when there is none."""
    cluster = postgres_cluster()
    try:
        # the first start creates the schema: slower than sqlite
        server = MlflowServer(tmp_path_factory.mktemp("mlflow-pg-server"), backend_uri=cluster.uri).start(timeout=180)
    except Exception as exc:
        cluster.cleanup()
        missing(str(exc))
    return server, cluster


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    if BACKEND == "postgres":
        server, cluster = _postgres_server(tmp_path_factory)
    else:
        server, cluster = MlflowServer(tmp_path_factory.mktemp("mlflow-server")).start(), None
    yield server
    server.stop()
    if cluster:
        cluster.cleanup()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory, request):
    """A real `mlflow server` on PostgreSQL: the shared one under TFREPRO_TEST_BACKEND=postgres."""
    if BACKEND == "postgres":
        yield request.getfixturevalue("mlflow_server")
        return
    server, cluster = _postgres_server(tmp_path_factory)
    yield server
    server.stop()
    cluster.cleanup()


@pytest.fixture(scope="session")
def client(mlflow_server):
    """An MlflowClient on the shared server. It points nothing else there: a test that runs
    `tfrepro` without --tracking-uri also asks for `tracking_uri`."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(mlflow_server.uri)


@pytest.fixture
def tracking_uri(mlflow_server, monkeypatch):
    """Point this test's MLflow client at the shared server."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    import mlflow

    mlflow.set_tracking_uri(mlflow_server.uri)
    yield mlflow_server.uri
    while mlflow.active_run():
        mlflow.end_run()


@contextlib.contextmanager
def tracking_into(uri, repo):
    """MLflow pointed at `uri`, cwd inside `repo`, the spool beside it; runs left active are
    ended on the way out. For module-wide fixtures (monkeypatch is function-scoped)."""
    import mlflow

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(repo)
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("TFREPRO_SPOOL_DIR", str(repo.parent / "spool"))
        mlflow.set_tracking_uri(uri)
        yield repo
        while mlflow.active_run():
            mlflow.end_run()


@contextlib.contextmanager
def global_tracking_uri(uri):
    """mlflow.set_tracking_uri(uri) for a block, then exactly what was there before (the global
    and $MLFLOW_TRACKING_URI): restoring with set_tracking_uri(get_tracking_uri()) would pin
    the resolved URI for every later test."""
    import mlflow
    from mlflow.tracking._tracking_service import utils

    before, before_env = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        utils._tracking_uri = before
        if before_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before_env
