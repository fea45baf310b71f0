"""Train, evaluate and predict with Keras' compile() + fit(). Compare with low_level/train.py,
which does by hand what these calls do, and with custom_step.py, the rung in between."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from shared.config import TrainConfig
from shared.model import make_optimizer
from shared.order import eval_batches, steps_per_epoch, train_batches


def train(model: keras.Model, x: np.ndarray, y: np.ndarray, config: TrainConfig,
          validation: tuple[np.ndarray, np.ndarray] | None = None,
          callbacks: Sequence[keras.callbacks.Callback] = (), verbose: bool = True,
          initial_epoch: int = 0, checkpoint_dir: Path | None = None) -> dict[str, list[float]]:
    """Train ``model`` on uint8 images ``x`` and labels ``y``; return Keras' History.history.
    ``initial_epoch``: epochs already done (a resumed run); ``checkpoint_dir``: where model,
    optimizer and epoch are saved after every epoch and restored from at the start."""
    config.check_steps(len(x))  # steps_per_execution must divide an epoch (config.py says why)
    model.compile(
        optimizer=make_optimizer(config),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
        # How to run the step: eagerly, or traced into a graph by tf.function ...
        run_eagerly=config.mode == "eager",
        # ... with XLA or not. Keras 3's default "auto" picks XLA once a GPU (any non-CPU device)
        # is visible, unless run eagerly, for a model made in a strategy's scope, or when a layer
        # or op determinism rules XLA out (docs/glossary.md): say it, the same on every side.
        jit_compile=config.jit_compile,
        # How many steps per call of the compiled function (mode "epoch": a whole epoch).
        steps_per_execution=config.execution_steps(len(x)),
    )
    callbacks = list(callbacks)
    if checkpoint_dir is not None:
        # Keras' BackupAndRestore: after every epoch it saves weights, optimizer state and the
        # epoch counter; at the start it restores them, and fit() then starts at the saved
        # epoch whatever initial_epoch says. The batches below start at initial_epoch: the
        # caller passes the saved epoch. It leaves out Dropout's seed generator, so a resumed
        # run draws other masks (keras-team/keras#19796); the application passes, through
        # callbacks=, one that saves it too, each save whole (fit_vs_tape/fit_checkpoint.py).
        callbacks.append(keras.callbacks.BackupAndRestore(checkpoint_dir))
    history = model.fit(
        # All epochs' batches in the shared order, in one finite dataset: fit() keeps one
        # iterator running across epochs, so epoch k gets exactly the loop's epoch k.
        train_batches(x, y, config.seed, config.batch_size, range(initial_epoch, config.epochs)),
        epochs=config.epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=steps_per_epoch(len(x), config.batch_size),
        validation_data=None if validation is None else eval_batches(*validation, config.batch_size),
        # The order above is the shuffle. fit() ignores shuffle for a tf.data input
        # (keras/src/trainers/data_adapters/__init__.py get_data_adapter:
        # `# Unsupported args: y, sample_weight, shuffle`), and Keras 3.15 warns when it is True,
        # fit()'s default (3.8 does not): False says what happens, with no warning.
        shuffle=False,
        # Per class, a weight for each image's loss (not the accuracy's): fit()'s data adapter
        # turns it into each batch's sample weights (low_level/class_weight.py, by hand).
        class_weight=config.class_weight_dict(),
        callbacks=callbacks,
        verbose=1 if verbose else 0,
    )
    return history.history


def evaluate(
    model: keras.Model, x: np.ndarray, y: np.ndarray, config: TrainConfig
) -> dict[str, float]:
    """Loss and accuracy of a compiled ``model`` over uint8 images ``x`` and labels ``y``."""
    return model.evaluate(eval_batches(x, y, config.batch_size), return_dict=True, verbose=0)


def predict(model: keras.Model, x: np.ndarray, config: TrainConfig) -> np.ndarray:
    """Class probabilities, shape (len(x), 10), for uint8 images ``x``."""
    images = eval_batches(x, np.zeros(len(x), np.uint8), config.batch_size).map(lambda im, _: im)
    return model.predict(images, verbose=0)
