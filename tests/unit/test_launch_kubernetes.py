"""Kubernetes engine, the pure half: the Job manifest (golden file), its round trip through the
official client, and offline validation against Kubernetes' published schemas."""

import base64
import json
import os
from pathlib import Path

import pytest
import yaml

from tfrepro.errors import UsageError
from tfrepro.launch import hooks, kubernetes, kubernetes_pod, workers
from tfrepro.launch.job import Job
from tfrepro.launch.spec import LaunchSpec, Mount

kubernetes_package = pytest.importorskip("kubernetes", reason="pip install 'tfrepro[test]'")
kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install 'tfrepro[test]'")

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "launch"
DIGEST = "registry.example/ml/tf@sha256:" + "ab" * 32
RUN_ID = "0123456789abcdef0123456789abcdef"
SOURCE = kubernetes.Source(
    "https://git.example/ml/train.git", "3f2a" + "0" * 36, "diff --git a/x b/x\n--- a/x\n+++ b/x\n"
)
OPTIONS = kubernetes.KubernetesOptions(namespace="ml-team", service_account="trainer", image_pull_secret="regcred")


def spec(**changes):
    fields = dict(
        image=DIGEST,
        command=("python", "examples/train.py", "--epochs", "2"),
        subdir="examples",
        mounts=(
            Mount("<checkout>", "/workspace", False, "repo"),
            Mount("pvc:datasets", "/data", True, "user"),
            Mount("/scratch", "/scratch", False, "user"),
            Mount("<hook>", "/opt/tfrepro-hook", True, "hook"),
        ),
        env={
            "MLFLOW_TRACKING_URI": "http://mlflow.ml-team:5000",
            "MLFLOW_RUN_ID": RUN_ID,
            "MLFLOW_TRACKING_TOKEN": "s3cret",
            "TFREPRO_SEED": "0",
        },
        gpus="2",
        shm_size="8g",
        memory="64g",
        labels={"tfrepro.run_id": RUN_ID},
    )
    fields.update(changes)
    return LaunchSpec(**fields)


HOOK = {
    "sitecustomize.py": "print('the launch hook')\n",
    "tfrepro_import_hook.py": "print('its import hook')\n",
    "tfrepro_determinism.py": "print('its determinism')\n",
}


def job(**changes):
    return kubernetes.build_job(spec(**changes), SOURCE, kubernetes.check_options(OPTIONS), hook=HOOK)


def manifest(**changes):
    return kubernetes.to_dict(job(**changes))


