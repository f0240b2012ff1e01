"""The MLflow plugin: a callback-free mlflow.start_run() gets tfrepro.* tags."""

import json
import os
import subprocess
import sys

import pytest

mlflow = pytest.importorskip("mlflow")

pytestmark = [pytest.mark.py38]

START_RUN = "import mlflow; r = mlflow.start_run(); print('run_id:', r.info.run_id); mlflow.end_run()"


def start_run(cwd, uri, **env):
    environ = dict(os.environ, MLFLOW_TRACKING_URI=uri, **env)
    environ.pop("MLFLOW_RUN_ID", None)
    out = subprocess.run(
        [sys.executable, "-c", START_RUN], cwd=str(cwd), env=environ, check=True, capture_output=True, text=True
    ).stdout
    run_id = [line.split()[1] for line in out.splitlines() if line.startswith("run_id: ")][0]
    return mlflow.tracking.MlflowClient(uri).get_run(run_id).data.tags


def test_plugin_is_registered():
    from mlflow.tracking.context.registry import _run_context_provider_registry

    names = [type(p).__name__ for p in _run_context_provider_registry]
    assert "TfreproContextProvider" in names


def test_plain_start_run_is_tagged(tracking_uri, dirty_repo):
    tags = start_run(dirty_repo, tracking_uri)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=str(dirty_repo), check=True, capture_output=True, text=True
    ).stdout.strip()
    assert tags["tfrepro.git.commit"] == head
    assert tags["tfrepro.git.dirty"] == "true"
    assert tags["tfrepro.schema"] and tags["tfrepro.version"]
    assert "s3cret" not in json.dumps(tags)
    assert json.loads(tags["tfrepro.command"])[-2] == "-c"


SCRIPT_RUN = """
import sys, mlflow
description = sys.argv[1] if len(sys.argv) > 1 else None
r = mlflow.start_run(description=description)
print("run_id:", r.info.run_id)
mlflow.end_run()
"""


def script_run(repo, uri, *args):
    """`python start.py ARGS` run from the repository's tools/ folder."""
    (repo / "tools").mkdir(exist_ok=True)
    (repo / "tools" / "start.py").write_text(SCRIPT_RUN)
    environ = dict(os.environ, MLFLOW_TRACKING_URI=uri)
    environ.pop("MLFLOW_RUN_ID", None)
    out = subprocess.run(
        [sys.executable, "start.py", *args],
        cwd=str(repo / "tools"),
        env=environ,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    run_id = [line.split()[1] for line in out.splitlines() if line.startswith("run_id: ")][0]
    return mlflow.tracking.MlflowClient(uri).get_run(run_id).data.tags


def test_a_script_run_names_its_source_and_gets_the_card(tracking_uri, dirty_repo):
    from tfrepro import markdown as md
    from tfrepro.tracking import runpage

    tags = script_run(dirty_repo, tracking_uri)
    # MLflow's own provider says "start.py" (argv[0] as typed); the plugin's tags come after it
    assert tags["mlflow.source.name"] == "tools/start.py" and tags["mlflow.source.type"] == "LOCAL"
    note = tags["mlflow.note.content"]
    assert note.startswith("<!-- tfrepro:card -->") and tags["tfrepro.git.commit"] in note
    assert "tfrepro replay " + runpage.PLACEHOLDER_RUN_ID in md.unescape(note)  # no id before the run exists


def test_a_description_passed_to_start_run_is_never_overwritten(tracking_uri, dirty_repo):
    tags = script_run(dirty_repo, tracking_uri, "Mine: *keep* me")
    assert tags["mlflow.note.content"] == "Mine: *keep* me"  # start_run applies it after every provider
    assert tags["mlflow.source.name"] == "tools/start.py"


def test_tfrepro_context_0_turns_it_off(tracking_uri, dirty_repo):
    tags = start_run(dirty_repo, tracking_uri, TFREPRO_CONTEXT="0")
    assert not [k for k in tags if k.startswith("tfrepro.")]


FIT = """
import json, sys, mlflow, numpy as np, tensorflow as tf
import tfrepro, tfrepro.fingerprint as fp
count = {"n": 0}
real = fp.collect
def counted(*a, **k):
    count["n"] += 1
    return real(*a, **k)
fp.collect = counted
m = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(2,))])
m.compile(optimizer="sgd", loss="mse")
x = np.zeros((8, 2), "float32")
cb = tfrepro.ReproCallback(log_model=False)
if sys.argv[1] == "active":
    with mlflow.start_run() as run:
        m.fit(x, x[:, :1], epochs=1, verbose=0, callbacks=[cb])
else:
    m.fit(x, x[:, :1], epochs=1, verbose=0, callbacks=[cb])
cb.wait(60)  # fit() returns before the run is created and closed (issue 21)
print(json.dumps({"run_id": cb.session.run_id, "collected": count["n"]}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["callback opens the run", "active"])
def test_plugin_and_callback_collect_the_environment_once(tracking_uri, dirty_repo, how):
    environ = dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri, TF_CPP_MIN_LOG_LEVEL="3")
    environ.pop("MLFLOW_RUN_ID", None)
    out = subprocess.run(
        [sys.executable, "-c", FIT, how], cwd=str(dirty_repo), env=environ, check=True, capture_output=True, text=True
    ).stdout
    found = json.loads(out.strip().splitlines()[-1])
    assert found["collected"] == 1
    client = mlflow.tracking.MlflowClient(tracking_uri)
    tags = client.get_run(found["run_id"]).data.tags
    assert tags["tfrepro.git.dirty"] == "true" and tags["tfrepro.schema"]
    files = [f.path for f in client.list_artifacts(found["run_id"], "tfrepro")]
    assert "tfrepro/environment.json" in files


SLOW_COLLECTION = """
import json, sys, time
import tfrepro.fingerprint as fp
real = fp.collect
fp.collect = lambda: time.sleep(1.5) or real()  # a slow machine's git, packages, GPU
import mlflow
begin = time.perf_counter()
run = mlflow.start_run(**json.loads(sys.argv[1]))
took = time.perf_counter() - begin
print("run_id:", run.info.run_id, took)
if sys.argv[2] == "end":
    mlflow.end_run()
"""


@pytest.mark.parametrize("how", ["end_run", "exit with the run active", "user description"])
def test_the_first_start_run_does_not_wait_for_the_environment(tracking_uri, dirty_repo, how):
    """Issue 21: start_run returns before the collection ends; the tags still land on the run
    (at exit at the latest), the token goes, and the user's description stays."""
    kwargs = {"description": "Mine"} if how == "user description" else {}
    environ = dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri)
    environ.pop("MLFLOW_RUN_ID", None)
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            SLOW_COLLECTION,
            json.dumps(kwargs),
            "end" if how != "exit with the run active" else "-",
        ],
        cwd=str(dirty_repo),
        env=environ,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    line = [line.split() for line in out.splitlines() if line.startswith("run_id: ")][0]
    run_id, took = line[1], float(line[2])
    assert took < 1.5
    tags = mlflow.tracking.MlflowClient(tracking_uri).get_run(run_id).data.tags
    assert tags["tfrepro.git.dirty"] == "true" and tags["tfrepro.schema"]
    assert "tfrepro.plugin.pending" not in tags
    if how == "user description":
        assert tags["mlflow.note.content"] == "Mine"
    else:
        assert tags["mlflow.note.content"].startswith("<!-- tfrepro:card -->")
        assert tags["tfrepro.git.commit"] in tags["mlflow.note.content"]


