"""TensorFlow source: version, CUDA/cuDNN it was built with, devices, determinism, seed.

Never imports TensorFlow (seconds, and `tfrepro env` must run on a bare box): when the
program has not imported it, the version comes from package metadata only.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Any, Dict, Mapping, Optional

from tfrepro.environment import TensorflowInfo
from tfrepro.fingerprint import NotApplicable

DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tf-nightly", "intel-tensorflow")
DETERMINISM_ENV = ("TF_DETERMINISTIC_OPS", "TF_CUDNN_DETERMINISTIC", "TF_ENABLE_ONEDNN_OPTS")


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _installed_version() -> Optional[str]:
    from tfrepro.fingerprint import python  # folder names: faster than importlib.metadata

    lock = dict(p.split("==", 1) for p in python.collect().packages)
    return next((lock[name] for name in DISTRIBUTIONS if name in lock), None)


def _op_determinism(tf) -> Optional[bool]:
    check = getattr(tf.config.experimental, "is_op_determinism_enabled", None)
    if check is None:  # TF 2.8-2.12 only have the internal function
        try:
            from tensorflow.python.framework import config as tf_config

            check = tf_config.is_op_determinism_enabled
        except (ImportError, AttributeError):
            return None
    return bool(check())


def _query_imported(tf) -> Dict[str, Any]:
    raw: Dict[str, Any] = {"imported": True, "version": getattr(tf, "__version__", None)}
    try:
        raw["build_info"] = _json_safe(dict(tf.sysconfig.get_build_info()))
    except Exception as exc:
        raw["build_info_error"] = str(exc)
    try:  # lists devices without allocating GPU memory
        raw["devices"] = [d.name for d in tf.config.list_physical_devices()]
    except Exception as exc:
        raw["devices_error"] = str(exc)
    try:
        raw["op_determinism"] = _op_determinism(tf)
    except Exception:
        raw["op_determinism"] = None
    keras = sys.modules.get("keras") or sys.modules.get("tf_keras")
    if keras is not None:  # read the policy only when Keras is loaded already
        try:
            raw["mixed_precision_policy"] = keras.mixed_precision.global_policy().name
        except Exception:
            pass
    return raw


def query(import_tensorflow: bool = False) -> Dict[str, Any]:
    from tfrepro import determinism

    tf = sys.modules.get("tensorflow")
    if tf is None and import_tensorflow:
        tf = importlib.import_module("tensorflow")
    raw: Dict[str, Any] = (
        _query_imported(tf) if tf is not None else {"imported": False, "version": _installed_version()}
    )
    raw["env"] = {name: os.environ[name] for name in DETERMINISM_ENV if name in os.environ}
    raw["seed"] = determinism.SEED
    return raw


def parse(raw: Mapping[str, Any]) -> TensorflowInfo:
    if not raw.get("version"):
        raise NotApplicable("tensorflow not installed")
    build = raw.get("build_info") or {}
    determinism: Dict[str, Any] = dict(raw.get("env") or {})
    if raw.get("imported"):
        op = raw.get("op_determinism")
        determinism["op_determinism"] = raw.get("seed") is not None if op is None else op
    cudnn = build.get("cudnn_version")
    return TensorflowInfo(
        version=raw["version"],
        cuda_build=build.get("cuda_version") or None,
        cudnn_build=str(cudnn) if cudnn else None,
        build_info=json.loads(json.dumps(build)),
        devices=tuple(raw.get("devices") or ()),
        determinism=determinism,
        mixed_precision_policy=raw.get("mixed_precision_policy"),
        seed=raw.get("seed"),
        imported=bool(raw.get("imported")),
    )


def collect(import_tensorflow: bool = False) -> TensorflowInfo:
    return parse(query(import_tensorflow))
