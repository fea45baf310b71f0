"""Checkpoint and resume: what keras.callbacks.BackupAndRestore does for fit().

BackupAndRestore saves the model's weights, the optimizer's state (Adam's moments and step
count) and the epoch counter at the end of every epoch, and restores all three when training
starts again, so that fit() carries on from the next epoch as if it had never stopped. By hand
that is a ``tf.train.Checkpoint`` of the same three things and a ``tf.train.CheckpointManager``
that keeps the latest one. TensorFlow writes it under a temporary name first, so a checkpoint
is either whole or absent (high_level/checkpoint.py makes fit()'s save whole the same way).
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import tensorflow as tf

#: TensorFlow's errors for a failed write, as the OS errors they stand for.
_OS_ERRORS = {tf.errors.ResourceExhaustedError: (errno.ENOSPC, "No space left on device"),
              tf.errors.PermissionDeniedError: (errno.EACCES, "Permission denied"),
              tf.errors.NotFoundError: (errno.ENOENT, "No such file or directory")}


class CheckpointMismatch(ValueError):
    """The checkpoint on disk is not after the epoch the caller says training resumes from."""


class EpochCheckpoint:
    """Model, optimizer and epoch counter, restored now from ``directory`` (if it holds a
    checkpoint) and saved there by ``save(epoch)`` after each completed epoch."""

    def __init__(self, directory: Path, model, optimizer, initial_epoch: int = 0) -> None:
        self.directory = directory
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=self.epoch)
        self.manager = tf.train.CheckpointManager(checkpoint, str(directory), max_to_keep=1)
        if self.manager.latest_checkpoint:
            checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
        saved = int(self.epoch.numpy())
        if saved != initial_epoch:
            raise CheckpointMismatch(f"{directory}: the checkpoint is after epoch {saved}, "
                                     f"but training resumes after epoch {initial_epoch}")

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
