"""Test accuracy of fit() and the loop over several seeds, beside the published numbers.

    python -m benchmarks.accuracy --seeds 5   (or: fit-vs-tape bench accuracy ...)

Each seed gives new initial weights and a new data order; both implementations train from that
same start, with the tutorial's settings.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path
from typing import Sequence

from benchmarks.common import bench_main, markdown_table, positive_int
from shared.errors import UserError

ANCHORS = {
    "TensorFlow tutorial, 5 epochs": 0.8732,
    "Zalando benchmark, MLPClassifier relu [100]": 0.871,
}
# Two-sided 95% quantiles of Student's t (df 1-30); beyond that the normal's 1.96 is close.
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def summarize(values: list[float]) -> dict:
    """mean, std (sample), min, max and the runs themselves."""
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "runs": values}


def mean_difference(a: list[float], b: list[float]) -> dict:
    """mean(a) - mean(b) with a Welch 95% interval (no pairing assumed)."""
    diff = statistics.fmean(a) - statistics.fmean(b)
    if len(a) < 2 or len(b) < 2:
        return {"mean": diff, "ci95": None}
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return {"mean": diff, "ci95": [diff, diff]}
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    t = _T975[min(int(df), 30) - 1] if df < 30 else 1.96
    return {"mean": diff, "ci95": [diff - t * se, diff + t * se]}


def dot_plot(record: dict, path: Path) -> None:
    """Each run's test accuracy per implementation, with the published anchors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from shared.plotting import save_figure

    fig, ax = plt.subplots(figsize=(9.5, 3.6))
    for i, (side, label, color) in enumerate((("high_level", "fit()", "tab:blue"),
                                              ("low_level", "GradientTape loop", "tab:orange"))):
        runs = record[side]["runs"]
        ax.scatter([i] * len(runs), runs, color=color, alpha=0.7, label=f"{label} (runs)")
        ax.errorbar(i + 0.12, record[side]["mean"], yerr=record[side]["std"], fmt="s",
                    color=color, capsize=4)
    for (name, value), style in zip(ANCHORS.items(), ("--", ":")):
        ax.axhline(value, color="gray", ls=style, lw=1, label=f"{name}: {value}")
    ax.set_xticks([0, 1], ["fit()", "GradientTape loop"])
    ax.set_xlim(-0.6, 1.6)
    ax.set_ylabel("test accuracy")
    ax.set_title(f"test accuracy over {len(record['seeds'])} seeds (square: mean ± std)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # off the data
    fig.tight_layout()
    save_figure(fig, path)


def build_parser() -> argparse.ArgumentParser:
    """Options of the accuracy benchmark."""
    from fit_vs_tape.cli import _Parser

    p = _Parser(prog="fit-vs-tape bench accuracy", description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=positive_int, default=5, help="seeds 0..N-1 (default 5)")
    p.add_argument("--epochs", type=positive_int, default=5, help="default 5, as the tutorial")
    p.add_argument("--mode", choices=("eager", "graph", "xla", "epoch"), default="graph")
    p.add_argument("--limit", type=positive_int, default=None)
    p.add_argument("--device", choices=("cpu", "gpu", "auto"), default="auto",
                   help="cpu: hide GPUs; gpu: require one (default auto)")
    p.add_argument("--strategy", choices=("default", "mirrored"), default="default",
                   help="tf.distribute strategy for both implementations (mirrored: --mode graph)")
    p.add_argument("--cpu-replicas", type=positive_int, default=1, metavar="N",
                   help="with --strategy mirrored and no GPU: N logical CPU devices")
    p.add_argument("--data-dir", default=None, metavar="DIR")
    p.add_argument("--out", default="runs/bench-accuracy", metavar="DIR")
    return p


def run(args: argparse.Namespace) -> dict:
    """Train both implementations for each seed; write results.json, results.md, accuracy.png."""
    from shared import data
    from shared.results import new_run_dir, write_json, write_text

    from shared.config import TrainConfig

    def config_for(seed: int) -> TrainConfig:
        return TrainConfig(epochs=args.epochs, seed=seed, limit=args.limit, mode=args.mode,
                           strategy=args.strategy, cpu_replicas=args.cpu_replicas)

    config_for(0)  # a bad combination of options fails here, before anything slow
    dataset = data.load(args.data_dir)
    if args.limit is not None and args.limit > len(dataset.x_train):
        raise UserError(f"--limit {args.limit}: the training set has {len(dataset.x_train)} images")
    from shared.runtime import environment, import_tensorflow

    import_tensorflow(args.device, args.cpu_replicas)  # --device gpu without one fails here
    out = new_run_dir(args.out)
    import keras

    from fit_vs_tape.runs import make_splits, run_side
    from shared.model import initial_weights

    accuracies = {"high_level": [], "low_level": []}
    seeds = list(range(args.seeds))
    for seed in seeds:
        config = config_for(seed)
        splits, weights = make_splits(dataset, config), initial_weights(128, seed)
        for side in accuracies:
            accuracies[side].append(run_side(side, weights, splits, config, False).test_accuracy)
            keras.backend.clear_session()  # keep memory flat across runs in one process
        print(f"seed {seed}: fit() {accuracies['high_level'][-1]:.4f}, "
              f"loop {accuracies['low_level'][-1]:.4f}", flush=True)
    record = {
        "benchmark": "accuracy", "command": " ".join(sys.argv), "seeds": seeds,
        "settings": vars(args), "environment": environment(),
        "high_level": summarize(accuracies["high_level"]),
        "low_level": summarize(accuracies["low_level"]),
        "difference": mean_difference(accuracies["high_level"], accuracies["low_level"]),
        "anchors": ANCHORS,
    }
    rows = [{"implementation": side, **{k: v for k, v in record[side].items() if k != "runs"},
             "runs": len(record[side]["runs"])} for side in ("high_level", "low_level")]
    table = markdown_table(rows, ["implementation", "mean", "std", "min", "max", "runs"])
    diff = record["difference"]
    ci = diff["ci95"]
    lines = [table, "",
             f"difference of means (fit() - loop): {diff['mean']:+.4f}"
             + (f", 95% interval [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else ""),
             *(f"published: {name}: {value}" for name, value in ANCHORS.items())]
    print("\n" + "\n".join(lines))
    env = record["environment"]
    write_json(out / "results.json", record)
    write_text(out / "results.md", "# Accuracy over seeds\n\n"
               f"Machine: {env['cpu']} ({env['cpu_cores']} cores); TensorFlow {env['tensorflow']}, "
               f"Keras {env['keras']}. {args.epochs} epochs, mode {args.mode}.\n\n"
               + "\n\n".join(["\n".join(lines[:1]), *lines[2:]]) + "\n\n![accuracy](accuracy.png)\n")
    dot_plot(record, out / "accuracy.png")
    print(f"\nwrote {out}/results.json, results.md, accuracy.png")
    return record


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m benchmarks.accuracy``."""
    return bench_main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
