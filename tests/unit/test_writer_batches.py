"""plan() and unseen(): records -> log_batch calls within MLflow's limits, and deduplication."""

import pytest

from tfrepro.tracking.backend import history_key
from tfrepro.tracking.upload import MAX_METRICS, plan, unseen

pytestmark = pytest.mark.py38


def test_consecutive_records_of_a_kind_merge_and_split_at_the_limits():
    records = [{"run": {"run_id": "x"}}]
    records += [{"step": s, "ts": 7, "metrics": {"a": 1.0, "b": 2.0}} for s in range(600)]
    records += [{"params": {"p%d" % i: i for i in range(150)}}, {"params": {"p0": "again"}}]
    records += [
        {"tags": {"t": "1"}},
        {"text": "{}", "file": "tfrepro/environment.json"},
        {"end": "FINISHED", "end_time": 9},
    ]
    calls = plan(records)
    kinds = [k for k, _ in calls]
    assert kinds == ["metrics", "metrics", "params", "params", "tags", "text", "end"]
    assert [len(p) for k, p in calls if k == "metrics"] == [MAX_METRICS, 200]
    assert [len(p) for k, p in calls if k == "params"] == [100, 50]
    assert calls[2][1]["p0"] == "again"  # the later value wins inside a merged call
    assert calls[0][1][0] == ("a", 1.0, 7, 0)
    assert calls[-1] == ("end", ("FINISHED", 9))


def test_order_between_kinds_is_kept():
    calls = plan([{"tags": {"a": "1"}}, {"step": 1, "ts": 1, "metrics": {"m": 0.5}}, {"tags": {"a": "2"}}])
    assert [k for k, _ in calls] == ["tags", "metrics", "tags"]


def test_long_values_are_cut_to_mlflow_limits():
    calls = plan([{"params": {"p": "x" * 7000}}, {"tags": {"t": "y" * 9000}}])
    assert len(calls[0][1]["p"]) == 6000 and len(calls[1][1]["t"]) == 5000


def test_unseen_skips_points_the_server_has_and_repeats_within_the_batch():
    history = {"loss": {history_key(1, 100, 0.5)}}
    points = [("loss", 0.5, 100, 1), ("loss", 0.25, 101, 2), ("loss", 0.25, 101, 2), ("acc", 0.9, 100, 1)]
    assert unseen(points, history) == [("loss", 0.25, 101, 2), ("acc", 0.9, 100, 1)]
    assert unseen(points, history) == []  # what was just sent now counts as present


def test_same_step_and_millisecond_with_another_value_is_another_point():
    history = {"loss": {history_key(1, 100, 0.5)}}
    assert unseen([("loss", 0.75, 100, 1)], history) == [("loss", 0.75, 100, 1)]


def test_nan_points_deduplicate_too():
    nan = float("nan")
    history = {"m": {history_key(1, 1, nan)}}
    assert unseen([("m", nan, 1, 1)], history) == []


@pytest.mark.parametrize(
    "status, text, retry",
    [
        (503, "TEMPORARILY_UNAVAILABLE", True),
        (429, "", True),
        # the server's connection pool is exhausted: MLflow answers 400, but the data is fine
        (
            400,
            '{"error_code": "BAD_REQUEST", "message": "QueuePool limit of size 5 overflow 10 reached, '
            'connection timed out, timeout 30.00"}',
            True,
        ),
        (400, '{"error_code": "INVALID_PARAMETER_VALUE", "message": "Param value too long"}', False),
        (404, "RESOURCE_DOES_NOT_EXIST", False),
    ],
)
def test_an_overloaded_database_is_retried_not_rejected(status, text, retry):
    from tfrepro.tracking.backend import retryable_answer

    assert retryable_answer(status, text) is retry
