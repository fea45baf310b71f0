"""Test accuracy of every side over several seeds, beside the published numbers.

    python -m benchmarks.accuracy --seeds 5   (or: fit-vs-tape bench accuracy ...)

Each seed gives new initial weights and a new data order; every side (fit(), fit()
driving its own train_step, the loop) trains from that same start, with the tutorial's settings.
The difference of means is fit()'s minus the loop's.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import bench_main, markdown_table, pyplot
from fit_vs_tape import options
from fit_vs_tape.errors import PROG
from fit_vs_tape.rundir import RunDir, check_out, new_run_dir, write_json, write_text
from fit_vs_tape.sides import SIDES

ANCHORS = {"TensorFlow tutorial, 5 epochs": 0.8732, "Zalando benchmark, MLPClassifier relu [100]": 0.871}
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
    from shared.plotting import save_figure

    fig, ax = pyplot().subplots(figsize=(9.5, 3.6))
    for i, side in enumerate(SIDES.values()):
        runs = record[side.name]["runs"]
        ax.scatter([i] * len(runs), runs, color=side.color, alpha=0.7, label=f"{side.label} (runs)")
        ax.errorbar(i + 0.12, record[side.name]["mean"], yerr=record[side.name]["std"], fmt="s",
                    color=side.color, capsize=4)
    for (name, value), style in zip(ANCHORS.items(), ("--", ":")):
        ax.axhline(value, color="gray", ls=style, lw=1, label=f"{name}: {value}")
    ax.set_xticks(range(len(SIDES)), [side.label for side in SIDES.values()])
    ax.set_xlim(-0.6, len(SIDES) - 0.4)
    ax.set_ylabel("test accuracy")
    ax.set_title(f"test accuracy over {len(record['seeds'])} seeds (square: mean ± std)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # off the data
    fig.tight_layout()
    save_figure(fig, path)


def build_parser() -> argparse.ArgumentParser:
    """Options of the accuracy benchmark."""
    p = options.Parser(prog=f"{PROG} bench accuracy", description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=options.positive_int, default=5, help="seeds 0..N-1 (default 5)")
    options.add_training_options(
        p, ["--epochs", "--mode", "--limit", "--device", "--strategy", "--cpu-replicas",
            "--data-dir", "--out", "--overwrite"], out="runs/bench-accuracy")
    return p


def run(args: argparse.Namespace) -> dict:
    """Train every side for each seed; write results.json, results.md, accuracy.png."""
    from fit_vs_tape.runtime import choose_device, environment, import_tensorflow, load_dataset

    configs = [options.make_config(args, seed=seed) for seed in range(args.seeds)]
    options.check_sides(configs[0], SIDES)  # every rule before anything slow
    check_out(args.out, args.overwrite)  # a directory that holds a run is refused
    choose_device(args.device)
    dataset = load_dataset(args.data_dir)
    options.checked(lambda: configs[0].check_data(len(dataset.x_train)))
    import_tensorflow(args.device, args.cpu_replicas)  # --device gpu without one fails here
    out = new_run_dir(args.out, overwrite=args.overwrite)
    accuracies = accuracies_by_side(configs, dataset, args)
    record = {"benchmark": "accuracy", "command": " ".join(sys.argv),
              "seeds": [config.seed for config in configs], "settings": vars(args),
              "environment": environment(), **{side: summarize(v) for side, v in accuracies.items()},
              "difference": mean_difference(accuracies["high_level"], accuracies["low_level"]),
              "anchors": ANCHORS}
    write_results(record, out, args)
    return record


def accuracies_by_side(configs: list, dataset, args: argparse.Namespace) -> dict[str, list[float]]:
    """Each side's test accuracy for each configuration (seed), all sides from one start each."""
    import keras

    from fit_vs_tape.runs import RunOptions, make_splits, run_side
    from fit_vs_tape.runtime import make_strategy
    from shared.model import initial_weights

    run = RunOptions(verbose=False, strategy=make_strategy(args.strategy, args.cpu_replicas))
    accuracies = {side: [] for side in SIDES}
    for config in configs:
        splits = make_splits(dataset, config)
        weights = initial_weights(config.hidden_units, config.seed, config.model)
        for side in accuracies:
            accuracies[side].append(run_side(side, weights, splits, config, run).test_accuracy)
            keras.backend.clear_session()  # keep memory flat across runs in one process
        print(f"seed {config.seed}: " + ", ".join(
            f"{SIDES[side].label} {accuracies[side][-1]:.4f}" for side in accuracies), flush=True)
    return accuracies


def write_results(record: dict, out: RunDir, args: argparse.Namespace) -> None:
    """The table printed; results.json, results.md and accuracy.png in ``out``."""
    rows = [{"implementation": side, **{k: v for k, v in record[side].items() if k != "runs"},
             "runs": len(record[side]["runs"])} for side in SIDES]
    table = markdown_table(rows, ["implementation", "mean", "std", "min", "max", "runs"])
    diff, ci = record["difference"], record["difference"]["ci95"]
    lines = [table, "",
             f"difference of means (fit() - loop): {diff['mean']:+.4f}"
             + (f", 95% interval [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else ""),
             *(f"published: {name}: {value}" for name, value in ANCHORS.items())]
    print("\n" + "\n".join(lines))
    env = record["environment"]
    write_json(out.results, record)
    write_text(out.results_table, "# Accuracy over seeds\n\n"
               f"Machine: {env['cpu']} ({env['cpu_cores']} cores); TensorFlow {env['tensorflow']}, "
               f"Keras {env['keras']}. {args.epochs} epochs, mode {args.mode}.\n\n"
               + "\n\n".join(["\n".join(lines[:1]), *lines[2:]])
               + f"\n\n![accuracy]({out.accuracy_chart.name})\n")
    dot_plot(record, out.accuracy_chart)
    print(f"\nwrote {out.path}/" + ", ".join(path.name for path in (
        out.results, out.results_table, out.accuracy_chart)))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m benchmarks.accuracy``."""
    return bench_main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
