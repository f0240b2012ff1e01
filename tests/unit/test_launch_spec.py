"""spec.py: options and tags -> LaunchSpec -> docker-py kwargs / docker argv (no daemon)."""

import json
import shlex

import pytest

from tfrepro.errors import RecordError, UsageError
from tfrepro.launch import spec as S

DIGEST = "sha256:" + "ab" * 32
REF = "127.0.0.1:5555/tfrepro-test@" + DIGEST


def make_spec(**overrides):
    values = dict(
        image=REF,
        command=("python", "train.py", "--epochs", "2"),
        workdir="/workspace",
        subdir="examples",
        mounts=(S.Mount("/home/me/repo", "/workspace", False, "repo"), S.Mount("/data", "/data", True)),
        env={"MLFLOW_RUN_ID": "abc", "WANDB_API_KEY": "s3cret", "BATCH": "32"},
        gpus="all",
        shm_size="1g",
        memory="8g",
        labels={"tfrepro.run_id": "abc"},
    )
    values.update(overrides)
    return S.LaunchSpec(**values)


def test_run_kwargs_map_every_option():
    kwargs = S.run_kwargs(make_spec())
    assert kwargs == {
        "image": REF,
        "command": ["python", "train.py", "--epochs", "2"],
        "working_dir": "/workspace/examples",
        "environment": {"MLFLOW_RUN_ID": "abc", "WANDB_API_KEY": "s3cret", "BATCH": "32"},
        "volumes": ["/home/me/repo:/workspace:rw", "/data:/data:ro"],
        "network_mode": "host",
        "labels": {"tfrepro.run_id": "abc"},
        "device_requests": [{"driver": "", "count": -1, "capabilities": [["gpu"]]}],
        "shm_size": "1g",
        "mem_limit": "8g",
    }


def test_run_kwargs_are_accepted_by_docker_py():
    # docker-py's own pure half: our kwargs must survive it (unknown keys raise TypeError)
    from docker.models.containers import _create_container_args

    args = _create_container_args(dict(S.run_kwargs(make_spec(gpus="2")), version="1.41"))
    host = args["host_config"]
    assert host["NetworkMode"] == "host"
    assert host["DeviceRequests"][0]["Count"] == 2
    assert host["Binds"] == ["/home/me/repo:/workspace:rw", "/data:/data:ro"]
    assert host["ShmSize"] == 1024**3 and host["Memory"] == 8 * 1024**3


def test_no_gpu_means_no_device_request():
    kwargs = S.run_kwargs(make_spec(gpus=None, shm_size=None, memory=None))
    assert "device_requests" not in kwargs and "shm_size" not in kwargs and "mem_limit" not in kwargs


def test_docker_argv_is_equivalent_and_hides_secret_values():
    argv = S.docker_argv(make_spec(), hidden=["MLFLOW_RUN_ID"])
    line = shlex.join(argv)
    assert argv[:2] == ["docker", "run"]
    assert "--gpus all" in line and "--shm-size 1g" in line and "--memory 8g" in line
    assert "--network host" in line and "-w /workspace/examples" in line
    assert "-v /data:/data:ro" in line and "@sha256:" in line
    assert "-e WANDB_API_KEY " in line and "s3cret" not in line
    assert "-e MLFLOW_RUN_ID " in line and "-e BATCH=32" in line
    assert argv[-4:] == ["python", "train.py", "--epochs", "2"]


def test_metacharacters_stay_literal_argv():
    command = ("python", "-c", "print(1)", "; touch /tmp/pwned")
    spec = make_spec(command=command)
    assert S.run_kwargs(spec)["command"] == list(command)
    line = shlex.join(S.docker_argv(spec))
    assert line.endswith("'; touch /tmp/pwned'")
    assert shlex.split(line)[-4:] == list(command)


@pytest.mark.parametrize(
    "value,expected", [("all", "all"), ("none", None), ("0", None), ("2", "2"), ("-1", "all"), (None, None)]
)
def test_parse_gpus(value, expected):
    assert S.parse_gpus(value) == expected


@pytest.mark.parametrize("value", ["many", "1.5", "device=0"])
def test_parse_gpus_rejects(value):
    with pytest.raises(UsageError):
        S.parse_gpus(value)


def test_parse_mount():
    assert S.parse_mount("/data:/data:ro") == S.Mount("/data", "/data", True, "user")
    assert S.parse_mount("cache:/root/.cache") == S.Mount("cache", "/root/.cache", False, "user")


@pytest.mark.parametrize(
    "text", ["/data", "relative/dir:/data", "/a:relative", "/a:/b:/c", "/a:/b:rx", "/a:/../etc", "-v:/x", "/a:/b,c"]
)
def test_parse_mount_rejects(text):
    with pytest.raises(UsageError):
        S.parse_mount(text)


def test_docker_socket_needs_the_flag():
    with pytest.raises(UsageError, match="mount-docker-socket"):
        S.parse_mount("/var/run/docker.sock:/var/run/docker.sock")
    mount = S.parse_mount("/var/run/docker.sock:/var/run/docker.sock", allow_docker_socket=True)
    assert mount.kind == "docker-socket"


def test_command_must_be_a_json_list_of_strings():
    assert S.parse_command('["python", "t.py"]') == ("python", "t.py")
    for bad in ["python train.py", "[]", '{"a": 1}', '["python", 3]', "", "null"]:
        with pytest.raises(RecordError, match="JSON list of strings"):
            S.parse_command(bad, RecordError)


