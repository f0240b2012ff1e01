"""tfrepro's launch hook. Not imported by tfrepro: `tfrepro run` and `tfrepro replay` copy
this file into a private directory, mount it read-only into the container and put it first
on PYTHONPATH, so every Python there imports it as `sitecustomize` before the user's code.

It first runs the sitecustomize the image would have run without it, then:
    TFREPRO_DETERMINISTIC=1   tfrepro.deterministic($TFREPRO_SEED)   (`tfrepro run --seed N`)
    TFREPRO_AUTOLOG=1         tfrepro.autolog()                      (default; --no-autolog)
Both import TensorFlow at interpreter start. Nothing here may stop the user's program: what
is missing or fails is one warning on stderr (once per process tree), and the program runs.
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
            sys.stderr.write("Error in sitecustomize; set PYTHONVERBOSE for traceback:\n%s: %s\n"
                             % (type(exc).__name__, exc))
    except Exception as exc:  # what site.py does with a failing sitecustomize
        sys.stderr.write("Error in sitecustomize; set PYTHONVERBOSE for traceback:\n%s: %s\n"
                         % (type(exc).__name__, exc))
    if "sitecustomize" not in sys.modules and mine is not None:
        sys.modules["sitecustomize"] = mine


def seed_everything(seed):
    """tfrepro.deterministic(seed), or the same by hand when the image lacks tfrepro."""
    if not _missing("tfrepro", "tensorflow"):
        from tfrepro.determinism import deterministic

        deterministic(seed)
        return
    import random

    random.seed(seed)
    if not _missing("numpy"):
        import numpy

        numpy.random.seed(seed)
    if _missing("tensorflow"):
        _warn("seed", "seed %d: TensorFlow is not importable here; only Python's and NumPy's generators "
              "are seeded" % seed)
        return
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def start_autolog():
    missing = _missing("tfrepro", "mlflow", "tensorflow")
    if missing:
        _warn("autolog", "autolog is off: %s not importable in this container; the program runs untracked"
              % ", ".join(missing))
        return
    import tfrepro
    from tfrepro.autolog import autolog

    tfrepro.autolog = autolog  # importing the submodule bound the name to it: `tfrepro.autolog()` stays callable
    autolog()


def main():
    chain_image_sitecustomize()
    if os.environ.get("TFREPRO_DETERMINISTIC") == "1":
        try:
            seed_everything(int(os.environ.get("TFREPRO_SEED") or 0))
        except Exception as exc:
            _warn("seed", "could not apply the seed: %s: %s" % (type(exc).__name__, exc))
    if os.environ.get("TFREPRO_AUTOLOG") == "1":
        try:
            start_autolog()
        except Exception as exc:
            _warn("autolog", "autolog is off: %s: %s" % (type(exc).__name__, exc))


if __name__ == "sitecustomize":
    main()
