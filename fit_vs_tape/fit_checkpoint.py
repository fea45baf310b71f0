"""The application's checkpoint for fit(): keras.callbacks.BackupAndRestore, with its save made
whole and the random generators' state saved too. runs.py passes it to the fit() sides through
``callbacks=``; the lesson (high_level/train.py) uses Keras' own.

BackupAndRestore is how fit() survives being stopped. After every epoch it saves the model's
weights with the optimizer's state (``latest.weights.h5``) and the epoch counter
(``training_metadata.json``); when fit() starts again it restores both and carries on from the
next epoch. low_level/checkpoint.py does the same for the loop with ``tf.train.Checkpoint``.

Keras writes ``latest.weights.h5`` in place, through HDF5. If the disk fills (or the process is
killed) during that write, the file is left cut short: the old checkpoint is gone and the new one
does not load. On a full disk HDF5 also leaves the file open in a state that crashes the process
when Python exits (a segmentation fault; h5py issue #914). The subclass below changes only the
writing, in ``on_epoch_end`` (the public hook whose Keras version calls the save):

1. ``model.save()`` writes a ``.keras`` file (a zip) under a temporary name in the checkpoint's
   directory. Keras builds the HDF5 part of it in memory when the machine has the memory, as it
   always has for this model (keras/src/saving/saving_lib.py _save_model_to_fileobj:
   `if is_memory_sufficient(model):`), and Python's zipfile writes the bytes, so a full disk is
   an ordinary OSError, never HDF5's crash. (Short of memory, Keras writes a temporary .h5 beside
   the file instead; that path was not tested on a full disk.)
2. Its ``model.weights.h5`` member is the same HDF5 file that ``save_weights()`` writes: the
   weights and the optimizer's state (the .keras format, from Keras 3.0 to today).
3. Those bytes are written under a temporary name and renamed over ``latest.weights.h5``, then
   the epoch counter the same way.

Keras' save leaves out one piece of state, and the subclass adds it: the random generators'.
``save_weights()`` writes ``model.weights``, and a Dropout layer's seed generator state is a
variable of its own (keras/src/random/seed_generator.py SeedGenerator.__init__:
`name="seed_generator_state",`), among ``model.variables`` only, so a resumed fit()
draws its dropout masks from the fresh model's generator, not from where the stopped run was
(keras-team/keras#19796). The subclass saves those states in the epoch counter's JSON file and
puts them back after Keras' restore: with them a resumed run is bit-identical, without them not.

A failed save raises an OSError naming the directory and leaves the previous checkpoint whole.
Restoring is Keras' own, unchanged. Only public calls write (``model.save`` with a path); the one
thing read from Keras' insides, where the callback restores from, is checked when the callback is
made, so that a Keras that moved it fails there, loudly.

Handing ``save_weights()`` an in-memory file instead is not a public use, and not portable: Keras
3.15 writes into it; 3.3 and 3.8 take its ``str()`` for a path and write the checkpoint into the
current directory. Keras' own remedy, ``double_checkpoint=True`` (in 3.8, not 3.3), keeps a ``.bkp`` copy to
fall back on when loading fails; it does not help here: a file cut short still half loads, and the
crash on exit remains. This save replaces it, so the option is not offered.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import keras
import numpy as np

from shared.files import atomic_path
from shared.model import seed_generators

WEIGHTS = "latest.weights.h5"  # BackupAndRestore's file names
METADATA = "training_metadata.json"
#: The weights (with the optimizer's state) inside a .keras file: keras/src/saving/saving_lib.py
#: _VARS_FNAME_H5 ("model.weights.h5"; 3.3's _VARS_FNAME + ".h5").
KERAS_FILE_WEIGHTS = "model.weights.h5"
#: Our key in the metadata file: what save_weights() leaves out (the module docstring).
RANDOM_STATE = "seed_generator_states"


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """keras.callbacks.BackupAndRestore(``directory``, delete_checkpoint=False) whose save after
    each epoch is all or nothing (see the module docstring)."""

    def __init__(self, directory: str | os.PathLike) -> None:
        # delete_checkpoint=False: keep the last checkpoint when training ends, so that a run
        # can be extended or inspected; Keras' default deletes it.
        super().__init__(str(directory), delete_checkpoint=False)
        self.directory = Path(directory)
        _check_restores_from(self, self.directory)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)  # Keras' restore: weights, optimizer state, epoch
        metadata = self.directory / METADATA
        if metadata.is_file():  # and the random generators' state, which Keras' leaves out
            set_random_state(self.model, json.loads(metadata.read_text()).get(RANDOM_STATE, []))

    def on_epoch_end(self, epoch, logs=None):
        # Keras' on_epoch_end counts the epoch and calls its private _save_model(), which writes
        # latest.weights.h5 in place (keras/src/callbacks/backup_and_restore.py
        # BackupAndRestore._save_model: `self.model.save_weights(filepath=self._weights_path,
        # overwrite=True)`).
        # This one saves whole instead; with save_freq="epoch" (the default) Keras saves
        # nowhere else.
        self.save(epoch + 1)

    def save(self, epochs_done: int) -> None:
        """Save the weights, the optimizer's state and ``epochs_done`` as BackupAndRestore
        restores them; all or nothing (an OSError naming the directory)."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            weights = weights_file_bytes(self.model, self.directory)
            # Weights first, then the epoch counter: a stop between the two renames leaves new
            # weights under the old epoch, a gap of a few microseconds.
            with atomic_path(self.directory / WEIGHTS) as tmp, open(tmp, "wb") as f:
                f.write(weights)
            with atomic_path(self.directory / METADATA) as tmp, open(tmp, "w") as f:
                # Keras' own metadata: the epochs done, and the batch (0 at an epoch's end);
                # then ours, the seed generators' states.
                json.dump({"epoch": epochs_done, "batch": 0,
                           RANDOM_STATE: random_state(self.model)}, f)
        except OSError as e:
            raise OSError(e.errno, f"{os.strerror(e.errno) if e.errno else e.strerror} (the "
                          f"checkpoint of epoch {epochs_done} was not written)",
                          str(self.directory)) from e


