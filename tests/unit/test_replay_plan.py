"""plan.py: a run record -> what replay will run; every tag validated (no daemon, no MLflow)."""

import dataclasses
import json

import pytest

from tfrepro.environment import Environment, GitInfo
from tfrepro.errors import RecordError, UsageError
from tfrepro.fingerprint.data_record import DataSource
from tfrepro.imageref import Resolved
from tfrepro.launch import pipeline
from tfrepro.launch import spec as S
from tfrepro.replay import plan as P
from tfrepro.tracking.record import RunRecord

DIGEST_REF = "127.0.0.1:5555/tfrepro-test@sha256:" + "ab" * 32
COMMIT = "1" * 40
TAGS = {
    "tfrepro.image.digest": DIGEST_REF,
    "tfrepro.image.ref": "127.0.0.1:5555/tfrepro-test:latest",
    "tfrepro.git.commit": COMMIT,
    "tfrepro.git.dirty": "true",
    "tfrepro.command": json.dumps(["python", "train.py", "--epochs", "2"]),
    "tfrepro.workdir": "examples",
    "tfrepro.seed": "42",
}
LAUNCH = {
    "workdir": "/workspace",
    "gpus": "all",
    "shm_size": "1g",
    "memory": "8g",
    "repo_root": "/home/me/repo",
    "mounts": [
        {"source": "/home/me/repo", "target": "/workspace", "read_only": False, "kind": "repo"},
        {"source": "/srv/mlflow", "target": "/srv/mlflow", "read_only": False, "kind": "tracking"},
        {"source": "/data", "target": "/data", "read_only": True, "kind": "user"},
    ],
    "env": {"BATCH": "32", "HF_TOKEN": None},
}


def record(tags=None, launch=LAUNCH, patch="diff --git a/x b/x\n", environment=None, drop=()):
    tags = dict(TAGS, **(tags or {}))
    for key in drop:
        tags.pop(key)
    return RunRecord(
        "run1",
        environment or Environment.from_tags(tags),
        experiment_id="0",
        run_name="r",
        status="FINISHED",
        tags=tags,
        patch=patch,
        launch=launch,
    )


def test_plan_from_a_full_record():
    plan = P.plan(record(), {"HF_TOKEN": "hf_x"})
    spec = plan.spec
    assert plan.image == DIGEST_REF and plan.commit == COMMIT and plan.launch.seed == "42"
    assert spec.command == ("python", "train.py", "--epochs", "2")
    assert spec.cwd == "/workspace/examples"
    assert spec.gpus == "all" and spec.shm_size == "1g" and spec.memory == "8g"
    assert [m.bind() for m in spec.mounts] == ["<checkout>:/workspace:rw"]
    assert [m.bind() for m in plan.launch.mounts] == ["/data:/data:ro"]  # offered, not imposed
    assert spec.env == {"BATCH": "32", "HF_TOKEN": "hf_x", "TFREPRO_SEED": "42"}
    assert plan.repo_roots == ("/home/me/repo",)


def test_the_runtime_spec_mounts_the_checkout_and_adds_tfrepro_env():
    plan = P.plan(record(), {})
    destination = pipeline.Destination(
        None, "sqlite:////t/m.db", "0", "sqlite:////t/m.db", (S.Mount("/t", "/t", False, "tracking"),)
    )
    blueprint = pipeline.Blueprint(plan.spec, Resolved(plan.image_ref, plan.image_digest, plan.image_id), destination)
    spec = pipeline.runtime_spec(blueprint, "new", checkout="/tmp/wt")
    assert [m.bind() for m in spec.mounts] == ["/tmp/wt:/workspace:rw", "/t:/t:rw"]
    assert spec.env["MLFLOW_RUN_ID"] == "new" and spec.env["BATCH"] == "32"
    assert spec.labels == {"tfrepro.run_id": "new"}
    preview = pipeline.runtime_spec(blueprint)
    assert preview.mounts[0].source == P.CHECKOUT and preview.env["MLFLOW_RUN_ID"] == pipeline.NEW_RUN


def test_missing_secret_value_is_a_warning():
    plan = P.plan(record(), {})
    assert "HF_TOKEN" not in plan.spec.env and plan.env_grant.needs_pass_env == ("HF_TOKEN",)
    assert any("pass --pass-env HF_TOKEN" in w for w in plan.warnings)


def test_nothing_is_taken_from_the_environment_of_the_replaying_user(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "FAKE-replayer-token")
    plan = P.plan(record(), {})
    assert "HF_TOKEN" not in plan.spec.env and "FAKE-replayer-token" not in str(plan)


def test_a_withheld_patch_is_a_warning_not_a_refusal():
    plan = P.plan(record({"tfrepro.git.patch_withheld": "true"}, patch=None), {})
    assert plan.patch == "" and plan.patch_withheld
    assert any("dirty state cannot be restored" in w for w in plan.warnings)


def test_a_redacted_command_is_said():
    plan = P.plan(record({"tfrepro.command": json.dumps(["python", "t.py", "--password=<redacted>"])}), {})
    assert any("redacted" in w for w in plan.warnings)


