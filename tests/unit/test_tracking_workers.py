"""Every worker's environment in one run: the pure record, the agreement, the worker's own index,
the chief, and the shape a replay merges from the record and the command line."""

import json

import pytest

from tfrepro import schema
from tfrepro.callback import is_chief
from tfrepro.environment import ContainerInfo, Environment, GpuDevice, GpuInfo, SystemInfo
from tfrepro.errors import UsageError
from tfrepro.inspect import explain
from tfrepro.launch import workers as shapes
from tfrepro.tracking import workers


def env(host, driver="550.54.15", model="NVIDIA H100 80GB HBM3", digest="repo@sha256:" + "a" * 64):
    return Environment(
        system=SystemInfo(hostname=host),
        gpu=GpuInfo(count=1, driver_version=driver, cuda_driver_version=12040, devices=(GpuDevice(0, model),)),
        container=ContainerInfo(image_digest=digest),
    )


def test_worker_record_holds_host_gpus_driver_cuda_digest_and_index():
    record = workers.worker_record(env("node1"), 1)
    assert record["index"] == 1 and record["host"] == "node1"
    assert record["gpu_model"] == "NVIDIA H100 80GB HBM3" and record["driver"] == "550.54.15"
    assert record["cuda_driver"] == "12.4" and record["image_digest"].endswith("a" * 64)
    json.dumps(record)


def test_workers_that_agree_and_workers_that_do_not():
    same = [workers.worker_record(env("n%d" % i), i) for i in (1, 0)]
    gathered = workers.summary(same, 2)
    assert gathered["agree"] and gathered["missing"] == [] and [r["index"] for r in gathered["records"]] == [0, 1]
    assert workers.tags(gathered) == {schema.WORKERS_AGREE: "true"}
    other = [workers.worker_record(env("n0"), 0), workers.worker_record(env("n1", driver="535.0", digest="x"), 1)]
    gathered = workers.summary(other, 3)
    assert not gathered["agree"] and gathered["disagree"] == ["image_digest", "driver"] and gathered["missing"] == [2]
    assert workers.tags(gathered)[schema.WORKERS_DISAGREE] == "image_digest,driver"
    assert workers.describe(gathered) == "the workers disagree on image_digest, driver"


def test_a_value_one_worker_could_not_read_is_no_disagreement():
    one = workers.worker_record(env("n0"), 0)
    two = dict(workers.worker_record(env("n1"), 1), driver=None)
    assert workers.disagreeing([one, two]) == []


@pytest.mark.parametrize(
    "environ, index",
    [
        ({}, None),
        ({"TF_CONFIG": json.dumps({"cluster": {}, "task": {"type": "worker", "index": 2}})}, 2),
        ({"TFREPRO_WORKER_INDEX": "1"}, 1),
        ({"SLURM_PROCID": "1", "SLURM_NTASKS": "2"}, 1),
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}, None),
        ({"JOB_COMPLETION_INDEX": "3"}, 3),
    ],
)
def test_own_index(environ, index):
    assert workers.own_index(environ) == index


def test_chief_without_tf_config_is_index_zero():
    assert is_chief(None, {"SLURM_PROCID": "0", "SLURM_NTASKS": "2"})
    assert not is_chief(None, {"SLURM_PROCID": "1", "SLURM_NTASKS": "2"})
    assert not is_chief(None, {"JOB_COMPLETION_INDEX": "1"})
    assert is_chief(None, {}) and is_chief(None)
    tf_config = json.dumps({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}})
    assert not is_chief(tf_config, {"SLURM_PROCID": "0", "SLURM_NTASKS": "2"})  # TF_CONFIG wins


def test_write_own_never_raises(caplog):
    def broken(text, path):
        raise OSError("store down")

    workers.write_own("r", {"index": 1}, broken)
    assert "could not record worker 1" in caplog.text


