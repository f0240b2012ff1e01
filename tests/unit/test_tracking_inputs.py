"""tracking/inputs.py: describing what fit() was given, without reading a tf.data pipeline."""

import numpy as np
import pytest

from tfrepro.tracking import inputs as I

pytestmark = pytest.mark.py38
tf = pytest.importorskip("tensorflow")


def test_numpy_digest_covers_every_byte_dtype_and_shape():
    x = np.arange(24, dtype="float32").reshape(6, 4)
    y = np.ones((6, 1), dtype="float32")
    first = I.describe(x, y)
    assert first["kind"] == "numpy" and first["digest"].startswith("sha256:") and not first["sampled"]
    assert first["shape"] == "x float32[6, 4], y float32[6, 1]"
    assert I.describe(x.copy(), y)["digest"] == first["digest"]
    changed = x.copy()
    changed[5, 3] += 1  # the last element
    assert I.describe(changed, y)["digest"] != first["digest"]
    assert I.describe(x.reshape(4, 6), y)["digest"] != first["digest"]
    assert I.describe(x.astype("float64"), y)["digest"] != first["digest"]
    assert I.describe(x[:, :2], y)["digest"] == I.describe(np.ascontiguousarray(x[:, :2]), y)["digest"]


def test_dict_and_list_inputs_and_unsupported_ones():
    x = {"b": np.zeros(3), "a": np.ones(3)}
    assert I.describe(x)["shape"] == "x[a] float64[3], x[b] float64[3]"
    assert I.describe([np.zeros(2), np.ones(2)])["kind"] == "numpy"
    assert I.describe(iter([1, 2])) is None
    assert I.describe([1, 2, 3]) is None


def test_big_arrays_are_sampled_and_say_so(monkeypatch):
    monkeypatch.setattr(I, "FULL_HASH_BYTES", 1024)
    monkeypatch.setattr(I, "SAMPLE_BYTES", 4096)
    x = np.zeros(1 << 16, dtype="uint8")
    described = I.describe(x)
    assert described["sampled"]
    x[0] = 1
    assert I.describe(x)["digest"] != described["digest"]


def test_tf_data_is_described_by_its_element_spec_without_iterating():
    pulled = []

    def gen():
        for i in range(4):
            pulled.append(i)
            yield np.float32(i), np.float32(2 * i)

    spec = (tf.TensorSpec((), tf.float32), tf.TensorSpec((), tf.float32))
    dataset = tf.data.Dataset.from_generator(gen, output_signature=spec).batch(2)
    described = I.describe(dataset)
    assert pulled == [], "describing must not read the data"
    assert described["kind"] == "tf.data" and "TensorSpec" in described["shape"]
    assert (
        described["digest"] == I.describe(tf.data.Dataset.from_generator(gen, output_signature=spec).batch(2))["digest"]
    )
    assert (
        described["digest"] != I.describe(tf.data.Dataset.from_generator(gen, output_signature=spec).batch(3))["digest"]
        or described["cardinality"] < 0
    )  # unknown cardinality: only the element spec counts
    sized = tf.data.Dataset.from_tensor_slices(np.zeros((10, 3), "float32"))
    assert I.describe(sized)["cardinality"] == 10
    assert I.describe(sized.take(5))["digest"] != I.describe(sized)["digest"]


def test_fit_arguments_found_from_inside_fit():
    from tfrepro.keras_fit import FitContext

    seen = {}

    class Probe(tf.keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.update(FitContext.find(self).fit_args or {})

    model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(3,))])
    model.compile(loss="mse")
    x, y = np.zeros((8, 3), "float32"), np.zeros((8, 1), "float32")
    model.fit(x, y, validation_data=(x[:2], y[:2]), epochs=1, verbose=0, callbacks=[Probe()])
    assert seen["x"] is x and seen["y"] is y and seen["validation_data"][0] is not None
    described = I.describe_fit(seen)
    assert set(described) == {"training", "validation"}
    tags = I.tags(described)
    assert tags["tfrepro.input.training.kind"] == "numpy"
    assert tags["tfrepro.input.validation.shape"] == "x float32[2, 3], y float32[2, 1]"
    assert I.describe_fit({"x": iter([1])}) == {}, "a generator is not described"
