"""tfrepro's launch hook. Not imported by tfrepro: `tfrepro run` and `tfrepro replay` copy
this file into a private directory, mount it read-only into the container and put it first
on PYTHONPATH, so every Python there imports it as `sitecustomize` before the user's code.

It first runs the sitecustomize the image would have run without it, then:
    TFREPRO_DETERMINISTIC=1   tfrepro.deterministic($TFREPRO_SEED)   (`tfrepro run --seed N`)
    TFREPRO_AUTOLOG=1         tfrepro.autolog()                      (default; --no-autolog)
Neither imports TensorFlow: Python's and NumPy's generators are seeded at once, and the rest
waits until the program imports TensorFlow (or Keras) itself, so `pip` or a plain `python -c`
in the container costs nothing. Nothing here may stop the user's program: what is missing or
fails is one warning on stderr (once per process tree), and the program runs.
Python 3.8+, standard library only until it knows what the image has.
"""

import os
import sys

HOOK_DIR = os.path.dirname(os.path.abspath(__file__))
WARNED = "TFREPRO_HOOK_WARNED"  # inherited by child processes: each warning is shown once


def _warn(kind, message):
    shown = os.environ.get(WARNED, "").split(",")
    if kind in shown:
        return
    os.environ[WARNED] = ",".join([k for k in shown if k] + [kind])
    try:
        sys.stderr.write("tfrepro: warning: %s\n" % message)
        sys.stderr.flush()
    except Exception:
        pass


def _missing(*names):
    import importlib.util

    return [name for name in names if importlib.util.find_spec(name) is None]


def chain_image_sitecustomize():
    """Import the next `sitecustomize` on sys.path (the image's own), as site.py would have."""
    mine = sys.modules.pop("sitecustomize", None)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HOOK_DIR]
    try:
        import sitecustomize  # noqa: F401  the image's, now that ours is off the path
    except ImportError as exc:
        if exc.name != "sitecustomize":
            sys.stderr.write(
                "Error in sitecustomize; set PYTHONVERBOSE for traceback:\n%s: %s\n" % (type(exc).__name__, exc)
            )
    except Exception as exc:  # what site.py does with a failing sitecustomize
        sys.stderr.write(
            "Error in sitecustomize; set PYTHONVERBOSE for traceback:\n%s: %s\n" % (type(exc).__name__, exc)
        )
    if "sitecustomize" not in sys.modules and mine is not None:
        sys.modules["sitecustomize"] = mine


class AfterImport:
    """A meta-path finder that runs `action` once TensorFlow is imported by the program, after
    any import of `tensorflow` or `keras` in progress has finished (either may import the other),
    then steps aside."""

    WATCH = ("tensorflow", "keras")

    def __init__(self, action):
        self.action = action
        self.done = False

    def install(self):
        if "tensorflow" in sys.modules:
            self.fire()
        else:
            sys.meta_path.insert(0, self)

    def find_spec(self, name, path=None, target=None):
        if self.done or name not in self.WATCH:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if getattr(spec.loader, "exec_module", None) is None:
            return None
        spec.loader = _Loader(spec.loader, self, name)
        return spec

    def loaded(self, name):
        if "tensorflow" not in sys.modules:
            return
        for other in self.WATCH:
            module = sys.modules.get(other)
            if other != name and getattr(getattr(module, "__spec__", None), "_initializing", False):
                return  # its import goes on: fire when it ends
        self.fire()

    def fire(self):
        self.done = True
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        self.action()


class _Loader:
    def __init__(self, loader, watcher, name):
        self._loader, self._watcher, self._name = loader, watcher, name

    def __getattr__(self, attr):
        return getattr(self._loader, attr)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        if not self._watcher.done:
            self._watcher.loaded(self._name)


def seed_now(seed):
    """Python's and NumPy's generators, before any user code draws from them."""
    import random

    random.seed(seed)
    if not _missing("numpy"):
        import numpy

        numpy.random.seed(seed)


def seed_tensorflow(seed):
    """TensorFlow's seed and op determinism, as tfrepro.deterministic() does (run once TF is imported)."""
    import tensorflow as tf

    tf.random.set_seed(seed)
    tf.config.experimental.enable_op_determinism()
    if not _missing("tfrepro"):
        from tfrepro import determinism

        determinism.SEED = seed  # recorded by the tensorflow fingerprint


def start_autolog():
    missing = _missing("tfrepro", "mlflow")
    if missing:
        _warn(
            "autolog",
            "autolog is off: %s not importable in this container; the program runs untracked" % ", ".join(missing),
        )
        return
    import tfrepro
    from tfrepro.autolog import autolog

    tfrepro.autolog = autolog  # importing the submodule bound the name to it: `tfrepro.autolog()` stays callable
    autolog()


def _guarded(kind, what, fn, *args):
    def run():
        try:
            fn(*args)
        except Exception as exc:
            _warn(kind, "%s: %s: %s" % (what, type(exc).__name__, exc))

    return run


def main():
    chain_image_sitecustomize()
    actions = []
    if os.environ.get("TFREPRO_DETERMINISTIC") == "1":
        try:
            seed = int(os.environ.get("TFREPRO_SEED") or 0)
            seed_now(seed)
            actions.append(_guarded("seed", "could not apply the seed to TensorFlow", seed_tensorflow, seed))
        except Exception as exc:
            _warn("seed", "could not apply the seed: %s: %s" % (type(exc).__name__, exc))
    if os.environ.get("TFREPRO_AUTOLOG") == "1":
        actions.append(_guarded("autolog", "autolog is off", start_autolog))
    if actions:
        AfterImport(lambda: [action() for action in actions]).install()


if __name__ == "sitecustomize":
    main()
