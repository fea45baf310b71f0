"""Seconds per epoch of every way to train the tutorial's model, each in a fresh process.

    python -m benchmarks.speed --device cpu --batch-sizes 32   (or: fit-vs-tape bench speed ...)

Rows: fit() at its default, with XLA, with steps_per_execution = one epoch, and with both; the
same four for fit() driving its own train_step (high_level/custom_step.py); the
loop eager, as a tf.function, with XLA, and as one XLA computation per epoch. The first epoch
(tracing, compiling) is reported apart and left out of the median.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import bench_main, gpu_names, markdown_table, run_worker
from fit_vs_tape import options
from fit_vs_tape.errors import PROG, UserError
from shared.config import SIDES
from shared.order import steps_per_epoch

#: (implementation, row name, TrainConfig mode, steps_per_execution: None = one epoch)
ROWS = (
    ("high_level", "default", "graph", 1),
    ("high_level", "xla", "xla", 1),
    ("high_level", "spe", "graph", None),
    ("high_level", "spe+xla", "epoch", None),  # mode "epoch" gives fit() XLA + one-epoch spe
    ("custom_step", "default", "graph", 1),
    ("custom_step", "xla", "xla", 1),
    ("custom_step", "spe", "graph", None),
    ("custom_step", "spe+xla", "epoch", None),
    ("low_level", "eager", "eager", 1),
    ("low_level", "graph", "graph", 1),
    ("low_level", "xla", "xla", 1),
    ("low_level", "epoch", "epoch", 1),
)
COLUMNS = ["implementation", "mode", "batch_size", "device", "median_epoch_s", "compile_s",
           "samples_per_s", "speedup_vs_fit_default", "peak_rss_mb", "test_accuracy", "note"]


def rows_for(strategy: str) -> tuple:
    """Under a distribution strategy only fit() default and the graph loop run: XLA and the
    compiled epoch are single-device modes here, and fit(steps_per_execution > 1) under
    MirroredStrategy fails in its compiled multi-step function (TF 2.21, Keras 3.15)."""
    return ROWS if strategy == "default" else tuple(r for r in ROWS if r[2:] == ("graph", 1))


def worker(job: dict) -> dict:
    """Train one configuration and measure it (runs in its own process)."""
    from fit_vs_tape.runtime import environment, import_tensorflow, load_dataset
    from shared.config import TrainConfig

    config = TrainConfig(**job["config"])
    import_tensorflow(cpu_replicas=config.cpu_replicas)
    from fit_vs_tape.runs import make_splits, run_side
    from shared.model import initial_weights

    dataset = load_dataset(job["data_dir"])
    result = run_side(job["implementation"], initial_weights(config.hidden_units, config.seed),
                      make_splits(dataset, config), config, verbose=False,
                      stop_on_nan=False)  # no per-step callback: time training as users run it
    return {
        "epoch_seconds": result.epoch_seconds,
        "test_accuracy": result.test_accuracy,
        "n_train": config.limit,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "environment": environment(),
    }


def measure(implementation: str, mode_name: str, mode: str, spe: int | None, batch_size: int,
            device: str, args: argparse.Namespace, n_full: int) -> tuple[dict, dict]:
    """Run one row ``args.repeats`` times; return the row and the worker's environment."""
    # Eager is ~10x slower: it times fewer images and scales to the full epoch (and says so).
    limit = min(args.eager_limit, n_full) if mode == "eager" else n_full
    config = options.make_config(
        args, batch_size=batch_size, mode=mode, limit=limit,
        steps_per_execution=spe or steps_per_epoch(limit, batch_size),
        mixed_precision=args.mixed_precision and device == "gpu")
    job = {"implementation": implementation, "config": config.to_dict(), "data_dir": args.data_dir}
    runs = [run_worker("benchmarks.speed", job, hide_gpus=device == "cpu")
            for _ in range(args.repeats)]
    n = runs[0]["n_train"]
    first = statistics.median(r["epoch_seconds"][0] for r in runs)
    later = [s for r in runs for s in r["epoch_seconds"][1:]] or [first]
    median = statistics.median(later)
    note = ""
    if n < n_full:
        note = f"timed on {n} images, scaled to {n_full}"
        median, first = median * n_full / n, first * n_full / n
    row = {
        "implementation": implementation, "mode": mode_name, "batch_size": batch_size,
        "device": device, "median_epoch_s": median, "compile_s": max(0.0, first - median),
        "samples_per_s": n_full / median,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "test_accuracy": statistics.median(r["test_accuracy"] for r in runs),
        "epochs": args.epochs, "repeats": args.repeats, "note": note,
        "mixed_precision": config.mixed_precision, "strategy": args.strategy,
    }
    return row, runs[0]["environment"]


