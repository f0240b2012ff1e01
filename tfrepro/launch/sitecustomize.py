"""tfrepro's launch hook. Not imported by tfrepro: `tfrepro run` and `tfrepro replay` copy
this file into a private directory, mount it read-only into the container and put it first
on PYTHONPATH, so every Python there imports it as `sitecustomize` before the user's code.
Beside it go the two standalone tfrepro modules it runs on (COMPANIONS): tfrepro.import_hook
(wait for TensorFlow) and tfrepro.determinism (the seeding); where they are not beside it, the
installed tfrepro's are used.

It first runs the sitecustomize the image would have run without it, then:
    TFREPRO_DETERMINISTIC=1   tfrepro.deterministic($TFREPRO_SEED)   (`tfrepro run --seed N`)
    TFREPRO_AUTOLOG=1         tfrepro.autolog()                      (default; --no-autolog)
Neither imports TensorFlow: Python's and NumPy's generators are seeded at once, and the rest
waits until the program imports TensorFlow (or Keras) itself, so `pip` or a plain `python -c`
in the container costs nothing. Nothing here may stop the user's program: what is missing or
fails is one warning on stderr (once per process tree), and the program runs.
Python 3.8+, standard library only (and its companions) until it knows what the image has.
"""

import os
import sys

HOOK_DIR = os.path.dirname(os.path.abspath(__file__))
# tfrepro modules this hook runs on, copied beside it as tfrepro_<name>.py (launch/hooks.py):
# standard library only, so they run where tfrepro is not installed
COMPANIONS = ("import_hook", "determinism")

# Environment variables, spelled here (not imported from tfrepro.schema) so that this file runs
# alone; a unit test keeps them equal to schema's ENV_* constants.
ENV_AUTOLOG = "TFREPRO_AUTOLOG"
ENV_DETERMINISTIC = "TFREPRO_DETERMINISTIC"
ENV_SEED = "TFREPRO_SEED"
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


def companion(name):
    """tfrepro's standalone module `name` (COMPANIONS): the copy beside this file, else the
    installed tfrepro's, loaded from its file so that the `tfrepro` package is not imported."""
    import importlib.util

    paths = [os.path.join(HOOK_DIR, "tfrepro_%s.py" % name)]
    installed = importlib.util.find_spec("tfrepro")  # finds the package, imports nothing
    paths += [os.path.join(p, name + ".py") for p in getattr(installed, "submodule_search_locations", None) or []]
    for path in paths:
        if os.path.isfile(path):
            spec = importlib.util.spec_from_file_location("tfrepro_hook_" + name, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise ImportError("tfrepro's %s.py is missing beside the hook" % name)


def seed_tensorflow(determinism, seed):
    """TensorFlow's seed and op determinism (run once TF is imported), recorded where the
    tensorflow fingerprint reads it when tfrepro is installed."""
    determinism.seed_tensorflow(seed)
    if not _missing("tfrepro"):
        from tfrepro import determinism as recorded

        recorded.SEED = seed


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
    if os.environ.get(ENV_DETERMINISTIC) == "1":
        try:
            seed = int(os.environ.get(ENV_SEED) or 0)
            determinism = companion("determinism")
            determinism.seed_generators(seed)  # before any user code draws from them
            actions.append(
                _guarded("seed", "could not apply the seed to TensorFlow", seed_tensorflow, determinism, seed)
            )
        except Exception as exc:
            _warn("seed", "could not apply the seed: %s: %s" % (type(exc).__name__, exc))
    if os.environ.get(ENV_AUTOLOG) == "1":
        actions.append(_guarded("autolog", "autolog is off", start_autolog))
    if actions:
        try:
            hook = companion("import_hook").AfterImport(lambda: [action() for action in actions])
            hook.install()
        except Exception as exc:
            _warn("hook", "the launch hook is off: %s: %s" % (type(exc).__name__, exc))


if __name__ == "sitecustomize":
    main()
