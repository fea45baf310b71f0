"""The `train` and `compare` commands: train one side or several, from one start, and record it."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fit_vs_tape.callbacks import GracefulInterrupt, RunRecorder, StopOnNaN
from fit_vs_tape.errors import RunStopped, UserError, resume_hint
from fit_vs_tape.report import Comparison, Pair, write_report
from fit_vs_tape.rundir import RunDir, SideState, load_model, save_model, write_json
from fit_vs_tape.runtime import environment, make_strategy
from fit_vs_tape.sides import SIDES, Side
from fit_vs_tape.tb_logs import tensorboard_callback
from low_level.checkpoint import CheckpointMismatch
from shared import data as data_lib
from shared.config import TrainConfig
from shared.model import initial_weights, max_abs_weight_diff, model_from_weights


@dataclass
class SideResult:
    """What one side produced: its trained model and the numbers for results.json."""

    model: object
    history: dict[str, list[float]]
    test_loss: float
    test_accuracy: float
    epoch_seconds: list[float]
    probabilities: np.ndarray
    stopped: dict | None = None
    """Set when a non-finite loss stopped training: {"epoch": e, "step": s} (1-based)."""
    batches: list[dict] | None = None
    """Per epoch, what the batch callbacks got (callbacks.RunRecorder.batches)."""

    def to_dict(self) -> dict:
        """The results.json entry for this side."""
        return {
            "history": self.history,
            "test_loss": self.test_loss,
            "test_accuracy": self.test_accuracy,
            "epoch_seconds": self.epoch_seconds,
            "stopped_on_nonfinite_loss": self.stopped,
            "batch_callbacks": self.batches,
        }


@dataclass(frozen=True)
class Splits:
    """Training, validation (optional) and test arrays after --limit and --validation-split."""

    x_train: np.ndarray
    y_train: np.ndarray
    validation: tuple[np.ndarray, np.ndarray] | None
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class RunOptions:
    """How a run goes, beside what it trains (its TrainConfig): the application's choices, in
    one object from the command line down to each side."""

    verbose: bool = True
    """Keras' progress bar, and the loop's."""
    resume: bool = False
    """Carry on the run directory's saved progress (``--resume``)."""
    strategy: object = None
    """A tf.distribute strategy made once per process (None: made from the TrainConfig)."""
    tensorboard: bool = True
    """TensorBoard logs per side (``--no-tensorboard`` turns them off)."""
    profile: bool = False
    """A profiler window of each side's second epoch, in its TensorBoard logs (``--profile``)."""
    stop_on_nan: bool = True
    """Stop a side at its first non-finite loss (the benchmarks time training without it)."""


def make_splits(dataset: data_lib.FashionMNIST, config: TrainConfig) -> Splits:
    """Apply --limit (first N training images), then hold out the validation split."""
    x, y = dataset.x_train, dataset.y_train
    if config.limit is not None:
        x, y = x[: config.limit], y[: config.limit]
    x, y, x_val, y_val = data_lib.split_validation(x, y, config.validation_split)
    validation = None if x_val is None else (x_val, y_val)
    return Splits(x, y, validation, dataset.x_test, dataset.y_test)


def run_side(name: str, weights: list[np.ndarray], splits: Splits, config: TrainConfig,
             run: RunOptions = RunOptions(), *, state: SideState | None = None,
             callbacks: Sequence = (), log_dir: Path | None = None) -> SideResult:
    """Train side ``name`` (fit_vs_tape.sides.SIDES) from ``weights``, then evaluate and
    predict on the test set.

    With ``state`` (its folder in the run directory) the side can be resumed: progress and
    checkpoints are kept there after every epoch, and a side that already finished is loaded
    instead of trained again.
    ``log_dir``: where its TensorBoard logs go (none if None; with ``run.profile``, a window of
    its second epoch is profiled there too, unless it resumes).
    """
    side = SIDES[name]
    if state is not None and state.done.is_file():
        done = json.loads(state.done.read_text())
        model = load_model(state.final_model)
    else:
        model, done = _train_side(side, weights, splits, config, run, state=state,
                                  callbacks=callbacks, log_dir=log_dir)
    test = side.evaluate(model, splits.x_test, splits.y_test, config)
    probabilities = side.predict(model, splits.x_test, config)
    return SideResult(model, done["history"], test["loss"], test["accuracy"], done["epoch_seconds"],
                      probabilities, done["stopped"], done.get("batches", []))


