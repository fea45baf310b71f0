"""The classic mistakes of a first GradientTape loop, each a few lines changed in train.py.

People who write their first loop and compare it with fit() see other numbers and ask why
(tensorflow/tensorflow#35585, #46782, #36192, #31184; keras-team/keras#19341, #16906). The answers
repeat the short list below. Each entry is written as its author would write it, a copy of
train.py's ``train_step`` or of ``loop`` below with the mistake in it; ``fit-vs-tape mistakes``
runs every one against fit() from the same start on the same batches and shows its diff
(fit_vs_tape/check.py), and ``fit-vs-tape check`` names one when it finds it in a step of yours.

``loop`` is train.py's epoch loop cut down to what these mistakes touch: reset the metrics, run
the compiled step on each batch, hand the logs to the callbacks. The loop mistakes are copies of
it; the step mistakes run inside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from low_level.train import make_train_function, train_step
from shared.config import TrainConfig
from shared.model import compute_loss, unscale_loss_for_distribution
from shared.order import normalize, steps_per_epoch, train_batches

# -- the loop the gallery varies: train.py's epoch loop, cut down ---------------------------------


class Parts(NamedTuple):
    """What compile() would hold: the model, its optimizer, the loss function and the metrics."""

    model: keras.Model
    optimizer: keras.Optimizer
    loss_fn: keras.Loss
    metrics: dict[str, keras.Metric]


def loop(step: Callable, parts: Parts, x: np.ndarray, y: np.ndarray, config: TrainConfig,
         callbacks: keras.callbacks.CallbackList) -> None:
    """Train ``config.epochs`` epochs on uint8 images ``x``, labels ``y`` in the shared order, as
    train.py's ``train`` does: the metrics reset each epoch, the step compiled once."""
    batches = iter(train_batches(x, y, config.seed, config.batch_size, range(config.epochs)))
    train_function = make_train_function(partial(step, *parts), config, replicated=False)
    callbacks.on_train_begin()
    for epoch in range(config.epochs):
        for metric in parts.metrics.values():
            metric.reset_state()
        callbacks.on_epoch_begin(epoch)
        for step_index in range(steps_per_epoch(len(x), config.batch_size)):
            callbacks.on_train_batch_begin(step_index)
            callbacks.on_train_batch_end(step_index, train_function(*next(batches)))
        callbacks.on_epoch_end(epoch, {name: float(m.result()) for name, m in parts.metrics.items()})
    callbacks.on_train_end()


# -- mistakes in the step ----------------------------------------------------------------------


