"""Train, evaluate and predict by hand: what model.fit() does, written out. Read it beside
high_level/train.py, top to bottom: one training step (the tape), what compiles it, the loop over
epochs and steps. Names are Keras' own, to open keras/src/backend/tensorflow/trainer.py beside it.
Beyond one device and one step, each in its own module: whole_epoch.py (an epoch as one XLA
computation), distributed.py, checkpoint.py (BackupAndRestore), tensorboard.py, class_weight.py."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras.callbacks import CallbackList

from low_level import checkpoint, class_weight, distributed, whole_epoch
from shared.config import TrainConfig
from shared.model import compute_loss, make_optimizer, unscale_loss_for_distribution
from shared.order import eval_batches, steps_per_epoch, train_batches


def train_step(model: keras.Model, optimizer: keras.Optimizer, loss_fn: keras.Loss,
               metrics: dict[str, keras.Metric], images: tf.Tensor, labels: tf.Tensor,
               sample_weight: tf.Tensor | None = None) -> dict:
    """One step of training on one batch (Model.train_step); returns every metric's running
    value so far, the logs fit()'s CallbackList turns into floats for the callbacks."""
    # Forward pass, recorded on the tape. training=True, as fit()'s train_step: Dropout drops
    # (a mask from its seed generator), batch norm uses and updates the batch's statistics.
    with tf.GradientTape() as tape:
        probs = model(images, training=True)
        # + the model's own losses (L2 penalties); sample_weight: from class_weight, or None.
        loss = compute_loss(model, loss_fn, labels, probs, sample_weight)
        # Loss scaling, so float16 gradients do not underflow: times a LossScaleOptimizer's factor or
        # any optimizer's loss_scale_factor (by default none: unchanged); apply_gradients divides it out.
        scaled_loss = optimizer.scale_loss(loss)
    # Gradients of the loss with respect to every trainable weight.
    gradients = tape.gradient(scaled_loss, model.trainable_variables)
    # Update the weights (and Adam's moments and iteration counter). Unless built already (a strategy,
    # a restored checkpoint), the first call makes the moments (traced: in the first trace), as fit().
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    # The metrics: fit()'s loss tracker is a mean over samples (a smaller last batch weighs less).
    metrics["loss"].update_state(unscale_loss_for_distribution(loss), sample_weight=tf.shape(labels)[0])
    metrics["accuracy"].update_state(labels, probs)  # unweighted, as fit()'s (class_weight.py)
    return {name: metric.result() for name, metric in metrics.items()}


def test_step(model: keras.Model, loss_fn: keras.Loss, metrics: dict[str, keras.Metric],
              images: tf.Tensor, labels: tf.Tensor) -> dict[str, tf.Tensor]:
    """One evaluation step: forward pass and metrics; no tape, no update (Model.test_step)."""
    probs = model(images, training=False)
    loss = compute_loss(model, loss_fn, labels, probs)
    metrics["loss"].update_state(unscale_loss_for_distribution(loss), sample_weight=tf.shape(labels)[0])
    metrics["accuracy"].update_state(labels, probs)
    return {name: metric.result() for name, metric in metrics.items()}