def test_kept_leaves_what_the_user_chose():
    from tfrepro_mlflow import later

    ours = {"tfrepro.schema": "1", "mlflow.note.content": "card", "mlflow.source.name": "tools/t.py"}
    default = {"mlflow.source.name": "t.py", "mlflow.source.type": "LOCAL"}
    placeholder = {"mlflow.note.content": later.PLACEHOLDER_NOTE, "mlflow.source.name": "t.py"}
    assert later.kept(ours, placeholder, default) == ours
    users = {"mlflow.note.content": "mine", "mlflow.source.name": "chosen.py"}
    assert later.kept(ours, users, default) == {"tfrepro.schema": "1"}


TWO_QUICK_RUNS = """
import time
import tfrepro.fingerprint as fp
real = fp.collect
fp.collect = lambda: time.sleep(1.0) or real()
import mlflow
for _ in range(2):
    with mlflow.start_run() as run:
        print("run_id:", run.info.run_id)
"""


def test_two_quick_runs_each_get_their_tags(tracking_uri, dirty_repo):
    """Both runs ended before the environment was collected: each is still found by its token."""
    environ = dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri)
    environ.pop("MLFLOW_RUN_ID", None)
    out = subprocess.run(
        [sys.executable, "-c", TWO_QUICK_RUNS],
        cwd=str(dirty_repo),
        env=environ,
        check=True,
        capture_output=True,
        text=True,
    )
    assert "not written" not in out.stderr
    run_ids = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("run_id: ")]
    for run_id in run_ids:
        tags = mlflow.tracking.MlflowClient(tracking_uri).get_run(run_id).data.tags
        assert tags["tfrepro.git.dirty"] == "true" and "tfrepro.plugin.pending" not in tags


def test_a_failed_collection_leaves_no_placeholder(tracking_uri, dirty_repo):
    script = SLOW_COLLECTION.replace("time.sleep(1.5) or real()", "1 / 0")
    environ = dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri)
    environ.pop("MLFLOW_RUN_ID", None)
    out = subprocess.run(
        [sys.executable, "-c", script, "{}", "end"],
        cwd=str(dirty_repo),
        env=environ,
        check=True,
        capture_output=True,
        text=True,
    )
    assert "environment not collected" in out.stderr  # one warning line, start_run unharmed
    run_id = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("run_id: ")][0]
    tags = mlflow.tracking.MlflowClient(tracking_uri).get_run(run_id).data.tags
    assert "mlflow.note.content" not in tags and "tfrepro.plugin.pending" not in tags
