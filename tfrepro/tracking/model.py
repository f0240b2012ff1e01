"""The trained model: a content hash of its SavedModel, and logging it to MLflow.

The hash is what `tfrepro replay` compares bit for bit, so it covers only what a
deterministic re-training reproduces: the variable values (checkpoint keys, dtypes,
shapes, bytes) read back from a SavedModel, plus the Keras config with layer names
replaced by their position. The saved_model.pb/variables files themselves are not
hashed: they embed per-process names (`__inference_call_1234`, `dense_1`) that change
with what else the process built or traced, while the model stays the same.

On MLflow 3 the logged model carries the facts of where it was made as its params (its page and a
registered version's show them); MLflow 2.17 logged models have no params: nothing to attach there.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import tempfile
from typing import Any, Dict, List, Optional

HASH_PREFIX = "sha256:"
# Object-graph bookkeeping stored next to the variables; not a model value.
_SKIP_KEYS = ("_CHECKPOINTABLE_OBJECT_GRAPH",)


def save_model(model, path: str) -> str:
    """Save a Keras model as a TF SavedModel (without optimizer state) under `path`."""
    model.save(path, save_format="tf", include_optimizer=False)
    return path


def canonical_config(model) -> str:
    """The Keras config as JSON, layer and model names replaced by their position."""
    try:
        config = model.get_config()
    except Exception:  # subclassed models have none: their variables still count
        return ""
    layers = [m for m in _submodules(model) if hasattr(m, "get_config") and hasattr(m, "name")]
    names = {layer.name: "layer-%d" % i for i, layer in enumerate(layers)}
    names[model.name] = "model"

    def rename(value):
        if isinstance(value, dict):
            return {k: rename(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [rename(v) for v in value]
        if isinstance(value, str):
            return names.get(value, value)
        return value

    return json.dumps(rename(config), sort_keys=True, default=repr)


def _submodules(model):
    try:
        return model.submodules
    except Exception:  # TF 2.9, a fitted subclassed model: a WeakKeyDictionary of layers trips tf.Module
        return tuple(model._flatten_layers(include_self=False))


def saved_model_hash(path: str, config: str = "") -> str:
    """sha256 of `config` and the variable values of the SavedModel at `path`, in key order."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(os.path.join(path, "variables", "variables"))
    digest = hashlib.sha256(config.encode())
    dtypes = reader.get_variable_to_dtype_map()
    for key in sorted(reader.get_variable_to_shape_map()):
        if key in _SKIP_KEYS:
            continue
        value = reader.get_tensor(key)
        header = "%s\0%s\0%s\0" % (key, dtypes[key].name, list(value.shape))
        digest.update(header.encode())
        digest.update(value.tobytes() if hasattr(value, "tobytes") else repr(value).encode())
    return HASH_PREFIX + digest.hexdigest()


def model_hash(model) -> str:
    """Save `model` to a temporary SavedModel and hash it."""
    tmp = tempfile.mkdtemp(prefix="tfrepro-model-")
    try:
        return saved_model_hash(save_model(model, os.path.join(tmp, "model")), canonical_config(model))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def pip_requirements() -> List[str]:
    """Pinned requirements for the logged model; explicit so MLflow does not spawn a
    subprocess that re-imports TensorFlow to infer them."""
    import numpy
    import tensorflow as tf

    return ["tensorflow==%s" % tf.__version__.split("+")[0], "numpy==%s" % numpy.__version__]


def log_keras_model(model, name: str = "model", params: Optional[Dict[str, str]] = None) -> Optional[str]:
    """Log `model` with the mlflow.tensorflow flavour (a SavedModel) to the active run.

    Returns the model URI: `runs:/<id>/model` on MLflow 2, `models:/m-...` on MLflow 3.
    params: the logged model's params on MLflow 3 (sent with the call that creates it: no
    round trip more); ignored on MLflow 2.
    """
    import mlflow.tensorflow

    kwargs: Dict[str, Any] = {"pip_requirements": pip_requirements(), "keras_model_kwargs": {"save_format": "tf"}}
    accepted = inspect.signature(mlflow.tensorflow.log_model).parameters
    if "name" in accepted:
        kwargs["name"] = name  # MLflow 3: artifact_path is deprecated
    else:
        kwargs["artifact_path"] = name
    if params and "params" in accepted:
        kwargs["params"] = dict(params)
    info = mlflow.tensorflow.log_model(model, **kwargs)
    return info.model_uri
