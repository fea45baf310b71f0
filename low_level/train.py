"""Train, evaluate and predict by hand. Each block says which part of fit() it replaces.

Read beside high_level/train.py: what is here and not there is what fit() does for you.
Names follow Keras' TensorFlow trainer (train_step, test_step, make_train_function), so this
file can be read side by side with keras/src/backend/tensorflow/trainer.py.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from shared.config import TrainConfig
from shared.errors import UserError
from shared.model import make_optimizer
from shared.order import (eval_batches, epoch_permutation, normalize, steps_per_epoch,
                          train_batches)

# Reading a metric waits for the device; doing it every step is what makes naive loops slow.
PROGRESS_EVERY = 50


def make_metrics() -> dict[str, keras.metrics.Metric]:
    """What compile(loss=..., metrics=["accuracy"]) creates: a loss tracker and an accuracy."""
    return {"loss": keras.metrics.Mean(name="loss"),
            "accuracy": keras.metrics.SparseCategoricalAccuracy(name="accuracy")}


def compile_step(step: Callable, mode: str) -> Callable:
    """fit() does this in make_train_function: eager, tf.function, or tf.function + XLA;
    under a tf.distribute strategy, the step runs on every replica and their results are summed."""
    if tf.distribute.has_strategy():
        strategy = tf.distribute.get_strategy()

        def distributed_step(images, labels):
            per_replica = strategy.run(step, args=(images, labels))
            if per_replica is None:
                return None
            # Each replica's loss is already divided by the replica count: the sum is the mean.
            return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

        return tf.function(distributed_step)
    if mode == "eager":
        return step
    # A None batch dimension: the smaller last batch reuses the same trace instead of retracing.
    signature = [tf.TensorSpec([None, 28, 28], tf.float32), tf.TensorSpec([None], tf.uint8)]
    return tf.function(step, input_signature=signature, jit_compile=mode in ("xla", "epoch"))


def make_epoch_function(train_step: Callable, x: np.ndarray, y: np.ndarray, batch_size: int):
    """Mode "epoch": a whole epoch as ONE XLA computation, given that epoch's permutation.

    fit(steps_per_execution=N) is the nearest it offers. Here the uint8 data stays resident on
    the device, each epoch gathers its permuted copy ONCE before the loop (gathering inside the
    loop body makes XLA carry the whole dataset through every iteration: ~1000x slower), and a
    tf.range loop slices batch i and normalises it inside the step. No Python runs per step.
    Returns (steps run, last loss); it stops early at a non-finite loss.
    """
    images, labels = tf.constant(x), tf.constant(y)
    full_steps, rest = divmod(len(x), batch_size)

    @tf.function(jit_compile=True)
    def train_epoch(permutation):
        epoch_images, epoch_labels = tf.gather(images, permutation), tf.gather(labels, permutation)
        loss, steps_run = tf.constant(0.0), tf.constant(0)
        for i in tf.range(full_steps):  # AutoGraph turns this into one XLA while loop
            start = i * batch_size
            loss = train_step(normalize(tf.slice(epoch_images, [start, 0, 0], [batch_size, 28, 28])),
                              tf.slice(epoch_labels, [start], [batch_size]))
            steps_run = i + 1
            if not tf.math.is_finite(loss):  # TerminateOnNaN, inside the compiled loop
                break
        if rest and tf.math.is_finite(loss):  # the smaller last batch (its shape is static too)
            loss = train_step(normalize(epoch_images[full_steps * batch_size:]),
                              epoch_labels[full_steps * batch_size:])
            steps_run += 1
        return steps_run, loss

    return train_epoch


def make_train_function(model, optimizer, loss_fn, metrics, mode: str, x=None, y=None,
                        batch_size: int = 32) -> Callable:
    """One training step on a batch, compiled as ``mode`` says (replaces Model.train_step);
    in mode "epoch", one whole epoch over ``x``, ``y`` given its permutation."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync

    def train_step(images, labels):
        # Forward pass, recorded on the tape.
        with tf.GradientTape() as tape:
            probs = model(images, training=True)
            loss = loss_fn(labels, probs)
            # Mixed precision: scale the loss up so float16 gradients do not underflow
            # (the identity for a plain optimizer); apply_gradients scales them back.
            scaled_loss = optimizer.scale_loss(loss)
        # fit()'s loss tracker: a mean over samples, so a smaller last batch weighs less.
        # Under a strategy, Keras losses come divided by the replica count (so the summed
        # gradients are the global mean); the tracker wants this replica's own mean back.
        metrics["loss"].update_state(loss * replicas if replicas > 1 else loss,
                                     sample_weight=tf.shape(images)[0])
        metrics["accuracy"].update_state(labels, probs)
        # Gradients of the loss with respect to every trainable weight.
        gradients = tape.gradient(scaled_loss, model.trainable_variables)
        # Update the weights (and Adam's moments and iteration counter).
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    if mode == "epoch":
        return make_epoch_function(train_step, x, y, batch_size)
    return compile_step(train_step, mode)


