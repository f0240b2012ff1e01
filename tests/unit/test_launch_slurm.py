"""Slurm engine, the pure half: options, the batch script per runtime (golden files), job facts."""

import os
import subprocess
from pathlib import Path

import pytest

from tfrepro.errors import UsageError
from tfrepro.launch import engines, settings, slurm, slurm_job, workers
from tfrepro.launch.job import Job, caller_env
from tfrepro.launch.spec import LaunchSpec, Mount

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
GOLDEN = FIXTURES / "launch"
DIGEST = "127.0.0.1:5555/tfrepro-test@sha256:" + "ab" * 32
OUTPUT = "/shared/tfrepro/slurm/tfrepro-%j.out"


def spec(**changes):
    fields = dict(
        image=DIGEST,
        command=("python", "examples/train.py", "--epochs", "2"),
        mounts=(Mount("/shared/checkout", "/workspace", False, "repo"), Mount("/data", "/data", True, "user")),
        env={
            "MLFLOW_TRACKING_URI": "http://mlflow.internal:5000",
            "MLFLOW_RUN_ID": "0123456789abcdef0123456789abcdef",
            "MLFLOW_TRACKING_TOKEN": "s3cret",
            "NOTE": "two words",
        },
        gpus="2",
        shm_size="1g",
        memory="8g",
        labels={"tfrepro.run_id": "0123456789abcdef0123456789abcdef"},
    )
    fields.update(changes)
    return LaunchSpec(**fields)


