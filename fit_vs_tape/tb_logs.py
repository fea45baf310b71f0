"""TensorBoard logs for every side of a run: RUN_DIR/tensorboard/<side>/{train,validation}.

fit() and the custom-step rung get Keras' own ``keras.callbacks.TensorBoard``; the loop gets the
one written by hand in low_level/tensorboard.py (each side makes its own: fit_vs_tape/sides.py).
Both write the same tags (``epoch_loss``, ``epoch_accuracy``, ``epoch_learning_rate``) with the
epoch as the step, so one ``tensorboard --logdir RUN_DIR/tensorboard`` overlays every side.
With ``--profile`` each side also traces the same window of its second epoch with TensorFlow's
profiler.
"""

from __future__ import annotations

from pathlib import Path

from fit_vs_tape.sides import Side
from shared.config import TrainConfig


def profile_window(calls: int) -> tuple[int, int]:
    """The calls of the second epoch to trace, 1-based: up to ten, after up to ten warm-up calls."""
    skip = min(10, calls // 2)
    return skip + 1, skip + min(10, calls - skip)


def tensorboard_callback(side: Side, log_dir: Path, config: TrainConfig, n_train: int,
                         profile: bool):
    """The callback that writes ``side``'s TensorBoard logs into ``log_dir``; with ``profile``,
    tracing a window of its second epoch."""
    calls = side.calls_per_epoch(config, n_train)
    return side.tensorboard(log_dir, config, calls, profile_window(calls) if profile else None)


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
