"""What must hold on every TensorFlow / Keras that pyproject.toml allows (.ci/run runs these at the
floor too): fit()'s checkpoint really holds the weights, and nothing lands outside the run."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

import high_level.train as high
from fit_vs_tape import fit_checkpoint as checkpoint
from shared.config import TrainConfig
from shared.model import initial_weights, make_optimizer, max_abs_weight_diff, model_from_weights
from tests.conftest import run_in_empty_directory, synthetic, write_dataset


def _restored(path: Path, config: TrainConfig) -> keras.Model:
    """A fresh model whose weights and optimizer state are loaded from ``path``, as
    BackupAndRestore loads them (build the optimizer, then load_weights)."""
    model = model_from_weights(128, initial_weights(128, 1))
    model.compile(optimizer=make_optimizer(config), loss="sparse_categorical_crossentropy")
    model.optimizer.build(model.trainable_variables)
    model.load_weights(path)
    return model


def _optimizer_diff(a: keras.Model, b: keras.Model) -> float:
    pairs = list(zip(a.optimizer.variables, b.optimizer.variables, strict=True))
    return max(float(np.max(np.abs(u.numpy() - v.numpy()))) for u, v in pairs)


def test_fits_checkpoint_is_what_save_weights_writes_and_lands_in_its_directory(
        tmp_path, monkeypatch):
    """Keras 3.3-3.8 took the old in-memory buffer's name for a path: the checkpoint was empty
    and the weights landed in the working directory. Now: the checkpoint restores the weights
    and the optimizer's state exactly, and the working directory stays empty."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    config = TrainConfig(epochs=1, mode="graph")
    x, y = synthetic(96, 0)
    model = model_from_weights(128, initial_weights(128, 0))
    high.train(model, x, y, config, callbacks=[checkpoint.BackupAndRestore(tmp_path / "ck")],
               verbose=False)
    assert list(cwd.iterdir()) == []
    assert {p.name for p in (tmp_path / "ck").iterdir()} == {checkpoint.METADATA, checkpoint.WEIGHTS}
    assert checkpoint.saved_epochs(tmp_path / "ck") == 1

    model.save_weights(tmp_path / "direct.weights.h5")  # Keras' own in-place save, for reference
    ours = _restored(tmp_path / "ck" / checkpoint.WEIGHTS, config)
    theirs = _restored(tmp_path / "direct.weights.h5", config)
    assert max_abs_weight_diff(ours, model) == 0 and max_abs_weight_diff(theirs, model) == 0
    assert _optimizer_diff(ours, model) == 0 and _optimizer_diff(theirs, model) == 0
    assert int(ours.optimizer.iterations.numpy()) == 3  # 96 images, batch 32: three steps


def test_a_keras_that_restores_from_elsewhere_fails_when_the_callback_is_made(tmp_path):
    """The private attributes the subclass checks (where Keras restores from): missing or
    different, construction fails with a message naming the Keras version."""
    with pytest.raises(RuntimeError, match=f"Keras {keras.__version__}'s BackupAndRestore.*needs "
                                           "updating"):
        checkpoint._check_restores_from(keras.callbacks.Callback(), tmp_path)
    checkpoint.BackupAndRestore(tmp_path / "ck")  # this Keras: no error


@pytest.mark.slow
def test_no_command_writes_in_the_directory_it_was_started_from(tmp_path):
    """compare, train (with --profile, so the profiler and the timeline picture run too),
    predict and explore, started in an empty directory with their output sent elsewhere: the
    directory stays empty (bench speed and bench accuracy: tests/test_benchmarks.py)."""
    data = write_dataset(tmp_path / "data")
    cwd, runs = tmp_path / "cwd", tmp_path / "runs"
    quick = ["--epochs", "2", "--limit", "128", "--data-dir", str(data), "--quiet"]
    commands = [
        ["compare", *quick, "--out", str(runs / "compare")],
        ["train", "--side", "high", *quick, "--profile", "--out", str(runs / "train")],
        ["predict", "--model", str(runs / "compare" / "high_level.keras"), "--index", "0",
         "--data-dir", str(data), "--out", str(runs / "predict")],
        ["explore", "--data-dir", str(data), "--out", str(runs / "explore")],
    ]
    for argv in commands:
        done = run_in_empty_directory(argv, cwd)
        assert done.returncode == 0, (argv, done.stderr[-2000:])
        assert list(cwd.iterdir()) == [], (argv[0], list(cwd.iterdir()))
        assert list((runs / argv[0]).iterdir())  # it did write, where it was told to