def make_test_function(model, loss_fn, metrics, mode: str) -> Callable:
    """One evaluation step: forward pass and metrics, no gradients (replaces Model.test_step)."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync

    def test_step(images, labels):
        probs = model(images, training=False)
        loss = loss_fn(labels, probs)
        metrics["loss"].update_state(loss * replicas if replicas > 1 else loss,
                                     sample_weight=tf.shape(images)[0])
        metrics["accuracy"].update_state(labels, probs)

    return compile_step(test_step, mode)


def run_test(test_function: Callable, metrics: dict, batches) -> dict[str, float]:
    """Reset the metrics, run every batch, read the results (what evaluate() does)."""
    for metric in metrics.values():
        metric.reset_state()
    for images, labels in batches:
        test_function(images, labels)
    return {name: float(metric.result()) for name, metric in metrics.items()}


def train(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    config: TrainConfig,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: bool = True,
    initial_epoch: int = 0,
    checkpoint_dir: Path | None = None,
) -> dict[str, list[float]]:
    """Train ``model`` on uint8 images ``x`` and labels ``y``; return a History.history-shaped dict.

    ``initial_epoch``: epochs already done (a resumed run); ``checkpoint_dir``: where the model,
    optimizer and epoch are saved after every epoch and restored from at the start.
    """
    # compile(): the optimizer, the loss and the metrics.
    optimizer = make_optimizer(config)
    # Create Adam's moment variables now: a tf.function must not create variables when traced.
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    metrics = make_metrics()
    train_function = make_train_function(model, optimizer, loss_fn, metrics, config.mode,
                                         x, y, config.batch_size)
    test_function = make_test_function(model, loss_fn, metrics, config.mode)
    steps = steps_per_epoch(len(x), config.batch_size)

    # BackupAndRestore's job: model, optimizer state (Adam's moments, step count) and the epoch
    # counter saved after every epoch with tf.train.Checkpoint, and restored here on a resume.
    manager = None
    if checkpoint_dir is not None:
        epoch_counter = tf.Variable(0, dtype=tf.int64, trainable=False)
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_counter)
        manager = tf.train.CheckpointManager(checkpoint, str(checkpoint_dir), max_to_keep=1)
        if manager.latest_checkpoint:
            checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        saved_epoch = int(epoch_counter.numpy())
        if saved_epoch != initial_epoch:
            raise UserError(f"{checkpoint_dir}: checkpoint is after epoch {saved_epoch}, "
                            f"the run's record after epoch {initial_epoch}")

    # fit()'s data handling: one pipeline of every epoch's batches in the shared order, read
    # `steps` batches per epoch (one pipeline, not one per epoch: memory stays flat).
    # Under a strategy (--strategy mirrored), each global batch is split across the replicas.
    distribute = (tf.distribute.get_strategy().experimental_distribute_dataset
                  if tf.distribute.has_strategy() else (lambda dataset: dataset))
    if config.mode != "epoch":
        batches = iter(distribute(train_batches(x, y, config.seed, config.batch_size,
                                                range(initial_epoch, config.epochs))))

    # fit() drives callbacks through a CallbackList that adds a History; so do we.
    callback_list = keras.callbacks.CallbackList(list(callbacks), add_history=True, model=model)
    model.stop_training = False
    callback_list.on_train_begin()
    for epoch in range(initial_epoch, config.epochs):
        callback_list.on_epoch_begin(epoch)
        # fit() resets every metric at the start of each epoch: its numbers are per epoch.
        for metric in metrics.values():
            metric.reset_state()
        # fit()'s progress bar: loss and accuracy so far in the epoch.
        bar = tqdm(total=steps, desc=f"Epoch {epoch + 1}/{config.epochs}", unit="step",
                   disable=not verbose, file=sys.stdout)  # stdout, where fit()'s bar goes
        if config.mode == "epoch":
            # One call trains the epoch: its permutation from the shared order goes in.
            steps_run, loss = train_function(
                tf.constant(epoch_permutation(config.seed, epoch, len(x))))
            # Like fit(steps_per_execution=...): batch callbacks once per execution.
            callback_list.on_train_batch_end(int(steps_run) - 1, {"loss": loss})
            bar.update(int(steps_run))
        else:
            for step in range(steps):
                images, labels = next(batches)
                loss = train_function(images, labels)
                # fit() calls the batch callbacks after every step (NaN check, Ctrl-C).
                callback_list.on_train_batch_end(step, {"loss": loss})
                if verbose and ((step + 1) % PROGRESS_EVERY == 0 or step + 1 == steps):
                    bar.set_postfix({n: f"{float(m.result()):.4f}" for n, m in metrics.items()},
                                    refresh=False)
                bar.update()
                if model.stop_training:  # a callback (TerminateOnNaN, EarlyStopping) said stop
                    break
        bar.set_postfix({n: f"{float(m.result()):.4f}" for n, m in metrics.items()})
        bar.close()
        # Read the epoch's metrics: a sync point, the loop waits for the device here.
        logs = {name: float(metric.result()) for name, metric in metrics.items()}
        # fit(validation_data=...): evaluate at the end of each epoch, as val_*.
        if validation is not None:
            val = run_test(test_function, metrics,
                           distribute(eval_batches(*validation, config.batch_size)))
            logs.update({f"val_{name}": value for name, value in val.items()})
        callback_list.on_epoch_end(epoch, logs)  # History records the logs here
        if manager is not None:
            epoch_counter.assign(epoch + 1)
            manager.save()
        if model.stop_training:
            break
    callback_list.on_train_end()
    return model.history.history


def evaluate(
    model: keras.Model, x: np.ndarray, y: np.ndarray, config: TrainConfig
) -> dict[str, float]:
    """Loss and accuracy of ``model`` over uint8 images ``x`` and labels ``y``."""
    metrics = make_metrics()
    test_function = make_test_function(
        model, keras.losses.SparseCategoricalCrossentropy(), metrics, config.mode
    )
    return run_test(test_function, metrics, eval_batches(x, y, config.batch_size))


def predict(model: keras.Model, x: np.ndarray, config: TrainConfig) -> np.ndarray:
    """Class probabilities, shape (len(x), 10), for uint8 images ``x`` (replaces predict())."""
    def predict_step(images, labels):  # labels unused: one signature for every step
        return model(images, training=False)

    forward = compile_step(predict_step, config.mode)
    batches = eval_batches(x, np.zeros(len(x), np.uint8), config.batch_size)
    return np.concatenate([np.asarray(forward(images, labels)) for images, labels in batches])
