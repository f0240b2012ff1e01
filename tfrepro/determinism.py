"""Seeds and op determinism (`tfrepro.deterministic(seed)`), recorded so replay re-applies them."""

from __future__ import annotations

import os
from typing import Optional

# Read by the tensorflow fingerprint source; None until deterministic() is called.
SEED: Optional[int] = None

ENV_SEED = "TFREPRO_SEED"  # set by `tfrepro replay` when the original run was deterministic


def deterministic(seed: Optional[int] = None) -> int:
    """Seed Python, NumPy and TensorFlow, and turn on TF op determinism.

    With no seed, uses $TFREPRO_SEED or 0. Returns the seed used.
    """
    global SEED
    if seed is None:
        seed = int(os.environ.get(ENV_SEED, "0"))
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)  # python, numpy and tf
    tf.config.experimental.enable_op_determinism()
    SEED = seed
    return seed
