"""Train, evaluate and predict by hand: what model.fit() does, written out. Read it beside
high_level/train.py, top to bottom: one training step (the tape), what compiles it, the loop over
epochs and steps. Names are Keras' own, to open keras/src/backend/tensorflow/trainer.py beside it.
Beyond one device and one step, each in its own module: whole_epoch.py (an epoch as one XLA
computation), distributed.py (tf.distribute), checkpoint.py (BackupAndRestore), tensorboard.py.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from low_level import checkpoint, distributed, whole_epoch
from shared.config import TrainConfig
from shared.model import make_optimizer, unscale_loss_for_distribution
from shared.order import eval_batches, steps_per_epoch, train_batches


def train_step(model: keras.Model, optimizer: keras.Optimizer, loss_fn: keras.Loss,
               metrics: dict[str, keras.Metric], images: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """One step of training on one batch: what Model.train_step does inside fit()."""
    # Forward pass, recorded on the tape.
    with tf.GradientTape() as tape:
        probs = model(images, training=True)
        loss = loss_fn(labels, probs)
        # Mixed precision: scale the loss up so float16 gradients do not underflow
        # (the identity for a plain optimizer); apply_gradients scales them back down.
        scaled_loss = optimizer.scale_loss(loss)
    # Gradients of the loss with respect to every trainable weight.
    gradients = tape.gradient(scaled_loss, model.trainable_variables)
    # Update the weights (and Adam's moments and iteration counter).
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    # fit()'s loss tracker: a mean over samples, so a smaller last batch weighs less.
    metrics["loss"].update_state(unscale_loss_for_distribution(loss),
                                 sample_weight=tf.shape(images)[0])
    metrics["accuracy"].update_state(labels, probs)
    return loss


def test_step(model: keras.Model, loss_fn: keras.Loss, metrics: dict[str, keras.Metric],
              images: tf.Tensor, labels: tf.Tensor) -> None:
    """One evaluation step: forward pass and metrics; no tape, no update (Model.test_step)."""
    probs = model(images, training=False)
    loss = loss_fn(labels, probs)
    metrics["loss"].update_state(unscale_loss_for_distribution(loss),
                                 sample_weight=tf.shape(images)[0])
    metrics["accuracy"].update_state(labels, probs)


def predict_step(model: keras.Model, images: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Class probabilities of one batch (Model.predict_step); every step takes (images, labels)."""
    return model(images, training=False)


def make_metrics() -> dict[str, keras.Metric]:
    """What compile(loss=..., metrics=["accuracy"]) creates: a loss tracker and an accuracy."""
    return {"loss": keras.metrics.Mean(name="loss"),
            "accuracy": keras.metrics.SparseCategoricalAccuracy(name="accuracy")}


def make_train_function(step: Callable, config: TrainConfig, replicated: bool = True) -> Callable:
    """Compile a step as fit()'s make_train_function does (make_test_function and
    make_predict_function do the same to the other steps): not at all with run_eagerly=True;
    else traced once into a graph by tf.function, compiled by XLA when jit_compile says so.
    ``replicated``: run on every replica under tf.distribute (the train and test steps)."""
    if config.mode == "eager":
        return step
    if replicated and distributed.is_distributed():  # each replica runs it (distributed.py)
        return distributed.make_distributed_function(step)
    # A None batch dimension: the smaller last batch reuses the same trace instead of retracing.
    signature = [tf.TensorSpec([None, 28, 28], tf.float32), tf.TensorSpec([None], tf.uint8)]
    return tf.function(step, input_signature=signature, jit_compile=config.jit_compile)


