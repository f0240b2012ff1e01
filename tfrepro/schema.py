"""The record's names: every MLflow tag key, artifact path, container label and environment
variable tfrepro uses.

Nothing else spells a "tfrepro.*" key, a "tfrepro/" artifact path or a TFREPRO_* variable: import
them from here. (Two files that must run alone in a container, launch/sitecustomize.py and
determinism.py, spell theirs; a unit test keeps them equal to these.)
The keys are public (README "Tags"): users filter on them in the MLflow UI, so renaming one
breaks their searches and older records. Python 3.8 compatible: it runs inside NGC containers.
"""

from __future__ import annotations

SCHEMA_VERSION = "1"

# MLflow takes 8000 characters per tag value since 2.17 (its run_tags column grew from 5000
# then); older servers, and databases not yet migrated, refuse more than 5000: use the lower.
MAX_TAG_VALUE = 5000
TRUNCATED = "...[truncated]"

PREFIX = "tfrepro."

# -- tags the environment record writes (Environment.to_tags) -------------------------------
SCHEMA = "tfrepro.schema"
VERSION = "tfrepro.version"
IMAGE_REF = "tfrepro.image.ref"
IMAGE_DIGEST = "tfrepro.image.digest"
IMAGE_ID = "tfrepro.image.id"
IMAGE_DIGEST_SOURCE = "tfrepro.image.digest_source"
CONTAINER_RUNTIME = "tfrepro.container.runtime"
CONTAINER_DETECTED = "tfrepro.container.detected"
GIT_PREFIX = "tfrepro.git."
GIT_COMMIT = "tfrepro.git.commit"
GIT_BRANCH = "tfrepro.git.branch"
GIT_REMOTE = "tfrepro.git.remote"
GIT_DIRTY = "tfrepro.git.dirty"
GIT_PATCH_WITHHELD = "tfrepro.git.patch_withheld"  # "true": dirty, and the patch was kept off the server
GPU_COUNT = "tfrepro.gpu.count"
GPU_NAME = "tfrepro.gpu.name"
GPU_DRIVER = "tfrepro.gpu.driver"
CUDA_DRIVER = "tfrepro.cuda.driver"
CUDA_BUILD = "tfrepro.cuda.build"
CUDNN_BUILD = "tfrepro.cudnn.build"
TF_VERSION = "tfrepro.tf.version"
TF_DETERMINISM = "tfrepro.tf.determinism"
SEED = "tfrepro.seed"
LAUNCH_SEED = "tfrepro.launch.seed"  # `tfrepro run --seed`: the launcher applied the seed, not the script
AUTOLOG = "tfrepro.autolog"  # `tfrepro run` gave every fit() a ReproCallback
EXPERIMENT_REQUESTED = "tfrepro.experiment.requested"  # experiment_name the script asked for, not honoured
PYTHON_VERSION = "tfrepro.python.version"
PYTHON_LOCK = "tfrepro.python.lock"  # sha256 of the sorted name==version lock
PACKAGE_PREFIX = "tfrepro.pkg."  # + name: the version of each of KEY_PACKAGES installed
COMMAND = "tfrepro.command"  # a JSON list (literal argv, never a shell string)
WORKDIR = "tfrepro.workdir"
HOSTNAME = "tfrepro.hostname"
SCHEDULER = "tfrepro.scheduler"  # slurm | kubernetes: the job this process ran in
SCHEDULER_PREFIX = "tfrepro.scheduler."  # + job_id, job_name, nodes, partition, cluster, account, pod, namespace
SCHEDULER_FIELDS = ("job_id", "job_name", "nodes", "partition", "cluster", "account", "pod", "namespace")