@pytest.mark.parametrize("value,expected", [(".", "."), ("examples", "examples"), ("a/./b", "a/b"), ("", ".")])
def test_subdir(value, expected):
    assert S.check_subdir(value) == expected


@pytest.mark.parametrize("value", ["/etc", "..", "../x", "a/../../x", "a\\..\\b"])
def test_subdir_must_stay_inside(value):
    with pytest.raises(RecordError):
        S.check_subdir(value, RecordError)


def test_sizes():
    assert S.parse_size("16G", "--memory") == "16g"
    assert S.parse_size("512mb", "--memory") == "512m"
    assert S.parse_size(None, "--memory") is None
    for bad in ["lots", "1.5g", "-1g", "1t"]:
        with pytest.raises(UsageError):
            S.parse_size(bad, "--memory")


def test_tracking_setup_mounts_only_a_local_stores_root():
    assert S.tracking_setup("http://127.0.0.1:5000") == ("http://127.0.0.1:5000", ())
    uri, mounts = S.tracking_setup("sqlite:////srv/mlflow/mlflow.db")
    assert uri == "sqlite:////srv/mlflow/mlflow.db"
    assert [m.bind() for m in mounts] == ["/srv/mlflow:/srv/mlflow:rw"]
    assert [m.bind() for m in S.tracking_setup("file:///srv/mlruns/")[1]] == ["/srv/mlruns:/srv/mlruns:rw"]
    with pytest.raises(UsageError):
        S.tracking_setup("sqlite:///relative.db")


def test_launch_record_and_tags_keep_names_not_secret_values():
    spec = make_spec()
    env, dropped = S.recorded_env({"WANDB_API_KEY": "s3cret", "BATCH": "32"})
    assert dropped == [("WANDB_API_KEY", "secret-looking name")]
    record = S.launch_record(
        spec, "127.0.0.1:5555/tfrepro-test:latest", "/home/me/repo", "http://user:pw@127.0.0.1:5000", env=env
    )
    text = json.dumps(record)
    assert "s3cret" not in text and "pw@" not in text
    assert record["env"] == {"BATCH": "32", "WANDB_API_KEY": None}
    assert record["env_names"] == ["BATCH", "MLFLOW_RUN_ID", "WANDB_API_KEY"]
    tags = S.launch_tags(record)
    assert tags["tfrepro.launch.gpus"] == "all"
    assert json.loads(tags["tfrepro.launch.mounts"]) == ["/home/me/repo:/workspace:rw", "/data:/data:ro"]
    assert tags["tfrepro.launch.shm_size"] == "1g" and tags["tfrepro.launch.memory"] == "8g"
    assert json.loads(tags["tfrepro.launch.env_names"]) == ["BATCH", "MLFLOW_RUN_ID", "WANDB_API_KEY"]
    assert "s3cret" not in json.dumps(tags)


def test_managed_env_forwards_auth_by_value_but_launch_records_names():
    env = S.managed_env(
        "http://127.0.0.1:5000",
        "3",
        "run1",
        "img:latest",
        REF,
        DIGEST,
        {"MLFLOW_TRACKING_TOKEN": "tok", "HOME": "/root"},
    )
    assert env["MLFLOW_RUN_ID"] == "run1" and env["MLFLOW_EXPERIMENT_ID"] == "3"
    assert env["TFREPRO_IMAGE_DIGEST"] == REF and env["TFREPRO_IMAGE_ID"] == DIGEST
    assert env["MLFLOW_TRACKING_TOKEN"] == "tok" and "HOME" not in env
    assert "TFREPRO_SAFE_DIRECTORY" not in env


def test_managed_env_trusts_only_the_checkout_mount_point():
    env = S.managed_env("http://127.0.0.1:5000", "3", "run1", "img:latest", REF, DIGEST, {}, "/workspace")
    assert env["TFREPRO_SAFE_DIRECTORY"] == "/workspace"
    assert not any(k.startswith("GIT_CONFIG") for k in env)


@pytest.mark.parametrize("value", [None, "", "relative/dir", '/a"b', "/a\nb", "/a\\b"])
def test_unusable_safe_directory_values_are_ignored(value):
    from tfrepro.fingerprint import git as G

    assert G.trust_config(value) is None


def test_safe_directory_config_names_exactly_that_directory():
    import shutil

    from tfrepro.fingerprint import git as G

    home = G.trust_config("/workspace")
    try:
        assert open(home + "/git/config").read() == '[safe]\n\tdirectory = "/workspace"\n'
    finally:
        shutil.rmtree(home)


def test_recorded_env_keeps_no_value_from_the_environment_or_that_looks_secret():
    values = {
        "MODE": "fast",
        "FROM_SHELL": "mine",
        "DATABASE_URL": "postgres://dbuser:DBPASS999@db/x",
        "GH_PAT": "ghp_" + "a" * 36,
    }
    env, dropped = S.recorded_env(values, from_environ=["FROM_SHELL"])
    assert env == {"DATABASE_URL": None, "FROM_SHELL": None, "GH_PAT": None, "MODE": "fast"}
    assert [name for name, _ in dropped] == ["DATABASE_URL", "GH_PAT"]


def test_launch_record_redacts_the_command_and_the_shown_line_hides_secret_values():
    spec = make_spec(command=("python", "t.py", "--api-key", "xyz"), env={"DB": "postgres://u:PW@h/x", "A": "1"})
    assert S.launch_record(spec, REF, None, "http://h")["command"] == ["python", "t.py", "--api-key", "<redacted>"]
    argv = S.docker_argv(spec)
    assert "DB" in argv and "A=1" in argv and "PW" not in " ".join(argv)