def predict_step(model: keras.Model, images: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Class probabilities of one batch (Model.predict_step); labels only for the signature."""
    return model(images, training=False)


def make_metrics() -> dict[str, keras.Metric]:
    """What compile(loss=..., metrics=["accuracy"]) creates: a loss tracker and an accuracy."""
    return {"loss": keras.metrics.Mean(name="loss"),
            "accuracy": keras.metrics.SparseCategoricalAccuracy(name="accuracy")}


def make_train_function(step: Callable, config: TrainConfig, replicated: bool = True,
                        weighted: bool = False) -> Callable:
    """Compile a step as fit()'s make_train_function does (make_test_function likewise): not at
    all with run_eagerly=True, else traced into a graph by tf.function, with XLA when jit_compile
    says so. ``replicated``: run on every replica under tf.distribute (train and test steps)."""
    if config.mode == "eager":
        return step
    if replicated and distributed.is_distributed():  # each replica runs it (distributed.py)
        return distributed.make_distributed_function(step)
    # fit() hands its function the iterator and takes each batch inside the graph, where the
    # batch dimension is unknown; we pass the batch, with a None batch dimension: no retrace.
    signature = [tf.TensorSpec([None, 28, 28], tf.float32), tf.TensorSpec([None], tf.uint8)]
    signature += [tf.TensorSpec([None], tf.float32)] if weighted else []  # sample weights
    return tf.function(step, input_signature=signature, jit_compile=config.jit_compile)


def train(model: keras.Model, x: np.ndarray, y: np.ndarray, config: TrainConfig,
          validation: tuple[np.ndarray, np.ndarray] | None = None,
          callbacks: Sequence[keras.callbacks.Callback] = (), verbose: bool = True,
          initial_epoch: int = 0, checkpoint_dir: Path | None = None) -> dict[str, list[float]]:
    """Train ``model`` on uint8 images ``x``, labels ``y``; return History.history's dict.
    ``initial_epoch``: epochs already done; ``checkpoint_dir``: saved to, resumed from."""
    optimizer = make_optimizer(config)  # compile(): the optimizer, the loss and the metrics
    distributed.build_early(optimizer, model)  # only under a strategy, as fit() does
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    metrics = make_metrics()
    step = partial(train_step, model, optimizer, loss_fn, metrics)
    train_function = make_train_function(step, config, weighted=config.class_weight is not None)
    test_function = make_train_function(partial(test_step, model, loss_fn, metrics), config)
    steps = steps_per_epoch(len(x), config.batch_size)
    if config.mode == "epoch":  # a whole epoch per call (whole_epoch.py) instead of steps
        epoch_function = whole_epoch.make_epoch_function(step, x, y, config.batch_size, metrics,
                                                         config.class_weight)
    else:  # the batches every side reads: each epoch in the shared order, one pipeline
        pipeline = train_batches(x, y, config.seed, config.batch_size, range(initial_epoch, config.epochs))
        pipeline = class_weight.with_sample_weights(pipeline, config.class_weight)  # if any
        batches = iter(distributed.distribute_dataset(pipeline))
    callbacks = list(callbacks)
    if checkpoint_dir is not None:  # BackupAndRestore, by hand (checkpoint.py)
        callbacks.append(checkpoint.EpochCheckpoint(checkpoint_dir, optimizer, initial_epoch))
    # fit()'s CallbackList, built as fit() builds it: a History and a progress bar, and the
    # same params (verbose, epochs, steps) for every callback.
    params = dict(verbose=int(verbose), epochs=config.epochs, steps=steps)
    callback_list = CallbackList(callbacks, add_history=True, add_progbar=verbose, model=model, **params)
    model.stop_training = False
    callback_list.on_train_begin()  # the checkpoint, if any, is restored here
    logs = {}
    for epoch in range(initial_epoch, config.epochs):
        # fit() resets every metric at the start of each epoch: its numbers are per epoch.
        for metric in metrics.values():
            metric.reset_state()
        callback_list.on_epoch_begin(epoch)
        if config.mode == "epoch":
            whole_epoch.run_epoch(epoch_function, config.seed, epoch, len(x), callback_list)
        else:
            for step_index in range(steps):
                callback_list.on_train_batch_begin(step_index)
                step_logs = train_function(*next(batches))
                # The callbacks get the metrics so far; the CallbackList reads them into Python
                # floats at every step, in fit() as here (on a GPU, a wait for the device).
                callback_list.on_train_batch_end(step_index, step_logs)
                if model.stop_training:  # a batch callback (e.g. TerminateOnNaN) said stop
                    break
        # Read the epoch's metrics (on a GPU, a wait for the device too).
        logs = {name: float(metric.result()) for name, metric in metrics.items()}
        if validation is not None:  # fit(validation_data=...): evaluate(), the same callbacks
            val = run_test(test_function, metrics, eval_batches(*validation, config.batch_size),
                           callback_list)
            logs.update({f"val_{name}": value for name, value in val.items()})
        callback_list.on_epoch_end(epoch, logs)  # History records the logs, the checkpoint saves
        if model.stop_training:
            break
    # fit() ends with this: with use_ema=True it puts the moving averages into the weights.
    optimizer.finalize_variable_values(model.trainable_variables)
    callback_list.on_train_end(logs)
    return model.history.history


def run_test(test_function: Callable, metrics: dict[str, keras.Metric], batches: tf.data.Dataset,
             callback_list: CallbackList | None = None) -> dict[str, float]:
    """What evaluate() does: reset the metrics, run every batch, read the results, calling
    the test callbacks around it (fit()'s validation passes its own CallbackList)."""
    callback_list = callback_list or CallbackList()
    callback_list.on_test_begin()
    for metric in metrics.values():
        metric.reset_state()
    for step_index, (images, labels) in enumerate(distributed.distribute_dataset(batches)):
        callback_list.on_test_batch_begin(step_index)
        callback_list.on_test_batch_end(step_index, test_function(images, labels))
    logs = {name: float(metric.result()) for name, metric in metrics.items()}
    callback_list.on_test_end(logs)
    return logs


def evaluate(model: keras.Model, x: np.ndarray, y: np.ndarray, config: TrainConfig) -> dict[str, float]:
    """Loss and accuracy of ``model`` over uint8 images ``x`` and labels ``y``."""
    metrics = make_metrics()
    step = partial(test_step, model, keras.losses.SparseCategoricalCrossentropy(), metrics)
    return run_test(make_train_function(step, config), metrics,
                    eval_batches(x, y, config.batch_size))


def predict(model: keras.Model, x: np.ndarray, config: TrainConfig) -> np.ndarray:
    """Class probabilities, shape (len(x), 10), for uint8 images ``x`` (replaces predict())."""
    # One device even under tf.distribute: ours would average the replicas' outputs, Keras' joins them.
    forward = make_train_function(partial(predict_step, model), config, replicated=False)
    batches = eval_batches(x, np.zeros(len(x), np.uint8), config.batch_size)
    return np.concatenate([np.asarray(forward(images, labels)) for images, labels in batches])