def test_golden_manifest():
    text = kubernetes.to_yaml(job())
    path = GOLDEN / "kubernetes-job.yaml"
    if os.environ.get("TFREPRO_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), "kubernetes-job.yaml differs (TFREPRO_UPDATE_GOLDEN=1 rewrites it)"
    assert "s3cret" not in text


def test_what_the_pod_gets():
    m = manifest()
    pod = m["spec"]["template"]["spec"]
    (train,) = pod["containers"]
    assert train["image"] == DIGEST and "command" not in train  # the image's ENTRYPOINT stays, as with docker
    assert train["args"] == ["python", "examples/train.py", "--epochs", "2"]
    assert train["workingDir"] == "/workspace/examples"
    assert train["resources"] == {"limits": {"nvidia.com/gpu": "2", "memory": "64Gi"}}
    env = {e["name"]: e for e in train["env"]}
    assert env["MLFLOW_TRACKING_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "tfrepro-env", "key": "MLFLOW_TRACKING_TOKEN"}
    }
    assert env["TFREPRO_NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}
    assert volumes["user-1"]["persistentVolumeClaim"] == {"claimName": "datasets", "readOnly": True}
    assert volumes["user-2"]["hostPath"] == {"path": "/scratch"}
    (init,) = pod["initContainers"]
    assert init["image"] == DIGEST
    assert volumes["hook-3"] == {"name": "hook-3", "emptyDir": {}}
    assert {"name": "hook-3", "mountPath": "/opt/tfrepro-hook", "readOnly": True} in train["volumeMounts"]
    assert {"name": "hook-3", "mountPath": "/opt/tfrepro-hook"} in init["volumeMounts"]
    init_env = {e["name"]: e.get("value") for e in init["env"]}
    assert init_env["TFREPRO_GIT_COMMIT"] == SOURCE.commit and init_env["TFREPRO_GIT_REMOTE"] == SOURCE.remote
    assert init_env["TFREPRO_GIT_PATCH"]  # base64 of the patch
    # the hook directory's three files, each in its variable, written by the init container
    assert base64.b64decode(init_env["TFREPRO_HOOK"]).decode() == HOOK["sitecustomize.py"]
    assert base64.b64decode(init_env["TFREPRO_HOOK_IMPORT"]).decode() == HOOK["tfrepro_import_hook.py"]
    assert base64.b64decode(init_env["TFREPRO_HOOK_DETERMINISM"]).decode() == HOOK["tfrepro_determinism.py"]
    for name in hooks.HOOK_FILES:
        assert '> "$TFREPRO_HOOK_DIR/%s"' % name in init["command"][2]
    assert m["spec"]["template"]["metadata"]["labels"] == {"tfrepro.run_id": RUN_ID}
    assert m["spec"]["backoffLimit"] == 0 and m["spec"]["ttlSecondsAfterFinished"] == 86400
    assert pod["restartPolicy"] == "Never" and pod["serviceAccountName"] == "trainer"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert m["metadata"] == {"name": "tfrepro-" + RUN_ID, "namespace": "ml-team", "labels": {"tfrepro.run_id": RUN_ID}}


def test_round_trip_through_the_clients_api_client():
    built = job()
    data = json.dumps(kubernetes.to_dict(built))

    class Response:
        def __init__(self, text):
            self.data = text

    again = kubernetes_package.client.ApiClient().deserialize(Response(data), "V1Job")
    assert again == built


@pytest.mark.parametrize("version", ["1.25", "1.30", None])
def test_validates_offline_against_the_published_schemas(version):
    desired = version or kubernetes_validate.latest_version()
    kubernetes_validate.validate(manifest(), desired, strict=True)
    kubernetes_validate.validate(manifest(gpus=None, shm_size=None, memory=None, env={}), desired, strict=True)


def test_the_validator_rejects_a_bad_job():
    bad = manifest()
    bad["spec"]["backoffLimit"] = "zero"
    with pytest.raises(kubernetes_validate.ValidationError, match="backoffLimit"):
        kubernetes_validate.validate(bad, kubernetes_validate.latest_version(), strict=True)


def test_dry_run_without_a_run_yet():
    m = manifest(labels={}, env={"MLFLOW_TRACKING_URI": "http://mlflow:5000"})
    assert m["metadata"]["name"] == "tfrepro-new-run" and m["metadata"]["labels"] == {"tfrepro.run_id": "new-run"}


def test_yaml_keeps_the_checkout_script_readable():
    text = kubernetes.to_yaml(job())
    assert "- |\n" in text and yaml.safe_load(text) == manifest()


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"image": "sha256:" + "0" * 64}, "malformed image digest"),
        ({"gpus": "all"}, "number of GPUs"),
        (
            {"mounts": (Mount("<checkout>", "/workspace", False, "repo"), Mount("/db", "/db", False, "tracking"))},
            "http\\(s\\) tracking server",
        ),
        (
            {"mounts": (Mount("<checkout>", "/workspace", False, "repo"), Mount("cache", "/cache", False, "user"))},
            "pvc:CLAIM",
        ),
        (
            {
                "mounts": (
                    Mount("<checkout>", "/workspace", False, "repo"),
                    Mount("pvc:Bad_Name", "/d", False, "user"),
                )
            },
            "claim name",
        ),
        ({"mounts": ()}, "exactly once"),
    ],
)
def test_refusals(changes, message):
    with pytest.raises(UsageError, match=message):
        job(**changes)


def test_option_and_source_checks():
    with pytest.raises(UsageError, match="--namespace"):
        kubernetes.check_options(kubernetes.KubernetesOptions(namespace="ML_Team"))
    with pytest.raises(UsageError, match="--image-pull-secret"):
        kubernetes.check_options(kubernetes.KubernetesOptions(image_pull_secret="a b"))
    with pytest.raises(UsageError, match="remote"):
        kubernetes.build_job(spec(), kubernetes.Source("", SOURCE.commit), OPTIONS)
    with pytest.raises(UsageError, match="too large"):
        kubernetes.build_job(
            spec(), kubernetes.Source(SOURCE.remote, SOURCE.commit, "x" * (kubernetes_pod.MAX_PATCH + 1)), OPTIONS
        )


def test_quantities_and_secret_names():
    assert [kubernetes_pod.quantity(v) for v in ("8g", "512m", "16k", "1024", None)] == [
        "8Gi",
        "512Mi",
        "16Ki",
        "1024",
        None,
    ]
    assert kubernetes.secret_env_names(spec(), ["MLFLOW_TRACKING_URI"]) == [
        "MLFLOW_TRACKING_TOKEN",
        "MLFLOW_TRACKING_URI",
    ]


# -- N workers: an Indexed Job and a headless Service ------------------------------------

