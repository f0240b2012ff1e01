"""tfrepro: record where a Keras run ran, in MLflow, and replay it in that exact container.

Importing tfrepro imports neither TensorFlow nor MLflow.
"""

from tfrepro.versions import __version__  # written there, in a core module every layer may read

__all__ = ["ReproCallback", "autolog", "collect_environment", "deterministic", "Environment", "__version__"]

# Bound here, over the submodule of the same name: `tfrepro.autolog(...)` is the function
# (reach the module through sys.modules["tfrepro.autolog"]). It imports only the stdlib.
from tfrepro.autolog import autolog  # noqa: E402


def collect_environment():
    """This process's environment record (see tfrepro.environment.Environment)."""
    from tfrepro.fingerprint import collect

    return collect()


def __getattr__(name):  # lazy: keeps `import tfrepro` free of TensorFlow and MLflow
    if name == "ReproCallback":
        from tfrepro.callback import ReproCallback

        return ReproCallback
    if name == "Environment":
        from tfrepro.environment import Environment

        return Environment
    if name == "deterministic":
        from tfrepro.determinism import deterministic

        return deterministic
    raise AttributeError("module 'tfrepro' has no attribute %r" % name)
