"""Callbacks the application gives every side: fit() calls them itself, the loop
through its CallbackList.

- EpochTimer: wall-clock seconds of each epoch, timed the same way on every side.
- RunRecorder: each epoch's logs and seconds, and a fingerprint of what the batch callbacks got,
  saved after every epoch (the history so far).
- StopOnNaN: stop at the first non-finite loss and remember the epoch and step.
- GracefulInterrupt: Ctrl-C or SIGTERM stops training between two steps, never in the middle of
  a write.
"""

from __future__ import annotations

import hashlib
import json
import math
import signal
import struct
import time
from pathlib import Path

import keras

from fit_vs_tape.errors import RunStopped
from fit_vs_tape.rundir import write_json


class EpochTimer(keras.callbacks.Callback):
    """Wall-clock seconds of each epoch, validation included (fit() calls on_epoch_end after it).

    The first epoch includes tracing and compiling; benchmarks report it apart.
    """

    def __init__(self) -> None:
        super().__init__()
        self.epoch_seconds: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        # Both sides have read their metrics by now, so the epoch's work is done (on a GPU that
        # read waited for it; on a CPU each compiled call returns only when its work is done).
        self.epoch_seconds.append(time.perf_counter() - self._start)


class RunRecorder(EpochTimer):
    """Every completed epoch's logs and seconds, in History.history's shape, written atomically
    to ``path`` after each epoch so an interrupted run keeps them and a resumed one continues.

    And per epoch, what the batch callbacks were given (``batches``): how many calls, the last
    batch number, and a SHA-256 of every call's batch number and logs, so that two sides whose
    weights end equal but whose epochs held other steps or other running metrics are told apart
    (runs.differences)."""

    def __init__(self, path: Path | None = None, previous: dict | None = None) -> None:
        super().__init__()
        self.path = path
        previous = previous or {}
        self.history: dict[str, list[float]] = {k: list(v) for k, v in previous.get("history", {}).items()}
        self.epoch_seconds = list(previous.get("epoch_seconds", []))
        self.batches: list[dict] = list(previous.get("batches", []))
        self._calls: list[tuple[int, dict]] = []  # this epoch's, fingerprinted at its end

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self._calls = []

    def on_train_batch_end(self, batch, logs=None):
        self._calls.append((batch, logs or {}))  # per step only this: the hashing waits

    def _fingerprint(self) -> dict:
        """This epoch's batch calls: how many, the last batch number, a SHA-256 of them all."""
        digest = hashlib.sha256()
        for batch, logs in self._calls:
            digest.update(struct.pack(">q", int(batch)))
            for key in sorted(logs):
                digest.update(key.encode() + struct.pack(">d", float(logs[key])))
        return {"calls": len(self._calls), "last_batch": int(self._calls[-1][0]) if self._calls else -1,
                "sha256": digest.hexdigest()}

    @property
    def completed_epochs(self) -> int:
        """Epochs finished so far, resumed ones included."""
        return len(self.epoch_seconds)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self.batches.append(self._fingerprint())
        if self.path is not None:
            # Written before the epoch's checkpoint (fit()'s BackupAndRestore comes after every
            # callback the caller passes, the loop saves after its callbacks): a checkpoint that
            # fails to save leaves this record one epoch ahead, and resuming cuts it back
            # (runs._in_step_with_checkpoint).
            write_json(self.path, {"completed_epochs": self.completed_epochs,
                                   "history": self.history, "epoch_seconds": self.epoch_seconds,
                                   "batches": self.batches})

    @staticmethod
    def load(path: Path) -> dict | None:
        """The saved progress of an earlier run, or None when there is none."""
        if not path.is_file():
            return None
        return json.loads(path.read_text())


class StopOnNaN(keras.callbacks.Callback):
    """keras.callbacks.TerminateOnNaN, remembering where it happened (epoch and step)."""

    def __init__(self) -> None:
        super().__init__()
        self.stopped_at: tuple[int, int] | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and self.stopped_at is None and not math.isfinite(float(loss)):
            self.stopped_at = (self._epoch, int(batch))
            self.model.stop_training = True


class GracefulInterrupt(keras.callbacks.Callback):
    """While active (``with GracefulInterrupt() as stop:``), Ctrl-C (SIGINT) or SIGTERM (what a
    batch scheduler, ``timeout`` or a preempted machine sends) only sets a flag; the next end of a
    training step (of an execution, with steps_per_execution) raises RunStopped. The
    epoch in progress is abandoned, so checkpoints only ever hold completed epochs, and no file is
    cut off mid-write."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        super().__init__()
        self.requested: int | None = None  # the signal received, if any
        self._epoch = 0
        self._previous: dict = {}

    def __enter__(self) -> GracefulInterrupt:
        self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, exc_type, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        if self.requested and exc_type is None:  # it came after the last step (evaluating):
            signal.raise_signal(self.requested)  # deliver it now to the handler outside

    def _handle(self, signum, frame) -> None:
        self.requested = self.requested or signum  # the first signal names the stop

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.requested:
            raise RunStopped(self.requested, f"in epoch {self._epoch + 1}, step {int(batch) + 1}")
