"""Checkpoint and resume: what keras.callbacks.BackupAndRestore does for fit().

BackupAndRestore saves the model's weights, the optimizer's state (Adam's moments and step
count) and the epoch counter at the end of every epoch, and restores all three when training
starts again, so that fit() carries on from the next epoch with the same weights and optimizer
state. By hand that is a ``tf.train.Checkpoint`` of the same three things and a
``tf.train.CheckpointManager`` that keeps the latest one.

Plus one thing neither saves on its own: the seed generators' state, from which Dropout draws
its masks, a variable of its own (keras/src/random/seed_generator.py SeedGenerator.__init__:
`name="seed_generator_state",`), in ``model.variables`` but not in ``model.weights``. Neither
Keras' ``save_weights()`` nor a ``tf.train.Checkpoint`` of the model reaches it (measured: a
resumed loop then ended 0.004 away from an unstopped one), so it is saved here by name. Keras'
BackupAndRestore leaves it out too (keras-team/keras#19796); the application's fit() checkpoint
(fit_vs_tape/fit_checkpoint.py) adds it.

TensorFlow writes a checkpoint's shards under a temporary name and rewrites the small
``checkpoint`` file, which names the checkpoint to restore, only after a save succeeds: a failed
save can leave a partial ``ckpt-N`` behind, but the previous checkpoint stays the one restored
(fit_vs_tape/fit_checkpoint.py makes fit()'s save whole in its own way).
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import keras
import tensorflow as tf

from shared.model import seed_generators

#: TensorFlow's errors for a failed write, as the OS errors they stand for.
_OS_ERRORS = {tf.errors.ResourceExhaustedError: (errno.ENOSPC, "No space left on device"),
              tf.errors.PermissionDeniedError: (errno.EACCES, "Permission denied"),
              tf.errors.NotFoundError: (errno.ENOENT, "No such file or directory")}


class CheckpointMismatch(ValueError):
    """The checkpoint on disk is not after the epoch the caller says training resumes from."""


class EpochCheckpoint(keras.callbacks.Callback):
    """BackupAndRestore for the loop, a callback in its CallbackList as BackupAndRestore is in
    fit()'s: the model, ``optimizer`` and epoch counter, restored from ``directory`` when training
    begins (if it holds a checkpoint) and saved there at the end of each epoch.
    ``initial_epoch``: the epoch the caller's batches start at; the checkpoint must agree."""

    def __init__(self, directory: Path, optimizer, initial_epoch: int = 0) -> None:
        super().__init__()
        self.directory, self.optimizer, self.initial_epoch = directory, optimizer, initial_epoch
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.manager = None

    def on_train_begin(self, logs=None):
        checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, epoch=self.epoch,
                                         seed_generators=seed_generators(self.model))
        self.manager = tf.train.CheckpointManager(checkpoint, str(self.directory), max_to_keep=1)
        if self.manager.latest_checkpoint:
            # Build Adam before restoring, as BackupAndRestore must before load_weights, which
            # fills only variables that exist (keras/src/callbacks/backup_and_restore.py
            # BackupAndRestore._load_model: `self.model.optimizer.build(self.model.trainable_variables)`):
            # so the resumed loop makes its variables where fit() does, before the first trace.
            # (A tf.train.Checkpoint alone would restore into variables made later too.)
            self.optimizer.build(self.model.trainable_variables)
            checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
        # fit() starts at the saved epoch (keras/src/callbacks/backup_and_restore.py
        # BackupAndRestore._load_model: `self.model._initial_epoch = epoch`); the loop's batches
        # are already laid out from initial_epoch, so the two must agree.
        saved = int(self.epoch.numpy())
        if saved != self.initial_epoch:
            raise CheckpointMismatch(f"{self.directory}: the checkpoint is after epoch {saved}, "
                                     f"but training resumes after epoch {self.initial_epoch}")

    def on_epoch_end(self, epoch, logs=None):
        self.save(epoch + 1)

    def save(self, epochs_done: int) -> None:
        """Save the state after ``epochs_done`` completed epochs. A failed write (a full disk)
        raises OSError naming the directory; the previous checkpoint stays whole."""
        self.epoch.assign(epochs_done)
        try:
            self.manager.save()
        except tf.errors.OpError as e:
            for partial in Path(self.directory).glob("*_temp"):  # what the failed save wrote
                shutil.rmtree(partial, ignore_errors=True)
            code, cause = _OS_ERRORS.get(type(e), (errno.EIO, e.message.splitlines()[0]))
            raise OSError(code, f"{cause} (the checkpoint of epoch {epochs_done} was not written)",
                          str(self.directory)) from e


def saved_epochs(directory: str | Path) -> int:
    """How many completed epochs the checkpoint in ``directory`` holds (0: none yet)."""
    latest = tf.train.latest_checkpoint(str(directory))
    return int(tf.train.load_variable(latest, "epoch/.ATTRIBUTES/VARIABLE_VALUE")) if latest else 0