def _train_side(side: Side, weights: list[np.ndarray], splits: Splits, config: TrainConfig,
                run: RunOptions, *, state: SideState | None, callbacks: Sequence,
                log_dir: Path | None) -> tuple:
    """run_side's training, resumed from ``state`` if it holds progress; the model, and what
    done.json keeps (history, seconds, where a non-finite loss stopped it, batches)."""
    progress = None
    if state is not None:
        state.directory.mkdir(parents=True, exist_ok=True)
        progress = RunRecorder.load(state.progress)
        if progress is not None:
            progress = _in_step_with_checkpoint(progress, side.saved_epochs(state.checkpoint), state)
    recorder = RunRecorder(state.progress if state else None, progress)
    nan_guard = StopOnNaN()
    if log_dir is not None:
        callbacks = [*callbacks, tensorboard_callback(
            side, log_dir, config, len(splits.x_train), run.profile and recorder.completed_epochs == 0)]
    # fit() and the loop alike: model (and, inside train, optimizer and metrics) are created
    # under the strategy's scope, so the weights and the optimizer's variables are mirrored on
    # every replica (the metrics' are per replica, summed when read, at Keras 3.15, since
    # keras-team/keras#21072; mirrored at 3.8).
    strategy = run.strategy or make_strategy(config.strategy, config.cpu_replicas)
    with strategy.scope():
        model = model_from_weights(config.hidden_units, weights, config.mixed_precision, config.model)
        # fit()'s sides get the application's BackupAndRestore through callbacks=, the loop its
        # own checkpoint through checkpoint_dir (fit_vs_tape/sides.py).
        saving, checkpoint_dir = side.checkpointing(state.checkpoint if state else None)
        try:
            side.train(
                model, splits.x_train, splits.y_train, config, splits.validation,
                [recorder, *([nan_guard] if run.stop_on_nan else []), *callbacks, *saving],
                verbose=run.verbose, initial_epoch=recorder.completed_epochs,
                checkpoint_dir=checkpoint_dir)
        except CheckpointMismatch as e:  # progress.json and the checkpoint disagree
            raise UserError(f"cannot resume: {e}") from None
    stopped = None
    if nan_guard.stopped_at is not None:
        epoch, step = nan_guard.stopped_at
        stopped = {"epoch": epoch + 1, "step": step + 1}
    done = {"history": recorder.history, "epoch_seconds": recorder.epoch_seconds,
            "stopped": stopped, "batches": recorder.batches}
    if state is not None:
        save_model(model, state.final_model)
        write_json(state.done, done)
    return model, done


def _in_step_with_checkpoint(progress: dict, saved: int, state: SideState) -> dict:
    """A side's saved progress cut back to the ``saved`` epochs its checkpoint holds. The
    progress record is written just before each checkpoint, so a checkpoint that failed to save
    (a full disk) leaves the record one epoch ahead: on resume that epoch is trained again,
    identically."""
    done = progress["completed_epochs"]
    if saved > done:
        raise UserError(f"cannot resume: {state.checkpoint} holds {saved} epochs, but "
                        f"{state.progress} records only {done}")
    return {"completed_epochs": saved, "epoch_seconds": progress["epoch_seconds"][:saved],
            "history": {key: values[:saved] for key, values in progress["history"].items()},
            "batches": progress.get("batches", [])[:saved]}


