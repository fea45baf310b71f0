"""The middle rung: fit() driving a train_step you write yourself.

This is how Keras' authors teach customising training (keras.io, "Customizing what happens in
fit()"): subclass the model and override ``train_step`` (and ``test_step``). You write one step:
the forward pass under a tape, the gradients, the update, the metric updates. Everything around
it is still fit()'s: the loops over epochs and steps, resetting the metrics you list in
``metrics`` at each epoch, callbacks and History, the progress bar, validation,
``steps_per_execution`` and ``jit_compile``, ``strategy.run`` around your step under tf.distribute,
and BackupAndRestore. Read ``train_step`` below beside ``train_step`` in low_level/train.py: they
are the same lines and return the same thing, every metric's result so far (what fit() hands the
callbacks after each step); what differs is who calls them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from shared.config import TrainConfig
from shared.model import compute_loss, make_optimizer, unscale_loss_for_distribution
from shared.order import eval_batches, steps_per_epoch, train_batches


class OwnStepModel(keras.Sequential):
    """The shared model's layers (shared/model.py), in a Sequential whose train_step is ours."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # What compile(loss=..., metrics=["accuracy"]) would create; here we make them.
        self.loss_fn = keras.losses.SparseCategoricalCrossentropy()
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    @property
    def metrics(self) -> list[keras.Metric]:
        # fit() (and evaluate()) reset the metrics listed here at the start of every epoch.
        return [self.loss_tracker, self.accuracy]

    def train_step(self, data):
        """One step of training on one batch; fit() calls it for every batch."""
        # With fit(class_weight=...), fit()'s data adapter adds each image's weight to the batch.
        images, labels, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        # Forward pass, recorded on the tape. training=True: Dropout drops, batch norm uses
        # (and updates) batch statistics.
        with tf.GradientTape() as tape:
            probs = self(images, training=True)
            # + the model's own losses (the regularized model's L2 penalties)
            loss = compute_loss(self, self.loss_fn, labels, probs, sample_weight)
            # Loss scaling, so float16 gradients do not underflow: times a LossScaleOptimizer's factor
            # or any optimizer's loss_scale_factor (by default none: unchanged); apply_gradients undoes it.
            scaled_loss = self.optimizer.scale_loss(loss)
        # Gradients of the loss with respect to every trainable weight.
        gradients = tape.gradient(scaled_loss, self.trainable_variables)
        # Update the weights (and Adam's moments and iteration counter).
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        # The loss tracker: a mean over samples, so a smaller last batch weighs less. (On one
        # device the unscale is the identity; under tf.distribute it undoes Keras' division of
        # the loss by the replica count: shared/model.py.)
        self.loss_tracker.update_state(unscale_loss_for_distribution(loss),
                                       sample_weight=tf.shape(images)[0])
        self.accuracy.update_state(labels, probs)  # unweighted, as compile(metrics=...)'s are
        # fit() hands what we return to the batch callbacks and the progress bar; at the epoch's
        # end it reads self.metrics again (the same names) for on_epoch_end and History.
        return {metric.name: metric.result() for metric in self.metrics}

    def test_step(self, data):
        """One evaluation step: forward pass and metrics; evaluate() and validation call it."""
        images, labels = data
        probs = self(images, training=False)
        loss = compute_loss(self, self.loss_fn, labels, probs)
        self.loss_tracker.update_state(unscale_loss_for_distribution(loss),
                                       sample_weight=tf.shape(images)[0])
        self.accuracy.update_state(labels, probs)
        return {metric.name: metric.result() for metric in self.metrics}


def own_step(model: keras.Model, config: TrainConfig, n: int) -> OwnStepModel:
    """``model``'s own layers (so its weights, trained in place) in an OwnStepModel, compiled as
    high_level/train.py compiles, but with no loss and no metrics: train_step has its own."""
    stepper = OwnStepModel([keras.Input(model.input_shape[1:]), *model.layers], name=model.name)
    stepper.compile(optimizer=make_optimizer(config), run_eagerly=config.mode == "eager",
                    jit_compile=config.jit_compile, steps_per_execution=config.execution_steps(n))
    return stepper


def train(model: keras.Model, x: np.ndarray, y: np.ndarray, config: TrainConfig,
          validation: tuple[np.ndarray, np.ndarray] | None = None,
          callbacks: Sequence[keras.callbacks.Callback] = (), verbose: bool = True,
          initial_epoch: int = 0, checkpoint_dir: Path | None = None) -> dict[str, list[float]]:
    """Train ``model`` on uint8 images ``x`` and labels ``y`` with fit() driving our train_step;
    return Keras' History.history. Arguments as in high_level/train.py."""
    config.check_steps(len(x))  # as high_level/train.py: steps_per_execution divides an epoch
    stepper = own_step(model, config, len(x))
    # From here on, word for word high_level/train.py's fit() (its comments say why each
    # argument): the step is the only thing this rung changes.
    callbacks = list(callbacks)
    if checkpoint_dir is not None:
        callbacks.append(keras.callbacks.BackupAndRestore(checkpoint_dir))
    history = stepper.fit(
        train_batches(x, y, config.seed, config.batch_size, range(initial_epoch, config.epochs)),
        epochs=config.epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=steps_per_epoch(len(x), config.batch_size),
        validation_data=None if validation is None else eval_batches(*validation, config.batch_size),
        shuffle=False,
        class_weight=config.class_weight_dict(),
        callbacks=callbacks,
        verbose=1 if verbose else 0,
    )
    return history.history


def evaluate(
    model: keras.Model, x: np.ndarray, y: np.ndarray, config: TrainConfig
) -> dict[str, float]:
    """Loss and accuracy of ``model`` over uint8 images ``x`` and labels ``y``, by our test_step."""
    return own_step(model, config, len(x)).evaluate(
        eval_batches(x, y, config.batch_size), return_dict=True, verbose=0)


def predict(model: keras.Model, x: np.ndarray, config: TrainConfig) -> np.ndarray:
    """Class probabilities, shape (len(x), 10), for uint8 images ``x``."""
    images = eval_batches(x, np.zeros(len(x), np.uint8), config.batch_size).map(lambda im, _: im)
    return own_step(model, config, len(x)).predict(images, verbose=0)