def random_state(model: keras.Model) -> list[list[int]]:
    """The state of every seed generator in ``model`` (shared/model.py seed_generators)."""
    return [variable.numpy().tolist() for variable in seed_generators(model)]


def set_random_state(model: keras.Model, states: list[list[int]]) -> None:
    """Put ``random_state``'s ``states`` back into ``model``'s seed generators."""
    generators = seed_generators(model)
    if len(generators) != len(states):
        raise ValueError(f"the checkpoint holds {len(states)} seed generator states; the model "
                         f"has {len(generators)}")
    for variable, state in zip(generators, states):
        variable.assign(np.array(state, dtype=variable.dtype))


def weights_file_bytes(model: keras.Model, directory: Path) -> bytes:
    """The bytes of the ``.weights.h5`` file ``model.save_weights()`` would write: the weights
    member of a temporary ``.keras`` file that ``model.save()`` writes in ``directory`` (deleted
    again; short of memory, Keras' own temporary .h5 goes there too, module docstring)."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".checkpoint.", suffix=".tmp.keras")
    os.close(fd)
    try:
        model.save(tmp)
        with zipfile.ZipFile(tmp) as archive:
            if KERAS_FILE_WEIGHTS not in archive.namelist():
                raise RuntimeError(f"Keras {keras.__version__}'s .keras file holds no "
                                   f"{KERAS_FILE_WEIGHTS} (it holds {archive.namelist()}): "
                                   f"fit_vs_tape/fit_checkpoint.py cannot save fit()'s checkpoint")
            return archive.read(KERAS_FILE_WEIGHTS)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _check_restores_from(callback: keras.callbacks.BackupAndRestore, directory: Path) -> None:
    """Fail now, not at the first resume, if this Keras' BackupAndRestore restores from other
    files than the ones saved here. Private attributes, which Keras 3.3 to 3.15 set alike
    (keras/src/callbacks/backup_and_restore.py BackupAndRestore.__init__:
    `self._weights_path = file_utils.join(backup_dir, "latest.weights.h5")`)."""
    expected = {"_weights_path": directory / WEIGHTS, "_training_metadata_path": directory / METADATA}
    found = {name: getattr(callback, name, None) for name in expected}
    if any(found[name] is None or Path(found[name]) != path for name, path in expected.items()):
        raise RuntimeError(f"Keras {keras.__version__}'s BackupAndRestore restores from {found}, "
                           f"not {WEIGHTS} and {METADATA} in {directory}: fit_vs_tape/fit_checkpoint.py "
                           "needs updating for this Keras")


def saved_epochs(directory: str | os.PathLike) -> int:
    """How many completed epochs the checkpoint in ``directory`` holds (0: none yet)."""
    metadata = Path(directory) / METADATA
    return int(json.loads(metadata.read_text())["epoch"]) if metadata.is_file() else 0
