"""A whole epoch as ONE XLA computation: what fit(steps_per_execution=..., jit_compile=True)
approaches, taken all the way.

fit() calls its compiled train function once per ``steps_per_execution`` steps, feeding each
batch from a tf.data iterator, and runs the batch callbacks after each call. Here one call of one
XLA-compiled function trains a whole epoch: the uint8 data stays resident on the device, the
epoch's permutation (from the shared order) goes in, and a ``tf.range`` loop slices batch i and
normalises it inside the step. No Python runs between steps, so nothing per step can be seen from
outside either: batch callbacks run once per epoch, as fit()'s do once per execution.

A cliff to know about: gathering each batch from the resident dataset *inside* the loop body
makes XLA carry the whole dataset through every iteration of its while loop (measured: about
1000x slower). Gathering the epoch's permuted copy once, before the loop, avoids it.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from low_level import class_weight as class_weight_lib
from shared.order import epoch_permutation, normalize


def make_epoch_function(train_step: Callable, x: np.ndarray, y: np.ndarray, batch_size: int,
                        metrics: dict[str, keras.Metric], class_weight=None):
    """``train_epoch(permutation)`` trains one epoch over ``x``, ``y`` in that order, one
    ``train_step`` per batch, as ONE XLA computation; returns (steps run, the logs of the last
    step: the running value of each of ``metrics``). ``class_weight``: each image's weight by
    class, given to the step as its sample weights (class_weight.py). It stops at the first non-finite loss,
    inside the computation, whatever callbacks are given: unlike fit(), which finishes every
    step of a call and lets TerminateOnNaN see the running loss afterwards."""
    images, labels = tf.constant(x), tf.constant(y)
    full_steps, rest = divmod(len(x), batch_size)
    if class_weight is not None:  # each image's weight, looked up by its label inside the step
        step = train_step

        def train_step(images, labels):
            return step(images, labels, class_weight_lib.sample_weights(labels, class_weight))

    @tf.function(jit_compile=True)
    def train_epoch(permutation):
        epoch_images, epoch_labels = tf.gather(images, permutation), tf.gather(labels, permutation)
        logs = {name: tf.constant(0.0) for name in metrics}  # the loop's state needs a start
        steps_run = tf.constant(0)
        for i in tf.range(full_steps):  # AutoGraph turns this into one XLA while loop
            start = i * batch_size
            logs = train_step(normalize(tf.slice(epoch_images, [start, 0, 0], [batch_size, 28, 28])),
                              tf.slice(epoch_labels, [start], [batch_size]))
            steps_run = i + 1
            if not tf.math.is_finite(logs["loss"]):
                break
        if rest and tf.math.is_finite(logs["loss"]):  # the smaller last batch (a static shape too)
            logs = train_step(normalize(epoch_images[full_steps * batch_size:]),
                              epoch_labels[full_steps * batch_size:])
            steps_run += 1
        return steps_run, logs

    return train_epoch


def run_epoch(train_epoch: Callable, seed: int, epoch: int, n: int,
              callbacks: keras.callbacks.CallbackList) -> None:
    """Train epoch ``epoch`` in one call, then run the batch callbacks once, as
    fit(steps_per_execution=...) does around each execution."""
    callbacks.on_train_batch_begin(0)
    steps_run, logs = train_epoch(tf.constant(epoch_permutation(seed, epoch, n)))
    callbacks.on_train_batch_end(int(steps_run) - 1, logs)