def step_without_training_flag(model, optimizer, loss_fn, metrics, images, labels, sample_weight=None):
    """The model called without training=True: Dropout keeps every unit, batch norm normalises
    with its moving statistics and never updates them. fit()'s train_step passes training=True."""
    with tf.GradientTape() as tape:
        probs = model(images)
        loss = compute_loss(model, loss_fn, labels, probs, sample_weight)
        scaled_loss = optimizer.scale_loss(loss)
    gradients = tape.gradient(scaled_loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    metrics["loss"].update_state(unscale_loss_for_distribution(loss), sample_weight=tf.shape(labels)[0])
    metrics["accuracy"].update_state(labels, probs)
    return {name: metric.result() for name, metric in metrics.items()}


def step_without_model_losses(model, optimizer, loss_fn, metrics, images, labels, sample_weight=None):
    """The loss function's value alone: the L2 penalties in model.losses are left out, so the
    kernels are never pulled towards 0. fit()'s compute_loss adds every one of them."""
    with tf.GradientTape() as tape:
        probs = model(images, training=True)
        loss = loss_fn(labels, probs, sample_weight=sample_weight)
        scaled_loss = optimizer.scale_loss(loss)
    gradients = tape.gradient(scaled_loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    metrics["loss"].update_state(unscale_loss_for_distribution(loss), sample_weight=tf.shape(labels)[0])
    metrics["accuracy"].update_state(labels, probs)
    return {name: metric.result() for name, metric in metrics.items()}


def step_with_summed_loss(model, optimizer, loss_fn, metrics, images, labels, sample_weight=None):
    """Each image's loss summed over the batch instead of averaged: the loss function's gradients
    batch-size times larger (32; fewer in a smaller last batch), the L2 penalties' not. Adam
    divides the step by the gradient's own scale, so on the tutorial's model, while every batch is
    full, the weights move almost as fit()'s (only its epsilon, 1e-7, sees the factor; a smaller
    last batch changes the factor, which Adam's running moments do not cancel); on the regularized
    one the penalties weigh 32 times less. The printed loss is about 32 times fit()'s."""
    with tf.GradientTape() as tape:
        probs = model(images, training=True)
        loss = compute_loss(model, keras.losses.SparseCategoricalCrossentropy(reduction="sum"), labels,
                            probs, sample_weight)
        scaled_loss = optimizer.scale_loss(loss)
    gradients = tape.gradient(scaled_loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    metrics["loss"].update_state(unscale_loss_for_distribution(loss), sample_weight=tf.shape(labels)[0])
    metrics["accuracy"].update_state(labels, probs)
    return {name: metric.result() for name, metric in metrics.items()}


def step_with_logits_loss(model, optimizer, loss_fn, metrics, images, labels, sample_weight=None):
    """from_logits=True on a model that ends in softmax, the mistake the issue trackers report
    most. Keras 3 on TensorFlow forgives it: its softmax keeps the logits on its output, and the
    cross-entropy takes them whatever from_logits says, with only a warning
    (keras/src/backend/tensorflow/nn.py _get_logits: `from_logits_ = True`). So it trains as fit()
    does, bit for bit; a loss that cannot find them (another backend, logits lost on the way)
    would softmax the probabilities again."""
    with tf.GradientTape() as tape:
        probs = model(images, training=True)
        loss = compute_loss(model, keras.losses.SparseCategoricalCrossentropy(from_logits=True), labels,
                            probs, sample_weight)
        scaled_loss = optimizer.scale_loss(loss)
    gradients = tape.gradient(scaled_loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    metrics["loss"].update_state(unscale_loss_for_distribution(loss), sample_weight=tf.shape(labels)[0])
    metrics["accuracy"].update_state(labels, probs)
    return {name: metric.result() for name, metric in metrics.items()}


def step_with_new_optimizer(model, optimizer, loss_fn, metrics, images, labels, sample_weight=None):
    """An optimizer created inside the step. Run eagerly, as the gallery runs it (and fit() beside
    it, run_eagerly=True), each step starts a new Adam: its moments and step count start from 0
    every time, so step 1 agrees with fit() (at the default learning rate, which Adam() takes too)
    and step 2 does not.
    Traced by tf.function it does not run at all. Adam() creates variables when it is made
    (keras/src/optimizers/base_optimizer.py BaseOptimizer.__init__: `iterations = backend.Variable(`),
    so the first trace creates some, and tf.function then traces again with variable creation
    forbidden; that trace's Adam() raises "ValueError: tf.function only supports singleton
    tf.Variables created on the first call" (measured, Keras 3.15.1 and 3.8.0)."""
    optimizer = keras.optimizers.Adam()
    with tf.GradientTape() as tape:
        probs = model(images, training=True)
        loss = compute_loss(model, loss_fn, labels, probs, sample_weight)
        scaled_loss = optimizer.scale_loss(loss)
    gradients = tape.gradient(scaled_loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    metrics["loss"].update_state(unscale_loss_for_distribution(loss), sample_weight=tf.shape(labels)[0])
    metrics["accuracy"].update_state(labels, probs)
    return {name: metric.result() for name, metric in metrics.items()}


# -- mistakes in the loop ----------------------------------------------------------------------


def loop_without_reset(step: Callable, parts: Parts, x: np.ndarray, y: np.ndarray,
                       config: TrainConfig, callbacks: keras.callbacks.CallbackList) -> None:
    """The metrics never reset: from epoch 2 on, the loss and accuracy shown are averages over
    every epoch so far. The weights are fit()'s; only the numbers shown differ."""
    batches = iter(train_batches(x, y, config.seed, config.batch_size, range(config.epochs)))
    train_function = make_train_function(partial(step, *parts), config, replicated=False)
    callbacks.on_train_begin()
    for epoch in range(config.epochs):
        callbacks.on_epoch_begin(epoch)
        for step_index in range(steps_per_epoch(len(x), config.batch_size)):
            callbacks.on_train_batch_begin(step_index)
            callbacks.on_train_batch_end(step_index, train_function(*next(batches)))
        callbacks.on_epoch_end(epoch, {name: float(m.result()) for name, m in parts.metrics.items()})
    callbacks.on_train_end()


def loop_without_train_begin_end(step: Callable, parts: Parts, x: np.ndarray, y: np.ndarray,
                                 config: TrainConfig, callbacks: keras.callbacks.CallbackList) -> None:
    """The callbacks hear of the epochs and steps but never that training began or ended. The
    weights are fit()'s; the callbacks that work at those two points do not. BackupAndRestore
    restores its backup when training begins and deletes it when it ends
    (keras/src/callbacks/backup_and_restore.py BackupAndRestore.on_train_begin:
    `self._load_model()`; keras/src/callbacks/backup_and_restore.py BackupAndRestore.on_train_end:
    `file_utils.rmtree(self.backup_dir)`);
    TensorBoard closes its event files at the end (keras/src/callbacks/tensorboard.py
    TensorBoard.on_train_end: `self._close_writers()`); EarlyStopping(restore_best_weights=True) puts
    the best weights back there (keras/src/callbacks/early_stopping.py EarlyStopping.on_train_end:
    `if self.restore_best_weights and self.best_weights is not None:`)."""
    batches = iter(train_batches(x, y, config.seed, config.batch_size, range(config.epochs)))
    train_function = make_train_function(partial(step, *parts), config, replicated=False)
    for epoch in range(config.epochs):
        for metric in parts.metrics.values():
            metric.reset_state()
        callbacks.on_epoch_begin(epoch)
        for step_index in range(steps_per_epoch(len(x), config.batch_size)):
            callbacks.on_train_batch_begin(step_index)
            callbacks.on_train_batch_end(step_index, train_function(*next(batches)))
        callbacks.on_epoch_end(epoch, {name: float(m.result()) for name, m in parts.metrics.items()})


def loop_with_own_shuffle(step: Callable, parts: Parts, x: np.ndarray, y: np.ndarray,
                          config: TrainConfig, callbacks: keras.callbacks.CallbackList) -> None:
    """The loop shuffles its own tf.data pipeline, with the same seed, instead of reading the
    shared order: other batches from step 1 (shared/order.py says why seeds alone do not help)."""
    batches = iter(tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=config.seed)
                   .batch(config.batch_size).map(lambda im, lb: (normalize(im), lb)).repeat())
    train_function = make_train_function(partial(step, *parts), config, replicated=False)
    callbacks.on_train_begin()
    for epoch in range(config.epochs):
        for metric in parts.metrics.values():
            metric.reset_state()
        callbacks.on_epoch_begin(epoch)
        for step_index in range(steps_per_epoch(len(x), config.batch_size)):
            callbacks.on_train_batch_begin(step_index)
            callbacks.on_train_batch_end(step_index, train_function(*next(batches)))
        callbacks.on_epoch_end(epoch, {name: float(m.result()) for name, m in parts.metrics.items()})
    callbacks.on_train_end()


def loop_with_new_function(step: Callable, parts: Parts, x: np.ndarray, y: np.ndarray,
                           config: TrainConfig, callbacks: keras.callbacks.CallbackList) -> None:
    """A new tf.function built for every batch: each one traces the step again. The numbers
    are fit()'s, at the price of a trace per step (and one more at the first, whose first trace
    creates Adam's moments, as fit()'s does; later functions find them made)."""
    batches = iter(train_batches(x, y, config.seed, config.batch_size, range(config.epochs)))
    callbacks.on_train_begin()
    for epoch in range(config.epochs):
        for metric in parts.metrics.values():
            metric.reset_state()
        callbacks.on_epoch_begin(epoch)
        for step_index in range(steps_per_epoch(len(x), config.batch_size)):
            callbacks.on_train_batch_begin(step_index)
            train_function = tf.function(partial(step, *parts))
            callbacks.on_train_batch_end(step_index, train_function(*next(batches)))
        callbacks.on_epoch_end(epoch, {name: float(m.result()) for name, m in parts.metrics.items()})
    callbacks.on_train_end()


def loop_with_python_step_number(step: Callable, parts: Parts, x: np.ndarray, y: np.ndarray,
                                 config: TrainConfig, callbacks: keras.callbacks.CallbackList) -> None:
    """The step number handed to the compiled step as a Python int (to log it, say): tf.function
    traces again for every new value (and once more at the first, whose first trace creates
    Adam's moments); a tensor, tf.constant(step_index), would not make it trace again."""
    batches = iter(train_batches(x, y, config.seed, config.batch_size, range(config.epochs)))

    @tf.function
    def train_function(images, labels, step_index):
        return step(*parts, images, labels)

    callbacks.on_train_begin()
    for epoch in range(config.epochs):
        for metric in parts.metrics.values():
            metric.reset_state()
        callbacks.on_epoch_begin(epoch)
        for step_index in range(steps_per_epoch(len(x), config.batch_size)):
            callbacks.on_train_batch_begin(step_index)
            callbacks.on_train_batch_end(step_index, train_function(*next(batches), step_index))
        callbacks.on_epoch_end(epoch, {name: float(m.result()) for name, m in parts.metrics.items()})
    callbacks.on_train_end()


def loop_with_xla(step: Callable, parts: Parts, x: np.ndarray, y: np.ndarray, config: TrainConfig,
                  callbacks: keras.callbacks.CallbackList) -> None:
    """The step compiled by XLA while fit() runs without, as when one side is left to Keras'
    jit_compile="auto", which turns XLA on once a GPU is visible: the same arithmetic, fused and
    rounded in another order."""
    batches = iter(train_batches(x, y, config.seed, config.batch_size, range(config.epochs)))
    train_function = make_train_function(partial(step, *parts), replace(config, mode="xla"),
                                         replicated=False)
    callbacks.on_train_begin()
    for epoch in range(config.epochs):
        for metric in parts.metrics.values():
            metric.reset_state()
        callbacks.on_epoch_begin(epoch)
        for step_index in range(steps_per_epoch(len(x), config.batch_size)):
            callbacks.on_train_batch_begin(step_index)
            callbacks.on_train_batch_end(step_index, train_function(*next(batches)))
        callbacks.on_epoch_end(epoch, {name: float(m.result()) for name, m in parts.metrics.items()})
    callbacks.on_train_end()


@dataclass(frozen=True)
class Mistake:
    """One entry of the gallery."""

    name: str
    """Its name in tables, JSON and ``fit-vs-tape check``'s verdicts."""
    title: str
    """What was done, in a few words."""
    step: Callable = train_step
    """The step it trains with (train.py's own, or one with the mistake)."""
    loop: Callable = loop
    """The loop it trains with (``loop`` above, or one with the mistake)."""
    eager: bool = False
    """Run eagerly (the mistake shows only there)."""


#: The gallery, in the order it is shown.
MISTAKES = (
    Mistake("no_training_flag", "model(x) without training=True", step=step_without_training_flag),
    Mistake("model_losses_dropped", "model.losses left out of the loss", step=step_without_model_losses),
    Mistake("summed_loss", "loss summed over the batch, not averaged", step=step_with_summed_loss),
    Mistake("logits_loss", "from_logits=True on a softmax output (Keras forgives it)",
            step=step_with_logits_loss),
    Mistake("optimizer_in_step", "optimizer created inside the step (eager)",
            step=step_with_new_optimizer, eager=True),
    Mistake("metrics_not_reset", "metrics not reset each epoch", loop=loop_without_reset),
    Mistake("no_train_begin_end", "callbacks.on_train_begin/_end never called",
            loop=loop_without_train_begin_end),
    Mistake("own_shuffle", "the loop shuffles its own pipeline", loop=loop_with_own_shuffle),
    Mistake("new_function_per_step", "a new tf.function for every batch (retraces)",
            loop=loop_with_new_function),
    Mistake("python_step_number", "a Python int passed to the step (retraces)",
            loop=loop_with_python_step_number),
    Mistake("xla_on_one_side", "jit_compile=True in the loop, not in fit()", loop=loop_with_xla),
)
