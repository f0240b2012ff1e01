"""explain(): ranked causes of a divergence, built on compare_runs' rows."""

import dataclasses

from tests.helpers.inspect_envs import DIGEST_B, PACKAGES_B, make_env
from tfrepro.fingerprint.data_record import DataDrift, DataSource
from tfrepro.inspect import explain as E
from tfrepro.tracking.record import RunRecord


def record(env=None, params=None, tags=None, metrics=None):
    env = env or make_env()
    base_tags = {"tfrepro.seed": str(env.tensorflow.seed)} if env.tensorflow.seed is not None else {}
    base_tags["tfrepro.tf.determinism"] = str(bool(env.tensorflow.determinism.get("op_determinism"))).lower()
    base_tags.update(tags or {})
    return RunRecord(
        run_id="r",
        environment=env,
        environment_json={},
        tags=base_tags,
        params=dict({"batch_size": "32", "epochs": "2"}, **(params or {})),
        metrics=metrics or {},
    )


def keys(factors):
    return [f.key for f in factors]


def test_nothing_differs_is_a_finding():
    factors = E.explain(record(metrics={"loss": 0.1}), record(metrics={"loss": 0.2}))
    assert keys(factors) == [E.SAME_ENVIRONMENT]
    assert factors[0].line.startswith("diverged with the same recorded environment")
    assert "--repeat" in factors[0].fix


def test_no_seed_and_determinism_off_comes_first():
    unseeded = make_env(seed=None, determinism={"op_determinism": False})
    original = record(unseeded)
    factors = E.explain(original, record(unseeded))
    assert keys(factors) == ["seed"]
    assert "no seed and op determinism was off" in factors[0].line
    assert "tfrepro.deterministic()" in factors[0].fix and "tfrepro run --seed" in factors[0].fix
    seeded_but_free = record(make_env(determinism={"op_determinism": False}))
    assert "op determinism was off" in E.explain(seeded_but_free, seeded_but_free)[0].line


def test_hardware_and_build_factors_ranked_with_fixes():
    a = record()
    env_b = make_env(
        digest=DIGEST_B,
        packages=PACKAGES_B,
        cuda_build="11.8",
        determinism={"op_determinism": True, "TF_DETERMINISTIC_OPS": "1", "TF_ENABLE_ONEDNN_OPTS": "1"},
    )
    gpu = env_b.gpu
    device = dataclasses.replace(gpu.devices[0], name="NVIDIA A100-SXM4-80GB", compute_capability="8.0")
    env_b = dataclasses.replace(
        env_b, gpu=dataclasses.replace(gpu, devices=(device,) + gpu.devices[1:], count=2, driver_version="535.104.05")
    )
    b = record(env_b, params={"batch_size": "64", "lr": "0.1"})
    factors = E.explain(a, b)
    assert keys(factors) == ["batch_size", "params", "image", "tf_build", "onednn", "gpu_model", "gpu_count", "driver"]
    by_key = {f.key: f for f in factors}
    assert by_key["batch_size"].line == "batch size differs: batch_size 32 -> 64"
    assert by_key["params"].line == "params differ: lr unset -> 0.1"
    assert "NVIDIA A100-SXM4-80GB" in by_key["gpu_model"].line and "no bitwise guarantee" in by_key["gpu_model"].line
    assert "compute_capability 9.0 -> 8.0" in by_key["gpu_model"].line
    assert "TF_ENABLE_ONEDNN_OPTS unset -> 1" in by_key["onednn"].line
    assert "cuda_build 11.7 -> 11.8" in by_key["tf_build"].line
    assert by_key["driver"].line == "GPU driver differs: driver 580.159.04 -> 535.104.05"
    assert all(f.fix for f in factors)


def test_data_drift_and_untracked_files():
    env = make_env()
    env = dataclasses.replace(env, git=dataclasses.replace(env.git, untracked=("notes.txt", "data/x.npy")))
    drift = [DataDrift("mount", "/data/x.npy", "content changed"), DataDrift("mount", "/data/y", "missing")]
    factors = E.explain(record(env), record(env), data_drift=drift)
    assert keys(factors) == ["data", "untracked"]
    assert factors[0].line == "the data changed since the original ran: /data/x.npy content changed, /data/y missing"
    assert factors[1].line.startswith(
        "2 untracked file(s) were visible to the original and are not replayed: notes.txt"
    )
    # once untracked inputs are fingerprinted (issue 15) they are judged as data, not as a warning
    sources = [DataSource(label="untracked", path="data/x.npy", kind="file")]
    assert keys(E.explain(record(env), record(env), data_sources=sources)) == [E.SAME_ENVIRONMENT]


def test_shares_diffs_ranking_rows():
    a, b = record(), record(make_env(commit="9" * 40, hostname="elsewhere"))
    from tfrepro.inspect import compare

    rows = compare.compare_runs(a, b)
    factors = E.explain(a, b, diffs=rows)
    assert keys(factors) == ["code"], "a low-rank row (hostname) explains nothing"
    assert factors == E.explain(a, b)


def test_render_and_tag_detail():
    factors = E.explain(record(make_env(seed=None)), record(make_env(seed=None)))
    text = E.render(factors)
    assert text.splitlines()[0].startswith("  1. the original set no seed")
    assert text.splitlines()[1].startswith("     fix: call tfrepro.deterministic()")
    assert E.detail(factors).startswith("1. the original set no seed") and "(fix: " in E.detail(factors)
    assert E.as_dicts(factors)[0]["key"] == "seed"


def test_fit_inputs_and_replicas_compared_where_both_runs_tagged_them():
    a = record(tags={"tfrepro.input.training.digest": "sha256:" + "a" * 64, "tfrepro.distribute.replicas": "2"})
    b = record(tags={"tfrepro.input.training.digest": "sha256:" + "b" * 64, "tfrepro.distribute.replicas": "1"})
    factors = E.explain(a, b)
    assert keys(factors) == ["inputs", "gpu_count"]
    assert factors[0].line.startswith("the arrays or tf.data pipeline fit() was given differ: training sha256:aaaa")
    assert factors[1].line.startswith("replica count differs: 2 -> 1")
    assert keys(E.explain(a, record())) == [E.SAME_ENVIRONMENT], "an older run without the tags is not a difference"
