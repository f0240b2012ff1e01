"""verify.py: the replay verdict from two metric histories and model hashes."""

import math

import pytest

from tfrepro.replay import noise
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


# -- N replays against run-to-run noise ------------------------------------------------


def test_t_quantiles_match_the_tables():
    # two-sided 95%: df 1, 2, 4, 9, 30 and the normal limit
    for df, expected in ((1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262), (30, 2.042), (10**6, 1.960)):
        assert abs(noise.t_quantile(0.975, df) - expected) < 1e-3, df
    assert abs(noise.t_cdf(0.0, 5) - 0.5) < 1e-12
    assert abs(noise.t_cdf(-2.571, 5) - 0.025) < 1e-4
    assert abs(noise.t_quantile(0.995, 4) - 4.604) < 1e-3


def noisy(loss, mae=0.25):
    return {"loss": [(0, 0.9), (1, loss)], "mae": [(0, 0.5), (1, mae)], "epoch_time": [(0, 3.0)]}


REPLAYS = [noisy(0.101), noisy(0.098), noisy(0.103), noisy(0.099), noisy(0.100)]


def test_identical_needs_every_replay_bit_equal():
    verdict = noise.judge_repeats(noisy(0.1), [noisy(0.1)] * 3, "h", ["h"] * 3)
    assert (verdict.verdict, verdict.ok, verdict.replays) == (V.IDENTICAL, True, 3)
    assert noise.judge_repeats(noisy(0.1), [noisy(0.1)] * 3, "h", ["h", "h", "x"]).verdict != V.IDENTICAL


def test_within_noise_states_the_interval():
    verdict = noise.judge_repeats(noisy(0.1005), REPLAYS, "h0", ["h%d" % i for i in range(5)])
    assert verdict.verdict == noise.WITHIN_NOISE and verdict.ok
    loss = {s.metric: s for s in verdict.spreads}["loss"]
    mean, sd = 0.1002, math.sqrt(sum((v - 0.1002) ** 2 for v in (0.101, 0.098, 0.103, 0.099, 0.100)) / 4)
    half = noise.t_quantile(1 - 0.01 / 4, 4) * sd * math.sqrt(1.2)  # 99% familywise over 2 metrics
    assert abs(noise.t_quantile(1 - 0.01 / 4, 4) - 5.598) < 1e-3
    assert abs(loss.mean - mean) < 1e-12 and abs(loss.sd - sd) < 1e-12
    assert abs(loss.low - (mean - half)) < 1e-5 and abs(loss.high - (mean + half)) < 1e-5
    assert [s.metric for s in verdict.spreads] == ["loss", "mae"], "timing metrics are not judged"
    assert "2 final metric(s) inside their 99% prediction intervals from 5 replays" in verdict.detail


def test_tampered_original_diverges_naming_metric_value_interval_and_z():
    verdict = noise.judge_repeats(noisy(1.0), REPLAYS)  # the final loss x10
    assert verdict.verdict == V.DIVERGED and not verdict.ok
    assert verdict.detail.startswith("loss: 1 (original) outside [")
    loss = verdict.spreads[0]
    assert loss.z > 100 and "z=+%.2f" % loss.z in verdict.detail and "from 5 replays" in verdict.detail


def test_spread_is_at_least_the_observed_range_and_the_tolerance():
    s = noise.spread("x", 0.5, [0.0, 0.0, 0.0, 10.0])  # one outlier replay
    assert s.low <= 0.0 and s.high >= 10.0
    same = noise.spread("x", 1.0 + 1e-7, [1.0, 1.0, 1.0])  # replays identical to each other
    assert same.sd == 0 and same.within and same.z == math.inf
    assert not noise.spread("x", 1.01, [1.0, 1.0, 1.0]).within


def test_nan_only_matches_nan():
    assert noise.spread("x", math.nan, [math.nan, math.nan]).within
    assert not noise.spread("x", 0.1, [math.nan, 0.1]).within


def test_missing_final_metric_diverges():
    replays = [noisy(0.1), {"loss": [(1, 0.1)]}]
    assert noise.judge_repeats(noisy(0.1), replays).detail == "final metric mae is missing from replay 2"
    assert noise.judge_repeats({}, [{}, {}]).verdict == V.DIVERGED


def test_fewer_than_two_replays_is_a_plain_compare():
    with pytest.raises(ValueError):
        noise.judge_repeats(noisy(0.1), [noisy(0.1)])


def test_compare_gives_one_row_per_metric():
    original = {"loss": [(0, 1.0), (1, 0.5)], "acc": [(0, 0.5)], "epoch_time": [(0, 3.0)], "gone": [(0, 1.0)]}
    replay = {"loss": [(0, 1.0), (1, 0.5 + 1e-9)], "acc": [(0, 0.7)], "epoch_time": [(0, 9.0)]}
    rows = {row.metric: row for row in V.compare(original, replay, tolerance=1e-6).metrics}
    assert set(rows) == {"loss", "acc", "gone"}  # wall-clock metrics are not compared
    assert (rows["loss"].status, rows["loss"].steps, rows["loss"].replay) == (V.WITHIN_TOLERANCE, 2, 0.5 + 1e-9)
    assert rows["acc"].status == V.DIVERGED and abs(rows["acc"].max_difference - 0.2) < 1e-12
    assert (rows["gone"].status, rows["gone"].replay, rows["gone"].steps) == (V.DIVERGED, None, 0)
    assert rows["gone"].to_dict()["replay"] is None
    nan = V.compare({"x": [(0, float("nan"))]}, {"x": [(0, float("nan"))]}).metrics[0]
    assert nan.status == V.IDENTICAL and nan.to_dict()["original"] == "nan"


def test_a_spread_gives_its_statistics_and_a_json_row():
    spread = noise.spread("loss", 0.5, [0.49, 0.5, 0.51])
    assert [name for name, _ in spread.statistics()] == ["original", "mean", "sd", "low", "high", "z"]
    row = spread.to_dict()
    assert row["metric"] == "loss" and row["within"] is True and row["original"] == 0.5
    diverged = noise.spread("loss", 0.5, [math.nan, 0.5]).to_dict()
    assert diverged["mean"] == "nan" and diverged["within"] is False
