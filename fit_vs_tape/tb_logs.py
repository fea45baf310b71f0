"""TensorBoard logs for every side of a run: RUN_DIR/tensorboard/<side>/{train,validation}.

fit() and the custom-step rung get Keras' own ``keras.callbacks.TensorBoard``; the loop gets the
one written by hand in low_level/tensorboard.py. Both write the same tags (``epoch_loss``,
``epoch_accuracy``, ``epoch_learning_rate``) with the epoch as the step, so one
``tensorboard --logdir RUN_DIR/tensorboard`` overlays every side. With ``--profile`` each side
also traces the same window of its second epoch with TensorFlow's profiler.
"""

from __future__ import annotations

import math
from pathlib import Path

from shared.config import SIDES, TrainConfig
from shared.order import steps_per_epoch


def calls_per_epoch(side: str, config: TrainConfig, n_train: int) -> int:
    """How many times per epoch ``side`` calls its compiled function (and its batch callbacks):
    every step for the loop, every ``steps_per_execution`` steps for fit(), once in mode epoch."""
    steps = steps_per_epoch(n_train, config.batch_size)
    if SIDES[side].uses_fit or config.mode == "epoch":  # the loop's epoch mode: one call
        return math.ceil(steps / config.execution_steps(n_train))
    return steps


def profile_window(calls: int) -> tuple[int, int]:
    """The calls of the second epoch to trace, 1-based: up to ten, after up to ten warm-up calls."""
    skip = min(10, calls // 2)
    return skip + 1, skip + min(10, calls - skip)


def tensorboard_callback(side: str, log_dir: Path, config: TrainConfig, n_train: int,
                         profile: bool):
    """The callback that writes ``side``'s TensorBoard logs into ``log_dir``."""
    calls = calls_per_epoch(side, config, n_train)
    window = profile_window(calls) if profile else None
    if SIDES[side].uses_fit:
        import keras

        # profile_batch counts batches from the start of training: the second epoch's window.
        return keras.callbacks.TensorBoard(
            str(log_dir), profile_batch=(calls + window[0], calls + window[1]) if window else 0)
    from low_level.tensorboard import TensorBoard

    return TensorBoard(log_dir, config.learning_rate, window)


def read_scalars(log_dir: Path, tag: str) -> dict[int, float]:
    """``{step: value}`` of scalar ``tag`` in the event files of ``log_dir`` (one writer's
    folder), read with TensorBoard's own event reader."""
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    events = event_accumulator.EventAccumulator(
        str(log_dir), size_guidance={event_accumulator.TENSORS: 0, event_accumulator.SCALARS: 0})
    events.Reload()
    values = {}
    if tag in events.Tags().get("tensors", []):
        for event in events.Tensors(tag):
            values[event.step] = float(tensor_util.make_ndarray(event.tensor_proto))
    elif tag in events.Tags().get("scalars", []):
        values = {event.step: float(event.value) for event in events.Scalars(tag)}
    return values
