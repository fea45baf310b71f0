"""Checkpoint and resume for fit(): keras.callbacks.BackupAndRestore, with its save made whole.

BackupAndRestore is how fit() survives being stopped. After every epoch it saves the model's
weights with the optimizer's state (``latest.weights.h5``) and the epoch counter
(``training_metadata.json``); when fit() starts again it restores both and carries on from the
next epoch. low_level/checkpoint.py does the same for the loop with ``tf.train.Checkpoint``.

Keras writes ``latest.weights.h5`` in place, through HDF5. If the disk fills (or the process is
killed) during that write, the file is left cut short: the old checkpoint is gone and the new one
does not load. On a full disk HDF5 also leaves the file open in a state that crashes the process
when Python exits (a segmentation fault; h5py issue #914). The subclass below changes only the
writing: HDF5 builds the file in memory, and Python writes the bytes under a temporary name and
renames them over the old file. A failed save raises an OSError naming the directory and leaves
the previous checkpoint whole. Restoring is Keras' own, unchanged. (Keras' own remedy,
``double_checkpoint=True``, keeps a ``.bkp`` copy to fall back on when loading fails; it does
not help here: a file cut short still half loads, and the crash on exit remains. This save
replaces it, so the option does nothing on this class.)
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import keras

from shared.files import atomic_path

WEIGHTS = "latest.weights.h5"  # BackupAndRestore's file names
METADATA = "training_metadata.json"


class _InMemoryWeightsFile(io.BytesIO):
    """A buffer that save_weights() accepts as its file: Keras' HDF5 writer takes an in-memory
    file, and its name check only asks that the name ends in .weights.h5."""

    def __str__(self) -> str:
        return WEIGHTS


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """keras.callbacks.BackupAndRestore(``directory``, delete_checkpoint=False) whose save after
    each epoch is all or nothing (see the module docstring)."""

    def __init__(self, directory: str | os.PathLike) -> None:
        # delete_checkpoint=False: keep the last checkpoint when training ends, so that a run
        # can be extended or inspected; Keras' default deletes it.
        super().__init__(str(directory), delete_checkpoint=False)
        self.directory = Path(directory)

    # Keras' own save, called at each epoch's end. It is a private method: should a Keras
    # release rename it, tests/test_faults.py (a disk filled just before this save) fails.
    def _save_model(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        buffer = _InMemoryWeightsFile()
        self.model.save_weights(buffer)
        try:
            # Weights first, then the epoch counter: a stop between the two renames leaves new
            # weights under the old epoch, a gap of a few microseconds.
            with atomic_path(self.directory / WEIGHTS) as tmp, open(tmp, "wb") as f:
                f.write(buffer.getvalue())
            with atomic_path(self.directory / METADATA) as tmp, open(tmp, "w") as f:
                json.dump({"epoch": self._current_epoch, "batch": self._last_batch_seen}, f)
        except OSError as e:
            raise OSError(e.errno, f"{os.strerror(e.errno) if e.errno else e.strerror} (the "
                          f"checkpoint of epoch {self._current_epoch} was not written)",
                          str(self.directory)) from e


def saved_epochs(directory: str | os.PathLike) -> int:
    """How many completed epochs the checkpoint in ``directory`` holds (0: none yet)."""
    metadata = Path(directory) / METADATA
    return int(json.loads(metadata.read_text())["epoch"]) if metadata.is_file() else 0
