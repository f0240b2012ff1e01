"""Seeds and op determinism (`tfrepro.deterministic(seed)`), recorded so replay re-applies them.

The one place tfrepro seeds anything. `deterministic()` is the public call; the launch hook
(tfrepro/launch/sitecustomize.py, `tfrepro run --seed N`) uses its two halves: seed_generators()
when the process starts, seed_tensorflow() once the program has imported TensorFlow.
Standard library only at import, Python 3.8, no tfrepro import: `tfrepro run` copies this file
beside the sitecustomize into a container that may have no tfrepro at all (launch/hooks.py).
"""

import os
import random
from typing import Optional

# Read by the tensorflow fingerprint source; None until TensorFlow was seeded here.
SEED: Optional[int] = None

# set by `tfrepro replay` when the original run was deterministic. Spelled here, not imported
# from tfrepro.schema (ENV_SEED there), so that this file runs alone: a unit test keeps both equal.
ENV_SEED = "TFREPRO_SEED"


def deterministic(seed: Optional[int] = None) -> int:
    """Seed Python, NumPy and TensorFlow, and turn on TF op determinism.

    With no seed, uses $TFREPRO_SEED or 0. Returns the seed used.
    """
    if seed is None:
        seed = int(os.environ.get(ENV_SEED, "0"))
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)  # Python, NumPy, TensorFlow and Keras' own generator
    _op_determinism(tf, seed)
    return seed


def seed_generators(seed: int) -> None:
    """Python's and NumPy's global generators (NumPy only when installed), before any user
    code draws from them; imports no TensorFlow."""
    random.seed(seed)
    try:
        import numpy
    except ImportError:
        return
    numpy.random.seed(seed)


def seed_tensorflow(seed: int) -> None:
    """TensorFlow's global seed and op determinism, once the program has imported TensorFlow."""
    import tensorflow as tf

    tf.random.set_seed(seed)
    _op_determinism(tf, seed)


def _op_determinism(tf, seed: int) -> None:
    global SEED
    tf.config.experimental.enable_op_determinism()
    SEED = seed  # recorded by the tensorflow fingerprint