def train(model: keras.Model, x: np.ndarray, y: np.ndarray, config: TrainConfig,
          validation: tuple[np.ndarray, np.ndarray] | None = None,
          callbacks: Sequence[keras.callbacks.Callback] = (), verbose: bool = True,
          initial_epoch: int = 0, checkpoint_dir: Path | None = None) -> dict[str, list[float]]:
    """Train ``model`` on uint8 images ``x`` and labels ``y``; return a History.history-shaped
    dict. ``initial_epoch``: epochs already done (a resumed run); ``checkpoint_dir``: where
    model, optimizer and epoch are saved after every epoch and restored from at the start."""
    # compile(): the optimizer, the loss and the metrics.
    optimizer = make_optimizer(config)
    optimizer.build(model.trainable_variables)  # fit() too: a traced step may not create variables
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    metrics = make_metrics()
    step = partial(train_step, model, optimizer, loss_fn, metrics)
    train_function = make_train_function(step, config)
    test_function = make_train_function(partial(test_step, model, loss_fn, metrics), config)
    steps = steps_per_epoch(len(x), config.batch_size)
    # BackupAndRestore (checkpoint.py): restore the last completed epoch's state, if any.
    saver = checkpoint.EpochCheckpoint(checkpoint_dir, model, optimizer, initial_epoch) \
        if checkpoint_dir is not None else None
    if config.mode == "epoch":  # a whole epoch per call (whole_epoch.py) instead of steps
        epoch_function = whole_epoch.make_epoch_function(step, x, y, config.batch_size)
    else:  # fit()'s data handling: every epoch's batches in the shared order, one pipeline
        batches = iter(distributed.distribute_dataset(train_batches(
            x, y, config.seed, config.batch_size, range(initial_epoch, config.epochs))))
    # fit() drives callbacks through a CallbackList that adds a History; so do we.
    callback_list = keras.callbacks.CallbackList(list(callbacks), add_history=True, model=model)
    model.stop_training = False
    callback_list.on_train_begin()
    for epoch in range(initial_epoch, config.epochs):
        # fit() resets every metric at the start of each epoch: its numbers are per epoch.
        for metric in metrics.values():
            metric.reset_state()
        callback_list.on_epoch_begin(epoch)
        bar = tqdm(total=steps, desc=f"Epoch {epoch + 1}/{config.epochs}", unit="step",
                   disable=not verbose, file=sys.stdout)  # fit()'s bar; on stdout, as Keras'
        if config.mode == "epoch":
            whole_epoch.run_epoch(epoch_function, config.seed, epoch, len(x), callback_list, bar)
        else:
            for step_index in range(steps):
                # fit() calls batch callbacks (NaN stop, Ctrl-C) around each call of its function.
                callback_list.on_train_batch_begin(step_index)
                loss = train_function(*next(batches))
                callback_list.on_train_batch_end(step_index, {"loss": loss})  # fit(): running means
                show_progress(bar, metrics)
                if model.stop_training:  # a batch callback (TerminateOnNaN) said stop
                    break
        show_progress(bar, metrics, steps=0, close=True)
        # Read the epoch's metrics: a sync point, the loop waits for the device here.
        logs = {name: float(metric.result()) for name, metric in metrics.items()}
        # fit(validation_data=...): evaluate at the end of each epoch, as val_*.
        if validation is not None:
            val = run_test(test_function, metrics, eval_batches(*validation, config.batch_size))
            logs.update({f"val_{name}": value for name, value in val.items()})
        callback_list.on_epoch_end(epoch, logs)  # History records the logs here
        if saver is not None:
            saver.save(epoch + 1)
        if model.stop_training:
            break
    callback_list.on_train_end()
    return model.history.history


def show_progress(bar: tqdm, metrics: dict[str, keras.Metric], steps: int = 1,
                  close: bool = False) -> None:
    """Move the progress bar on by ``steps``; show the metrics so far every 50 steps and when
    closing it (not every step: reading a metric waits for the device)."""
    bar.update(steps)
    if not bar.disable and (close or bar.n % 50 == 0):
        bar.set_postfix({name: f"{float(m.result()):.4f}" for name, m in metrics.items()})
    if close:
        bar.close()


def run_test(test_function: Callable, metrics: dict, batches) -> dict[str, float]:
    """Reset the metrics, run every batch, read the results (what evaluate() does)."""
    for metric in metrics.values():
        metric.reset_state()
    for images, labels in distributed.distribute_dataset(batches):
        test_function(images, labels)
    return {name: float(metric.result()) for name, metric in metrics.items()}


def evaluate(
    model: keras.Model, x: np.ndarray, y: np.ndarray, config: TrainConfig
) -> dict[str, float]:
    """Loss and accuracy of ``model`` over uint8 images ``x`` and labels ``y``."""
    metrics = make_metrics()
    step = partial(test_step, model, keras.losses.SparseCategoricalCrossentropy(), metrics)
    return run_test(make_train_function(step, config), metrics,
                    eval_batches(x, y, config.batch_size))


def predict(model: keras.Model, x: np.ndarray, config: TrainConfig) -> np.ndarray:
    """Class probabilities, shape (len(x), 10), for uint8 images ``x`` (replaces predict())."""
    # One device even under tf.distribute: replicas' predictions must be joined, not summed.
    forward = make_train_function(partial(predict_step, model), config, replicated=False)
    batches = eval_batches(x, np.zeros(len(x), np.uint8), config.batch_size)
    return np.concatenate([np.asarray(forward(images, labels)) for images, labels in batches])
