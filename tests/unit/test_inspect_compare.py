"""compare(): pure, ranked differences between two environment records."""

import dataclasses

from tests.helpers.inspect_envs import DIGEST_A, DIGEST_B, PACKAGES_B, make_env
from tfrepro.environment import Environment, TensorflowInfo
from tfrepro.inspect import compare as cmp


def _by_field(diffs):
    return {(d.group, d.field): d for d in diffs}


def test_equal_environments_have_no_differences():
    assert cmp.compare(make_env(), make_env()) == []
    assert not cmp.differs([])


def test_image_digest_and_packages_are_ranked():
    diffs = _by_field(cmp.compare(make_env(), make_env(digest=DIGEST_B, packages=PACKAGES_B)))
    digest = diffs[("image", "digest")]
    assert (digest.a, digest.b, digest.rank, digest.kind) == (DIGEST_A, DIGEST_B, "high", "changed")
    numpy, pandas, scipy = diffs[("packages", "numpy")], diffs[("packages", "pandas")], diffs[("packages", "scipy")]
    assert (numpy.a, numpy.b, numpy.kind, numpy.rank) == ("1.22.4", "1.23.5", "changed", "medium")
    assert (pandas.a, pandas.b, pandas.kind) == (None, "1.5.3", "added")
    assert (scipy.a, scipy.b, scipy.kind) == ("1.8.1", None, "removed")
    assert set(diffs) == {("image", "digest"), ("packages", "numpy"), ("packages", "pandas"), ("packages", "scipy")}


def test_ranks_high_medium_low():
    a = make_env()
    b = make_env(commit="9" * 40, hostname="other", version="2.9.3", cuda_build="11.2", seed=7)
    b = dataclasses.replace(b, gpu=dataclasses.replace(b.gpu, driver_version="535.104.05"))
    diffs = cmp.compare(a, b)
    ranks = {(d.group, d.field): d.rank for d in diffs}
    assert ranks[("code", "commit")] == "high"
    assert ranks[("tensorflow", "version")] == "high"
    assert ranks[("tensorflow", "cuda_build")] == "high"
    assert ranks[("determinism", "seed")] == "high"
    assert ranks[("gpu", "driver")] == "medium"
    assert ranks[("system", "hostname")] == "low"
    order = [cmp.RANKS.index(d.rank) for d in diffs]
    assert order == sorted(order), "highest rank first"


def test_determinism_flags_and_gpu_model():
    a = make_env()
    b = make_env(determinism={"op_determinism": False})
    b = dataclasses.replace(
        b,
        gpu=dataclasses.replace(b.gpu, devices=(dataclasses.replace(b.gpu.devices[0], name="NVIDIA A100-SXM4-80GB"),)),
    )
    diffs = _by_field(cmp.compare(a, b))
    assert diffs[("determinism", "op_determinism")].a == "true"
    assert diffs[("determinism", "op_determinism")].b == "false"
    assert diffs[("determinism", "TF_DETERMINISTIC_OPS")].kind == "removed"
    assert diffs[("gpu", "model")].rank == "high"
    assert diffs[("gpu", "model")].b == "NVIDIA A100-SXM4-80GB"


def test_missing_sections_compare_as_none():
    bare = Environment(tensorflow=TensorflowInfo(version="2.9.1"))
    diffs = _by_field(cmp.compare(make_env(), bare))
    assert diffs[("image", "digest")].b is None
    assert diffs[("gpu", "count")].b is None
    assert ("tensorflow", "version") not in diffs


def test_include_equal_lists_every_field():
    every = cmp.compare(make_env(), make_env(), include_equal=True)
    assert every and all(d.equal for d in every)
    assert ("image", "digest") in _by_field(every)
    assert ("packages", "numpy") in _by_field(every)


def test_round_trip_through_json_is_equal():
    env = make_env()
    assert cmp.compare(env, Environment.from_json(env.to_json())) == []


def test_split_package_normalises_names():
    assert cmp.split_package("PyYAML==6.0") == ("pyyaml", "6.0")
    assert cmp.split_package("typing_extensions==4.3.0") == ("typing-extensions", "4.3.0")
    assert cmp.split_package("zope.interface==5.4") == ("zope-interface", "5.4")
    assert cmp.split_package("weird") == ("weird", "")


def _Record(env, params, metrics, launch=None):
    from tfrepro.tracking.record import RunRecord

    return RunRecord("r", env, params=params, metrics=metrics, launch=launch)


def test_compare_runs_adds_params_launch_and_metrics():
    a = _Record(make_env(), {"lr": "0.001"}, {"loss": 0.5}, {"image": "x", "gpus": "all"})
    b = _Record(make_env(), {"lr": "0.002"}, {"loss": 0.4}, {"image": "x", "gpus": "0"})
    diffs = _by_field(cmp.compare_runs(a, b))
    assert diffs[("params", "lr")].rank == "high"
    assert diffs[("launch", "gpus")].rank == "medium"
    assert diffs[("metrics", "loss")].rank == "result"
    assert cmp.differs(list(diffs.values()))


def test_metrics_alone_do_not_count_as_differing():
    a = _Record(make_env(), {}, {"loss": 0.5})
    b = _Record(make_env(), {}, {"loss": 0.4})
    diffs = cmp.compare_runs(a, b)
    assert [d.field for d in diffs] == ["loss"]
    assert not cmp.differs(diffs)
    assert cmp.counts(diffs) == {"high": 0, "medium": 0, "low": 0, "result": 1}


def test_difference_to_dict_is_stable():
    d = cmp.Difference("image", "digest", "x", None, "high")
    assert d.to_dict() == {
        "group": "image",
        "field": "digest",
        "a": "x",
        "b": None,
        "rank": "high",
        "kind": "removed",
        "equal": False,
    }
