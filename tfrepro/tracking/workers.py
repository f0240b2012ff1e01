"""Every worker's environment in a multi-worker job's one run, and whether they agree.

    worker_record(env, index)   pure: what one worker says of itself (host, GPUs, driver,
                                CUDA, the image digest as resolved on its node, its index)
    summary(records)            pure: tfrepro/workers.json's content, with the fields on which
                                the workers disagree
    write_own(...)              the callback, in each worker: tfrepro/workers/<index>.json
    gather(client, run_id, n)   the launcher, after the job: the N records into workers.json,
                                and the tags tfrepro.workers.agree / tfrepro.workers.disagree

Each worker writes its own file (the chief through its session, the others with a direct
client call on MLFLOW_RUN_ID, which the launcher sets): no worker waits for another, and a
worker that died before writing is simply missing ("missing": [its index]). Nothing here
raises into training or into the launch: failures are logged as warnings.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from typing import Any, Dict, List, Mapping, Optional, Sequence

from tfrepro import schema

log = logging.getLogger(__name__)

# the fields on which workers of one job must agree; host and index always differ
AGREE_FIELDS = ("image_digest", "image_id", "gpu_model", "gpu_count", "driver", "cuda_driver", "tensorflow", "python")


def worker_record(env, index: int) -> Dict[str, Any]:
    """One worker's facts from its Environment (environment.py), JSON-ready."""
    gpu, container, system = env.gpu, env.container, env.system
    models = sorted({device.name for device in (gpu.devices if gpu else ()) if device.name})
    cuda = gpu.cuda_driver_version if gpu else None
    return {
        "index": index,
        "host": system.hostname if system else None,
        "gpu_count": gpu.count if gpu else 0,
        "gpu_model": ", ".join(models) or None,
        "driver": gpu.driver_version if gpu else None,
        "cuda_driver": "%d.%d" % (cuda // 1000, cuda % 1000 // 10) if cuda else None,
        "image_digest": container.image_digest if container else None,
        "image_id": container.image_id if container else None,
        "tensorflow": env.tensorflow.version if env.tensorflow else None,
        "python": env.python.version if env.python else None,
    }


def disagreeing(records: Sequence[Mapping[str, Any]]) -> List[str]:
    """The AGREE_FIELDS whose values differ between workers (a value one worker could not
    read, None, is not a disagreement)."""
    fields = []
    for name in AGREE_FIELDS:
        values = {json.dumps(record.get(name), sort_keys=True) for record in records if record.get(name) is not None}
        if len(values) > 1:
            fields.append(name)
    return fields


def summary(records: Sequence[Mapping[str, Any]], expected: int) -> Dict[str, Any]:
    """tfrepro/workers.json: the records by index, the missing indexes, and the disagreement."""
    ordered = sorted(records, key=lambda record: int(record.get("index", 0)))
    present = {int(record.get("index", 0)) for record in ordered}
    fields = disagreeing(ordered)
    return {
        "workers": expected,
        "records": list(ordered),
        "missing": [index for index in range(expected) if index not in present],
        "agree": not fields,
        "disagree": fields,
    }


def tags(gathered: Mapping[str, Any]) -> Dict[str, str]:
    values = {schema.WORKERS_AGREE: "true" if gathered.get("agree") else "false"}
    if gathered.get("disagree"):
        values[schema.WORKERS_DISAGREE] = ",".join(gathered["disagree"])
    return values


def describe(gathered: Mapping[str, Any]) -> Optional[str]:
    """One line when the workers disagree ("the workers disagree on driver, gpu_model"), else None."""
    fields = list(gathered.get("disagree") or ())
    if not fields:
        return None
    return "the workers disagree on %s" % ", ".join(fields)


def own_index(environ: Mapping[str, str]) -> Optional[int]:
    """This process's worker index, or None outside a multi-worker job: TF_CONFIG's task, else
    TFREPRO_WORKER_INDEX, SLURM_PROCID (a job of more than one task), JOB_COMPLETION_INDEX."""
    raw = environ.get(schema.ENV_TF_CONFIG)
    if raw:
        try:
            task = json.loads(raw).get("task") or {}
            return int(task.get("index", 0))
        except (ValueError, TypeError, AttributeError):
            return None
    for name in (schema.ENV_WORKER_INDEX, "JOB_COMPLETION_INDEX"):
        if environ.get(name, "").isdigit():
            return int(environ[name])
    if environ.get("SLURM_PROCID", "").isdigit() and environ.get("SLURM_NTASKS", "1") not in ("", "1"):
        return int(environ["SLURM_PROCID"])
    return None


def write_own(run_id: str, record: Mapping[str, Any], log_text=None) -> None:
    """Write tfrepro/workers/<index>.json on run `run_id`: through `log_text(text, path)` (the
    chief's session) or a direct MlflowClient (a worker without a session). Never raises."""
    path = "%s/%d.json" % (schema.WORKER_JSON_DIR, int(record.get("index", 0)))
    text = json.dumps(dict(record), indent=2, sort_keys=True)
    try:
        if log_text is not None:
            log_text(text, path)
        else:
            from mlflow.tracking import MlflowClient

            MlflowClient().log_text(run_id, text, path)
    except Exception as exc:
        log.warning("tfrepro: could not record worker %s's environment: %s", record.get("index"), exc)


def gather(client, run_id: str, count: int) -> Optional[Dict[str, Any]]:
    """After the job: read every worker's record, write tfrepro/workers.json and the agree tags;
    warn (never raise) when the store cannot be read or written."""
    records = []
    try:
        with tempfile.TemporaryDirectory(prefix="tfrepro-workers-") as scratch:
            for index in range(count):
                path = "%s/%d.json" % (schema.WORKER_JSON_DIR, index)
                try:
                    local = client.download_artifacts(run_id, path, scratch)
                except Exception:  # that worker wrote nothing (died first, or no callback)
                    continue
                with open(local) as handle:
                    records.append(json.load(handle))
                os.unlink(local)
        gathered = summary(records, count)
        client.log_text(run_id, json.dumps(gathered, indent=2, sort_keys=True), schema.WORKERS_JSON)
        if records:
            from tfrepro.tracking import runs

            runs.tag_run(client, run_id, tags(gathered), "the workers' agreement")
    except Exception as exc:
        log.warning("could not gather the workers' environments of run %s: %s", run_id, exc)
        return None
    line = describe(gathered)
    if line:
        log.warning("%s (tfrepro/workers.json)", line)
    if gathered["missing"] and records:
        log.info("workers that recorded no environment: %s", ", ".join(map(str, gathered["missing"])))
    return gathered
