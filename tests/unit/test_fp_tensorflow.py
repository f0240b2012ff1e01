"""TensorFlow source: never imports TF itself; reads what an imported TF reports."""

import json
import os
import subprocess
import sys
from importlib import metadata

import pytest

from tfrepro.fingerprint import NotApplicable
from tfrepro.fingerprint import tensorflow as tf_source

BUILD_INFO_29 = {  # tf.sysconfig.get_build_info() of tensorflow 2.9.3 (pip wheel)
    "cpu_compiler": "/dt9/usr/bin/gcc",
    "cuda_compute_capabilities": ["sm_35", "sm_50", "sm_60", "sm_70", "sm_75", "compute_80"],
    "cuda_version": "11.2",
    "cudnn_version": "8",
    "is_cuda_build": True,
    "is_rocm_build": False,
    "is_tensorrt_build": True,
}


def test_parse_imported():
    raw = {
        "imported": True,
        "version": "2.9.1",
        "build_info": BUILD_INFO_29,
        "devices": ["/physical_device:GPU:0"],
        "op_determinism": True,
        "mixed_precision_policy": "mixed_float16",
        "seed": 42,
        "env": {"TF_CUDNN_DETERMINISTIC": "1"},
    }
    info = tf_source.parse(raw)
    assert (info.version, info.cuda_build, info.cudnn_build) == ("2.9.1", "11.2", "8")
    assert info.build_info["cuda_compute_capabilities"][-1] == "compute_80"
    assert info.determinism == {"TF_CUDNN_DETERMINISTIC": "1", "op_determinism": True}
    assert info.mixed_precision_policy == "mixed_float16" and info.seed == 42 and info.imported


def test_op_determinism_falls_back_to_the_recorded_seed():
    raw = {"imported": True, "version": "2.9.1", "op_determinism": None, "seed": 3}
    assert tf_source.parse(raw).determinism["op_determinism"] is True
    assert tf_source.parse(dict(raw, seed=None)).determinism["op_determinism"] is False


def test_not_installed_is_not_applicable():
    with pytest.raises(NotApplicable, match="tensorflow not installed"):
        tf_source.parse({"imported": False, "version": None})


def test_build_info_is_made_json_safe():
    assert tf_source._json_safe({"a": (1, object), 2: None}) == {"a": [1, str(object)], "2": None}


def _installed_tensorflow():
    for name in tf_source.DISTRIBUTIONS:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return None


def test_query_does_not_import_tensorflow():
    # A fresh interpreter: in this one another test may have imported TensorFlow already.
    code = (
        "import json, sys\n"
        "from tfrepro.fingerprint import tensorflow as tf_source\n"
        "info = tf_source.collect()\n"
        "print(json.dumps({'leaked': 'tensorflow' in sys.modules, 'imported': info.imported,\n"
        "                  'version': info.version, 'determinism': dict(info.determinism),\n"
        "                  'devices': list(info.devices)}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in tf_source.DETERMINISM_ENV}
    env["TF_DETERMINISTIC_OPS"] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["leaked"] is False
    assert info["imported"] is False and info["version"] and info["version"] == _installed_tensorflow()
    assert info["determinism"] == {"TF_DETERMINISTIC_OPS": "1"} and info["devices"] == []


def test_imported_tensorflow_with_determinism_in_a_subprocess():
    code = (
        "import tensorflow as tf, tfrepro, json\n"
        "tfrepro.deterministic(7)\n"
        "tf.keras.mixed_precision.set_global_policy('mixed_float16')\n"
        "e = tfrepro.collect_environment()\n"
        "print(json.dumps(dict(tf.sysconfig.get_build_info()), default=str))\n"
        "print(json.dumps(e.to_dict()['tensorflow']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    build, info = (json.loads(line) for line in out.stdout.strip().splitlines()[-2:])
    assert info["imported"] is True and info["version"].startswith("2.9")
    assert info["determinism"]["op_determinism"] is True and info["seed"] == 7
    assert info["mixed_precision_policy"] == "mixed_float16"
    # what this TensorFlow says it was built with: 11.2 for PyPI's wheel, NGC's own, none for -cpu
    assert info["cuda_build"] == build.get("cuda_version")
    assert info["build_info"]["is_cuda_build"] == build["is_cuda_build"]
    assert "/physical_device:CPU:0" in info["devices"]
