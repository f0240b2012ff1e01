"""What fit() was given, recorded through MLflow's own dataset tracking (the UI's Dataset column).

Keras tells a callback nothing about the data: `x`, `y` and `validation_data` come from the
frame of the `fit()` that is calling the callback (tfrepro/keras_fit.py's FitContext).

    NumPy arrays (or a dict/list of them)   mlflow.data.from_numpy, digest = sha256 of every byte
                                            (arrays over FULL_HASH_BYTES: a strided sample, said so)
    tf.data.Dataset                         a MetaDataset whose digest covers the element spec and
                                            the cardinality. MLflow's own TensorFlowDataset iterates
                                            the dataset to hash and to infer a schema; that would
                                            read the data twice and advance a reshuffling
                                            dataset's seed, so training would see other batches.
    anything else (generators, Sequence)    not logged
Also tagged, so replay and `tfrepro diff` can compare them: tfrepro.input.<context>.kind,
.digest (sha256:<hex>) and .shape; and the replica count, tfrepro.distribute.replicas.
Nothing here may break fit(): the callback calls `log_fit_inputs` under its guard, off the
training thread; the dataset records are spooled and uploaded like metrics (or by `sync`).
Python 3.8 and MLflow >= 2.17 compatible.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, Dict, List, Optional, Tuple

from tfrepro import schema

log = logging.getLogger(__name__)

FULL_HASH_BYTES = 1 << 28  # 256 MB: past this, hash a strided sample of 64 MB
SAMPLE_BYTES = 1 << 26
CONTEXTS = ("training", "validation")
TAG_PREFIX = schema.INPUT_PREFIX
REPLICAS_TAG = schema.DISTRIBUTE_REPLICAS
MLFLOW_DIGEST_CHARS = 32  # MLflow stores dataset digests in a 36-character column


def _array_digest(array) -> Tuple[str, bool]:
    """(sha256 hex of dtype, shape and bytes, sampled?)."""
    import numpy as np

    array = np.asarray(array)
    digest = hashlib.sha256(("%s%s" % (array.dtype.str, array.shape)).encode())
    data = np.ascontiguousarray(array).reshape(-1).view(np.uint8) if array.dtype != object else None
    if data is None:
        digest.update(repr(array.tolist()).encode())
        return digest.hexdigest(), False
    if data.nbytes <= FULL_HASH_BYTES:
        digest.update(data.data)
        return digest.hexdigest(), False
    step = data.nbytes // SAMPLE_BYTES  # every step-th 4 KB block
    for start in range(0, data.nbytes, step * 4096):
        digest.update(data[start : start + 4096].data)
    return digest.hexdigest(), True


def _arrays(value) -> Optional[List[Tuple[str, Any]]]:
    """Named NumPy arrays in an x or y (an array, or a dict/list/tuple of arrays), else None."""
    import numpy as np

    if value is None:
        return []
    if isinstance(value, np.ndarray):
        return [("", value)]
    if isinstance(value, dict) and all(isinstance(v, np.ndarray) for v in value.values()):
        return sorted((str(k), v) for k, v in value.items())
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, np.ndarray) for v in value):
        return [(str(i), v) for i, v in enumerate(value)]
    return None


def _is_tf_dataset(value) -> bool:
    return (
        type(value).__module__.startswith("tensorflow.")
        and hasattr(value, "element_spec")
        and hasattr(value, "cardinality")
    )


def describe(x, y=None) -> Optional[Dict[str, Any]]:
    """{"kind", "digest", "shape", "sampled"} for a NumPy or tf.data input; None for others."""
    if _is_tf_dataset(x):
        try:
            cardinality = int(x.cardinality().numpy())
        except Exception:
            cardinality = None
        spec = repr(x.element_spec)
        digest = hashlib.sha256(("%s|%s" % (spec, cardinality)).encode()).hexdigest()
        return {
            "kind": "tf.data",
            "digest": "sha256:" + digest,
            "shape": spec[:500],
            "cardinality": cardinality,
            "sampled": False,
        }
    xs, ys = _arrays(x), _arrays(y)
    if xs is None or ys is None or not xs:
        return None
    hasher, sampled, shapes = hashlib.sha256(), False, []
    for role, named in (("x", xs), ("y", ys)):
        for name, array in named:
            part, was_sampled = _array_digest(array)
            hasher.update(("%s%s:%s;" % (role, name, part)).encode())
            sampled = sampled or was_sampled
            shapes.append("%s%s %s%s" % (role, "[%s]" % name if name else "", array.dtype, list(array.shape)))
    return {"kind": "numpy", "digest": "sha256:" + hasher.hexdigest(), "shape": ", ".join(shapes), "sampled": sampled}


def _validation(validation_data) -> Tuple[Any, Any]:
    if isinstance(validation_data, tuple) and 2 <= len(validation_data) <= 3:
        return validation_data[0], validation_data[1]
    return validation_data, None


def describe_fit(arguments: Dict[str, Any]) -> Dict[str, Tuple[Any, Any, Dict[str, Any]]]:
    """context -> (x, y, description) for the inputs that can be described."""
    out = {}
    pairs = {
        "training": (arguments.get("x"), arguments.get("y")),
        "validation": _validation(arguments.get("validation_data")),
    }
    for context in CONTEXTS:
        x, y = pairs[context]
        description = describe(x, y) if x is not None else None
        if description:
            out[context] = (x, y, description)
    return out


def tags(described: Dict[str, Tuple[Any, Any, Dict[str, Any]]]) -> Dict[str, str]:
    out = {}
    for context, (_, _, description) in described.items():
        prefix = TAG_PREFIX + context + "."
        out.update(
            {
                prefix + "kind": description["kind"],
                prefix + "digest": description["digest"],
                prefix + "shape": description["shape"][:500],
            }
        )
        if description.get("sampled"):
            out[prefix + "sampled"] = "true"
    return out


def mlflow_dataset(context: str, x, y, description: Dict[str, Any]):
    """The mlflow.data Dataset for one input (NumpyDataset or MetaDataset)."""
    from mlflow.data.code_dataset_source import CodeDatasetSource

    source = CodeDatasetSource(tags={"context": context})
    digest = description["digest"].split(":", 1)[1][:MLFLOW_DIGEST_CHARS]
    if description["kind"] == "numpy":
        import mlflow.data

        features = x if not isinstance(x, (list, tuple)) else {str(i): v for i, v in enumerate(x)}
        targets = y if not isinstance(y, (list, tuple)) else {str(i): v for i, v in enumerate(y)}
        return mlflow.data.from_numpy(features, source=source, targets=targets, name=context, digest=digest)
    from mlflow.data.meta_dataset import MetaDataset

    return MetaDataset(
        source=source, name="%s (tf.data %s)" % (context, json.dumps(description["cardinality"])), digest=digest
    )


def log_fit_inputs(session, arguments: Optional[Dict[str, Any]], replicas: Optional[int] = None) -> Dict[str, str]:
    """Tag and log (as MLflow dataset inputs) what fit() was given (its arguments, as
    FitContext read them; None when they could not be found). Hashing NumPy inputs takes
    time, so the callback calls this off the training thread (`replicas`, read from the
    training thread's distribution strategy, comes with it). The dataset records go through
    the session's spool like everything else: uploaded in the background, or by `sync`.
    Returns the tags it set (the run's card names the inputs)."""
    if arguments is None:
        return {}
    described = describe_fit(arguments)
    recorded = tags(described)
    if replicas is not None:
        recorded[REPLICAS_TAG] = str(replicas)
    if recorded:
        session.set_tags(recorded)
    if not described:
        return recorded
    quiet = logging.getLogger("mlflow.data")  # its schema inference warns when scipy is missing
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        datasets = [dict(dataset_fields(mlflow_dataset(c, x, y, d)), context=c) for c, (x, y, d) in described.items()]
    finally:
        quiet.setLevel(level)
    session.log_inputs(datasets)
    return recorded


def dataset_fields(dataset) -> Dict[str, Optional[str]]:
    """An mlflow.data Dataset as the fields of MLflow's Dataset entity (MLflow 2.17 has no to_dictionary)."""
    from tfrepro.tracking.backend import DATASET_FIELDS

    entity = dataset._to_mlflow_entity()
    return {k: getattr(entity, k) for k in DATASET_FIELDS}


def replicas() -> Optional[int]:
    """Replicas of the distribution strategy in scope: call it on the training thread."""
    try:
        import tensorflow as tf

        return int(tf.distribute.get_strategy().num_replicas_in_sync)
    except Exception:
        return None