TWO = workers.Shape(workers=2)
GOLDEN_WORKERS = Path(__file__).resolve().parents[1] / "fixtures" / "kubernetes" / "indexed-job-2-workers.yaml"


def two_workers(**changes):
    job_object = kubernetes.build_job(spec(**changes), SOURCE, kubernetes.check_options(OPTIONS), hook=HOOK, shape=TWO)
    return kubernetes.build_service(job_object, TWO), job_object


def test_golden_manifest_of_two_workers():
    text = kubernetes.to_yaml_documents(two_workers())
    if os.environ.get("TFREPRO_UPDATE_GOLDEN"):
        GOLDEN_WORKERS.write_text(text)
    assert text == GOLDEN_WORKERS.read_text(), (
        "indexed-job-2-workers.yaml differs (TFREPRO_UPDATE_GOLDEN=1 rewrites it)"
    )
    assert "s3cret" not in text
    assert [document["kind"] for document in yaml.safe_load_all(text)] == ["Service", "Job"]


def test_each_pod_gets_its_tf_config_from_its_completion_index():
    service, job_object = (kubernetes.to_dict(item) for item in two_workers())
    name = "tfrepro-" + RUN_ID
    assert job_object["spec"]["completionMode"] == "Indexed"
    assert job_object["spec"]["completions"] == job_object["spec"]["parallelism"] == 2
    assert job_object["spec"]["backoffLimit"] == 0  # one worker that fails fails the Job
    pod = job_object["spec"]["template"]["spec"]
    assert pod["subdomain"] == service["metadata"]["name"] == name
    env = pod["containers"][0]["env"]
    names = [item["name"] for item in env]
    assert names.index("TFREPRO_WORKER_INDEX") < names.index("TF_CONFIG")  # $(VAR) expands earlier ones only
    index = env[names.index("TFREPRO_WORKER_INDEX")]["valueFrom"]["fieldRef"]["fieldPath"]
    assert index == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    config = env[names.index("TF_CONFIG")]["value"]
    addresses = ["%s-%d.%s:%d" % (name, i, name, workers.DEFAULT_BASE_PORT) for i in (0, 1)]
    for i in (0, 1):  # what the kubelet's expansion gives pod i
        assert config.replace("$(TFREPRO_WORKER_INDEX)", str(i)) == workers.tf_config(addresses, i)
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"] == job_object["spec"]["template"]["metadata"]["labels"]
    assert pod["containers"][0]["ports"] == [{"name": "worker", "containerPort": workers.DEFAULT_BASE_PORT}]


@pytest.mark.parametrize("version", ["1.25", "1.30", None])
def test_two_workers_validate_offline(version):
    desired = version or kubernetes_validate.latest_version()
    for item in two_workers():
        kubernetes_validate.validate(kubernetes.to_dict(item), desired, strict=True)


def test_gpus_per_task_and_the_timeout_reach_the_job():
    shape = workers.Shape(workers=2, gpus_per_task="1", timeout_s=90.5)
    job_object = kubernetes.to_dict(kubernetes.build_job(spec(), SOURCE, OPTIONS, hook=HOOK, shape=shape))
    assert job_object["spec"]["activeDeadlineSeconds"] == 91
    assert job_object["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    with pytest.raises(UsageError, match="each worker is a pod"):
        kubernetes.build_job(spec(), SOURCE, OPTIONS, hook=HOOK, shape=workers.Shape(workers=2, tasks_per_node=1))


def test_one_worker_is_the_job_of_before():
    assert kubernetes.to_dict(job()) == kubernetes.to_dict(
        kubernetes.build_job(spec(), SOURCE, kubernetes.check_options(OPTIONS), hook=HOOK, shape=workers.ONE)
    )


@pytest.mark.parametrize("output", ["yaml", "json"])
def test_the_engines_preview_of_two_workers_is_one_applyable_document(output):
    from tfrepro.launch import engines, settings

    engine = engines.get("kubernetes", settings.Options(kubernetes=OPTIONS, output=output))
    text = engine.preview(Job(spec(), (), SOURCE, TWO))
    if output == "json":
        document = json.loads(text)
        assert document["apiVersion"] == "v1" and document["kind"] == "List"
        kinds = [item["kind"] for item in document["items"]]
    else:
        kinds = [item["kind"] for item in yaml.safe_load_all(text)]
    assert kinds == ["Service", "Job"]
    assert "2 workers" in engine.announce(Job(spec(), (), SOURCE, TWO))
    assert engine.settings(TWO)["shape"]["wiring"] == "TF_CONFIG from JOB_COMPLETION_INDEX"
    assert "shape" not in engine.settings()
