"""A small Keras regression trained with tfrepro.ReproCallback, on data it makes itself.

    python examples/train.py --epochs 3 --batch-size 32 --lr 0.01 --units 16 --seed 0

Tracking goes to $MLFLOW_TRACKING_URI (MLflow's default otherwise). Prints `run_id: <id>`.
"""

import argparse
import sys


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--units", type=int, default=16)
    parser.add_argument("--seed", type=int, default=None, help="default: $TFREPRO_SEED or 0")
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--experiment", default="tfrepro-example")
    return parser.parse_args(argv)


def make_data(samples, seed):
    import numpy as np

    rng = np.random.RandomState(seed)
    x = rng.uniform(-1, 1, size=(samples, 8)).astype("float32")
    weights = rng.normal(size=(8, 1)).astype("float32")
    y = np.tanh(x @ weights) + 0.05 * rng.normal(size=(samples, 1)).astype("float32")
    split = samples * 4 // 5
    return (x[:split], y[:split]), (x[split:], y[split:])


def main(argv=None):
    args = parse_args(argv)
    import tfrepro

    seed = tfrepro.deterministic(args.seed)  # before anything random, the model included
    import tensorflow as tf

    (x, y), validation = make_data(args.samples, seed)
    model = tf.keras.Sequential(
        [
            tf.keras.layers.Dense(args.units, activation="relu", input_shape=(x.shape[1],)),
            tf.keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=args.lr), loss="mse", metrics=["mae"])
    callback = tfrepro.ReproCallback(
        experiment_name=args.experiment,
        params={"batch_size": args.batch_size, "units": args.units, "samples": args.samples},
    )
    model.fit(
        x,
        y,
        epochs=args.epochs,
        batch_size=args.batch_size,
        validation_data=validation,
        verbose=2,
        callbacks=[callback],
    )
    # fit() returns before the run is fully uploaded (its run may still be being created):
    # wait, bounded, so the id printed is the server's and the run is complete when read back
    callback.wait(60)
    run_id = callback.session.run_id if callback.session else None
    print("model hash:", callback.model_hash)
    print("run_id:", run_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
