"""The launch hook of `tfrepro run` / `replay`: hooks.py (pure: env, tags, record) and the
generated sitecustomize, run in real interpreters (no Docker)."""

import importlib.util
import json
import os
import stat
import subprocess
import sys

import pytest

from tfrepro.environment import Environment
from tfrepro.errors import RecordError
from tfrepro.launch import hooks as H
from tfrepro.replay import plan as P
from tfrepro.tracking.record import RunRecord

DIGEST_REF = "127.0.0.1:5555/tfrepro-test@sha256:" + "ab" * 32
TAGS = {
    "tfrepro.image.digest": DIGEST_REF,
    "tfrepro.git.commit": "1" * 40,
    "tfrepro.command": json.dumps(["python", "plain_train.py"]),
}


def test_hook_env_is_empty_when_nothing_is_wanted():
    assert H.hook_env(False, None, {}, {"PYTHONPATH": "/img"}) == {}
    assert not H.wanted(False, None)


def test_hook_env_autolog_and_seed():
    assert H.hook_env(True, None, {}, {}) == {"PYTHONPATH": H.HOOK_DIR, "TFREPRO_AUTOLOG": "1"}
    env = H.hook_env(False, 7, {}, {})
    assert env == {"PYTHONPATH": H.HOOK_DIR, "TFREPRO_DETERMINISTIC": "1", "TFREPRO_SEED": "7"}


def test_pythonpath_keeps_the_users_or_the_images_after_the_hook():
    assert (
        H.hook_env(True, None, {"PYTHONPATH": "/mine:/lib"}, {"PYTHONPATH": "/img"})["PYTHONPATH"]
        == H.HOOK_DIR + ":/mine:/lib"
    )
    assert H.hook_env(True, None, {}, {"PYTHONPATH": "/img"})["PYTHONPATH"] == H.HOOK_DIR + ":/img"
    # a replayed -e PYTHONPATH already carries the hook: not twice
    assert H.python_path(H.HOOK_DIR + ":/mine", None) == H.HOOK_DIR + ":/mine"
    assert H.python_path("", "/img") == H.HOOK_DIR  # an explicit empty -e PYTHONPATH wins


def test_tags_and_record():
    assert H.hook_tags(True, None) == {"tfrepro.autolog": "true"}
    assert H.hook_tags(False, 0) == {"tfrepro.autolog": "false", "tfrepro.seed": "0", "tfrepro.launch.seed": "0"}
    assert H.hook_record(True, 3) == {"autolog": True, "seed": 3}


@pytest.mark.parametrize(
    "launch, tags, expected",
    [
        ({"autolog": True, "seed": 0}, {}, (True, "0")),
        ({"autolog": False, "seed": None}, {"tfrepro.autolog": "true"}, (False, None)),
        ({}, {"tfrepro.autolog": "true", "tfrepro.launch.seed": "0"}, (True, "0")),  # tags only
        ({}, {"tfrepro.seed": "0"}, (False, None)),  # from before the hook: the script seeded itself
    ],
)
def test_from_record(launch, tags, expected):
    assert H.from_record(launch, tags) == expected


def record(tags, launch):
    tags = dict(TAGS, **tags)
    return RunRecord(
        "run1",
        Environment.from_tags(tags),
        experiment_id="0",
        run_name="r",
        status="FINISHED",
        tags=tags,
        patch="",
        launch=launch,
    )


def test_replay_plan_reapplies_the_launchers_seed_and_autolog():
    launch = {
        "autolog": True,
        "seed": 5,
        "env": {"PYTHONPATH": H.HOOK_DIR + ":/mine"},
        "mounts": [
            {"source": "/tmp/tfrepro-hook-x", "target": H.HOOK_DIR, "read_only": True, "kind": "hook"},
            {"source": "/data", "target": "/data", "read_only": True, "kind": "user"},
        ],
    }
    plan = P.plan(record({"tfrepro.seed": "5", "tfrepro.autolog": "true"}, launch), {})
    assert plan.launch.autolog is True and plan.launch.hook_seed == 5 and plan.launch.seed == "5"
    assert [m.bind() for m in plan.spec.mounts] == ["<checkout>:/workspace:rw"]
    assert [m.bind() for m in plan.launch.mounts] == ["/data:/data:ro"]  # offered; the hook: afresh
    env = H.hook_env(plan.launch.autolog, plan.launch.hook_seed, plan.spec.env, {})
    assert env["PYTHONPATH"] == H.HOOK_DIR + ":/mine" and env["TFREPRO_SEED"] == "5"


def test_replay_reapplies_the_launchers_seed_even_when_the_script_reseeded():
    # `tfrepro run --seed 0` around a script calling tfrepro.deterministic(5): the record says 5
    plan = P.plan(record({"tfrepro.seed": "5", "tfrepro.autolog": "true"}, {"autolog": True, "seed": 0}), {})
    assert plan.launch.hook_seed == 0
    assert (
        H.hook_env(plan.launch.autolog, plan.launch.hook_seed, plan.spec.env, {})["TFREPRO_SEED"] == "0"
    )  # as originally


def test_malformed_launch_seed_is_refused():
    with pytest.raises(RecordError, match="malformed seed"):
        P.plan(record({}, {"seed": "0; rm -rf /"}), {})


def test_replay_plan_of_a_run_that_seeded_itself_adds_no_hook():
    plan = P.plan(record({"tfrepro.seed": "5"}, {}), {})
    assert plan.launch.autolog is False and plan.launch.hook_seed is None and plan.spec.env["TFREPRO_SEED"] == "5"


