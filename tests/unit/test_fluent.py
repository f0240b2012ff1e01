"""tracking/fluent.py: which MLflow calls are routed, what reaches the writer, and what is not.

No server: MLflow's file store in tmp_path stands in for a run MLflow knows, and the
router's writer is a list (what the session would spool, in order).
"""

import threading

import pytest

from tfrepro import schema
from tfrepro.tracking import fluent, fluent_hooks

pytestmark = pytest.mark.py38


class ListWriter:
    def __init__(self):
        self.items = []
        self.online = True

        self.closed = False

    def put(self, item):
        self.items.append(item)

    def close(self, timeout):
        self.closed = True
        return True


class ListSession:
    def __init__(self, writer):
        self.writer, self.flushes, self.errors, self.online = writer, [], [], True

    def flush(self, timeout):
        self.flushes.append(timeout)


@pytest.fixture
def mlflow_run(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv(schema.ENV_FLUENT, raising=False)
    monkeypatch.delenv("MLFLOW_ENABLE_ASYNC_LOGGING", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses it otherwise
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    run = mlflow.start_run()
    yield mlflow, run.info.run_id
    fluent.disable()
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)  # the next test's MLFLOW_TRACKING_URI must count again


@pytest.fixture
def routed(mlflow_run, monkeypatch):
    """enable() on the active run; the router's session a list."""
    writer = ListWriter()

    def fake_open(router):
        import mlflow

        router._writer, router._session = writer, ListSession(writer)
        router.tracking_uri = mlflow.get_tracking_uri().rstrip("/")
        return True

    monkeypatch.setattr(fluent.Router, "_open", fake_open)
    mlflow, run_id = mlflow_run
    assert fluent.enable(run_id)
    return mlflow, run_id, writer


def history(mlflow, run_id, key):
    return [(m.step, m.value) for m in mlflow.MlflowClient().get_metric_history(run_id, key)]


def test_off_switch_no_run_id_or_a_local_id_leave_mlflow_untouched(mlflow_run, monkeypatch):
    mlflow, run_id = mlflow_run
    original = mlflow.log_metric
    monkeypatch.setenv(schema.ENV_FLUENT, "0")
    assert not fluent.enable(run_id)
    monkeypatch.delenv(schema.ENV_FLUENT)
    assert not fluent.enable()  # no MLFLOW_RUN_ID
    assert not fluent.enable("local-abc")
    assert mlflow.log_metric is original and not fluent_hooks.installed()
    mlflow.log_metric("loss", 1.0, step=1)
    assert history(mlflow, run_id, "loss") == [(1, 1.0)]


def test_enable_uses_mlflow_run_id(mlflow_run, monkeypatch):
    mlflow, run_id = mlflow_run
    monkeypatch.setenv("MLFLOW_RUN_ID", run_id)
    assert fluent.enable()
    assert fluent.current().run_id == run_id


def test_fluent_calls_reach_the_writer_in_order_with_call_time_timestamps(routed):
    mlflow, run_id, writer = routed
    import time

    before = int(time.time() * 1000)
    mlflow.log_metric("loss", 0.5, step=3)
    mlflow.log_metric("acc", 1, 4, timestamp=1234)  # step positional, as in MLflow's signature
    mlflow.log_metrics({"a": 1.0, "b": 2.0}, step=5)
    assert mlflow.log_param("lr", 0.1) == 0.1
    mlflow.log_params({"bs": 32})
    mlflow.set_tag("t", "x")
    mlflow.set_tags({"u": 1})
    after = int(time.time() * 1000)
    items = writer.items
    assert items[0][0] == 3 and items[0][2] == {"loss": 0.5} and before <= items[0][1] <= after
    assert items[1] == (4, 1234, {"acc": 1.0}) and type(items[1][2]["acc"]) is float
    assert items[2][0] == 5 and items[2][2] == {"a": 1.0, "b": 2.0}
    assert items[3:] == [
        (None, {"params": {"lr": "0.1"}}),
        (None, {"params": {"bs": "32"}}),
        (None, {"tags": {"t": "x"}}),
        (None, {"tags": {"u": "1"}}),
    ]
    assert history(mlflow, run_id, "loss") == []  # not sent by MLflow itself


def test_client_calls_on_the_run_are_routed_and_batches_keep_their_points(routed):
    mlflow, run_id, writer = routed
    from mlflow.entities import Metric, Param, RunTag

    client = mlflow.MlflowClient()
    client.log_metric(run_id, "loss", 2.0, timestamp=10, step=1)
    metrics = [Metric("m", 1.0, 20, 1), Metric("n", 2.0, 20, 1), Metric("m", 3.0, 21, 2), Metric("m", 4.0, 21, 2)]
    client.log_batch(run_id, metrics=metrics, params=[Param("p", "1")], tags=[RunTag("k", "v")])
    assert client.log_param(run_id, "q", 7) == 7
    client.set_tag(run_id, "z", "1")
    assert writer.items == [
        (1, 10, {"loss": 2.0}),
        (None, {"params": {"p": "1"}}),
        (1, 20, {"m": 1.0, "n": 2.0}),
        (2, 21, {"m": 3.0}),
        (2, 21, {"m": 4.0}),  # the same key twice at one step: two points, as MLflow keeps them
        (None, {"tags": {"k": "v"}}),
        (None, {"params": {"q": "7"}}),
        (None, {"tags": {"z": "1"}}),
    ]


def test_another_run_and_tfrepro_threads_pass_through(routed):
    mlflow, run_id, writer = routed
    client = mlflow.MlflowClient()
    other = client.create_run(mlflow.active_run().info.experiment_id).info.run_id
    client.log_metric(other, "loss", 1.0, step=1)
    mlflow.log_metric("loss", 2.0, step=2, run_id=other)
    assert history(mlflow, other, "loss") == [(1, 1.0), (2, 2.0)]

    thread = threading.Thread(target=lambda: client.log_metric(run_id, "own", 3.0, step=3), name="tfrepro-uploader")
    thread.start()
    thread.join()
    assert history(mlflow, run_id, "own") == [(3, 3.0)]  # the writer's own upload, not looped back
    assert writer.items == []


def test_invalid_calls_raise_what_plain_mlflow_raises(routed):
    mlflow, run_id, writer = routed
    from mlflow.exceptions import MlflowException

    calls = [
        lambda: mlflow.log_metric("bad key!!", 1.0),
        lambda: mlflow.log_metric("x", "not a number"),
        lambda: mlflow.log_param("k" * 300, 1),
        lambda: mlflow.set_tag("bad key!!", 1),
        lambda: mlflow.MlflowClient().log_metric(run_id, "bad key!!", 1.0),
    ]
    routed_errors = []
    for call in calls:
        with pytest.raises(Exception) as routed_error:
            call()
        routed_errors.append(type(routed_error.value))
    assert writer.items == []
    fluent.disable()
    for call, expected in zip(calls, routed_errors):
        with pytest.raises(Exception) as plain_error:
            call()
        assert type(plain_error.value) is expected
    assert issubclass(routed_errors[0], MlflowException)


def test_a_changed_param_is_recorded_not_sent_and_reported_in_one_line(routed, caplog):
    mlflow, run_id, writer = routed
    mlflow.log_param("lr", 0.1)
    mlflow.log_param("lr", 0.1)  # the same value again: nothing to send
    mlflow.log_params({"lr": 0.2, "bs": 8})
    assert writer.items == [(None, {"params": {"lr": "0.1"}}), (None, {"params": {"bs": "8"}})]
    with caplog.at_level("WARNING", logger="tfrepro"):
        mlflow.end_run()
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "'lr'" in lines[0] and "'0.1'" in lines[0] and "'0.2'" in lines[0] and run_id in lines[0]


def test_end_run_spools_the_end_after_the_points_then_calls_pass_through(routed):
    mlflow, run_id, writer = routed
    mlflow.log_metric("loss", 1.0, step=1)
    mlflow.end_run("KILLED")
    assert writer.closed and fluent.current() is None
    assert writer.items[-1][1]["end"] == "KILLED" and writer.items[-1][1]["end_time"] > 0
    assert mlflow.MlflowClient().get_run(run_id).info.status == "RUNNING"  # the writer ends it, in order
    mlflow.MlflowClient().log_metric(run_id, "late", 1.0, step=9)
    assert history(mlflow, run_id, "late") == [(9, 1.0)]


def test_end_run_with_nothing_routed_is_mlflows_own(routed):
    mlflow, run_id, writer = routed
    mlflow.end_run()
    assert writer.items == [] and mlflow.MlflowClient().get_run(run_id).info.status == "FINISHED"


def test_async_calls_return_operations_whose_wait_flushes(routed, monkeypatch):
    mlflow, run_id, writer = routed
    from mlflow.utils.async_logging.run_operations import RunOperations

    operations = mlflow.log_metric("loss", 1.0, step=1, synchronous=False)
    assert isinstance(operations, RunOperations)
    operations.wait()
    assert fluent.current()._session.flushes == [10.0]
    monkeypatch.setenv("MLFLOW_ENABLE_ASYNC_LOGGING", "true")
    assert isinstance(mlflow.log_params({"a": 1}), RunOperations)
    assert isinstance(mlflow.MlflowClient().log_metric(run_id, "x", 1.0), RunOperations)
    assert len(writer.items) == 3
    mlflow.flush_async_logging()  # MLflow's own queue, then the session's
    assert fluent.current()._session.flushes == [10.0, 10.0]


def test_the_loops_repeated_call_takes_the_short_path_with_the_same_outcome(routed, monkeypatch):
    """The second `log_metric("loss", x, step=i)` on the same run skips the checks the first
    passed; what changes their outcome (the async switch, another thread, a LoggedModel linked
    to the run, the run's end) still takes the full checks."""
    mlflow, run_id, writer = routed
    from mlflow.utils.async_logging.run_operations import RunOperations

    assert mlflow.log_metric("loss", 0.5, step=1) is None
    assert fluent_hooks._last_taken[1] is mlflow.active_run()
    assert mlflow.log_metric("loss", 0.25, step=2) is None
    assert [(i[0], i[2]) for i in writer.items] == [(1, {"loss": 0.5}), (2, {"loss": 0.25})]
    monkeypatch.setenv("MLFLOW_ENABLE_ASYNC_LOGGING", "true")
    assert isinstance(mlflow.log_metric("loss", 0.125, step=3), RunOperations)
    monkeypatch.delenv("MLFLOW_ENABLE_ASYNC_LOGGING")

    seen = []  # another thread (MLflow 2.17 shares one active-run stack): the full checks
    thread = threading.Thread(target=lambda: seen.append(fluent_hooks._same_run_as_last()))
    thread.start()
    thread.join()
    assert seen == [None]
    outputs = getattr(mlflow.active_run(), "outputs", None)
    if outputs is not None and hasattr(outputs, "model_outputs"):  # MLflow 3: log_model links it
        outputs.model_outputs.append(object())
        assert fluent_hooks._same_run_as_last() is None
        outputs.model_outputs.pop()
    assert fluent_hooks._same_run_as_last() is fluent.current()
    mlflow.end_run()
    assert fluent_hooks._same_run_as_last() is None
    mlflow.log_metric("after", 1.0, step=4)  # MLflow's own: a new run, nothing routed
    assert len(writer.items) == 4 and writer.items[-1][0] is None  # the end, spooled


def test_disable_restores_mlflow(routed):
    mlflow, run_id, writer = routed
    from mlflow.tracking._tracking_service.client import TrackingServiceClient

    fluent.disable()
    assert not getattr(mlflow.log_metric, fluent_hooks.MARK, False)
    assert not any(
        getattr(getattr(TrackingServiceClient, n), fluent_hooks.MARK, False) for n in fluent_hooks.CLIENT_NAMES
    )
    mlflow.log_metric("loss", 1.0, step=1)
    assert history(mlflow, run_id, "loss") == [(1, 1.0)] and writer.items == []


def test_at_exit_ends_an_active_run_through_the_spool_and_only_flushes_otherwise(routed):
    mlflow, run_id, writer = routed
    mlflow.log_metric("loss", 1.0, step=1)
    fluent.current()._at_exit()
    assert writer.items[-1][1]["end"] == "FINISHED" and mlflow.active_run() is None

    client = mlflow.MlflowClient()  # a run only MlflowClient logs to: not MLflow's to end at exit
    other = client.create_run(client.get_run(run_id).info.experiment_id).info.run_id
    fluent.enable(other)
    client.log_metric(other, "loss", 2.0, step=2)
    router = fluent.current()
    router._at_exit()
    assert writer.closed and writer.items[-1][2] == {"loss": 2.0}
    assert client.get_run(other).info.status == "RUNNING"


def test_report_line_is_one_line_and_bounded():
    line = fluent.report_line("r1", ["a\nb"] * 8)
    assert "\n" not in line and line.startswith("8 of the script's MLflow calls on run r1") and "(and 3 more)" in line


def test_a_session_that_cannot_open_leaves_the_calls_to_mlflow(mlflow_run, monkeypatch):
    mlflow, run_id = mlflow_run

    def failing_open(router):
        router.ended = True
        return False

    monkeypatch.setattr(fluent.Router, "_open", failing_open)
    assert fluent.enable(run_id)
    mlflow.log_metric("loss", 1.0, step=1)
    assert history(mlflow, run_id, "loss") == [(1, 1.0)] and fluent.current() is None


def test_with_the_server_down_everything_is_spooled_in_order_for_sync(tmp_path, monkeypatch, caplog):
    """The real session: a writer whose uploads fail, a spool file left for `tfrepro sync`."""
    import socket

    import mlflow

    from tfrepro.tracking import spool

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv(schema.ENV_FLUENT, raising=False)
    monkeypatch.setattr(mlflow.tracking._tracking_service.utils, "_tracking_uri", None, raising=False)
    mlflow.set_tracking_uri("http://127.0.0.1:%d" % port)
    try:
        assert fluent.enable("0123456789abcdef", spool_dir=str(tmp_path))
        client = mlflow.MlflowClient()
        for step in range(100):
            client.log_metric("0123456789abcdef", "loss", 1.0 / (step + 1), step=step)
        client.log_param("0123456789abcdef", "lr", 0.1)
        with caplog.at_level("WARNING", logger="tfrepro"):
            client.set_terminated("0123456789abcdef", "FAILED")
    finally:
        fluent.disable()
    assert any("tfrepro sync" in r.getMessage() for r in caplog.records)
    [path] = spool.pending_files(str(tmp_path))
    records = list(spool.iter_records(path))
    assert records[0]["run"]["run_id"] == "0123456789abcdef"
    assert [r["step"] for r in records if "metrics" in r] == list(range(100))
    assert records[-2] == {"params": {"lr": "0.1"}} and records[-1]["end"] == "FAILED"


def test_enable_before_mlflow_is_imported_imports_nothing_and_wraps_at_import(tmp_path):
    import os
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from tfrepro.tracking import fluent\n"
        "assert fluent.enable('0123456789abcdef')\n"
        "assert 'mlflow' not in sys.modules\n"
        "import mlflow\n"
        "print(getattr(mlflow.log_metric, '__tfrepro_fluent__', False))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), TFREPRO_SPOOL_DIR=str(tmp_path))
    env.pop(schema.ENV_FLUENT, None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
