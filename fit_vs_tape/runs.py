"""The `train` and `compare` commands: train one side or both, from one start, and record it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from fit_vs_tape.report import write_report
from shared import data as data_lib
from shared.config import TrainConfig
from shared.model import initial_weights, max_abs_weight_diff, model_from_weights
from shared.results import save_model, write_json
from shared.runtime import environment
from shared.timing import EpochTimer

LABELS = {"high_level": "fit()", "low_level": "GradientTape loop"}


@dataclass
class SideResult:
    """What one implementation produced: its trained model and the numbers for results.json."""

    model: object
    history: dict[str, list[float]]
    test_loss: float
    test_accuracy: float
    epoch_seconds: list[float]
    probabilities: np.ndarray

    def to_dict(self) -> dict:
        """The results.json entry for this side."""
        return {
            "history": self.history,
            "test_loss": self.test_loss,
            "test_accuracy": self.test_accuracy,
            "epoch_seconds": self.epoch_seconds,
        }


@dataclass(frozen=True)
class Splits:
    """Training, validation (optional) and test arrays after --limit and --validation-split."""

    x_train: np.ndarray
    y_train: np.ndarray
    validation: tuple[np.ndarray, np.ndarray] | None
    x_test: np.ndarray
    y_test: np.ndarray


def make_splits(dataset: data_lib.FashionMNIST, config: TrainConfig) -> Splits:
    """Apply --limit (first N training images), then hold out the validation split."""
    x, y = dataset.x_train, dataset.y_train
    if config.limit is not None:
        x, y = x[: config.limit], y[: config.limit]
    x, y, x_val, y_val = data_lib.split_validation(x, y, config.validation_split)
    validation = None if x_val is None else (x_val, y_val)
    return Splits(x, y, validation, dataset.x_test, dataset.y_test)


def implementation(name: str) -> ModuleType:
    """high_level.train or low_level.train: the two modules share their public names."""
    if name == "high_level":
        import high_level.train as module
    else:
        import low_level.train as module
    return module


def run_side(
    name: str, weights: list[np.ndarray], splits: Splits, config: TrainConfig, verbose: bool
) -> SideResult:
    """Train one implementation from ``weights``, then evaluate and predict on the test set."""
    impl = implementation(name)
    model = model_from_weights(config.hidden_units, weights)
    timer = EpochTimer()
    history = impl.train(
        model, splits.x_train, splits.y_train, config, splits.validation, [timer], verbose
    )
    test = impl.evaluate(model, splits.x_test, splits.y_test, config)
    probabilities = impl.predict(model, splits.x_test, config)
    return SideResult(
        model, history, test["loss"], test["accuracy"], timer.epoch_seconds, probabilities
    )


def epoch_table(results: dict[str, SideResult]) -> str:
    """Per-epoch metrics of each side, side by side, as fixed-width text."""
    keys = ["loss", "accuracy"]
    if any("val_loss" in r.history for r in results.values()):
        keys += ["val_loss", "val_accuracy"]
    heads = [k.replace("accuracy", "acc") for k in keys] + ["seconds"]
    block = len(heads) * 10 - 1
    lines = [
        "      | " + " | ".join(f"{LABELS[name]:^{block}}" for name in results),
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


def save_run(
    out: Path,
    config: TrainConfig,
    source: str,
    results: dict[str, SideResult],
    extra: dict,
    model_files: dict[str, str],
) -> dict:
    """Write the models (``model_files``: side -> file name) and results.json; return the JSON."""
    for name, filename in model_files.items():
        save_model(results[name].model, out / filename)
    record = {
        "config": config.to_dict(),
        "data": source,
        "environment": environment(),
        **{name: result.to_dict() for name, result in results.items()},
        **extra,
    }
    write_json(out / "results.json", record)
    return record


def train(
    impl: str, config: TrainConfig, dataset: data_lib.FashionMNIST, out: Path, verbose: bool = True
) -> dict:
    """Train one implementation, print its test numbers, write model.keras and results.json."""
    splits = make_splits(dataset, config)
    weights = initial_weights(config.hidden_units, config.seed)
    result = run_side(impl, weights, splits, config, verbose)
    print(epoch_table({impl: result}))
    print(f"\ntest loss {result.test_loss:.4f}   test accuracy {result.test_accuracy:.4f}")
    record = save_run(
        out, config, dataset.source, {impl: result}, {"implementation": impl},
        {impl: "model.keras"},
    )
    print(f"wrote {out / 'model.keras'} and {out / 'results.json'}")
    return record


def compare(
    config: TrainConfig, dataset: data_lib.FashionMNIST, out: Path, verbose: bool = True
) -> dict:
    """Train both implementations from the same initial weights on the same batches; compare."""
    splits = make_splits(dataset, config)
    # One snapshot of initial weights, copied into both models.
    weights = initial_weights(config.hidden_units, config.seed)
    results = {}
    for name in ("high_level", "low_level"):
        print(f"\n== {LABELS[name]} ({name}/train.py), mode {config.mode}")
        results[name] = run_side(name, weights, splits, config, verbose)
    high, low = results["high_level"], results["low_level"]
    diff = max_abs_weight_diff(high.model, low.model)
    agree = high.probabilities.argmax(axis=1) == low.probabilities.argmax(axis=1)
    summary = {"max_abs_weight_diff": diff, "prediction_agreement": float(agree.mean())}
    print("\n" + epoch_table(results))
    print(
        f"\ntest accuracy: fit() {high.test_accuracy:.4f}, loop {low.test_accuracy:.4f}"
        f"\nlargest weight difference |w_fit - w_loop|: {diff:.3g}"
        + ("  (bit-identical)" if diff == 0 else "")
        + f"\npredictions agree on {int(agree.sum())} of {len(agree)} test images"
        f" ({100 * agree.mean():.2f}%)"
    )
    record = save_run(
        out, config, dataset.source, results, summary,
        {name: f"{name}.keras" for name in results},
    )
    report = write_report(
        out, record, {name: LABELS[name] for name in results},
        {name: r.probabilities for name, r in results.items()},
        splits.x_train, splits.y_train, splits.x_test, splits.y_test, dataset.class_names,
    )
    print(f"wrote {out}/results.json, high_level.keras, low_level.keras, figures/")
    print(f"report: {report}")
    return record
