"""`fit-vs-tape trace`: record what fit() and the loop actually do, at run time, on a few steps.

Three parts: the instrumentation (trace_record.py: what is watched, and how), this file (train
each side while recording it, and write trace.json), and the analysis with its rendering
(trace_tree.py: the run cut into parts, what the callbacks saw, the syncs, the printed tree).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from fit_vs_tape import trace_tree
from fit_vs_tape.rundir import RunDir, write_json
from fit_vs_tape.runs import Splits, make_splits
from fit_vs_tape.runtime import environment
from fit_vs_tape.sides import SIDES
from fit_vs_tape.trace_record import DRIVERS, KERAS_SRC, Recorder, TraceUnsupported, recording
from shared.config import TrainConfig
from shared.data import FashionMNIST
from shared.model import initial_weights, model_from_weights


class _StopAfter(keras.callbacks.Callback):
    """Stops training after ``epochs`` epochs, as an interrupted run stops (model.stop_training)."""

    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.epochs:
            self.model.stop_training = True


@dataclass
class SideTrace:
    """One side's recorded run: its events and the model it trained."""

    side: str
    events: list[dict]
    model: object


def trace_side(side: str, splits: Splits, config: TrainConfig, weights: list[np.ndarray],
               resumed_after: int = 0, checkpoint_dir: Path | None = None,
               record: bool = True) -> SideTrace:
    """Train side ``side`` from ``weights`` (quietly, no progress bar) while recording it.

    ``resumed_after`` > 0: first train that many epochs unrecorded, saving a checkpoint in
    ``checkpoint_dir`` and stopping as an interrupted run stops; then record the resumed run,
    which restores it and trains the remaining epochs. ``record=False``: the same training with
    nothing observed (to check the trace changes nothing)."""
    impl = SIDES[side]
    if resumed_after:
        if checkpoint_dir is None:
            raise ValueError("a resumed trace needs a checkpoint_dir")
        saving, directory = impl.checkpointing(checkpoint_dir)
        impl.train(model_from_weights(config.hidden_units, weights, model=config.model), splits.x_train,
                   splits.y_train, config, splits.validation, [_StopAfter(resumed_after), *saving],
                   verbose=False, checkpoint_dir=directory)
    model = model_from_weights(config.hidden_units, weights, model=config.model)
    recorder = Recorder()
    saving, directory = impl.checkpointing(checkpoint_dir)
    with (recording(recorder) if record else contextlib.nullcontext(None)) as callback:
        impl.train(model, splits.x_train, splits.y_train, config, splits.validation,
                   [*([callback] if callback else []), *saving], verbose=False,
                   initial_epoch=resumed_after, checkpoint_dir=directory)
    if record and not any(event["driver"] for event in recorder.events):
        raise TraceUnsupported(f"{side}: no event happened under {' or '.join(map(str, DRIVERS))}"
                               "; has the loop moved?")
    return SideTrace(side, recorder.events, model)


def trace_sides(sides: Sequence[str], splits: Splits, config: TrainConfig,
                resumed_after: int = 0, checkpoint_root: Path | None = None) -> dict[str, SideTrace]:
    """``trace_side`` for each of ``sides``, all from the same initial weights."""
    weights = initial_weights(config.hidden_units, config.seed, config.model)
    return {side: trace_side(side, splits, config, weights, resumed_after,
                             None if checkpoint_root is None else checkpoint_root / side)
            for side in sides}


def write_trace(out: RunDir, sides: Sequence[str], config: TrainConfig, dataset: FashionMNIST,
                resumed_after: int = 0, width: int | None = None) -> tuple[str, Path]:
    """Trace ``sides`` on ``dataset`` (after --limit and --validation-split) and write every
    event into ``out.trace``, atomically; return the printed report and the file's path. A
    resumed trace's checkpoints live in ``out.trace_checkpoints`` while it runs, then go."""
    splits = make_splits(dataset, config)
    checkpoints = out.trace_checkpoints if resumed_after else None
    try:
        traces = trace_sides(sides, splits, config, resumed_after, checkpoints)
    finally:
        if checkpoints is not None:
            shutil.rmtree(checkpoints, ignore_errors=True)
    labels = {side: SIDES[side].label for side in sides}
    events = {side: t.events for side, t in traces.items()}
    width = width or shutil.get_terminal_size((160, 24)).columns
    summary = trace_tree.summarize(events, labels)  # once, for the printed report and the JSON
    text = trace_tree.report(events, labels, width, summary)
    record = {
        "config": config.to_dict(),
        "resumed_after": resumed_after,
        "data": dataset.source,
        "environment": environment(),
        "keras_source": str(KERAS_SRC),
        "sides": {side: {"label": labels[side], "hooks": summary.hooks[side],
                         "syncs": summary.syncs[side], "events": events[side]} for side in sides},
        "hook_differences": summary.hook_differences,
    }
    write_json(out.trace, record)
    return text, out.trace
