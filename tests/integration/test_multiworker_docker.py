"""Two workers of the test image on this host's Docker and Podman: two containers on the host
network with distinct ports, each with its TF_CONFIG, output prefixed by worker; a failing
worker stops the other; a worker that never joins times out with nothing left running."""

import json
import logging
import os
import re

import pytest

from tfrepro.errors import SchedulerError
from tfrepro.launch import engines, settings, workers
from tfrepro.launch.job import Job
from tfrepro.launch.spec import LaunchSpec, Mount

pytestmark = [pytest.mark.slow, pytest.mark.docker]

PRINT_TF_CONFIG = "import os; print('TF_CONFIG=' + os.environ['TF_CONFIG'], flush=True)"
RUN_ID = "feedc0de" * 4


@pytest.fixture
def image_digest(request):
    """The suite's test image by digest: as the setup exported it, else built by the fixture."""
    return os.environ.get("TFREPRO_TEST_IMAGE_DIGEST") or request.getfixturevalue("test_image").digest_ref


@pytest.fixture(params=["docker", "podman"])
def engine(request, docker_cleanup):
    if request.param == "podman":
        request.getfixturevalue("podman")
    return engines.get(request.param, settings.Options())


def launch(engine, tmp_path, image, command, **shape):
    spec = LaunchSpec(
        image=image,
        command=command,
        mounts=(Mount(str(tmp_path), "/workspace", False, "repo"),),
        labels={"tfrepro.run_id": RUN_ID, "tfrepro.test": "1"},
    )
    chunks, facts = [], {}
    engine.prepare(image)
    status = engine.run(Job(spec, shape=workers.Shape(workers=2, **shape)), facts.update, chunks.append)
    return status, b"".join(chunks).decode()


def leftovers(engine):
    """The workers still running (tests running beside this one may be removing stopped ones)."""
    import subprocess

    tool = "docker" if engine.name == "docker" else "podman"
    listed = subprocess.run(
        [tool, "ps", "-q", "--filter", "label=tfrepro.run_id=" + RUN_ID], capture_output=True, text=True
    )
    return listed.stdout.split()


def test_two_containers_each_with_its_tf_config(engine, image_digest, tmp_path):
    status, out = launch(engine, tmp_path, image_digest, ("python", "-c", PRINT_TF_CONFIG))
    assert status == 0, out[-2000:]
    found = {int(index): json.loads(text) for index, text in re.findall(r"^\[worker (\d)\] TF_CONFIG=(.*)$", out, re.M)}
    addresses = workers.local_addresses(workers.Shape(workers=2))
    assert found == {index: json.loads(workers.tf_config(addresses, index)) for index in (0, 1)}
    assert leftovers(engine) == []


def test_a_failing_worker_stops_the_other_and_is_named(engine, image_digest, tmp_path, caplog):
    fail_or_wait = (
        "import os, sys, time; index = os.environ['TFREPRO_WORKER_INDEX']; print('up', index, flush=True); "
        "sys.exit(3) if index == '1' else time.sleep(120)"
    )
    with caplog.at_level(logging.INFO, logger="tfrepro"):
        status, out = launch(engine, tmp_path, image_digest, ("python", "-c", fail_or_wait))
    assert status == 3, out[-2000:]
    assert "worker 1 exited with status 3: stopping the other workers" in caplog.messages
    assert leftovers(engine) == []


def test_a_worker_that_never_joins_times_out_and_nothing_is_left(engine, image_digest, tmp_path):
    never_joins = "import time; print('waiting for my peer', flush=True); time.sleep(120)"
    with pytest.raises(SchedulerError, match=r"the 2 workers did not finish within 3 s .*all were stopped"):
        launch(engine, tmp_path, image_digest, ("python", "-c", never_joins), timeout_s=3)
    assert leftovers(engine) == []


FIT = """
import json, os
import numpy as np
import tensorflow as tf

strategy = tf.distribute.MultiWorkerMirroredStrategy()
with strategy.scope():
    model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(4,))])
    model.compile(optimizer="sgd", loss="mse")
x = np.arange(64 * 4, dtype="float32").reshape(64, 4) / 256.0
y = x.sum(axis=1, keepdims=True)
history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
task = json.loads(os.environ["TF_CONFIG"])["task"]
print("fit: worker %d, %d replicas, loss %.6f" % (task["index"], strategy.num_replicas_in_sync, history.history["loss"][-1]))
"""


def test_multi_worker_mirrored_strategy_fits_over_loopback(docker_cleanup, image_digest, tmp_path):
    """A real MultiWorkerMirroredStrategy fit (tiny model, CPU) on 2 containers: the workers
    find each other through their TF_CONFIG and agree on the loss; bounded, it cannot hang."""
    (tmp_path / "fit.py").write_text(FIT)
    engine = engines.get("docker", settings.Options())
    status, out = launch(engine, tmp_path, image_digest, ("python", "fit.py"), timeout_s=240)
    assert status == 0, out[-3000:]
    found = dict(re.findall(r"^\[worker (\d)\] fit: worker \d, 2 replicas, loss (\S+)$", out, re.M))
    assert set(found) == {"0", "1"} and found["0"] == found["1"], out[-3000:]
    assert leftovers(engine) == []
