"""The one model definition and the one data order."""

from __future__ import annotations

import numpy as np
import pytest

from shared.model import build_model, initial_weights
from shared.order import epoch_permutation, steps_per_epoch, train_batches
from tests.conftest import synthetic


def test_model_is_the_tutorials():
    model = build_model()
    assert [type(layer).__name__ for layer in model.layers] == ["Flatten", "Dense", "Dense"]
    assert model.layers[1].units == 128 and model.layers[1].activation.__name__ == "relu"
    assert model.layers[2].units == 10 and model.layers[2].activation.__name__ == "softmax"
    # 784*128 + 128 + 128*10 + 10
    assert model.count_params() == 101_770


def test_initial_weights_depend_on_seed_only():
    a, b, c = initial_weights(128, 1), initial_weights(128, 1), initial_weights(128, 2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def test_epoch_permutation_is_a_permutation_fixed_by_seed_and_epoch():
    p0 = epoch_permutation(7, 0, 1000)
    assert sorted(p0.tolist()) == list(range(1000))
    assert np.array_equal(p0, epoch_permutation(7, 0, 1000))
    assert not np.array_equal(p0, epoch_permutation(7, 1, 1000))  # reshuffled each epoch
    assert not np.array_equal(p0, epoch_permutation(8, 0, 1000))


def _batches(ds):
    return [(im.numpy(), lb.numpy()) for im, lb in ds]


@pytest.mark.parametrize("n, batch_size", [(100, 32), (96, 32)])
def test_fit_dataset_and_loop_datasets_deliver_the_same_batches(n, batch_size):
    x, y = synthetic(n, 0)
    # Both sides read one dataset holding every epoch; a resumed run builds one from its next
    # epoch on. Either way, epoch k is the same batches.
    all_epochs = _batches(train_batches(x, y, seed=3, batch_size=batch_size, epochs=range(3)))
    per_epoch = [b for e in range(3) for b in _batches(train_batches(x, y, 3, batch_size, [e]))]
    steps = steps_per_epoch(n, batch_size)
    assert len(all_epochs) == len(per_epoch) == 3 * steps
    for (im_a, lb_a), (im_b, lb_b) in zip(all_epochs, per_epoch):
        assert np.array_equal(im_a, im_b) and np.array_equal(lb_a, lb_b)
    # Each epoch is one pass over every image, in that epoch's permutation, normalised to [0, 1].
    for e in range(3):
        epoch = per_epoch[e * steps : (e + 1) * steps]
        labels = np.concatenate([lb for _, lb in epoch])
        perm = epoch_permutation(3, e, n)
        assert np.array_equal(labels, y[perm])
        first = epoch[0][0]
        assert first.dtype == np.float32
        np.testing.assert_allclose(first, x[perm[:batch_size]] / 255.0, rtol=1e-6)
        assert first.max() <= 1.0 and first.min() >= 0.0
    # Batches never straddle two epochs: the last one of an epoch may be smaller.
    assert len(per_epoch[steps - 1][1]) == n - (steps - 1) * batch_size


def test_fit_on_arrays_draws_one_order_for_every_epoch_under_a_global_seed():
    """What the README's map and docs/glossary.md say of the tutorial's own fit(x, y): under
    keras.utils.set_random_seed, shuffle=True puts NumPy arrays in one and the same order in every
    epoch, and again in a later fit() call. The shuffle is a random op inside the dataset fit()
    builds (keras/src/trainers/data_adapters/array_data_adapter.py), and the iterator fit() makes
    for each epoch runs it again from the same seeds. Without a global seed the epochs differ.
    Fails when Keras changes either (it holds at 3.15.1 and 3.8.0)."""
    import keras
    import tensorflow as tf

    class Recorder(keras.Sequential):  # a step that hands the callbacks its batch's sample numbers
        def train_step(self, data):
            x, _ = data
            return {"samples": x[:, 0]}

    class Orders(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs = []

        def on_epoch_begin(self, epoch, logs=None):
            self.epochs.append([])

        def on_train_batch_end(self, batch, logs=None):
            self.epochs[-1].extend(int(i) for i in logs["samples"])

    def orders(seed: int | None, calls: int = 1) -> list[list[int]]:
        if seed is None:
            tf.random.set_seed(None)  # as in a fresh process: no global seed
        else:
            keras.utils.set_random_seed(seed)
        model = Recorder([keras.Input((1,)), keras.layers.Dense(1)])
        model.compile()  # the default: a graph, the batches taken from the iterator inside it
        seen = Orders()
        for _ in range(calls):
            model.fit(np.arange(40, dtype="float32")[:, None], np.zeros(40, "float32"), batch_size=8,
                      epochs=3, shuffle=True, verbose=0, callbacks=[seen])
        return seen.epochs

    seeded = orders(7, calls=2)
    assert len(seeded) == 6 and sorted(seeded[0]) == list(range(40)) and seeded[0] != list(range(40))
    assert all(order == seeded[0] for order in seeded), "a seeded fit() reshuffled between epochs"
    assert orders(8)[0] != seeded[0]  # another seed, another order
    unseeded = orders(None)
    assert unseeded[0] != unseeded[1] or unseeded[1] != unseeded[2]  # without a seed: new orders