def differences(a: SideResult, b: SideResult) -> list[str]:
    """What differs between two sides besides their weights and their seconds: the per-epoch
    history (every metric, validation included), how many epochs ran, per epoch what the batch
    callbacks got (how many calls, the last batch number, every call's logs), and the test loss
    and accuracy. Not each probability: under a strategy fit()'s predict() runs on every replica
    and the loop's on one device, and their probabilities were seen to differ in the last bits
    with equal weights. Empty when nothing does. A NaN in the same place on both
    sides counts as equal."""
    found = [f"test {name}: {x:.6g} vs {y:.6g}" for name, x, y in (
        ("loss", a.test_loss, b.test_loss), ("accuracy", a.test_accuracy, b.test_accuracy))
        if not (x == y or (math.isnan(x) and math.isnan(y)))]
    if len(a.epoch_seconds) != len(b.epoch_seconds):
        found.append(f"epochs run: {len(a.epoch_seconds)} vs {len(b.epoch_seconds)}")
    for key in sorted(set(a.history) | set(b.history)):
        xs, ys = a.history.get(key), b.history.get(key)
        if xs is None or ys is None:
            found.append(f"{key}: recorded by one side only")
            continue
        for epoch, (x, y) in enumerate(zip(xs, ys)):
            x, y = (math.nan if v is None else v for v in (x, y))  # NaN comes back from JSON as null
            if not (x == y or (math.isnan(x) and math.isnan(y))):
                found.append(f"{key} in epoch {epoch + 1}: {x:.6g} vs {y:.6g}")
                break
    for epoch, (x, y) in enumerate(zip(a.batches or [], b.batches or [])):
        if (x["calls"], x["last_batch"]) != (y["calls"], y["last_batch"]):
            found.append(f"batch callbacks in epoch {epoch + 1}: {x['calls']} calls ending at "
                         f"batch {x['last_batch']} vs {y['calls']} ending at {y['last_batch']}")
            break
        if x["sha256"] != y["sha256"]:
            found.append(f"the logs the batch callbacks got in epoch {epoch + 1}")
            break
    return found


def epoch_table(results: dict[str, SideResult]) -> str:
    """Per-epoch metrics of each side, side by side, as fixed-width text."""
    keys = ["loss", "accuracy"]
    if any("val_loss" in r.history for r in results.values()):
        keys += ["val_loss", "val_accuracy"]
    heads = [k.replace("accuracy", "acc") for k in keys] + ["seconds"]
    block = len(heads) * 10 - 1
    lines = [
        "      | " + " | ".join(f"{SIDES[name].label:^{block}}" for name in results),
        "epoch | " + " | ".join(" ".join(f"{h:>9}" for h in heads) for _ in results),
    ]
    lines.append("-" * len(lines[-1]))
    for e in range(max(len(r.epoch_seconds) for r in results.values())):
        cells = []
        for r in results.values():
            columns = [r.history.get(k, []) for k in keys] + [r.epoch_seconds]
            cells.append(" ".join(f"{c[e]:>9.4f}" if e < len(c) else f"{'-':>9}" for c in columns))
        lines.append(f"{e + 1:>5} | " + " | ".join(cells))
    return "\n".join(lines)


def compare_sides(results: dict[str, SideResult]) -> Comparison:
    """Every pair of ``results`` measured against each other, and how often all agree."""
    predicted = np.stack([r.probabilities.argmax(axis=1) for r in results.values()])
    pairs = [Pair(a, b, max_abs_weight_diff(results[a].model, results[b].model),
                  float(np.mean(predicted[i] == predicted[j])), differences(results[a], results[b]))
             for (i, a), (j, b) in itertools.combinations(enumerate(results), 2)]
    return Comparison({name: SIDES[name].label for name in results}, pairs,
                      {name: r.probabilities for name, r in results.items()},
                      int((predicted == predicted[0]).all(axis=0).sum()))


def save_run(
    out: RunDir,
    config: TrainConfig,
    source: str,
    results: dict[str, SideResult],
    extra: dict,
    model_files: dict[str, Path],
) -> dict:
    """Write the models (``model_files``: side -> its file) and results.json; return the JSON."""
    for name, path in model_files.items():
        save_model(results[name].model, path)
    stopped = any(r.stopped for r in results.values())
    record = {
        "status": "stopped: non-finite loss" if stopped else "complete",
        "config": config.to_dict(),
        "data": source,
        "environment": environment(),
        **{name: result.to_dict() for name, result in results.items()},
        **extra,
    }
    write_json(out.results, record)
    return record


