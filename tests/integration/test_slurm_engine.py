"""The Slurm engine against a real one-node cluster (scripts/slurm-up.sh): exit codes, cancel,
no controller, and a generated batch script running the test image with Docker and Podman."""

import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers.cluster_fixtures import last_job_id
from tfrepro.errors import SchedulerError
from tfrepro.launch import slurm as slurm_script  # `slurm` is the fixture
from tfrepro.launch import slurm_job
from tfrepro.launch.job import Job, caller_env
from tfrepro.launch.spec import LaunchSpec, Mount

pytestmark = pytest.mark.slow


def script(tmp_path, body):
    output = str(tmp_path / "job-%j.out")
    return "#!/bin/bash\n#SBATCH --output=%s\n%s\n" % (output, body), output


@pytest.fixture
def logged():
    """The lines the engine logs (the CLI shows them as `tfrepro: ...`)."""
    lines, logger = [], logging.getLogger("tfrepro.launch.slurm_job")
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)


def submit(text, output, env=None):
    chunks, facts = [], {}
    status = slurm_job.submit(text, env or dict(os.environ), output, chunks.append, facts.update)
    return status, b"".join(chunks).decode(), facts


def show(job_id):
    return slurm_job.parse_show_job(
        subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True).stdout
    )


def test_output_streams_and_the_exit_code_passes_through(slurm, tmp_path, logged):
    text, output = script(tmp_path, "echo one; sleep 3; echo two; exit 3")
    status, out, facts = submit(text, output)
    assert status == 3
    assert out == "one\ntwo\n"
    assert facts["job_id"].isdigit() and facts["partition"] == slurm
    assert facts["nodes"] == os.uname().nodename and facts["cluster"] == "tfrepro"
    assert show(facts["job_id"])["JobState"] == "FAILED"
    assert logged[0] == "submitted Slurm job %s" % facts["job_id"]
    assert logged[-1] == "Slurm job %s: FAILED, exit code 3:0" % facts["job_id"]


def test_sigterm_cancels_the_job(slurm, tmp_path):
    text, output = script(tmp_path, "echo started; sleep 120")
    code = (
        "import os, sys\nfrom tfrepro.launch import slurm_job\n"
        "slurm_job.submit(sys.stdin.read(), dict(os.environ), %r, lambda b: (sys.stdout.buffer.write(b), "
        "sys.stdout.flush()), lambda f: print('job', f['job_id'], flush=True))\n" % output
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    proc.stdin.write(text)
    proc.stdin.close()
    job_id = proc.stdout.readline().split()[1]
    assert proc.stdout.readline().strip() == "started"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0 and "KeyboardInterrupt" in proc.stderr.read()
    assert show(job_id)["JobState"] == "CANCELLED"


def test_no_controller_reachable_nothing_is_submitted(slurm, tmp_path):
    conf = tmp_path / "slurm.conf"
    lines = open("/etc/slurm/slurm.conf").read().splitlines()
    conf.write_text("\n".join(lines + ["SlurmctldPort=9"]) + "\n")  # nobody listens there
    before = last_job_id()
    text, output = script(tmp_path, "echo never")
    start = time.monotonic()
    with pytest.raises(SchedulerError, match=r"^no Slurm controller reachable \(scontrol ping: .* is DOWN\)$"):
        submit(text, output, dict(os.environ, SLURM_CONF=str(conf)))
    assert time.monotonic() - start < 30
    assert last_job_id() == before and not list(tmp_path.glob("job-*.out"))


def test_sbatch_refusal_is_one_line(slurm, tmp_path):
    text, output = script(tmp_path, "#SBATCH --partition=nosuch\necho never")
    with pytest.raises(SchedulerError, match="sbatch refused the job: .*invalid partition"):
        submit(text, output)


@pytest.mark.docker
@pytest.mark.parametrize("runtime", ["docker", "podman"])
def test_generated_script_runs_the_image_and_the_job_is_captured(
    slurm, podman, test_image, docker_cleanup, tmp_path, runtime
):
    """The container sees the Slurm job: the scheduler source records it from inside."""
    spec = LaunchSpec(
        image=test_image.digest_ref,
        command=("python", "-m", "tfrepro", "env", "--json"),
        mounts=(Mount(str(tmp_path), "/workspace", False, "repo"),),
        env={"TFREPRO_IMAGE_DIGEST": test_image.digest_ref, "SECRET_TOKEN": "s3cret"},
        labels={"tfrepro.run_id": "0" * 32},
    )
    output = str(tmp_path / "tfrepro-%j.out")
    options = slurm_script.check_options(slurm_script.SlurmOptions(partition=slurm, time="10", runtime=runtime), spec)
    text = slurm_script.batch_script(spec, options, output)
    status, out, facts = submit(text, output, caller_env(Job(spec), os.environ))
    assert status == 0, out[-2000:]
    record = json.loads(out[out.index("{") :])
    assert record["scheduler"] == {
        "kind": "slurm",
        "job_id": facts["job_id"],
        "job_name": "tfrepro-000000000000",
        "nodes": os.uname().nodename,
        "partition": slurm,
        "cluster": "tfrepro",
        "account": None,
        "pod": None,
        "namespace": None,
    }
    assert record["container"]["runtime"] == runtime
    assert record["container"]["image_digest"] == test_image.digest_ref
