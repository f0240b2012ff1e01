"""Data beside the code on the real engine (issue 15): a script reads ../data/x.npy, which git
does not track (untracked, or ignored through .gitignore). `tfrepro run --seed 0` fingerprints
it; a replay on the same machine mounts it read-only from the clone and is `identical`; once
data/x.npy changes the replay refuses, naming it, and with --allow-drift the verdict names it.

Real everything: dockerd, the local registry, the test image, an `mlflow server`, git.
"""

import os
import uuid

import numpy as np
import pytest

from tests.helpers.cli import one_error
from tests.helpers.git_repos import git, make_repo
from tfrepro.cli import main

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# Run from src/: the data lives beside the code, one folder up. It writes its model into
# ../outputs (ignored), and says whether it could write into ../data.
FIT = """\
import os
import numpy as np
import tensorflow as tf

x = np.load("../data/x.npy")
print("data writable:", os.access("../data", os.W_OK))
y = x.sum(axis=1, keepdims=True)
model = tf.keras.Sequential([tf.keras.layers.Dense(8, activation="relu", input_shape=(4,)), tf.keras.layers.Dense(1)])
model.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
model.fit(x, y, epochs=2, batch_size=32, verbose=2)
os.makedirs("../outputs", exist_ok=True)
with open("../outputs/weights.txt", "w") as fh:
    fh.write(repr([w.tolist() for w in model.get_weights()]))
"""


def fit_repo(root, ignore_data):
    """src/fit.py committed; data/ beside it, untracked or ignored; an earlier run's outputs/."""
    make_repo(root, {"src/fit.py": FIT, ".gitignore": ("data/\n" if ignore_data else "") + "outputs/\n"}, message="fit")
    (root / "data").mkdir()
    np.save(str(root / "data" / "x.npy"), np.random.RandomState(1).rand(128, 4).astype("float32"))
    (root / "outputs").mkdir()
    (root / "outputs" / "weights.txt").write_text("from an earlier run")
    return root


def run(root, image, uri, experiment):
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root / "src")
        return main(
            [
                "run",
                "--image",
                image,
                "--gpus",
                "none",
                "--experiment",
                experiment,
                "--tracking-uri",
                uri,
                "--seed",
                "0",
                "--",
                "python",
                "fit.py",
            ]
        )


def replay(root, uri, run_id, *extra):
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        return main(["replay", run_id, "--yes", "--gpus", "none", "--tracking-uri", uri] + list(extra))