def golden(name, text):
    path = GOLDEN / name
    if os.environ.get("TFREPRO_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), "%s differs (TFREPRO_UPDATE_GOLDEN=1 rewrites it)" % name


@pytest.mark.parametrize("runtime", slurm.RUNTIMES)
def test_batch_script_per_runtime(runtime):
    options = slurm.check_options(
        slurm.SlurmOptions(
            partition="gpu",
            time="2:00:00",
            account="ml",
            runtime=runtime,
            sbatch_args=("--exclusive", "--constraint=h200"),
        ),
        spec(),
    )
    script = slurm.batch_script(spec(), options, OUTPUT, title="tfrepro run")
    golden("slurm-%s.sh" % runtime, script)
    assert "s3cret" not in script  # a secret value is never written; sbatch exports it
    assert "--gres=gpu:2" in script and "--mem=8192M" in script
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


def test_secret_values_travel_in_sbatch_environment_only():
    env = caller_env(Job(spec(), ("MLFLOW_RUN_ID",)), {"PATH": "/bin"})
    assert env == {
        "PATH": "/bin",
        "MLFLOW_TRACKING_TOKEN": "s3cret",
        "MLFLOW_RUN_ID": "0123456789abcdef0123456789abcdef",
    }


def test_gres_derived_from_gpus_unless_given():
    assert slurm.check_options(slurm.SlurmOptions(), spec(gpus="4")).gres == "gpu:4"
    assert slurm.check_options(slurm.SlurmOptions(), spec(gpus=None)).gres is None
    assert slurm.check_options(slurm.SlurmOptions(gres="gpu:h200:2"), spec(gpus="all")).gres == "gpu:h200:2"
    with pytest.raises(UsageError, match="how many GPUs"):
        slurm.check_options(slurm.SlurmOptions(), spec(gpus="all"))


@pytest.mark.parametrize(
    "options, message",
    [
        (slurm.SlurmOptions(partition="gpu;rm"), "--partition"),
        (slurm.SlurmOptions(account="-x"), "--account"),
        (slurm.SlurmOptions(time="2 hours"), "--time"),
        (slurm.SlurmOptions(nodes=0), "--nodes"),
        (slurm.SlurmOptions(runtime="singularity"), "--runtime"),
        (slurm.SlurmOptions(gres="gpu 2"), "--gres"),
        (slurm.SlurmOptions(sbatch_args=("--comment=a b",)), "--sbatch-arg"),
        (slurm.SlurmOptions(sbatch_args=("--wait",)), "sets that itself"),
        (slurm.SlurmOptions(sbatch_args=("--export=NONE",)), "sets that itself"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(UsageError, match=message):
        slurm.check_options(options, spec())


def test_time_formats():
    for value in ("30", "30:00", "2:00:00", "1-12", "1-12:30:00", "UNLIMITED"):
        assert slurm.check_options(slurm.SlurmOptions(time=value), spec()).time == value


def test_no_gpus_no_gpu_words_and_multi_node_uses_srun():
    options = slurm.check_options(slurm.SlurmOptions(nodes=2), spec(gpus=None, memory=None))
    script = slurm.batch_script(spec(gpus=None, memory=None), options, OUTPUT)
    assert "--gres" not in script and "--gpus" not in script and "--mem" not in script
    assert '\nsrun --ntasks-per-node=1 docker run --rm \\\n  --name "$container" \\\n  --network host \\\n' in script


def test_memory_and_enroot_forms():
    assert [slurm.memory_mb(v) for v in ("512m", "8g", "1048577", "16k", None)] == ["512M", "8192M", "2M", "1M", None]
    assert (
        slurm.enroot_image("nvcr.io/nvidia/tensorflow@sha256:" + "0" * 64)
        == "nvcr.io#nvidia/tensorflow@sha256:" + "0" * 64
    )
    assert slurm.enroot_image("localhost/x@sha256:" + "0" * 64) == "localhost#x@sha256:" + "0" * 64
    assert slurm.enroot_image("library/ubuntu@sha256:" + "0" * 64) == "library/ubuntu@sha256:" + "0" * 64
    with pytest.raises(UsageError, match="malformed image digest"):
        slurm.enroot_image("nvcr.io/nvidia/tensorflow:22.07-tf2-py3")


def test_pyxis_refuses_mount_paths_it_cannot_express():
    bad = spec(mounts=(Mount("/data,x", "/data", False, "user"),))
    options = slurm.check_options(slurm.SlurmOptions(runtime="pyxis"), bad)
    with pytest.raises(UsageError, match="pyxis cannot mount"):
        slurm.batch_script(bad, options, OUTPUT)


def test_job_facts_from_recorded_scontrol_output():
    """`scontrol show job -o` as slurmctld 22.05 printed it for a finished and a cancelled job."""
    done = slurm_job.job_facts(
        slurm_job.parse_show_job((FIXTURES / "scheduler" / "scontrol-show-job-completed.txt").read_text())
    )
    assert done == {"job_id": "10", "partition": "debug", "nodes": "vm", "state": "COMPLETED", "exit_code": "0:0"}
    cancelled = slurm_job.job_facts(
        slurm_job.parse_show_job((FIXTURES / "scheduler" / "scontrol-show-job-cancelled.txt").read_text())
    )
    assert cancelled["state"] == "CANCELLED" and cancelled["exit_code"] == "0:15"


def test_exit_status_from_scontrol():
    assert [slurm_job.exit_status(v, 99) for v in ("0:0", "3:0", "0:15", "0:9", "", None, "x:y")] == [
        0,
        3,
        143,
        137,
        99,
        99,
        99,
    ]


# -- N workers: one container per srun task, TF_CONFIG from SLURM_PROCID ------------------


@pytest.mark.parametrize("runtime", ["docker", "podman"])
def test_batch_script_of_two_workers_with_a_gpu_each(runtime, monkeypatch):
    monkeypatch.setenv("TFREPRO_SLURM_DIR", "/shared/tfrepro/slurm")
    engine = engines.get("slurm", settings.Options(slurm=slurm.SlurmOptions(partition="gpu", runtime=runtime)))
    shape = workers.Shape(workers=2, gpus_per_task="1")
    script = engine.preview(Job(spec(), shape=shape))
    golden("slurm-%s-2-workers.sh" % runtime, script)
    assert "#SBATCH --ntasks=2\n#SBATCH --ntasks-per-node=2\n" in script
    assert "#SBATCH --gres=gpu:2\n" in script  # two tasks of one GPU on the node
    assert "srun --ntasks=2 --ntasks-per-node=2 --distribution=block --kill-on-bad-exit=1 --label" in script
    assert "s3cret" not in script
    assert engine.settings(shape)["shape"] == {
        "workers": 2,
        "base_port": workers.DEFAULT_BASE_PORT,
        "gpus_per_task": "1",
        "wiring": "TF_CONFIG from SLURM_PROCID",
    }


def test_workers_spread_over_nodes():
    options = slurm.check_options(slurm.SlurmOptions(nodes=2), spec(gpus=None))
    shape = slurm.check_shape(options, workers.Shape(workers=4))
    script = slurm.batch_script(spec(gpus=None), options, OUTPUT, shape=shape)
    assert "#SBATCH --nodes=2\n" in script and "#SBATCH --ntasks-per-node=2\n" in script
    assert "${hosts[task / 2]}" in script
    timed = slurm.batch_script(spec(gpus=None), options, OUTPUT, shape=workers.Shape(workers=4, timeout_s=61))
    assert "#SBATCH --time=2\n" in timed  # minutes: a worker that never joins ends with the job
    one_worker = slurm.batch_script(spec(gpus=None), options, OUTPUT)
    assert one_worker == slurm.batch_script(spec(gpus=None), options, OUTPUT, shape=workers.ONE)
    assert "--ntasks=" not in one_worker


@pytest.mark.parametrize(
    "options, shape, message",
    [
        (slurm.SlurmOptions(runtime="pyxis"), workers.Shape(workers=2), "--runtime pyxis runs one container"),
        (slurm.SlurmOptions(nodes=1), workers.Shape(workers=3, tasks_per_node=2), "do not fit on --nodes 1"),
        (slurm.SlurmOptions(sbatch_args=("--ntasks=4",)), workers.Shape(workers=2), "--workers sets that itself"),
    ],
)
def test_shapes_a_job_cannot_take(options, shape, message):
    with pytest.raises(UsageError, match=message):
        slurm.check_shape(slurm.check_options(options, spec(gpus=None)), shape)


def test_the_task_script_is_one_quoted_here_document():
    """Nothing in the task's script is expanded by the batch script: each task expands it."""
    options = slurm.check_options(slurm.SlurmOptions(), spec(gpus=None))
    script = slurm.batch_script(spec(gpus=None, command=("echo", "$HOME")), options, OUTPUT, shape=workers.Shape(2))
    head, _, rest = script.partition("task_script=$(cat <<'TFREPRO_TASK'\n")
    task, _, tail = rest.partition("\nTFREPRO_TASK\n)\n")
    assert "TF_CONFIG" in task and "'$HOME'" in task and 'bash -c "$task_script" &' in tail
    result = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