def test_replay_keeps_the_recorded_shape_and_workers_overrides_the_count():
    recorded = shapes.recorded({"backend": "slurm", "shape": shapes.settings(shapes.Shape(4, 2, "1"), "w")})
    assert recorded == shapes.Shape(workers=4, tasks_per_node=2, gpus_per_task="1")
    assert shapes.merged({}, recorded) == recorded
    assert shapes.merged({"workers": 2}, recorded) == shapes.Shape(workers=2, gpus_per_task="1")
    assert shapes.merged({"worker_port": 30000}, None).base_port == 30000
    assert shapes.recorded({"backend": "docker"}) == shapes.ONE
    with pytest.raises(UsageError, match="--worker-port"):
        shapes.merged({"workers": 2, "worker_port": 80})


class Run:
    def __init__(self, tags):
        self.tags = tags


def test_the_verdict_names_another_worker_count_and_disagreeing_workers():
    factors = explain._workers(
        Run({schema.LAUNCH_WORKERS: "4"}),
        Run({schema.LAUNCH_WORKERS: "2", schema.WORKERS_AGREE: "false", schema.WORKERS_DISAGREE: "driver"}),
    )
    assert factors[0].line == (
        "replayed with 2 workers, recorded with 4: the global batch and the reduction order differ"
    )
    assert "replay's workers disagree on driver" in factors[1].line
    assert explain._workers(Run({}), Run({})) == []


class Record:
    def __init__(self, tags, gathered=None):
        self.tags, self.workers = tags, gathered


def test_show_lists_the_workers_and_says_whether_they_agree():
    from tfrepro.inspect.render import worker_rows

    records = [workers.worker_record(env("n0"), 0), workers.worker_record(env("n1", driver="535.0"), 1)]
    rows = dict(worker_rows(Record({schema.LAUNCH_WORKERS: "2"}, workers.summary(records, 2))))
    assert rows["count"] == "2" and rows["worker 1"].startswith("n1, 1 x NVIDIA H100 80GB HBM3, driver 535.0")
    assert rows["agree"] == "NO: they differ in driver"
    assert worker_rows(Record({})) == []
    assert dict(worker_rows(Record({schema.LAUNCH_WORKERS: "2"}))) == {"count": "2"}  # no workers.json


def test_diff_flags_workers_that_disagree():
    from tfrepro.inspect import compare

    agree = Record({schema.LAUNCH_WORKERS: "2", schema.WORKERS_AGREE: "true"})
    disagree = Record({schema.LAUNCH_WORKERS: "2", schema.WORKERS_AGREE: "false", schema.WORKERS_DISAGREE: "gpu_model"})
    diffs = compare.compare_mappings("workers", compare._workers(agree), compare._workers(disagree), compare.MEDIUM)
    assert {(d.field, d.a, d.b) for d in diffs} == {("agree", "true", "false"), ("disagree", None, "gpu_model")}
    assert compare._workers(Record({})) == {}


def test_drift_rows_of_the_shape():
    from tfrepro.replay import drift

    assert drift.shape_rows(1, 1, None, 0) == []
    (count,) = drift.shape_rows(4, 2, None, None)
    assert (count.recorded, count.host, count.differs, count.blocking) == ("4", "2", True, False)
    rows = drift.shape_rows(2, 2, "1", 1)  # two workers of one GPU each, on a host with one
    assert [(row.name, row.blocking) for row in rows] == [("workers", False), ("worker gpus", True)]


def test_the_slurm_output_names_the_failed_worker_once():
    chunks, facts = [], []
    write = shapes.failure_watcher(chunks.append, facts.append)
    for chunk in (
        b"0: up\n1: tfrepro: worker 1 exi",
        b"ted with status 137\n",
        b"tfrepro: worker 0 exited with status 1\n",
    ):
        write(chunk)
    assert facts == [{"failed_worker": "1", "failed_worker_status": "137"}] and len(chunks) == 3