@pytest.mark.parametrize("ignore_data", [False, True], ids=["untracked", "ignored"])
def test_data_beside_the_code_is_restored_and_checked(
    ignore_data, tmp_path, client, mlflow_server, test_image, capsys, docker_cleanup
):
    label = "ignored" if ignore_data else "untracked"
    root = fit_repo(tmp_path / "repo", ignore_data)
    experiment = "beside-" + uuid.uuid4().hex[:8]
    assert run(root, test_image.ref, mlflow_server.uri, experiment) == 0
    out, err = capsys.readouterr()
    print(out, err)
    assert "data writable: True" in out, "the original ran in the repository itself"
    assert (
        "tfrepro: data beside the code: %s fingerprinted (data, outputs; 2 files, "
        % ("2 ignored path(s)" if ignore_data else "1 untracked, 1 ignored path(s)")
        in err
    )
    assert "a replay restores them read-only from the replayer's clone" in err
    assert "untracked file(s) are visible" not in err
    assert "tfrepro: data beside the code: outputs changed while the run ran: recorded as its output" in err
    [found] = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    run_id, tags = found.info.run_id, found.data.tags
    assert tags["tfrepro.data.sources"] == "2"
    assert tags["tfrepro.data.beside"].startswith("data beside the code: "), "the record says what was fingerprinted"
    assert (tags["tfrepro.data.0.label"], tags["tfrepro.data.0.path"], tags["tfrepro.data.0.files"]) == (
        label,
        "data",
        "1",
    )
    assert tags["tfrepro.data.0.target"] == "/workspace/data" and "tfrepro.data.0.written" not in tags
    assert (tags["tfrepro.data.1.path"], tags["tfrepro.data.1.written"]) == ("outputs", "true")

    # 1. the same machine, the same data: mounted read-only from the clone, identical
    code = replay(root, mlflow_server.uri, run_id)
    out, err = capsys.readouterr()
    print(out, err)
    assert code == 0, out + err
    size = os.path.getsize(str(root / "data" / "x.npy"))
    assert "data beside the code: read-only from %s\n" % root in out
    assert (
        "data beside the code: data (%s, 1 file, %s), matches the record\n" % (label, "%.1f KB" % (size / 1000.0))
        in out
    )
    assert "data beside the code: outputs (ignored, 1 file, 19 B): written by the original run, not restored" in out
    assert "-v %s/data:/workspace/data:ro" % root in out
    assert "data writable: False" in out, "the replay cannot write into the replayer's data"
    verdict = next(line for line in out.splitlines() if line.startswith("replay run "))
    assert ": identical: " in verdict, out
    replay_id = client.get_run(run_id).data.tags["tfrepro.replayed_by"]
    replayed = client.get_run(replay_id).data.tags
    assert (replayed["tfrepro.data.0.path"], replayed["tfrepro.data.0.hash"]) == ("data", tags["tfrepro.data.0.hash"])

    # --no-untracked: nothing mounted, and the plan says so
    assert replay(root, mlflow_server.uri, run_id, "--no-untracked", "--dry-run") == 0
    out = capsys.readouterr().out
    plan = out[out.rindex("replay of run %s" % run_id) :]  # the replay's streamed output may come late
    assert (
        "data beside the code: data (%s, 1 file, %s): not restored (--no-untracked)"
        % (label, "%.1f KB" % (size / 1000.0))
        in plan
    )
    assert "/workspace/data:ro" not in plan

    # 2. the data changed: refused, naming data/x.npy; --allow-drift runs and the verdict names it
    np.save(str(root / "data" / "x.npy"), np.random.RandomState(2).rand(128, 4).astype("float32"))
    line = one_error(capsys, replay(root, mlflow_server.uri, run_id))
    print(line)
    assert line == "tfrepro: error: data changed since the run: data/x.npy modified (pass --allow-drift to run anyway)"
    code = replay(root, mlflow_server.uri, run_id, "--allow-drift")
    out = capsys.readouterr().out
    print(out)
    assert code == 1, out
    assert "  ! %s data/x.npy: modified (same size, new mtime)" % label in out
    assert (
        "why the results can differ, most likely first:\n  1. the data changed since the original ran: data/x.npy modified"
        in out
    )
    replay_id = client.get_run(run_id).data.tags["tfrepro.replayed_by"]
    assert (
        "why: 1. the data changed since the original ran: data/x.npy"
        in client.get_run(replay_id).data.tags["tfrepro.replay.detail"]
    )


def test_a_clone_without_the_data_says_how_and_v_provides_it(
    tmp_path, client, mlflow_server, test_image, capsys, docker_cleanup
):
    root = fit_repo(tmp_path / "repo", ignore_data=True)
    experiment = "beside-v-" + uuid.uuid4().hex[:8]
    assert run(root, test_image.ref, mlflow_server.uri, experiment) == 0
    [found] = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    run_id = found.info.run_id
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(root), str(clone))  # the code, not the data
    capsys.readouterr()

    line = one_error(capsys, replay(clone, mlflow_server.uri, run_id))
    assert line == "tfrepro: error: data changed since the run: data missing (pass --allow-drift to run anyway)"
    assert replay(clone, mlflow_server.uri, run_id, "--dry-run") == 0
    out = capsys.readouterr().out
    assert (
        "data beside the code: data (ignored, 1 file, %s) is not in %s: put it at data there, or pass "
        "-v SRC:/workspace/data:ro\n  ! ignored data: missing"
        % ("%.1f KB" % (os.path.getsize(str(root / "data" / "x.npy")) / 1000.0), clone)
    ) in out

    code = replay(clone, mlflow_server.uri, run_id, "-v", "%s:/workspace/data:ro" % (root / "data"))
    out = capsys.readouterr().out
    print(out)
    assert code == 0, out
    assert (
        "data beside the code: data (ignored, 1 file, " in out
        and ", provided with -v %s, matches the record" % (root / "data") in out
    )
    assert "data writable: False" in out
    verdict = next(line for line in out.splitlines() if line.startswith("replay run "))
    assert ": identical: " in verdict, out