# -- written by other parts: the callback, `tfrepro run`/`replay` and `sync` ----------------
MODEL_HASH = "tfrepro.model.hash"
MODEL_URI = "tfrepro.model.uri"
FLUSH_SECONDS = "tfrepro.flush_seconds"  # time the callback's final flush took
LOCAL_RUN_ID = "tfrepro.local_run_id"  # on a run `sync` created for a run spooled while the server was down
PLUGIN_PENDING = "tfrepro.plugin.pending"  # while the MLflow plugin records a new run's environment (then removed)
REPLAYABLE = "tfrepro.replayable"  # REPLAYABLE_REGISTRY or REPLAYABLE_HOST_ONLY
REPLAY_OF = "tfrepro.replay_of"
REPLAY_VERDICT = "tfrepro.replay.verdict"
REPLAY_DETAIL = "tfrepro.replay.detail"
LAUNCH_PREFIX = "tfrepro.launch."
LAUNCH_GPUS = "tfrepro.launch.gpus"
LAUNCH_MOUNTS = "tfrepro.launch.mounts"
LAUNCH_SHM_SIZE = "tfrepro.launch.shm_size"
LAUNCH_MEMORY = "tfrepro.launch.memory"
LAUNCH_NETWORK = "tfrepro.launch.network"
LAUNCH_WORKDIR = "tfrepro.launch.workdir"
LAUNCH_ENV_NAMES = "tfrepro.launch.env_names"
REPLAYED_BY = "tfrepro.replayed_by"  # on the original: its latest replay (or --repeat summary) run
REPLAY_LAST_VERDICT = "tfrepro.replay.last_verdict"  # on the original: that replay's verdict
REPLAY_SUMMARY = "tfrepro.replay.summary"  # on each replay of a --repeat: the summary run
REPLAY_SUMMARY_OF = "tfrepro.replay.summary_of"  # on a --repeat summary run: the original
REPLAY_REPEAT = "tfrepro.replay.repeat"  # on a summary: N; on each of its replays: "i/N"
DATA_PREFIX = "tfrepro.data."  # + "<n>.<field>": data fingerprints (fingerprint/data_record.py)
DATA_SOURCES = "tfrepro.data.sources"  # how many
DATA_BESIDE = "tfrepro.data.beside"  # one line: what tfrepro run fingerprinted beside the code, left out (fingerprint/untracked.py)
INPUT_PREFIX = "tfrepro.input."  # + "<context>.kind|digest|shape|sampled": what fit() was given
DISTRIBUTE_REPLICAS = "tfrepro.distribute.replicas"  # the strategy's replicas in sync, at fit()
LAUNCH_BACKEND = "tfrepro.launch.backend"  # docker | podman | slurm | kubernetes (`--on`)
# the engine's job, as the launcher saw it: + job_id, job_name, nodes, partition, cluster,
# account, namespace, pod, runtime (what ran the container inside a Slurm job)
# workers (their count), failed_worker and failed_worker_status (the worker whose exit failed the job)
LAUNCH_JOB_FIELDS = (
    "job_id",
    "job_name",
    "nodes",
    "partition",
    "cluster",
    "account",
    "namespace",
    "pod",
    "runtime",
    "workers",
    "failed_worker",
    "failed_worker_status",
)
LAUNCH_WORKERS = "tfrepro.launch.workers"  # how many workers the job launched (launch/workers.py)
WORKERS_AGREE = "tfrepro.workers.agree"  # true | false: every worker's environment the same
WORKERS_DISAGREE = "tfrepro.workers.disagree"  # the fields they disagree on, comma separated

REPLAYABLE_REGISTRY = "registry"
REPLAYABLE_HOST_ONLY = "host-only"

# MLflow's own tags, set too where known so its UI shows them in its usual places
MLFLOW_IMAGE_URI = "mlflow.docker.image.uri"
MLFLOW_IMAGE_ID = "mlflow.docker.image.id"
MLFLOW_GIT_PREFIX = "mlflow.source.git."
MLFLOW_GIT_COMMIT = "mlflow.source.git.commit"
MLFLOW_GIT_BRANCH = "mlflow.source.git.branch"
MLFLOW_GIT_REPO_URL = "mlflow.source.git.repoURL"