def _train_sides(names: Sequence[str], config: TrainConfig, splits: Splits, out: RunDir,
                 run: RunOptions, command: str) -> dict[str, SideResult]:
    """Train each side resumably; on Ctrl-C or SIGTERM save the history so far and say how to
    resume."""
    weights = initial_weights(config.hidden_units, config.seed, config.model)  # one start for every side
    results = {}
    with GracefulInterrupt() as interrupt:
        try:
            for name in names:
                if len(names) > 1:
                    print(f"\n== {SIDES[name].label} ({SIDES[name].source}), mode {config.mode}")
                results[name] = run_side(
                    name, weights, splits, config, run, state=out.side_state(name),
                    callbacks=[interrupt], log_dir=out.logs(name) if run.tensorboard else None)
        except RunStopped as stop:
            so_far = {name: RunRecorder.load(out.side_state(name).progress)
                      for name in names if out.side_state(name).directory.is_dir()}
            write_json(out.results, {"status": "interrupted", "config": config.to_dict(),
                                     **{n: p for n, p in so_far.items() if p}})
            raise stop.with_hint(f"completed epochs are checkpointed in {out.path}; "
                                 f"{resume_hint(command, out.path)}") from None
    return results


def _report_nan(results: dict[str, SideResult]) -> bool:
    for name, result in results.items():
        if result.stopped:
            print(f"{SIDES[name].label}: loss became non-finite in epoch {result.stopped['epoch']}, "
                  f"step {result.stopped['step']}: training stopped there")
    return any(r.stopped for r in results.values())


def train(side: str, config: TrainConfig, dataset: data_lib.FashionMNIST, out: RunDir,
          run: RunOptions = RunOptions()) -> int:
    """Train one side, print its test numbers, write model.keras and results.json.
    Returns the exit code: 0, or 1 when a non-finite loss stopped training."""
    splits = make_splits(dataset, config)
    if not run.resume:
        out.start_run("train", [side], config, dataset.source)
    result = _train_sides([side], config, splits, out, run, "train")[side]
    print(epoch_table({side: result}))
    print(f"\ntest loss {result.test_loss:.4f}   test accuracy {result.test_accuracy:.4f}")
    stopped = _report_nan({side: result})
    save_run(out, config, dataset.source, {side: result}, {"side": side}, {side: out.model()})
    out.remove_state()
    print(f"wrote {out.model()} and {out.results}")
    if run.tensorboard:
        print(f"TensorBoard: tensorboard --logdir {out.tensorboard}")
    return 1 if stopped else 0


def compare(config: TrainConfig, dataset: data_lib.FashionMNIST, out: RunDir,
            sides: Sequence[str] = tuple(SIDES), run: RunOptions = RunOptions()) -> int:
    """Train ``sides`` (two or more rungs) from the same initial weights on the same batches and
    compare every pair. Returns the exit code: 0 when every pair is bit-identical, 1 when one
    differs (weights or anything ``differences`` names) or a non-finite loss stopped training."""
    splits = make_splits(dataset, config)
    if not run.resume:
        out.start_run("compare", list(sides), config, dataset.source)
    results = _train_sides(list(sides), config, splits, out, run, "compare")
    comparison = compare_sides(results)
    print("\n" + epoch_table(results))
    print("\ntest accuracy: " + ", ".join(f"{SIDES[name].label} {r.test_accuracy:.4f}"
                                          for name, r in results.items()))
    for pair in comparison.pairs:
        a, b = comparison.labels[pair.a], comparison.labels[pair.b]
        print(f"largest weight difference, {a} vs {b}: {pair.max_abs_weight_diff:.3g}")
        for what in pair.differences:
            print(f"  but {a} and {b} differ in {what}")
    n_test = len(splits.y_test)
    print(("all bit-identical\n" if comparison.bit_identical else
           "the sides differ: not bit-identical (exit code 1)\n")
          + f"predictions agree on {comparison.agreeing} of {n_test} test images"
          f" ({100 * comparison.agreement:.2f}%)")
    stopped = _report_nan(results)
    record = save_run(out, config, dataset.source, results, comparison.to_dict(),
                      {name: out.model(name) for name in results})
    report = write_report(out, record, comparison, splits, dataset.class_names)
    out.remove_state()
    print(f"wrote {out.results}, {', '.join(out.model(name).name for name in results)}, "
          f"{out.figures.name}/")
    print(f"report: {report}")
    if run.tensorboard:
        print(f"TensorBoard: tensorboard --logdir {out.tensorboard}")
    return 1 if stopped or not comparison.bit_identical else 0
