"""Text output: fits 100 columns, no colour unless asked."""

import dataclasses
import json

from tests.helpers.inspect_envs import DIGEST_A, DIGEST_B, H200_PROBE, PACKAGES_B, make_env
from tfrepro.inspect import render
from tfrepro.inspect.checks import Check
from tfrepro.inspect.compare import compare
from tfrepro.tracking.record import RunRecord

ANSI = "\x1b["


def _record(env, **kw):
    fields = dict(
        run_id="a" * 32,
        environment=env,
        environment_json=env.to_dict(),
        run_name="baseline",
        experiment_id="1",
        status="FINISHED",
        start_time=1764193200000,
        tracking_uri="http://127.0.0.1:5000",
        params={"lr": "0.001", "epochs": "2"},
        metrics={"loss": 0.3412},
        launch={"image": "nvcr.io/nvidia/tensorflow:22.07-tf2-py3", "gpus": "all"},
    )
    fields.update(kw)
    return RunRecord(**fields)


def _fits(text):
    too_long = [line for line in text.splitlines() if len(line) > render.WIDTH]
    assert not too_long, too_long


def test_show_groups_and_width():
    env = make_env()
    env = dataclasses.replace(
        env, git=dataclasses.replace(env.git, dirty=True, patch_sha256="e" * 64, root="/very/long/" + "x" * 120)
    )
    text = render.render_show(_record(env), show_packages=True)
    _fits(text)
    for title in (
        "Run",
        "Image",
        "Code",
        "GPU",
        "TensorFlow",
        "Determinism",
        "Python",
        "Launch",
        "Params",
        "Final metrics",
    ):
        assert "\n%s\n" % title in "\n" + text, title
    assert DIGEST_A in text  # a digest is never cut in show
    assert "NVIDIA H200, 140.4 GiB, cc 9.0, MIG disabled" in text
    assert "6 installed" in text and "numpy" in text
    assert ANSI not in text


def test_show_without_packages_lists_only_the_count():
    text = render.render_show(_record(make_env()))
    assert "6 installed" in text and "absl-py" not in text


def test_diff_width_and_sections():
    diffs = compare(make_env(), make_env(digest=DIGEST_B, packages=PACKAGES_B, hostname="other"))
    text = render.render_diff(diffs, "run a", "run b")
    _fits(text)
    assert "4 differences" not in text and "5 differences (1 high, 3 medium, 1 low)" in text
    assert "numpy" in text and "1.22.4 -> 1.23.5" in text
    assert "added 1.5.3" in text and "removed 1.8.1" in text
    assert "sha256:a1a1" in text and "sha256:b2b2" in text  # the distinguishing head stays
    assert text.index("HIGH") < text.index("MEDIUM") < text.index("LOW")
    assert "EQUAL" not in text


def test_diff_all_shows_equal_fields_and_collapses_packages():
    diffs = compare(make_env(), make_env(), include_equal=True)
    text = render.render_diff(diffs, "run a", "run a", show_all=True)
    _fits(text)
    assert "no differences" in text and "EQUAL" in text
    assert "6 packages with the same version" in text


def test_colour_only_when_asked():
    diffs = compare(make_env(), make_env(digest=DIGEST_B))
    assert ANSI in render.render_diff(diffs, "a", "b", color=True)
    assert ANSI not in render.render_diff(diffs, "a", "b", color=False)
    checks = [Check("git", "warn", "dirty " * 40, "commit")]
    coloured, plain = render.render_checks(checks, color=True), render.render_checks(checks)
    assert ANSI in coloured and ANSI not in plain
    _fits(plain)
    assert plain.startswith("WARN  git") and "fix: commit" in plain


def test_shorten_keeps_the_part_that_differs():
    assert render.shorten("abc", 10) == "abc"
    assert render.shorten("x" * 50, 10) == "xxxxxxx..."
    a, b = "p" * 40 + "A", "p" * 40 + "B"
    assert render.shorten(a, 20, b).endswith("A")


def test_show_lists_data_fingerprints():
    from tfrepro.fingerprint.data_record import DataSource

    source = DataSource(label="mount", path="/srv/data", target="/data", files=3, bytes=4200, hash="sha256:" + "d" * 64)
    text = render.render_show(_record(make_env(), data=(source,)))
    _fits(text)
    assert "\nData\n" in text
    assert "mount" in text and "/srv/data -> /data: 3 files, 4.2 KB, sha256:dddddddddddd (metadata)" in text
    assert "\nData\n" not in render.render_show(_record(make_env()))


def test_nvidia_require_cuda_is_summarised_on_screen():
    with open(H200_PROBE) as f:
        probe = json.load(f)
    lines = [line for line in probe["env_nvidia"]["stdout"].splitlines() if line.startswith("NVIDIA_REQUIRE_CUDA=")]
    value = lines[0].split("=", 1)[1]
    assert render._constraints(value).startswith("cuda>=13.0 (+")
    assert "driver-branch constraints" in render._constraints(value)
    assert (
        render._constraints("cuda>=11.7 brand=tesla,driver>=450,driver<451")
        == "cuda>=11.7 brand=tesla,driver>=450,driver<451"
    )
