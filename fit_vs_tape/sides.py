"""The sides of the comparison, one object each: the rungs of the ladder from fit() to a loop of
your own ("side" is the project's one word for a rung: ``--side``/``--sides``, results.json's
keys, ``SIDES``).

A side holds its module's ``train``, ``evaluate`` and ``predict`` (the same arguments on every
side), its label and colour, and whatever differs by whether fit() drives it: its checkpoint,
how often it calls its compiled function, its TensorBoard callback, the report's note, whether
it runs under MultiWorkerMirroredStrategy. The application asks the side, never which kind it
is. A new side is one entry in ``SIDES`` (a new kind only if it runs unlike both kinds here).
Its module is imported at first use, by the plain import of the function its entry names: the
command line answers ``--help`` and argument mistakes before TensorFlow is imported.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from shared.config import TrainConfig
from shared.order import steps_per_epoch


@dataclass(frozen=True)
class Side:
    """One rung of the ladder; ``FitSide`` and ``LoopSide`` add what differs by its driver."""

    name: str
    """Its name in results.json, file names and the run directory."""
    label: str
    """Its name in tables and figures."""
    short: str
    """How the command line names it (``train --side``, ``compare --sides``)."""
    color: str
    """Its colour in figures."""
    module: Callable[[], ModuleType]
    """Imports its module (the lesson's file with train, evaluate, predict) and returns it."""

    train = property(lambda self: self.module().train)
    evaluate = property(lambda self: self.module().evaluate)
    predict = property(lambda self: self.module().predict)

    @property
    def source(self) -> str:
        """Its module's file, as a run names it: ``high_level/train.py``."""
        return self.module().__name__.replace(".", "/") + ".py"


class FitSide(Side):
    """A side fit() drives: as the tutorial calls it, or driving your own train_step."""

    uses_fit = True
    runs_multiworker = False  # Keras 3's fit() does not (keras-team/keras#20585)
    #: report.md's word under the TensorBoard logs (measured in docs/benchmarks.md: enough to
    #: tilt a compare's seconds towards the loop).
    tensorboard_note = (
        "The seconds above include this logging, and it costs `fit()` more than the loop: "
        "Keras' TensorBoard callback does some work at every step (even with "
        "`update_freq=\"epoch\"`), the loop's logger once per epoch. To time without it: "
        "`--no-tensorboard`, or `fit-vs-tape bench speed`.")

    def checkpointing(self, directory: Path | None) -> tuple[list, Path | None]:
        """How it saves to and resumes from ``directory``: the callbacks to add and the
        ``checkpoint_dir`` to pass. Here the application's BackupAndRestore, through
        ``callbacks=``: it saves Dropout's generator too, and each save whole
        (fit_vs_tape/fit_checkpoint.py)."""
        if directory is None:
            return [], None
        from fit_vs_tape.fit_checkpoint import BackupAndRestore

        return [BackupAndRestore(directory)], None

    def saved_epochs(self, directory: Path) -> int:
        """How many completed epochs its checkpoint in ``directory`` holds."""
        from fit_vs_tape import fit_checkpoint

        return fit_checkpoint.saved_epochs(directory)

    def calls_per_epoch(self, config: TrainConfig, n_train: int) -> int:
        """How often an epoch of ``n_train`` images calls the compiled function (and the batch
        callbacks): every ``steps_per_execution`` steps (mode epoch: once)."""
        return math.ceil(steps_per_epoch(n_train, config.batch_size) / config.execution_steps(n_train))

    def tensorboard(self, log_dir: Path, config: TrainConfig, calls: int,
                    window: tuple[int, int] | None):
        """The callback writing its TensorBoard logs into ``log_dir``; with ``window``, the
        profiler traces those calls (1-based) of the second epoch of ``calls``."""
        import keras

        # profile_batch counts batches from the start of training: the second epoch's window.
        return keras.callbacks.TensorBoard(
            str(log_dir), profile_batch=(calls + window[0], calls + window[1]) if window else 0)


class LoopSide(Side):
    """A side its own loop drives: the loop writes by hand what fit() does."""

    uses_fit = False
    runs_multiworker = True
    tensorboard_note = ""

    def checkpointing(self, directory: Path | None) -> tuple[list, Path | None]:
        # Its own checkpoint (low_level/checkpoint.py), through checkpoint_dir.
        return [], directory

    def saved_epochs(self, directory: Path) -> int:
        from low_level import checkpoint

        return checkpoint.saved_epochs(directory)

    def calls_per_epoch(self, config: TrainConfig, n_train: int) -> int:
        # Every step, or in mode epoch the whole epoch in one call.
        return 1 if config.mode == "epoch" else steps_per_epoch(n_train, config.batch_size)

    def tensorboard(self, log_dir: Path, config: TrainConfig, calls: int,
                    window: tuple[int, int] | None):
        # Written by hand, with Keras' tags (low_level/tensorboard.py).
        from low_level.tensorboard import TensorBoard

        return TensorBoard(log_dir, config.learning_rate, window)


def _fit():
    from high_level import train
    return train


def _custom_step():
    from high_level import custom_step
    return custom_step


def _loop():
    from low_level import train
    return train


#: The sides, in the order of the ladder: fit(); fit() driving your own train_step; your own loop.
SIDES: dict[str, Side] = {side.name: side for side in (
    FitSide("high_level", "fit()", "high", "tab:blue", _fit),
    FitSide("custom_step", "fit() + own train_step", "step", "tab:green", _custom_step),
    LoopSide("low_level", "GradientTape loop", "low", "tab:orange", _loop),
)}
