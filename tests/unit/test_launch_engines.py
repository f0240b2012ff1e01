"""engines.py: `--on` options, what a run records and a replay reads back, refusals before any run."""

import json

import pytest

from tfrepro.errors import RecordError, UsageError
from tfrepro.launch import engines, host_engines, settings
from tfrepro.launch.job import Job
from tfrepro.launch.kubernetes import Source
from tfrepro.launch.spec import LaunchSpec, Mount, parse_mount

DIGEST = "127.0.0.1:5555/tfrepro-test@sha256:" + "ab" * 32
SOURCE = Source("https://git.example/x.git", "a" * 40)


def spec(**changes):
    fields = dict(
        image=DIGEST,
        command=("python", "train.py"),
        mounts=(Mount("/co", "/workspace", False, "repo"),),
        env={"MLFLOW_TRACKING_URI": "http://m:5000"},
        labels={"tfrepro.run_id": "0" * 32},
    )
    fields.update(changes)
    return LaunchSpec(**fields)


def test_an_option_of_another_engine_is_refused():
    with pytest.raises(UsageError, match="^--partition is for --on slurm, not --on docker$"):
        settings.options_from("docker", {"partition": "gpu"})
    with pytest.raises(UsageError, match="^--namespace is for --on kubernetes, not --on slurm$"):
        settings.options_from("slurm", {"namespace": "ml"})
    with pytest.raises(UsageError, match="--on must be one of"):
        settings.options_from("lsf", {})


def test_a_replay_submits_as_recorded_unless_told_otherwise():
    given = {"partition": "gpu", "time": "20", "sbatch_args": ("--exclusive",), "runtime": None}
    recorded = engines.get("slurm", settings.options_from("slurm", given)).settings()
    assert recorded == {
        "backend": "slurm",
        "partition": "gpu",
        "time": "20",
        "sbatch_args": ["--exclusive"],
        "runtime": "docker",
    }
    again = json.loads(json.dumps(recorded))  # through launch.json
    options = settings.options_from("slurm", {"time": "60"}, again)
    assert (options.slurm.partition, options.slurm.time) == ("gpu", "60")
    # extra sbatch options grant access (--export, --output...): only the replaying user gives them
    assert options.slurm.sbatch_args == () and settings.not_reused("slurm", again) == ("--sbatch-arg",)
    assert settings.options_from("slurm", {"sbatch_args": ("--exclusive",)}, again).slurm.sbatch_args == (
        "--exclusive",
    )
    # settings of another engine are not carried over
    assert settings.options_from("kubernetes", {}, again).kubernetes.namespace == "default"


def test_recorded_engine_settings_are_untrusted():
    for bad in ({"partition": ["a"]}, {"nodes": "2"}, {"nodes": True}):
        with pytest.raises(RecordError, match="malformed engine setting"):
            settings.options_from("slurm", {}, dict(bad, backend="slurm"))
    assert settings.options_from("slurm", {}, {"backend": "slurm", "bogus": 1, "nodes": None}).slurm.nodes is None
    name, recorded = settings.recorded_backend({"engine": {"backend": "slurm", "partition": "gpu"}}, {})
    assert (name, recorded["partition"]) == ("slurm", "gpu")
    assert settings.recorded_backend({}, {"tfrepro.launch.backend": "podman"})[0] == "podman"
    assert settings.recorded_backend({}, {})[0] == "docker"  # runs from before --on
    tampered = {
        "backend": "kubernetes",
        "namespace": "kube-system",
        "service_account": "cluster-admin",
        "env_secret": "prod-db",
        "image_pull_secret": "theirs",
        "ttl_seconds": 60,
    }
    options = settings.options_from("kubernetes", {}, tampered).kubernetes
    assert (options.namespace, options.service_account, options.env_secret, options.image_pull_secret) == (
        "default",
        None,
        "tfrepro-env",
        None,
    )
    assert options.ttl_seconds == 60
    assert settings.not_reused("kubernetes", tampered) == (
        "--env-secret",
        "--image-pull-secret",
        "--namespace",
        "--service-account",
    )
    with pytest.raises(RecordError, match="unknown engine"):
        settings.recorded_backend({"engine": {"backend": "rm -rf"}}, {})


def test_a_gres_derived_from_gpus_is_not_recorded():
    engine = engines.get("slurm", settings.options_from("slurm", {}))
    before = vars(engine).copy()
    engine.check(Job(spec(gpus="2")))
    assert vars(engine) == before  # check() changes nothing
    assert "#SBATCH --gres=gpu:2\n" in engine.preview(Job(spec(gpus="2")))
    assert "gres" not in engine.settings()


@pytest.mark.parametrize("name", settings.NAMES)
def test_every_engine_has_the_protocols_methods_and_no_base_class(name):
    engine = engines.get(name, settings.Options())
    assert engine.name == name and type(engine).__mro__ == (type(engine), object)
    for method in ("check", "preview", "announce", "resolve", "prepare", "image_env", "run", "settings"):
        assert callable(getattr(engine, method)), method
    assert engine.settings()["backend"] == name


def test_a_daemon_is_reached_on_first_use_only(monkeypatch):
    connections = []
    monkeypatch.setattr(host_engines.docker, "connect", lambda: connections.append(1) or object())
    engine = engines.get("docker", settings.Options())
    assert "docker run" in engine.preview(Job(spec())) and connections == []
    assert engine.client() is engine.client() and connections == [1]


def test_refusals_before_anything_runs():
    claim = spec(mounts=spec().mounts + (Mount("pvc:data", "/data", True, "user"),))
    for name in ("docker", "podman", "slurm"):
        with pytest.raises(UsageError, match="pvc:data: a PersistentVolumeClaim mount needs --on kubernetes"):
            engines.get(name, settings.Options()).check(Job(claim, source=SOURCE))
    with pytest.raises(UsageError, match="pulls the image from a registry, by digest"):
        engines.get("slurm", settings.Options()).check(Job(spec(image="sha256:" + "0" * 64)))
    with pytest.raises(UsageError, match="needs a git checkout"):
        engines.get("kubernetes", settings.Options()).check(Job(spec()))
    engines.get("kubernetes", settings.Options()).check(Job(claim, source=SOURCE))


def test_pvc_mounts_parse_only_for_kubernetes():
    assert parse_mount("pvc:datasets:/data:ro", allow_claims=True) == Mount("pvc:datasets", "/data", True, "user")
    with pytest.raises(UsageError, match="needs --on kubernetes"):
        parse_mount("pvc:datasets:/data")
    with pytest.raises(UsageError, match="must be an absolute path or a volume name"):
        parse_mount("pvc:../x:/data", allow_claims=True)


def test_kubernetes_preview_is_yaml_or_json():
    engine = engines.get("kubernetes", settings.options_from("kubernetes", {"output": "json", "namespace": "ml"}))
    manifest = json.loads(engine.preview(Job(spec(), ("MLFLOW_RUN_ID",), SOURCE)))
    assert manifest["kind"] == "Job" and manifest["metadata"]["namespace"] == "ml"
    env = {e["name"]: e for e in manifest["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "value" in env["MLFLOW_TRACKING_URI"]
    secret = engine.preview(Job(spec(), ("MLFLOW_TRACKING_URI",), SOURCE))
    assert json.loads(secret)["spec"]["template"]["spec"]["containers"][0]["env"][0]["valueFrom"]
    assert "creating Job ml/tfrepro-" + "0" * 32 in engine.announce(Job(spec(), ("MLFLOW_TRACKING_URI",), SOURCE))