# Public tag schema, documented in README.md ("Tags"), plus PACKAGE_PREFIX + name.
TAG_KEYS = (
    (
        SCHEMA,
        VERSION,
        IMAGE_REF,
        IMAGE_DIGEST,
        IMAGE_ID,
        IMAGE_DIGEST_SOURCE,
        CONTAINER_RUNTIME,
        CONTAINER_DETECTED,
        GIT_COMMIT,
        GIT_BRANCH,
        GIT_REMOTE,
        GIT_DIRTY,
        GIT_PATCH_WITHHELD,
        GPU_COUNT,
        GPU_NAME,
        GPU_DRIVER,
        CUDA_DRIVER,
        CUDA_BUILD,
        CUDNN_BUILD,
        TF_VERSION,
        TF_DETERMINISM,
        SEED,
        PYTHON_VERSION,
        PYTHON_LOCK,
        COMMAND,
        WORKDIR,
        HOSTNAME,
        SCHEDULER,
        MODEL_HASH,
        MODEL_URI,
        FLUSH_SECONDS,
        LOCAL_RUN_ID,
        REPLAYABLE,
        REPLAY_OF,
        REPLAY_VERDICT,
        REPLAY_DETAIL,
        LAUNCH_GPUS,
        LAUNCH_MOUNTS,
        LAUNCH_SHM_SIZE,
        LAUNCH_MEMORY,
        LAUNCH_NETWORK,
        LAUNCH_WORKDIR,
        LAUNCH_ENV_NAMES,
        REPLAYED_BY,
        REPLAY_LAST_VERDICT,
        REPLAY_SUMMARY,
        REPLAY_SUMMARY_OF,
        REPLAY_REPEAT,
        DATA_SOURCES,
        DATA_BESIDE,
        DISTRIBUTE_REPLICAS,
        LAUNCH_BACKEND,
        WORKERS_AGREE,
        WORKERS_DISAGREE,
    )
    + tuple(SCHEDULER_PREFIX + f for f in SCHEDULER_FIELDS)
    + tuple(LAUNCH_PREFIX + f for f in LAUNCH_JOB_FIELDS)
)

# -- artifacts, under ARTIFACT_DIR of the run ------------------------------------------------
ARTIFACT_DIR = "tfrepro"
ENVIRONMENT_JSON = "tfrepro/environment.json"  # Environment.to_json()
REQUIREMENTS_TXT = "tfrepro/requirements.txt"  # every installed package, name==version
GIT_PATCH = "tfrepro/git.patch"  # `git diff HEAD --binary` when the tree was dirty
LAUNCH_JSON = "tfrepro/launch.json"  # how `tfrepro run`/`replay` started the container
RECORD_SIGNATURE = "tfrepro/record.sig"  # ssh-keygen -Y sign over the canonical record (signing.py)
DATA_JSON = "tfrepro/data.json"  # data fingerprints with per-file detail (fingerprint/data_record.py)
WORKER_JSON_DIR = "tfrepro/workers"  # + "/<index>.json": each worker's own environment (callback)
WORKERS_JSON = "tfrepro/workers.json"  # every worker's, gathered by the launcher (tracking/workers.py)
SAVED_MODEL = "tfrepro/saved_model"  # the trained model, when the callback logs it

# -- Docker labels on the containers `tfrepro run`/`replay` start ------------------------------
RUN_ID_LABEL = "tfrepro.run_id"

