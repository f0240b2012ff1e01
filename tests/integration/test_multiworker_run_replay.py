"""`tfrepro run --workers 2` and its replay, end to end, on this host's Docker and on the suite's
one-node Slurm cluster (2 tasks on one node): two containers, CPU, MultiWorkerMirroredStrategy
over loopback. Exactly one run holds the metrics and lists both workers (tfrepro/workers.json);
the replay keeps the shape and its verdict is honest; killing one worker's container mid-fit
fails the job: the run is FAILED and names the worker.

The test image bakes tfrepro as it was when the image was built: the tfrepro under test is
copied beside the test and mounted first on the container's PYTHONPATH (its own -v and -e), so
the container-side half (the callback, each worker's record) is the one of this tree.
"""

import json
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers.git_repos import make_repo
from tests.helpers.ports import free_port
from tfrepro.cli import main, status

pytestmark = [pytest.mark.docker, pytest.mark.slow]

TREE = Path(__file__).resolve().parents[2]
SOURCE_MOUNT = "/opt/tfrepro-src"

TRAIN = r'''"""Two workers of MultiWorkerMirroredStrategy, a small regression; the launch hook seeds it."""
import os, sys, time
import numpy as np
import tensorflow as tf

strategy = tf.distribute.MultiWorkerMirroredStrategy()
rng = np.random.RandomState(0)
x = rng.uniform(-1, 1, size=(256, 4)).astype("float32")
y = x.sum(1, keepdims=True)
with strategy.scope():
    model = tf.keras.Sequential([tf.keras.layers.Dense(8, input_shape=(4,)), tf.keras.layers.Dense(1)])
    model.compile(optimizer=tf.keras.optimizers.SGD(0.05), loss="mse")
slow = [tf.keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: time.sleep(3))] if "--slow" in sys.argv else []
epochs = 20 if "--slow" in sys.argv else 2
options = tf.data.Options()
options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
data = tf.data.Dataset.from_tensor_slices((x, y)).batch(32).with_options(options)
model.fit(data, epochs=epochs, verbose=2, callbacks=slow)
print("worker %s done" % os.environ.get("TFREPRO_WORKER_INDEX"), flush=True)
sys.stdout.flush()
# TF 2.9's collectives sometimes abort at interpreter teardown, after the work is done
os._exit(0)
'''


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory):
    """tfrepro and its MLflow plugin as in this tree, copied once (a stable mount to fingerprint)."""
    root = tmp_path_factory.mktemp("tfrepro-src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(str(TREE / "tfrepro"), str(root / "tfrepro"), ignore=ignore)
    shutil.copytree(str(TREE / "mlflow_plugin"), str(root / "mlflow_plugin"), ignore=ignore)
    return root


def mount_args(source_copy):
    return [
        "-v",
        "%s:%s:ro" % (source_copy, SOURCE_MOUNT),
        "-e",
        "PYTHONPATH=%s:%s/mlflow_plugin" % (SOURCE_MOUNT, SOURCE_MOUNT),
    ]


def engine_args(engine, tmp_path):
    if engine == "slurm":
        return ["--on", "slurm", "--partition", "debug", "--time", "20"]
    return ["--on", engine]


@pytest.fixture(params=["docker", "slurm"])
def engine(request, monkeypatch, tmp_path):
    if request.param == "slurm":
        request.getfixturevalue("slurm")
        monkeypatch.setenv("TFREPRO_SLURM_DIR", str(tmp_path / "slurm-out"))
    return request.param


def run_argv(engine, image, experiment, uri, source_copy, tmp_path, *cmd):
    return (
        ["run", "--image", image, "--experiment", experiment, "--tracking-uri", uri, "--seed", "0"]
        + ["--workers", "2", "--worker-port", str(free_port()), "--timeout", "400"]
        + engine_args(engine, tmp_path)
        + mount_args(source_copy)
        + ["--"]
        + list(cmd)
    )


def only_run(client, experiment):
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1, [run.info.run_id for run in runs]
    return runs[0]


def workers_json(client, run_id, tmp_path):
    return json.loads(Path(client.download_artifacts(run_id, "tfrepro/workers.json", str(tmp_path))).read_text())


def test_two_workers_one_run_both_workers_recorded_and_replayed(
    engine, test_image, mlflow_server, client, source_copy, tmp_path, monkeypatch, capsys, docker_cleanup
):
    repo = make_repo(tmp_path / "repo", {"train_mw.py": TRAIN}, message="two workers")
    monkeypatch.chdir(repo)
    experiment = "mw-%s-%s" % (engine, uuid.uuid4().hex[:8])
    argv = run_argv(engine, test_image.latest, experiment, mlflow_server.uri, source_copy, tmp_path)
    code = main(argv + ["python", "train_mw.py"])
    out, err = capsys.readouterr()
    assert code == 0, (out + err)[-4000:]
    run = only_run(client, experiment)  # one run per job: worker 1 logged nothing of its own
    tags = run.data.tags
    assert run.info.status == "FINISHED" and "loss" in run.data.metrics
    assert tags["tfrepro.launch.workers"] == "2" and tags["tfrepro.workers.agree"] == "true"
    gathered = workers_json(client, run.info.run_id, tmp_path)
    assert [worker["index"] for worker in gathered["records"]] == [0, 1] and gathered["missing"] == []
    assert all(worker["image_digest"] == test_image.digest_ref for worker in gathered["records"])
    launch = json.loads(
        Path(client.download_artifacts(run.info.run_id, "tfrepro/launch.json", str(tmp_path))).read_text()
    )
    assert launch["engine"]["shape"]["workers"] == 2

    code = main(["show", run.info.run_id, "--tracking-uri", mlflow_server.uri])
    shown, _ = capsys.readouterr()
    assert code == 0 and "worker 0" in shown and "worker 1" in shown

    # the replay keeps the shape (no --workers given); the recorded source mount is given again
    replay = ["replay", run.info.run_id, "--yes", "--tracking-uri", mlflow_server.uri] + mount_args(source_copy)[:2]
    code = main(replay)
    out, err = capsys.readouterr()
    verdict = out.strip().splitlines()[-1]
    if ": identical" not in verdict:  # honest: within noise, with a few repeats, else a failure
        code = main(replay + ["--repeat", "2"])
        out, err = capsys.readouterr()
        verdict = out.strip().splitlines()[-1]
        assert "within noise" in verdict or "identical" in verdict, (out + err)[-4000:]
    assert code == status.OK, (out + err)[-4000:]
    with capsys.disabled():  # which of the two, on the terminal (pytest -s)
        print("\n%s 2-worker replay: %s" % (engine, verdict))
    replays = client.search_runs(
        [run.info.experiment_id], "tags.`tfrepro.replay_of` = '%s'" % run.info.run_id
    ) or client.search_runs(["0"], "tags.`tfrepro.replay_of` = '%s'" % run.info.run_id)
    launched = [r for r in replays if "tfrepro.launch.backend" in r.data.tags]  # not --repeat's summary run
    assert launched and all(r.data.tags.get("tfrepro.launch.workers") == "2" for r in launched)

    # --workers overrides the count: the drift table shows it, the verdict names it when it diverges
    code = main(replay + ["--workers", "1"])
    out, err = capsys.readouterr()
    assert code in (status.OK, status.DIVERGED), (out + err)[-4000:]
    assert any(line.split()[:3] == ["*", "workers", "2"] for line in out.splitlines()), out[-3000:]
    if code == status.DIVERGED:
        assert "replayed with 1 worker, recorded with 2" in out + err, (out + err)[-3000:]


def _kill_worker_one(engine, run_id_holder, stop):
    """Kill worker 1's container once its training is under way."""
    time.sleep(5)
    while not stop.is_set():
        if engine == "docker":
            filters = ["--filter", "label=tfrepro.worker=1"]
        else:
            filters = ["--filter", "name=tfrepro-"]
        listed = subprocess.run(["docker", "ps", "-q"] + filters, capture_output=True, text=True).stdout.split()
        if engine == "slurm":  # the Slurm task's containers are named tfrepro-<job>-<task>
            names = subprocess.run(
                ["docker", "ps", "--format", "{{.ID}} {{.Names}}"] + filters, capture_output=True, text=True
            ).stdout.split("\n")
            listed = [line.split()[0] for line in names if line.strip().endswith("-1")]
        logs = [subprocess.run(["docker", "logs", cid], capture_output=True, text=True) for cid in listed]
        if listed and any("Epoch 2/" in (log.stdout + log.stderr) for log in logs):
            subprocess.run(["docker", "kill", listed[0]], capture_output=True)
            run_id_holder.append(listed[0])
            return
        time.sleep(1)


def test_killing_one_worker_mid_fit_fails_the_job_and_names_it(
    engine, test_image, mlflow_server, client, source_copy, tmp_path, monkeypatch, capsys, caplog, docker_cleanup
):
    repo = make_repo(tmp_path / "repo", {"train_mw.py": TRAIN}, message="two workers")
    monkeypatch.chdir(repo)
    experiment = "mw-kill-%s-%s" % (engine, uuid.uuid4().hex[:8])
    killed, stop = [], threading.Event()
    killer = threading.Thread(target=_kill_worker_one, args=(engine, killed, stop), daemon=True)
    killer.start()
    try:
        argv = run_argv(engine, test_image.latest, experiment, mlflow_server.uri, source_copy, tmp_path)
        code = main(argv + ["python", "train_mw.py", "--slow"])
    finally:
        stop.set()
        killer.join(30)
    out, err = capsys.readouterr()
    assert killed, "worker 1's container was never seen training: " + (out + err)[-3000:]
    assert code == status.JOB_FAILED, (out + err)[-4000:]
    run = only_run(client, experiment)
    assert run.info.status == "FAILED"
    everything = out + err + "\n".join(caplog.messages)
    assert "worker 1 exited with status" in everything, everything[-3000:]
    assert run.data.tags["tfrepro.launch.failed_worker"] == "1"
    assert run.data.tags["tfrepro.launch.failed_worker_status"] == "137"  # docker kill: SIGKILL
    leftover = subprocess.run(
        ["docker", "ps", "-q", "--filter", "label=tfrepro.run_id=%s" % run.info.run_id], capture_output=True, text=True
    ).stdout.split()
    assert leftover == []
