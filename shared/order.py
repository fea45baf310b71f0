"""The one data order: which images each step of each epoch sees, for every side.

Each epoch's order is a permutation drawn from (seed, epoch) and nothing else, so it is the same
whichever side asks, whatever ran before, and after a resume. Every side consumes the ``tf.data``
pipelines built here and none shuffles on its own: over one seeded, reshuffling pipeline fit()'s
epochs get a plain ``for`` loop's 1st, 3rd, 5th... orders, fit() making two iterators an epoch
(docs/glossary.md, data adapters; measured, TF 2.21: max |w_fit - w_loop| = 0.10 after 2 epochs, not 0).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the ``n`` training images in epoch ``epoch`` (0-based), as int64 indices."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def normalize(images):
    """uint8 pixels -> float32 in [0, 1]. Runs inside the graph, so data stays uint8 in memory.

    A multiplication by 1/255 rather than the tutorial's division by 255: XLA rewrites a division
    by a constant into that multiplication, so writing it this way gives the same bits inside and
    outside XLA, and mode "epoch" (normalising inside its XLA computation) stays bit-identical to
    the other modes (measured: max |dw| 0 instead of 3.4e-7 after one epoch on 12,000 images).
    """
    import tensorflow as tf

    return tf.cast(images, tf.float32) * (1.0 / 255.0)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches per epoch; the last one may be smaller (as in fit())."""
    return -(-n // batch_size)


def train_batches(x: np.ndarray, y: np.ndarray, seed: int, batch_size: int, epochs: Iterable[int]):
    """A finite ``tf.data.Dataset`` of (images, labels) batches for the given epochs, in order.

    Each epoch is its own permutation cut into batches (a smaller last batch, never one that
    straddles two epochs). Every side reads one such dataset for all its epochs, ``steps_per_epoch``
    batches at a time (fit() keeps its iterator running across epochs when told steps_per_epoch),
    so epoch k is the same batches for all, and a resumed run starts at its next epoch.
    """
    import tensorflow as tf

    images, labels = tf.constant(x), tf.constant(y)
    order = None
    for epoch in epochs:
        perm = tf.data.Dataset.from_tensor_slices(epoch_permutation(seed, epoch, len(x)))
        perm = perm.batch(batch_size)
        order = perm if order is None else order.concatenate(perm)
    if order is None:
        raise ValueError("no epochs requested")
    return order.map(
        lambda idx: (normalize(tf.gather(images, idx)), tf.gather(labels, idx)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    ).prefetch(tf.data.AUTOTUNE)


def eval_batches(x: np.ndarray, y: np.ndarray, batch_size: int):
    """(images, labels) batches in file order, for evaluation and validation."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
    return ds.map(lambda im, lb: (normalize(im), lb)).prefetch(tf.data.AUTOTUNE)
