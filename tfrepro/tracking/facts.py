"""Facts for MLflow's own fields, derived from the environment record. Pure.

source_name(argv, cwd, git_root)   mlflow.source.name: the script, relative to the repository
                                   root, so MLflow's Source field (and its link to the commit)
                                   fills in for runs of the callback, plugin, run and replay
environment_source_name(env)       the same from a recorded Environment
model_params(env, model_hash)      the key facts a logged model carries as its params: its
                                   page, and a registered version's, then say where it was made
"""

from __future__ import annotations

import posixpath
import re
from typing import Dict, Optional, Sequence

from tfrepro import schema
from tfrepro.environment import Environment

SOURCE_LIMIT = 500
PARAM_LIMIT = 500  # MLflow takes 6000 characters per param value since 2.x; older servers 500
_PYTHON = re.compile(r"^(?:python|pypy)[0-9.]*(?:\.exe)?$")
_OPTIONS_WITH_VALUE = ("-W", "-X", "--check-hash-based-pycs")


def _script(argv: Sequence[str]) -> Optional[str]:
    """The script (or "-m module") that argv runs; None for `python -c` or a bare interpreter."""
    args = [str(a) for a in argv]
    if not args:
        return None
    if not _PYTHON.match(posixpath.basename(args[0])):
        return args[0]  # a script run directly (shebang), or a console entry point
    i = 1
    while i < len(args):
        arg = args[i]
        if arg == "-m":
            return "-m " + args[i + 1] if i + 1 < len(args) else None
        if arg.startswith("-m") and len(arg) > 2:
            return "-m " + arg[2:]
        if arg == "-c" or arg.startswith("-c") or arg == "-":
            return None
        if arg in _OPTIONS_WITH_VALUE:
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        return arg
    return None


def source_name(argv: Sequence[str], cwd: str = "", git_root: Optional[str] = None) -> Optional[str]:
    """mlflow.source.name for a process: its script relative to the git root when inside it,
    else the script as given; "-m pkg.mod" for a module; None when there is no script."""
    script = _script(argv)
    if not script or "\n" in script or "\x00" in script:
        return None
    if script.startswith("-m "):
        return script[:SOURCE_LIMIT]
    path = script
    if not posixpath.isabs(path) and cwd:
        path = posixpath.join(cwd, path)
    path = posixpath.normpath(path)
    if git_root:
        root = posixpath.normpath(git_root)
        if path == root or path.startswith(root.rstrip("/") + "/"):
            return posixpath.relpath(path, root)[:SOURCE_LIMIT]
    return (path if posixpath.isabs(path) else posixpath.normpath(script))[:SOURCE_LIMIT]


def environment_source_name(env: Environment) -> Optional[str]:
    """source_name() from a record: its process argv and cwd, and its git root."""
    proc = env.process
    if not proc or not (proc.argv or proc.entry_script):
        return None
    argv = list(proc.argv) or ["python", proc.entry_script or ""]
    return source_name(argv, proc.cwd, env.git.root if env.git else None)


def model_params(env: Environment, model_hash: Optional[str] = None) -> Dict[str, str]:
    """Params for the logged model (MLflow 3's model page lists them): image digest (else the
    reference as launched), commit and whether the tree was dirty, model hash, TensorFlow and
    its CUDA/cuDNN build, the driver's CUDA. Keys are the run's tag names; missing facts are
    left out."""
    c, g, tf, gpu = env.container, env.git, env.tensorflow, env.gpu
    params = {
        schema.IMAGE_DIGEST: c.image_digest if c else None,
        schema.IMAGE_REF: c.image_ref if c and not c.image_digest else None,
        schema.GIT_COMMIT: g.commit if g else None,
        schema.GIT_DIRTY: str(g.dirty).lower() if g and g.commit else None,
        schema.MODEL_HASH: model_hash,
        schema.TF_VERSION: tf.version if tf else None,
        schema.CUDA_BUILD: tf.cuda_build if tf else None,
        schema.CUDNN_BUILD: tf.cudnn_build if tf else None,
        schema.CUDA_DRIVER: gpu.cuda_driver if gpu else None,
    }
    return {k: schema.truncate(str(v), PARAM_LIMIT) for k, v in params.items() if v not in (None, "")}
