"""A plain Keras script: no tfrepro, no MLflow, no seed. `tfrepro run` captures it as it is:

    tfrepro run --image IMAGE --seed 0 -- python examples/plain_train.py

Its data comes from NumPy's global generator and its weights from TensorFlow's, so two runs
differ unless something seeds them (here: `--seed`, which replay applies again).
"""

import numpy as np
import tensorflow as tf

x = np.random.uniform(-1, 1, size=(512, 8)).astype("float32")
y = np.tanh(x @ np.random.normal(size=(8, 1))).astype("float32")

model = tf.keras.Sequential(
    [
        tf.keras.layers.Dense(16, activation="relu", input_shape=(8,)),
        tf.keras.layers.Dense(1),
    ]
)
model.compile(optimizer="adam", loss="mse", metrics=["mae"])
model.fit(x, y, epochs=3, batch_size=32, validation_split=0.2, verbose=2)
print("final loss: %.6f" % model.evaluate(x, y, verbose=0)[0])