def bar_chart(rows: list[dict], path: Path) -> None:
    """Median seconds per epoch of each row, one panel per batch size and device."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from shared.plotting import save_figure

    groups = sorted({(r["device"], r["batch_size"]) for r in rows})
    fig, axes = plt.subplots(len(groups), 1, figsize=(8, 3.6 * len(groups)), squeeze=False)
    for ax, (device, batch_size) in zip(axes[:, 0], groups):
        group = [r for r in rows if (r["device"], r["batch_size"]) == (device, batch_size)]
        labels = [f"{SIDES[r['implementation']].label} {r['mode']}" for r in group]
        colors = [SIDES[r["implementation"]].color for r in group]
        bars = ax.barh(labels, [r["median_epoch_s"] for r in group], color=colors)
        ax.bar_label(bars, labels=[f"{r['median_epoch_s']:.2f} s  (x{r['speedup_vs_fit_default']:.1f})"
                                   for r in group], fontsize=8, padding=3)
        ax.set_xscale("log")
        ax.invert_yaxis()
        ax.set_xlabel("median seconds per epoch (log scale; x = speed-up over fit() default)")
        ax.set_title(f"{device.upper()}, batch size {batch_size}")
        ax.set_xlim(right=ax.get_xlim()[1] * 3)
    fig.tight_layout()
    save_figure(fig, path)


def build_parser() -> argparse.ArgumentParser:
    """Options of the speed benchmark."""
    p = options.Parser(prog=f"{PROG} bench speed", description=__doc__.split("\n\n")[0])
    options.add_training_options(
        p, ["--device", "--strategy", "--cpu-replicas", "--mixed-precision", "--epochs", "--limit",
            "--seed", "--data-dir", "--out"], epochs=3, out="runs/bench-speed")
    p.add_argument("--batch-sizes", type=options.whole_numbers, default=[32], metavar="N,N",
                   help="comma-separated (default 32)")
    p.add_argument("--repeats", type=options.positive_int, default=1,
                   help="runs per row (default 1)")
    p.add_argument("--eager-limit", type=options.positive_int, default=3200, metavar="N",
                   help="eager rows time N images and scale to a full epoch (default 3200)")
    return p


def run(args: argparse.Namespace) -> dict:
    """The whole matrix; writes results.json, results.md and speed.png into ``args.out``."""
    from fit_vs_tape.rundir import new_run_dir, write_json, write_text
    from fit_vs_tape.runtime import load_dataset

    try:
        configs = [options.make_config(args, batch_size=b) for b in args.batch_sizes]
    except UserError as e:  # TrainConfig's rule names --batch-size; the user typed --batch-sizes
        raise UserError(str(e).replace("--batch-size ", "--batch-sizes ", 1)) from None
    options.checked(lambda: configs[0].check_sides(SIDES))  # every rule before anything slow
    dataset = load_dataset(args.data_dir)  # checks the data (and fetches it) once, up front
    for config in configs:
        n_full = options.checked(lambda: config.check_data(len(dataset.x_train)))
    devices = ["cpu"] if args.device in ("cpu", "auto") else []
    if args.device in ("gpu", "auto"):
        gpus = gpu_names()
        if gpus:
            devices.append("gpu")
        elif args.device == "gpu":
            raise UserError("--device gpu: TensorFlow sees no GPU on this machine")
        else:
            print("GPU rows skipped: TensorFlow sees no GPU on this machine.")
    if args.mixed_precision and "gpu" not in devices:
        print("--mixed-precision applies to GPU rows only; there are none in this run.")
    out = new_run_dir(args.out)
    rows, env = [], {}
    for device in devices:
        for batch_size in args.batch_sizes:
            group = []
            for implementation, name, mode, spe in rows_for(args.strategy):
                row, env = measure(implementation, name, mode, spe, batch_size, device, args, n_full)
                group.append(row)
                print(f"{device} batch {batch_size:>4} {implementation:>10} {name:<8} "
                      f"{row['median_epoch_s']:8.3f} s/epoch  acc {row['test_accuracy']:.4f}  "
                      f"{row['peak_rss_mb']:.0f} MB {row['note']}", flush=True)
            base = group[0]["median_epoch_s"]  # fit() default, same run, device, batch size
            for row in group:
                row["speedup_vs_fit_default"] = base / row["median_epoch_s"]
            rows += group
    record = {"benchmark": "speed", "command": " ".join(sys.argv), "settings": {
        k: v for k, v in vars(args).items() if k != "func"}, "environment": env, "rows": rows}
    table = markdown_table(rows, COLUMNS)
    print("\n" + table)
    write_json(out / "results.json", record)
    write_text(out / "results.md", "# Speed: seconds per epoch\n\n"
               f"Machine: {env.get('cpu')} ({env.get('cpu_cores')} cores), GPUs: "
               f"{', '.join(env.get('gpus', [])) or 'none'}; TensorFlow {env.get('tensorflow')}, "
               f"Keras {env.get('keras')}, NumPy {env.get('numpy')}.\n\n{table}\n\n"
               "![seconds per epoch](speed.png)\n")
    bar_chart(rows, out / "speed.png")
    print(f"\nwrote {out}/results.json, results.md, speed.png")
    return record


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m benchmarks.speed``; ``--worker JOB`` is the per-row process."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        print(json.dumps(worker(json.loads(argv[1]))))
        return 0
    return bench_main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
