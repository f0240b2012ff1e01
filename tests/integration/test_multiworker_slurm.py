"""Two workers of the test image under one Slurm job on the suite's one-node cluster: one
container per srun task, each with its TF_CONFIG from SLURM_PROCID; a worker that fails stops
the other and the job's exit code is its status."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tfrepro.launch import engines, settings, workers
from tfrepro.launch import slurm as slurm_script  # `slurm` is the fixture
from tfrepro.launch.job import Job
from tfrepro.launch.spec import LaunchSpec, Mount

pytestmark = [pytest.mark.slow, pytest.mark.docker]

PRINT_TF_CONFIG = "import os; print('TF_CONFIG=' + os.environ['TF_CONFIG'], flush=True)"


@pytest.fixture
def image_digest(request):
    """The suite's test image by digest: as the setup exported it, else built by the fixture."""
    return os.environ.get("TFREPRO_TEST_IMAGE_DIGEST") or request.getfixturevalue("test_image").digest_ref


def worker_spec(tmp_path, image, command):
    return LaunchSpec(
        image=image,
        command=command,
        mounts=(Mount(str(tmp_path), "/workspace", False, "repo"),),
        labels={"tfrepro.run_id": "0" * 32},
    )


def run_job(tmp_path, partition, image, command, runtime="docker"):
    """Through the engine, as `tfrepro run --on slurm --workers 2` will call it."""
    slurm_options = slurm_script.SlurmOptions(partition=partition, time="10", runtime=runtime)
    engine = engines.get("slurm", settings.Options(slurm=slurm_options))
    chunks, facts = [], {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TFREPRO_SLURM_DIR", str(tmp_path))
        spec = worker_spec(tmp_path, image, command)
        status = engine.run(Job(spec, shape=workers.Shape(workers=2)), facts.update, chunks.append)
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


def test_sigterm_cancels_the_job_and_stops_both_containers(slurm, image_digest, docker_cleanup, tmp_path):
    spec = worker_spec(
        tmp_path, image_digest, ("python", "-c", "import time; print('up', flush=True); time.sleep(120)")
    )
    options = slurm_script.check_options(slurm_script.SlurmOptions(partition=slurm, time="10"), spec)
    output = str(tmp_path / "tfrepro-%j.out")
    text = slurm_script.batch_script(spec, options, output, shape=workers.Shape(workers=2))
    code = (
        "import os, sys\nfrom tfrepro.launch import slurm_job\n"
        "slurm_job.submit(sys.stdin.read(), dict(os.environ), %r, lambda b: (sys.stdout.buffer.write(b), "
        "sys.stdout.flush()), lambda f: f.get('job_id') and print('job', f['job_id'], flush=True))\n" % output
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    proc.stdin.write(text)
    proc.stdin.close()
    job_id = proc.stdout.readline().split()[1]
    started = set()
    while len(started) < 2:
        line = proc.stdout.readline()
        assert line, "the job ended before both workers were up"
        if line.rstrip().endswith(": up"):
            started.add(line.split(":")[0])
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=90)
    assert proc.returncode != 0 and "KeyboardInterrupt" in proc.stderr.read()
    deadline = time.monotonic() + 30
    while docker_cleanup.containers.list(filters={"name": "tfrepro-%s-" % job_id}) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert docker_cleanup.containers.list(filters={"name": "tfrepro-%s-" % job_id}) == []
