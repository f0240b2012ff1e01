"""Two workers of the test image under one Slurm job on the suite's one-node cluster: one
container per srun task, each with its TF_CONFIG from SLURM_PROCID; a worker that fails stops
the other and the job's exit code is its status."""

import json
import os

import pytest

from tfrepro.launch import engines, slurm_job, workers
from tfrepro.launch import slurm as slurm_script  # `slurm` is the fixture
from tfrepro.launch.spec import LaunchSpec, Mount

pytestmark = [pytest.mark.slow, pytest.mark.docker]

PRINT_TF_CONFIG = "import os; print('TF_CONFIG=' + os.environ['TF_CONFIG'], flush=True)"


@pytest.fixture
def image_digest(request):
    """The suite's test image by digest: as the setup exported it, else built by the fixture."""
    return os.environ.get("TFREPRO_TEST_IMAGE_DIGEST") or request.getfixturevalue("test_image").digest_ref


def run_job(tmp_path, partition, image, command, runtime="docker"):
    spec = LaunchSpec(
        image=image,
        command=command,
        mounts=(Mount(str(tmp_path), "/workspace", False, "repo"),),
        labels={"tfrepro.run_id": "0" * 32},
    )
    output = str(tmp_path / "tfrepro-%j.out")
    options = slurm_script.check_options(
        slurm_script.SlurmOptions(partition=partition, time="10", runtime=runtime), spec
    )
    shape = slurm_script.check_shape(options, workers.Shape(workers=2))
    text = slurm_script.batch_script(spec, options, output, shape=shape)
    chunks, facts = [], {}
    status = slurm_job.submit(text, engines.caller_env(spec, (), os.environ), output, chunks.append, facts.update)
    return status, b"".join(chunks).decode(), facts


@pytest.mark.parametrize("runtime", ["docker", "podman"])
def test_two_tasks_two_containers_each_with_its_tf_config(
    slurm, podman, image_digest, docker_cleanup, tmp_path, runtime
):
    status, out, facts = run_job(tmp_path, slurm, image_digest, ("python", "-c", PRINT_TF_CONFIG), runtime)
    assert status == 0, out[-2000:]
    host = os.uname().nodename
    found = {}
    for line in out.splitlines():
        task, _, text = line.partition(": ")
        if text.startswith("TF_CONFIG="):
            found[int(task)] = json.loads(text[len("TF_CONFIG=") :])
    addresses = ["%s:%d" % (host, workers.DEFAULT_BASE_PORT), "%s:%d" % (host, workers.DEFAULT_BASE_PORT + 1)]
    assert found == {index: json.loads(workers.tf_config(addresses, index)) for index in (0, 1)}, out[-2000:]


def test_a_failing_worker_stops_the_other_and_names_itself(slurm, image_digest, docker_cleanup, tmp_path):
    fail_or_wait = "import os, sys, time; index = os.environ['SLURM_PROCID']; print('up', index, flush=True); " + (
        "sys.exit(3) if index == '1' else time.sleep(120)"
    )
    status, out, facts = run_job(tmp_path, slurm, image_digest, ("python", "-c", fail_or_wait))
    assert status == 3, out[-2000:]
    assert "tfrepro: worker 1 exited with status 3" in out
    assert "tfrepro: worker 0 stopped" in out
    running = docker_cleanup.containers.list(filters={"name": "tfrepro-%s-" % facts["job_id"]})
    assert running == []
