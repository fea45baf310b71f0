"""Timing both implementations the same way: a Keras callback that fit() and the loop both call."""

from __future__ import annotations

import time

import keras


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
        # Both sides have read their metrics by now, which waits for the device: a sync point.
        self.epoch_seconds.append(time.perf_counter() - self._start)
