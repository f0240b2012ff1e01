"""Opening and closing a session off the training thread."""

import threading

import pytest

from tests.unit.test_writer import dead_uri, sqlite_uri, use_uri  # noqa: F401  (fixtures)
from tfrepro.tracking import backend
from tfrepro.tracking.session import FLUSH_TAG, TrackingSession, wait_for_uploads

pytestmark = pytest.mark.py38


def test_background_open_makes_no_server_call_and_the_writer_creates_the_run(use_uri, sqlite_uri, monkeypatch):  # noqa: F811
    from mlflow.tracking import MlflowClient

    use_uri(sqlite_uri)
    calls = []
    real = backend.ClientBackend.create_run

    def create_run(self, *args, **kwargs):
        calls.append(threading.current_thread().name)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(backend.ClientBackend, "create_run", create_run)
    session = TrackingSession.open("background", "bg", background=True, upload_interval=0.05)
    assert session.background and session.run_id.startswith("local-")
    session.log_params({"lr": 0.1})
    for step in range(1, 51):
        session.log_metrics({"loss": 1.0 / step}, step)
    session.close(background=True)
    assert session.wait(30)
    assert calls == ["tfrepro-uploader"]  # created once, off the caller's thread
    run = MlflowClient().get_run(session.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "bg"
    assert run.data.params == {"lr": "0.1"} and FLUSH_TAG in run.data.tags
    assert run.data.tags.get("mlflow.user")  # MLflow's context tags, resolved in the background
    steps = sorted(m.step for m in MlflowClient().get_metric_history(session.run_id, "loss"))
    assert steps == list(range(1, 51))
    assert wait_for_uploads(1)


def test_background_close_with_the_server_down_finishes_on_the_callers_thread(use_uri):  # noqa: F811
    use_uri(dead_uri())
    session = TrackingSession.open("down", background=True)
    session.log_metrics({"loss": 1.0}, 1)
    assert session._writer.wait_for_run(5) is None  # the first try failed: known down
    session.close(background=True)
    assert session._closer is None and session._closed  # nothing left to wait for
    assert '"loss":1.0' in open(session.spool_path).read()


def test_an_active_run_is_joined_as_before(use_uri, sqlite_uri):  # noqa: F811
    import mlflow

    use_uri(sqlite_uri)
    with mlflow.start_run() as run:
        session = TrackingSession.open(background=True)
        assert not session.background and session.run_id == run.info.run_id and not session.started_run
        session.close(background=True)


def test_tags_spooled_after_wait_for_run_win_over_mlflows_context_tags(use_uri, sqlite_uri):  # noqa: F811
    from mlflow.tracking import MlflowClient

    use_uri(sqlite_uri)
    session = TrackingSession.open("background", background=True, upload_interval=0.05)
    local_id = session.run_id
    run_id = session.wait_for_run(30)  # the opener's context tags (argv[0] as the source) are spooled
    assert run_id != local_id and not run_id.startswith("local-")
    session.set_tags({"mlflow.source.name": "src/train.py"})  # what the callback's record thread names
    session.close(background=True)
    assert session.wait(30)
    assert MlflowClient().get_run(run_id).data.tags["mlflow.source.name"] == "src/train.py"


def test_wait_for_run_with_the_server_down_gives_the_local_id(use_uri):  # noqa: F811
    use_uri(dead_uri())
    session = TrackingSession.open("down", background=True)
    assert session.wait_for_run(10) == session.run_id and session.run_id.startswith("local-")
    session.close()


EXIT_SCRIPT = """
import concurrent.futures, sys
from tfrepro.tracking.session import TrackingSession

def after(session):  # what signing does: MLflow calls that use a thread pool
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        print("AFTER", pool.submit(lambda: session.run_id).result(), flush=True)

session = TrackingSession.open("exit", background=True)
session.log_metrics({"loss": 1.0}, 1)
session.close(background=True, after=after)
print("MAIN", flush=True)  # the main thread ends here, the close still running
"""


def test_a_background_close_left_running_at_exit_still_has_thread_pools(sqlite_uri, tmp_path):  # noqa: F811
    import os
    import subprocess
    import sys

    environ = dict(os.environ, MLFLOW_TRACKING_URI=sqlite_uri, TFREPRO_SPOOL_DIR=str(tmp_path / "spool"))
    done = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT], env=environ, capture_output=True, text=True, timeout=120, cwd=str(tmp_path)
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.split()
    assert lines[0] == "MAIN" and lines[1] == "AFTER" and not lines[2].startswith("local-"), done.stderr[-2000:]
