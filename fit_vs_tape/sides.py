"""The sides of the comparison, one object each: the rungs of the ladder from fit() to a loop of
your own, and everything the application does differently for one rung than for another.

"Side" is the project's one word for a rung: the command line's ``--side``/``--sides``,
results.json's keys and ``"side"``, and the code's ``SIDES``. A side holds its module's
``train``, ``evaluate`` and ``predict`` (every side's take the same arguments), its label and
colour, and what differs when fit() drives it: how it is checkpointed and resumed, how often it
calls its compiled function, which callback writes its TensorBoard logs, what the report says
about it, whether it runs under MultiWorkerMirroredStrategy. The rest of the application asks
the side; it never asks which kind it is. A new side is one entry in ``SIDES`` (and a kind of
its own only if it runs unlike both kinds here).

Each side's module is imported at its first use, by the plain import in the function named in
its entry: the command line answers ``--help`` and every mistake in its arguments before
TensorFlow is imported (a side's module imports it).
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
    """One rung of the ladder. What every kind of side shares; ``FitSide`` and ``LoopSide`` add
    what differs by whether fit() drives it."""

    name: str
    """Its name in results.json, file names and the run directory."""
    label: str
    """Its name in tables and figures."""
    short: str
    """How the command line names it (``train --side``, ``compare --sides``)."""
    color: str
    """Its colour in figures."""
    module: Callable[[], ModuleType]
    """Imports its module and returns it: the lesson's file with its train, evaluate, predict."""

    train = property(lambda self: self.module().train)
    evaluate = property(lambda self: self.module().evaluate)
    predict = property(lambda self: self.module().predict)

    @property
    def source(self) -> str:
        """Its module's file, as a run names it: ``high_level/train.py``."""
        return self.module().__name__.replace(".", "/") + ".py"


class FitSide(Side):
    """A side that fit() drives: fit() as the tutorial calls it, or driving your own train_step."""

    uses_fit = True
    runs_multiworker = False
    """Keras 3's fit() does not run under MultiWorkerMirroredStrategy (keras-team/keras#20585)."""
    tensorboard_note = (
        # Measured in docs/benchmarks.md: enough to tilt a compare's seconds towards the loop.
        "The seconds above include this logging, and it costs `fit()` more than the loop: "
        "Keras' TensorBoard callback does some work at every step (even with "
        "`update_freq=\"epoch\"`), the loop's logger once per epoch. To time without it: "
        "`--no-tensorboard`, or `fit-vs-tape bench speed`.")
    """What report.md says under its TensorBoard logs."""

    def checkpointing(self, directory: Path | None) -> tuple[list, Path | None]:
        """How it saves to and resumes from ``directory``: the callbacks to add and the
        ``checkpoint_dir`` to pass. The application's BackupAndRestore, through ``callbacks=``:
        it saves Dropout's generator too, and each save whole (fit_vs_tape/fit_checkpoint.py)."""
        if directory is None:
            return [], None
        from fit_vs_tape.fit_checkpoint import BackupAndRestore

        return [BackupAndRestore(directory)], None

    def saved_epochs(self, directory: Path) -> int:
        """How many completed epochs its checkpoint in ``directory`` holds."""
        from fit_vs_tape import fit_checkpoint

        return fit_checkpoint.saved_epochs(directory)

    def calls_per_epoch(self, config: TrainConfig, n_train: int) -> int:
        """How many times an epoch of ``n_train`` images calls the compiled function (and the
        batch callbacks): every ``steps_per_execution`` steps (mode epoch: once)."""
        return math.ceil(steps_per_epoch(n_train, config.batch_size) / config.execution_steps(n_train))

    def tensorboard(self, log_dir: Path, config: TrainConfig, calls: int,
                    window: tuple[int, int] | None):
        """Keras' TensorBoard callback writing into ``log_dir``; with ``window``, the profiler
        traces those calls (1-based) of the second epoch of ``calls`` calls."""
        import keras

        # profile_batch counts batches from the start of training: the second epoch's window.
        return keras.callbacks.TensorBoard(
            str(log_dir), profile_batch=(calls + window[0], calls + window[1]) if window else 0)


class LoopSide(Side):
    """A side whose own loop drives it: the loop writes by hand what fit() does."""

    uses_fit = False
    runs_multiworker = True
    tensorboard_note = ""

    def checkpointing(self, directory: Path | None) -> tuple[list, Path | None]:
        """How it saves to and resumes from ``directory``: its own checkpoint
        (low_level/checkpoint.py), through ``checkpoint_dir``."""
        return [], directory

    def saved_epochs(self, directory: Path) -> int:
        """How many completed epochs its checkpoint in ``directory`` holds."""
        from low_level import checkpoint

        return checkpoint.saved_epochs(directory)

    def calls_per_epoch(self, config: TrainConfig, n_train: int) -> int:
        """How many times an epoch of ``n_train`` images calls the compiled function (and the
        batch callbacks): every step, or once in mode epoch (the whole epoch in one call)."""
        return 1 if config.mode == "epoch" else steps_per_epoch(n_train, config.batch_size)

    def tensorboard(self, log_dir: Path, config: TrainConfig, calls: int,
                    window: tuple[int, int] | None):
        """The loop's TensorBoard logger writing into ``log_dir`` (low_level/tensorboard.py),
        with the same tags as Keras'; with ``window``, the profiler traces those calls (1-based)
        of the second epoch."""
        from low_level.tensorboard import TensorBoard

        return TensorBoard(log_dir, config.learning_rate, window)


# Each side's module, imported at its first use (a side's module imports TensorFlow).
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
