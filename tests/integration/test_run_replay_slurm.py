"""Acceptance on the real one-node Slurm cluster (scripts/slurm-up.sh): `tfrepro run --on slurm`
trains the example in the test image, `tfrepro replay` (on slurm, as recorded) gives
`identical`; a failing job passes its exit code through; SIGTERM cancels the job; with no
slurmctld reachable nothing is submitted."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers.cluster_fixtures import last_job_id
from tests.helpers.git_repos import example_repo
from tfrepro.cli import main, status

pytestmark = [pytest.mark.docker, pytest.mark.slow]

HOST = os.uname().nodename


def slurm_argv(image, experiment, uri, *cmd, extra=()):
    return (
        [
            "run",
            "--on",
            "slurm",
            "--partition",
            "debug",
            "--time",
            "20",
            "--image",
            image,
            "--experiment",
            experiment,
            "--tracking-uri",
            uri,
        ]
        + list(extra)
        + ["--"]
        + list(cmd)
    )


def show_job(job_id):
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True).stdout
    return dict(w.split("=", 1) for w in out.split() if "=" in w)


@pytest.fixture(scope="module")
def slurm_run(slurm, tmp_path_factory, mlflow_server, test_image, client):
    repo = example_repo(tmp_path_factory.mktemp("slurm") / "repo")
    experiment = "slurm-" + uuid.uuid4().hex[:8]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(repo)
        mp.setenv("TFREPRO_SLURM_DIR", str(repo.parent / "slurm-out"))
        assert (
            main(
                slurm_argv(
                    test_image.latest,
                    experiment,
                    mlflow_server.uri,
                    "python",
                    "train.py",
                    "--epochs",
                    "2",
                    extra=["--seed", "0"],
                )
            )
            == 0
        )
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1
    return runs[0].info.run_id, repo


def test_run_on_slurm_records_the_job(slurm_run, client, test_image):
    run_id, repo = slurm_run
    run = client.get_run(run_id)
    tags = run.data.tags
    assert run.info.status == "FINISHED" and tags["tfrepro.model.hash"].startswith("sha256:")
    assert tags["tfrepro.image.digest"] == test_image.digest_ref
    assert tags["tfrepro.launch.backend"] == "slurm" and tags["tfrepro.launch.runtime"] == "docker"
    job_id = tags["tfrepro.launch.job_id"]
    assert (tags["tfrepro.launch.partition"], tags["tfrepro.launch.nodes"], tags["tfrepro.launch.cluster"]) == (
        "debug",
        HOST,
        "tfrepro",
    )
    # and from inside the job, by the scheduler source
    assert tags["tfrepro.scheduler"] == "slurm" and tags["tfrepro.scheduler.job_id"] == job_id
    assert tags["tfrepro.scheduler.nodes"] == HOST and tags["tfrepro.container.runtime"] == "docker"
    assert show_job(job_id)["JobState"] == "COMPLETED"
    launch = json.loads(Path(client.download_artifacts(run_id, "tfrepro/launch.json", str(repo.parent))).read_text())
    assert launch["engine"] == {"backend": "slurm", "partition": "debug", "time": "20", "runtime": "docker"}
    out = (repo.parent / "slurm-out" / ("tfrepro-%s.out" % job_id)).read_text()
    assert "Epoch 2/2" in out


def test_replay_on_slurm_is_identical(slurm_run, client, mlflow_server, capsys, monkeypatch):
    run_id, repo = slurm_run
    monkeypatch.chdir(repo)
    monkeypatch.setenv("TFREPRO_SLURM_DIR", str(repo.parent / "slurm-out"))
    assert main(["replay", run_id, "--yes", "--tracking-uri", mlflow_server.uri]) == 0
    out, err = capsys.readouterr()
    assert "batch script (<checkout> = commit" in out and "#SBATCH --partition=debug" in out
    verdict = out.strip().splitlines()[-1]
    assert ": identical: " in verdict, err[-3000:]
    replay = client.get_run(verdict.split()[2].rstrip(":"))
    assert replay.data.tags["tfrepro.launch.backend"] == "slurm"
    assert replay.data.tags["tfrepro.scheduler.job_id"] == replay.data.tags["tfrepro.launch.job_id"]
    assert replay.data.tags["tfrepro.launch.job_id"] != client.get_run(run_id).data.tags["tfrepro.launch.job_id"]
    assert "submitted Slurm job %s" % replay.data.tags["tfrepro.launch.job_id"] in err


def test_a_failing_job_passes_its_exit_code_through(
    slurm, mlflow_server, test_image, client, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(example_repo(tmp_path / "repo"))
    monkeypatch.setenv("TFREPRO_SLURM_DIR", str(tmp_path / "out"))
    experiment = "slurm-fail-" + uuid.uuid4().hex[:8]
    code = main(
        slurm_argv(
            test_image.latest,
            experiment,
            mlflow_server.uri,
            "python",
            "-c",
            "import sys; print('failing'); sys.exit(3)",
            extra=["--no-autolog"],
        )
    )
    out, err = capsys.readouterr()
    assert code == status.JOB_FAILED and "failing" in out
    assert "tfrepro: error: container exited with status 3" in err
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert run.info.status == "FAILED"
    job = show_job(run.data.tags["tfrepro.launch.job_id"])
    assert (job["JobState"], job["ExitCode"]) == ("FAILED", "3:0")


def test_sigterm_cancels_the_job(slurm, mlflow_server, test_image, client, tmp_path):
    repo = example_repo(tmp_path / "repo")
    experiment = "slurm-cancel-" + uuid.uuid4().hex[:8]
    argv = slurm_argv(
        test_image.latest,
        experiment,
        mlflow_server.uri,
        "python",
        "-c",
        "import time; print('started', flush=True); time.sleep(300)",
        extra=["--no-autolog"],
    )
    env = dict(os.environ, TFREPRO_SLURM_DIR=str(tmp_path / "out"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tfrepro"] + argv,
        cwd=str(repo),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    err = ""
    try:
        assert proc.stdout.readline().strip() == "started"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)  # drains both pipes: a full one would block tfrepro
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-3000:] and "cancelling Slurm job" in err and "tfrepro: interrupted" in err
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert run.info.status == "FAILED"
    job_id = run.data.tags["tfrepro.launch.job_id"]
    for _ in range(120):  # COMPLETING while slurmd still signals the job's processes
        if show_job(job_id)["JobState"] != "COMPLETING":
            break
        time.sleep(0.5)
    assert show_job(job_id)["JobState"] == "CANCELLED"
    # and the container went with it (a killed docker client leaves its container running)
    left = subprocess.run(["docker", "ps", "-q", "--filter", "name=tfrepro-" + job_id], capture_output=True, text=True)
    assert left.stdout.strip() == ""


def test_no_controller_reachable_submits_nothing(
    slurm, mlflow_server, test_image, client, tmp_path, monkeypatch, capsys
):
    before = last_job_id()
    conf = tmp_path / "slurm.conf"
    conf.write_text(Path("/etc/slurm/slurm.conf").read_text() + "SlurmctldPort=9\n")  # nobody listens there
    monkeypatch.setenv("SLURM_CONF", str(conf))
    monkeypatch.chdir(example_repo(tmp_path / "repo"))
    experiment = "slurm-down-" + uuid.uuid4().hex[:8]
    start = time.monotonic()
    code = main(slurm_argv(test_image.latest, experiment, mlflow_server.uri, "python", "train.py"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == status.ENGINE and time.monotonic() - start < 60
    assert err[-1].startswith("tfrepro: error: no Slurm controller reachable (scontrol ping: ")
    assert not [line for line in err if "Traceback" in line]
    assert client.get_experiment_by_name(experiment) is None  # no run, not even its experiment
    monkeypatch.delenv("SLURM_CONF")
    assert last_job_id() == before