# -- environment variables tfrepro reads or sets ------------------------------------------------
ENV_PREFIX = "TFREPRO_"
# the launch hook (launch/hooks.py writes them, launch/sitecustomize.py reads them)
ENV_AUTOLOG = "TFREPRO_AUTOLOG"  # "1": autolog() in every Python of the container
ENV_DETERMINISTIC = "TFREPRO_DETERMINISTIC"  # "1": seed with ENV_SEED
ENV_SEED = "TFREPRO_SEED"  # the seed; also what tfrepro.deterministic() uses when given none
ENV_FLUENT = "TFREPRO_FLUENT"  # "0": the script's own mlflow.log_* calls stay plain MLflow calls (tracking/fluent.py)
ENV_HOOK_WARNED = "TFREPRO_HOOK_WARNED"  # the hook's warnings already shown in this process tree
# what the launcher tells the fingerprint sources inside the container
ENV_IMAGE_REF = "TFREPRO_IMAGE_REF"
ENV_IMAGE_DIGEST = "TFREPRO_IMAGE_DIGEST"
ENV_IMAGE_ID = "TFREPRO_IMAGE_ID"
ENV_SAFE_DIRECTORY = "TFREPRO_SAFE_DIRECTORY"  # the checkout's mount point: git may read it (fingerprint/git.py)
ENV_POD_NAME = "TFREPRO_POD_NAME"  # Kubernetes downward API (launch/kubernetes.py, fingerprint/scheduler.py)
ENV_POD_NAMESPACE = "TFREPRO_POD_NAMESPACE"
ENV_NODE_NAME = "TFREPRO_NODE_NAME"
ENV_K8S_JOB = "TFREPRO_K8S_JOB"
# the Kubernetes init container's checkout and hook (launch/kubernetes.py)
ENV_TF_CONFIG = "TF_CONFIG"  # TensorFlow's cluster wiring, one per worker (launch/workers.py)
ENV_WORKER_INDEX = "TFREPRO_WORKER_INDEX"  # the worker's index in a multi-worker job
ENV_WORKERS = "TFREPRO_WORKERS"  # how many workers the job has
ENV_REPO = "TFREPRO_REPO"
ENV_GIT_REMOTE = "TFREPRO_GIT_REMOTE"
ENV_GIT_COMMIT = "TFREPRO_GIT_COMMIT"
ENV_GIT_PATCH = "TFREPRO_GIT_PATCH"
ENV_HOOK = "TFREPRO_HOOK"
ENV_HOOK_DIR = "TFREPRO_HOOK_DIR"
ENV_HOOK_IMPORT = "TFREPRO_HOOK_IMPORT"  # the hook's companions, base64, on Kubernetes (launch/kubernetes.py)
ENV_HOOK_DETERMINISM = "TFREPRO_HOOK_DETERMINISM"
# user settings
ENV_NO_PATCH = "TFREPRO_NO_PATCH"  # "1": the uncommitted patch stays off the server (redact.py)
ENV_SPOOL_DIR = "TFREPRO_SPOOL_DIR"  # where sessions spool (tracking/spool.py)
ENV_QUICKACK = "TFREPRO_QUICKACK"  # "0": no TCP quick ACKs to the tracking server (tracking/quickack.py)
ENV_CONTEXT = "TFREPRO_CONTEXT"  # "0": the MLflow plugin collects nothing (mlflow_plugin)
ENV_SLURM_DIR = "TFREPRO_SLURM_DIR"  # Slurm job output files (launch/slurm_job.py)
ENV_SIGNING_KEY = "TFREPRO_SIGNING_KEY"  # signing.py
ENV_ALLOWED_SIGNERS = "TFREPRO_ALLOWED_SIGNERS"  # signing.py
ENV_TRUSTED_REGISTRIES = "TFREPRO_TRUSTED_REGISTRIES"  # replay/grants.py

# MLflow's own variables, where tfrepro reads or sets them
ENV_MLFLOW_TRACKING_URI = "MLFLOW_TRACKING_URI"
ENV_MLFLOW_RUN_ID = "MLFLOW_RUN_ID"  # set by `tfrepro run`/`replay`: the callback resumes that run
ENV_MLFLOW_EXPERIMENT_ID = "MLFLOW_EXPERIMENT_ID"
ENV_MLFLOW_EXPERIMENT_NAME = "MLFLOW_EXPERIMENT_NAME"
ENV_MLFLOW_HTTP_REQUEST_MAX_RETRIES = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
ENV_MLFLOW_HTTP_REQUEST_TIMEOUT = "MLFLOW_HTTP_REQUEST_TIMEOUT"
ENV_MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR = "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"
ENV_MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
# MLflow's credentials, passed into the container when set (launch/spec.py)
ENV_MLFLOW_AUTH = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
)


def truncate(value: str, limit: int = MAX_TAG_VALUE) -> str:
    """A tag value MLflow accepts: cut to `limit`, ending in TRUNCATED when cut."""
    if len(value) <= limit:
        return value
    return value[: limit - len(TRUNCATED)] + TRUNCATED


# -- the MLflow UI (issue 20): MLflow's own tags tfrepro sets, and the readable artifacts -------
MLFLOW_SOURCE_NAME = "mlflow.source.name"  # the script, relative to the repository root
MLFLOW_SOURCE_TYPE = "mlflow.source.type"
MLFLOW_NOTE = "mlflow.note.content"  # the run description: markdown, holding tfrepro's cards
MLFLOW_PARENT_RUN_ID = "mlflow.parentRunId"  # nests a run under another in the runs table
ENVIRONMENT_MD = "tfrepro/environment.md"  # the whole environment, for a person (tracking/card.py)
REPLAY_MD = "tfrepro/replay.md"  # a replay's verdict, metrics and what differs (replay/report.py)
# the description's blocks, each between <!-- tfrepro:NAME --> and <!-- /tfrepro:NAME -->
CARD_BLOCK = "card"  # the environment card
REPLAY_BLOCK = "replay"  # on a replay or a --repeat summary: what it replayed and the verdict
REPLAYS_BLOCK = "replays"  # on the original: the table of its replays