def test_gpus_option_overrides_the_record():
    assert P.plan(record(), {}, gpus="none").spec.gpus is None
    assert P.plan(record(launch={}), {}).spec.gpus is None
    assert P.plan(record({"tfrepro.gpu.count": "8"}, launch={}), {}).spec.gpus == "all"


def test_gpu_run_on_a_host_without_gpus_is_refused():
    plan = P.plan(record(), {})
    with pytest.raises(UsageError, match="--gpus none"):
        P.check_gpus(plan, 0)
    P.check_gpus(plan, 1)
    P.check_gpus(P.plan(record(), {}, gpus="none"), 0)
    with pytest.raises(UsageError):
        P.check_gpus(P.plan(record(), {}, gpus="4"), 2)


@pytest.mark.parametrize(
    "tags,drop,message",
    [
        ({}, ["tfrepro.image.digest"], "no image digest"),
        ({"tfrepro.image.digest": "127.0.0.1:5555/x@sha256:1234"}, [], "malformed image digest"),
        ({"tfrepro.image.digest": "x:latest"}, [], "malformed image digest"),
        ({}, ["tfrepro.git.commit"], "no git commit"),
        ({"tfrepro.git.commit": "HEAD; rm -rf /"}, [], "malformed commit"),
        ({}, ["tfrepro.command"], "no command"),
        ({"tfrepro.command": "python train.py; touch /tmp/pwned"}, [], "not a JSON list"),
        ({"tfrepro.workdir": "../../etc"}, [], "stay inside"),
        ({"tfrepro.seed": "42; x"}, [], "malformed seed"),
    ],
)
def test_bad_records_are_refused(tags, drop, message):
    with pytest.raises(RecordError, match=message):
        P.plan(record(tags, drop=drop), {})


def test_dirty_run_without_patch_is_refused():
    with pytest.raises(RecordError, match="patch"):
        P.plan(record(patch=None), {})
    assert P.plan(record({"tfrepro.git.dirty": "false"}, patch=None), {}).patch == ""


def test_host_only_run_uses_the_image_id():
    image_id = "sha256:" + "cd" * 32
    plan = P.plan(
        record({"tfrepro.replayable": "host-only", "tfrepro.image.id": image_id}, drop=["tfrepro.image.digest"]), {}
    )
    assert plan.image == image_id and plan.image_digest is None


@pytest.mark.parametrize(
    "launch,message",
    [
        (dict(LAUNCH, mounts=["/:/host"]), "mount is not an object"),
        (dict(LAUNCH, mounts=[{"source": "/data", "target": "relative", "kind": "user"}]), "absolute container path"),
        (dict(LAUNCH, env={"BAD NAME": "x"}), "bad environment entry"),
        (dict(LAUNCH, env=["x"]), "env is not an object"),
        (dict(LAUNCH, shm_size="$(reboot)"), "shm_size"),
        (dict(LAUNCH, gpus="everything"), "--gpus"),
        (dict(LAUNCH, workdir="/work:space"), "workdir"),
    ],
)
def test_bad_launch_records_are_refused(launch, message):
    with pytest.raises(RecordError, match=message):
        P.plan(record(launch=launch), {})


def test_a_recorded_docker_socket_is_only_offered():
    launch = dict(LAUNCH, mounts=[{"source": "/var/run/docker.sock", "target": "/var/run/docker.sock"}])
    plan = P.plan(record(launch=launch), {})  # launch/hostpaths.py refuses it without --mount-docker-socket
    assert plan.launch.mounts[-1].kind == "docker-socket" and len(plan.spec.mounts) == 1


def test_untracked_files_warn():
    env = Environment(git=GitInfo(commit=COMMIT, untracked=("notes.txt",), root="/srv/repo"))
    plan = P.plan(record(environment=env), {"HF_TOKEN": "x"})
    assert plan.warnings == ("1 untracked file(s) cannot be restored: notes.txt",)
    assert plan.repo_roots == ("/home/me/repo", "/srv/repo")
    # fingerprinted beside the code (tfrepro run, issue 15): replay restores them, no warning;
    # and a replay's own record of those mounts is not replayed as a user mount
    fingerprinted = dataclasses.replace(
        record(environment=env), data=(DataSource("untracked", "notes.txt", kind="file"),)
    )
    assert P.plan(fingerprinted, {"HF_TOKEN": "x"}).warnings == ()
    launch = dict(
        LAUNCH,
        mounts=LAUNCH["mounts"]
        + [
            {"source": "/home/me/repo/notes.txt", "target": "/workspace/notes.txt", "read_only": True, "kind": "beside"}
        ],
    )
    assert [m.target for m in P.plan(record(launch=launch), {}).launch.mounts] == ["/data"]


def test_absolute_workdir_inside_the_mount_is_made_relative():
    assert P.plan(record({"tfrepro.workdir": "/workspace/examples"}), {}).spec.subdir == "examples"
    assert P.plan(record({"tfrepro.workdir": "/workspace"}), {}).spec.subdir == "."
    with pytest.raises(RecordError, match="stay inside"):
        P.plan(record({"tfrepro.workdir": "/etc"}), {})