def test_hook_directory_holds_only_the_hook_and_is_removed():
    with H.hook_directory() as path:
        assert sorted(os.listdir(path)) == sorted(H.HOOK_FILES)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o755
        assert stat.S_IMODE(os.stat(os.path.join(path, "sitecustomize.py")).st_mode) == 0o644
    assert not os.path.exists(path)
    with H.hook_directory(False) as none:
        assert none is None
    assert H.hook_mounts(None) == ()
    assert H.hook_mounts("/x")[0].bind() == "/x:%s:ro" % H.HOOK_DIR


# -- the sitecustomize itself --------------------------------------------------------


def load_hook():
    spec = importlib.util.spec_from_file_location("tfrepro_hook_under_test", H.HOOK_SOURCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # not named sitecustomize: nothing runs on import
    return module


def test_missing_packages_warn_once_and_never_raise(monkeypatch, capsys):
    hook = load_hook()
    monkeypatch.setattr(hook, "_missing", lambda *names: ["mlflow"] if "mlflow" in names else [])
    monkeypatch.setattr(hook, "chain_image_sitecustomize", lambda: None)
    monkeypatch.delenv(hook.WARNED, raising=False)
    monkeypatch.setenv("TFREPRO_AUTOLOG", "1")
    import tensorflow  # noqa: F401  imported already: the hook acts at once

    hook.main()
    hook.main()  # a child process inherits the environment: no second warning
    err = capsys.readouterr().err
    assert err.count("tfrepro: warning: autolog is off: mlflow not importable") == 1


def test_a_failing_seed_is_a_warning(monkeypatch, capsys):
    hook = load_hook()
    monkeypatch.setattr(hook, "chain_image_sitecustomize", lambda: None)
    monkeypatch.delenv(hook.WARNED, raising=False)
    monkeypatch.setenv("TFREPRO_DETERMINISTIC", "1")
    monkeypatch.setenv("TFREPRO_SEED", "not-a-number")
    hook.main()
    assert "tfrepro: warning: could not apply the seed: ValueError" in capsys.readouterr().err


def run_python(tmp_path, code, env):
    hook_dir = tmp_path / "hook"
    image_dir = tmp_path / "image"
    hook_dir.mkdir()
    image_dir.mkdir()
    for name, source in H.HOOK_FILES.items():
        (hook_dir / name).write_text(open(source).read())
    (image_dir / "sitecustomize.py").write_text("import os\nos.environ['IMAGE_HOOK_RAN'] = '1'\n")
    path = os.pathsep.join([str(hook_dir), str(image_dir), os.environ.get("PYTHONPATH", "")])
    hook_vars = ("TFREPRO_AUTOLOG", "TFREPRO_DETERMINISTIC", "TFREPRO_SEED", "TFREPRO_HOOK_WARNED")
    base = {k: v for k, v in os.environ.items() if k not in hook_vars}
    env = dict(base, PYTHONPATH=path, TF_CPP_MIN_LOG_LEVEL="2", **env)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=str(tmp_path))


def test_hook_off_only_chains_to_the_images_sitecustomize(tmp_path):
    code = "import os, sys; print(os.environ.get('IMAGE_HOOK_RAN'), 'tensorflow' in sys.modules)"
    result = run_python(tmp_path, code, {})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "False"]  # nothing imported when neither is asked for


def test_hook_seeds_and_autologs_before_user_code(tmp_path):
    code = "\n".join(
        [
            "import os, numpy as np, tensorflow as tf, tfrepro",
            "from tfrepro import determinism",
            "patched = tf.keras.Model.fit",
            "tfrepro.autolog(disable=True)",
            "print(os.environ.get('IMAGE_HOOK_RAN'), determinism.SEED, patched is not tf.keras.Model.fit)",
            "print(repr(np.random.rand()))",
            "np.random.seed(3)",
            "print(repr(np.random.rand()))",
        ]
    )
    result = run_python(tmp_path, code, {"TFREPRO_AUTOLOG": "1", "TFREPRO_DETERMINISTIC": "1", "TFREPRO_SEED": "3"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[0] == "1 3 True"  # image's hook ran, seeded with 3, fit patched
    assert lines[1] == lines[2]  # NumPy's global generator was seeded before the script
    assert "tfrepro: warning" not in result.stderr


@pytest.mark.parametrize("seed", ["-1", "abc", str(2**32)])
def test_bad_seed_is_one_line_and_runs_nothing(seed, capsys):
    from tfrepro.cli import main

    assert main(["run", "--image", "x:1", "--seed", seed, "--", "python", "a.py"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tfrepro: error: Invalid value for '--seed'")


def test_hook_on_imports_nothing_until_the_program_imports_tensorflow(tmp_path):
    code = "import sys; print('tensorflow' in sys.modules, 'tfrepro' in sys.modules)"
    env = {"TFREPRO_AUTOLOG": "1", "TFREPRO_DETERMINISTIC": "1", "TFREPRO_SEED": "3"}
    result = run_python(tmp_path, code, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]  # pip or `python -c` pay nothing


def test_hook_patches_fit_when_the_program_imports_keras_first(tmp_path):
    code = "\n".join(
        [
            "import keras",
            "import tensorflow as tf",
            "from tfrepro import determinism",
            "print(getattr(tf.keras.Model.fit, '_tfrepro_original', None) is not None, determinism.SEED)",
        ]
    )
    env = {"TFREPRO_AUTOLOG": "1", "TFREPRO_DETERMINISTIC": "1", "TFREPRO_SEED": "4"}
    result = run_python(tmp_path, code, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "4"]
    assert "tfrepro: warning" not in result.stderr
