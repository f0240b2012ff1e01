"""verify.py: the replay verdict from two metric histories and model hashes."""
import math

from tfrepro.replay import verify as V

ORIGINAL = {"loss": [(0, 0.5), (1, 0.25)], "accuracy": [(0, 0.75), (1, 0.875)]}


def copy(history):
    return {k: list(v) for k, v in history.items()}


def test_identical_bit_for_bit():
    verdict = V.compare(ORIGINAL, copy(ORIGINAL), "h1", "h1")
    assert verdict.verdict == V.IDENTICAL and verdict.ok
    assert verdict.compared == 4
    assert "model hash" in verdict.detail


def test_within_tolerance_is_relative_to_max_1_and_a():
    replay = copy(ORIGINAL)
    replay["loss"][1] = (1, 0.25 + 5e-7)
    verdict = V.compare(ORIGINAL, replay)
    assert verdict.verdict == V.WITHIN_TOLERANCE and verdict.ok
    big = {"x": [(0, 1e6)]}
    assert V.compare(big, {"x": [(0, 1e6 + 0.5)]}).verdict == V.WITHIN_TOLERANCE
    assert V.compare(big, {"x": [(0, 1e6 + 2)]}).verdict == V.DIVERGED


def test_zero_tolerance_means_only_identical_passes():
    replay = copy(ORIGINAL)
    replay["loss"][1] = (1, 0.25 + 1e-12)
    verdict = V.compare(ORIGINAL, replay, tolerance=0)
    assert verdict.verdict == V.DIVERGED and not verdict.ok


def test_diverged_names_the_first_metric_and_step():
    replay = copy(ORIGINAL)
    replay["loss"][1] = (1, 0.3)
    replay["accuracy"][1] = (1, 0.1)
    verdict = V.compare(ORIGINAL, replay)
    assert verdict.verdict == V.DIVERGED
    assert verdict.detail.startswith("accuracy step 1:")  # metrics in name order, then steps


def test_missing_metric_or_step_diverges():
    replay = copy(ORIGINAL)
    del replay["accuracy"]
    assert "accuracy is missing" in V.compare(ORIGINAL, replay).detail
    replay = copy(ORIGINAL)
    replay["loss"] = replay["loss"][:1]
    assert V.compare(ORIGINAL, replay).detail == "loss step 1: missing from the replay"
    replay = copy(ORIGINAL)
    replay["extra"] = [(0, 1.0)]
    assert V.compare(ORIGINAL, replay).verdict == V.DIVERGED


def test_model_hash_mismatch():
    assert V.compare(ORIGINAL, copy(ORIGINAL), "h1", "h2", tolerance=0).verdict == V.DIVERGED
    assert V.compare(ORIGINAL, copy(ORIGINAL), "h1", None).verdict == V.DIVERGED
    loose = V.compare(ORIGINAL, copy(ORIGINAL), "h1", "h2", tolerance=1e-3)
    assert loose.verdict == V.WITHIN_TOLERANCE and "hash differs" in loose.detail


def test_timing_and_system_metrics_are_ignored():
    original = dict(ORIGINAL, epoch_time=[(0, 1.5)], **{"system/cpu_utilization_percentage": [(0, 50.0)]})
    replay = dict(copy(ORIGINAL), epoch_time=[(0, 2.5)], **{"system/cpu_utilization_percentage": [(0, 9.0)]})
    assert V.compare(original, replay).verdict == V.IDENTICAL


def test_nan_equals_nan():
    assert V.compare({"loss": [(0, math.nan)]}, {"loss": [(0, math.nan)]}).verdict == V.IDENTICAL
    assert V.compare({"loss": [(0, math.nan)]}, {"loss": [(0, 1.0)]}, tolerance=1).verdict == V.DIVERGED


def test_nothing_to_compare_is_not_identical():
    assert V.compare({}, {}).verdict == V.DIVERGED


def test_repeated_steps_compare_in_order():
    original = {"loss": [(0, 1.0), (0, 2.0)]}
    assert V.compare(original, {"loss": [(0, 1.0), (0, 2.0)]}).verdict == V.IDENTICAL
    assert V.compare(original, {"loss": [(0, 2.0), (0, 1.0)]}, tolerance=0).verdict == V.DIVERGED
