"""Seconds per epoch of every way to train the tutorial's model, each in a fresh process.

    python -m benchmarks.speed --device cpu --batch-sizes 32   (or: fit-vs-tape bench speed ...)
    fit-vs-tape bench speed --peers jax,torch --hidden-units 32,128,512,2048

Rows (``ROWS``): fit() at its default, with XLA, with steps_per_execution = one epoch, and with
both; the same four for fit() driving its own train_step; the loop eager, as a tf.function, with
XLA, and as one XLA computation per epoch; with ``--peers``, the same training in Keras on JAX,
JAX + Optax and PyTorch (benchmarks/peers.py). The first epoch (tracing, compiling) is reported
apart and left out of the median. Every row gets its FLOP/s and its share of this machine's matmul
peak and of its model's floor, measured in the same run (benchmarks/limits.py).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

from benchmarks import common, limits, peers
from benchmarks.common import THREAD_POLICIES, bench_main, gpu_names, markdown_table, run_worker, worker_main
from fit_vs_tape import options
from fit_vs_tape.errors import PROG, UserError
from fit_vs_tape.rundir import RunDir, check_out, new_run_dir, write_json, write_text
from fit_vs_tape.sides import SIDES
from shared.config import TrainConfig
from shared.order import steps_per_epoch


@dataclass(frozen=True)
class Row:
    """A TensorFlow row: a side of the application (``implementation``) in one TrainConfig
    ``mode``, named ``name`` in the table, trained by this module's ``worker`` in a fresh process."""

    implementation: str
    name: str
    mode: str
    one_epoch: bool = False
    """steps_per_execution = one epoch (else 1)."""
    module: ClassVar[str] = "benchmarks.speed"
    record_env: ClassVar[str] = "environment"  # where the record keeps its processes' versions

    @property
    def key(self) -> str:
        """Its name for ``--rows``: ``train --side``'s name and the row's, e.g. ``low:epoch``."""
        return f"{SIDES[self.implementation].short}:{self.name}"

    label = property(lambda self: SIDES[self.implementation].label)
    color = property(lambda self: SIDES[self.implementation].color)

    def environment(self, out: RunDir) -> dict[str, str]:
        """Its process starts with this one's environment, nothing added."""
        return {}

    def files(self, out: RunDir, hidden_units: int, seed: int) -> dict[str, str]:
        """Its job reads nothing from the run directory: the sides draw their initial weights."""
        return {}


#: fit() and fit() driving its own train_step: at its default, with XLA, with steps_per_execution
#: = one epoch, and with both (mode "epoch" gives fit() XLA and one-epoch steps_per_execution).
_FIT_ROWS = (("default", "graph", False), ("xla", "xla", False), ("spe", "graph", True),
             ("spe+xla", "epoch", True))
ROWS = (*(Row(side, *row) for side in ("high_level", "custom_step") for row in _FIT_ROWS),
        *(Row("low_level", mode, mode) for mode in ("eager", "graph", "xla", "epoch")))
ROW_NAMES = tuple(row.key for row in ROWS)  # what --rows accepts
COLUMNS = ["implementation", "mode", "hidden_units", "batch_size", "device", "median_epoch_s",
           "min_epoch_s", "max_epoch_s", "unstable", "repeats", "load_1min", "thread_policy", "compile_s",
           "samples_per_s", "speedup_vs_fit_default", "gflop_per_s", "share_of_peak", "share_of_floor",
           "peak_rss_mb", "test_accuracy", "note"]
AGREEMENT = ("Rows of one framework with the same compilation choice end with the same test "
             "accuracy (the same training, run differently); rows of different frameworks agree "
             "in accuracy, not in bits (their kernels sum in other orders, Optax's and PyTorch's "
             "Adam place epsilon differently, Keras on JAX clips the probabilities in its loss: "
             "benchmarks/peer_common.py).")
#: A row is unstable when its slowest process took more than this times its fastest.
UNSTABLE = 1.3
#: Rows compared with one another: the same device, batch size and model size.
SAME_GROUP = ("device", "batch_size", "hidden_units")


def label_color(implementation: str) -> tuple[str, str]:
    """A row's name and colour in figures, TensorFlow side or peer."""
    row = next(r for r in (*ROWS, *peers.rows(peers.PEERS)) if r.implementation == implementation)
    return row.label, row.color


def rows_for(strategy: str, chosen: Sequence[str] = ROW_NAMES) -> tuple[Row, ...]:
    """The rows to time: those ``chosen`` (``--rows``, default all), and of them under a
    distribution strategy only fit() default and the graph loop: XLA and the compiled epoch are
    single-device modes here, and fit(steps_per_execution > 1) under MirroredStrategy fails in
    its compiled multi-step function (TF 2.21, Keras 3.15)."""
    rows = tuple(row for row in ROWS if row.key in chosen)
    return rows if strategy == "default" else tuple(
        row for row in rows if row.mode == "graph" and not row.one_epoch)


def worker(job: dict) -> dict:
    """Train one configuration and measure it (runs in its own process)."""
    from fit_vs_tape.runtime import environment, import_tensorflow, load_dataset

    config = TrainConfig(**job["config"])
    tf = import_tensorflow(cpu_replicas=config.cpu_replicas, threads=job.get("thread_count"))
    from fit_vs_tape.runs import RunOptions, make_splits, run_side
    from shared.model import initial_weights

    dataset = load_dataset(job["data_dir"])
    result = run_side(job["implementation"], initial_weights(config.hidden_units, config.seed, config.model),
                      make_splits(dataset, config), config,
                      # no per-step callback: time training as users run it
                      RunOptions(verbose=False, stop_on_nan=False))
    return {"epoch_seconds": result.epoch_seconds, "test_accuracy": result.test_accuracy,
            "n_train": config.limit,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "environment": environment(),
            "threads": {"tensorflow_intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                        "tensorflow_inter_op": tf.config.threading.get_inter_op_parallelism_threads()}}


@dataclass(frozen=True)
class Planned:
    """A process to start once per repeat: a row (TensorFlow's, a peer's) at one device, batch
    size and model size, or one of the limits' measurements (benchmarks/limits.py)."""

    row: Row | peers.PeerRow | limits.Limit
    device: str
    batch_size: int
    hidden_units: int
    job: dict
    env: Mapping[str, str] = field(default_factory=dict)
    n_full: int = 0


def plan(row: Row | peers.PeerRow, device: str, config: TrainConfig, args: argparse.Namespace,
         n_full: int, out: RunDir) -> Planned:
    """The worker job of one row at one device and ``config``'s batch and model size: its
    configuration, the files it reads and the environment it starts with (the row's own)."""
    # Eager is ~10x slower: it times fewer images and scales to the full epoch (and says so).
    limit = min(args.eager_limit, n_full) if row.mode == "eager" else n_full
    config = options.checked(lambda: replace(
        config, mode=row.mode, limit=limit,
        steps_per_execution=steps_per_epoch(limit, config.batch_size) if row.one_epoch else 1,
        mixed_precision=args.mixed_precision and device == "gpu"))
    job = {"implementation": row.implementation, "mode": row.name, "config": config.to_dict(),
           "data_dir": args.data_dir, "threads": args.threads,
           **row.files(out, config.hidden_units, config.seed)}
    return Planned(row, device, config.batch_size, config.hidden_units, job, row.environment(out),
                   n_full)


def limit_jobs(args: argparse.Namespace, configs: Sequence[TrainConfig], n_full: int) -> list[Planned]:
    """The peak's job and one floor job per batch size and model size (CPU only)."""
    jobs = [Planned(limits.PEAK, "cpu", 0, 0, {"kind": "peak", "size": limits.PEAK_SIZE,
                    "repeats": limits.PEAK_REPEATS, "threads": args.threads})]
    for config in configs:
        job = {"kind": "floor", "hidden_units": config.hidden_units, "model": config.model,
               "batch_size": config.batch_size, "batches": max(1, n_full // config.batch_size),
               "repeats": 3, "threads": args.threads}
        jobs.append(Planned(limits.FLOOR, "cpu", config.batch_size, config.hidden_units, job,
                            n_full=n_full))
    return jobs


def plan_all(args: argparse.Namespace, configs: Sequence[TrainConfig], devices: list[str],
             n_full: int, out: RunDir, *, peer_rows: Sequence[peers.PeerRow]) -> list[Planned]:
    """Every process to run once per repeat: the two limits (the matmul peak, and per batch and
    model size the floor: the step's own matmuls alone, benchmarks/limits.py floor_worker), then
    each row per device and configuration (batch and model size), the peers' on the CPU only."""
    planned = limit_jobs(args, configs, n_full) if "cpu" in devices else []
    for device in devices:
        rows = (*rows_for(args.strategy, args.rows), *(peer_rows if device == "cpu" else ()))
        planned += [plan(row, device, config, args, n_full, out) for config in configs for row in rows]
    return planned


def interleaved(planned: Sequence[Planned], repeats: int, quiet: bool = False) -> list[list[dict]]:
    """Every planned row ``repeats`` times, each time in a fresh process, round-robin (A B C,
    A B C, ...) so that a burst of load on the machine hits every row alike; each answer with the
    load average (1 minute) as its process ended; a progress bar over the processes, with an
    ETA, on stderr unless ``quiet``. (pyperf's Runner runs one benchmark's processes before the
    next one's: it cannot interleave rows of frameworks that each need their own environment.)"""
    from tqdm import tqdm

    runs: list[list[dict]] = [[] for _ in planned]
    with tqdm(total=repeats * len(planned), unit="process", disable=quiet, file=sys.stderr,
              desc="bench speed") as bar:
        for _ in range(repeats):
            for i, each in enumerate(planned):
                bar.set_postfix_str(f"{each.row.implementation} {each.row.name} H={each.hidden_units}")
                answer = run_worker(each.row.module, each.job, hide_gpus=each.device == "cpu",
                                    env=each.env or None)
                runs[i].append({**answer, "load_1min": os.getloadavg()[0]})
                bar.update()
    return runs


def summarize(planned: Planned, runs: list[dict], args: argparse.Namespace, params: int) -> dict:
    """A row from its processes: each process's median seconds per epoch after the first,
    their median (the row's), their spread (min, max) and the load while they ran; unstable when
    max > UNSTABLE x min. ``params``: the model's parameter count."""
    n, n_full, threads = runs[0]["n_train"], planned.n_full, runs[0]["threads"]
    row = {
        "implementation": planned.row.implementation, "mode": planned.row.name,
        "hidden_units": planned.hidden_units, "params": params,
        "batch_size": planned.batch_size, "device": planned.device,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "test_accuracy": statistics.median(r["test_accuracy"] for r in runs),
        "epochs": args.epochs, "repeats": len(runs),
        "mixed_precision": planned.job["config"]["mixed_precision"],
        "strategy": args.strategy, "note": runs[0].get("note", ""),
        "load_1min": statistics.mean(r["load_1min"] for r in runs),
        "threads": threads, "thread_policy": f"{threads['policy']}: {threads['cores']} core(s)",
        "process_epoch_seconds": [r["epoch_seconds"] for r in runs],
        **dict.fromkeys(("median_epoch_s", "min_epoch_s", "max_epoch_s", "unstable", "compile_s",
                         "samples_per_s")),
    }
    if not all(r["epoch_seconds"] for r in runs):  # a row that could not train here says why
        return row
    scale = n_full / n
    if n < n_full:
        row["note"] = f"timed on {n} images, scaled to {n_full}"
    per_process = [statistics.median(r["epoch_seconds"][1:] or r["epoch_seconds"]) * scale for r in runs]
    first = statistics.median(r["epoch_seconds"][0] for r in runs) * scale
    median = statistics.median(per_process)
    row.update(median_epoch_s=median, min_epoch_s=min(per_process), max_epoch_s=max(per_process),
               unstable=max(per_process) > UNSTABLE * min(per_process),
               compile_s=max(0.0, first - median), samples_per_s=n_full / median)
    return row


def summarize_limits(planned: Sequence[Planned], runs: list[list[dict]],
                     n_full: int) -> tuple[dict | None, dict[tuple[int, int], float]]:
    """The peak (the best of every process's best) and each floor (the fastest epoch of every
    process, its full batches scaled to ``n_full`` images), by (batch size, hidden units)."""
    peak, floors = None, {}
    for job, job_runs in zip(planned, runs):
        if job.row is limits.PEAK:
            peak = {"size": job.job["size"], "repeats": job.job["repeats"], "processes": len(job_runs),
                    "peak_flops": max(r["peak_flops"] for r in job_runs),
                    "median_flops": statistics.median(r["median_flops"] for r in job_runs),
                    "threads": job_runs[0]["threads"], "runs": job_runs}
        elif job.row is limits.FLOOR:
            images = job.job["batches"] * job.batch_size
            floors[(job.batch_size, job.hidden_units)] = min(r["best_s"] for r in job_runs) * n_full / images
    return peak, floors


def result_rows(planned: list[Planned], runs: list, args: argparse.Namespace, n_full: int, peak,
                floors: dict, counts: dict) -> tuple[list[dict], dict[str, dict]]:
    """The table's rows, each with its FLOP/s (its model's matmuls, counted from the model:
    benchmarks/limits.py), its share of the matmul peak and of the floor (CPU rows: neither is
    measured for a GPU) and its speed-up over fit() default of the same device and sizes (if
    --rows kept it); and the versions the rows ran with, TensorFlow's and the peers'."""
    rows, environments = [], {"environment": {}, "peer_environment": {}}
    for each, each_runs in zip(planned, runs):
        if isinstance(each.row, limits.Limit):
            continue
        row = summarize(each, each_runs, args, counts[each.hidden_units]["params"])
        environments[each.row.record_env].update(each_runs[0]["environment"])
        seconds, cpu = row["median_epoch_s"], row["device"] == "cpu"
        flops = counts[each.hidden_units]["flops"] * n_full
        floor = floors.get((row["batch_size"], row["hidden_units"])) if cpu else None
        row.update(flops_per_epoch=flops, gflop_per_s=flops / seconds / 1e9 if seconds else None,
                   share_of_peak=flops / seconds / peak["peak_flops"] if seconds and peak and cpu else None,
                   floor_epoch_s=floor, share_of_floor=floor / seconds if floor and seconds else None)
        rows.append(row)
    for row in rows:
        base = next((r["median_epoch_s"] for r in rows if (r["implementation"], r["mode"]) ==
                     ("high_level", "default") and all(r[k] == row[k] for k in SAME_GROUP)), None)
        row["speedup_vs_fit_default"] = (base / row["median_epoch_s"]
                                         if base and row["median_epoch_s"] else None)
    return rows, environments


def bar_chart(rows: list[dict], path: Path) -> None:
    """Median seconds per epoch of each row, one panel per device, batch size and model size."""
    from shared.plotting import save_figure

    plt = common.pyplot()
    rows = [r for r in rows if r["median_epoch_s"]]
    groups = sorted({(r["device"], r["batch_size"], r["hidden_units"]) for r in rows})
    most = max([sum(1 for r in rows if (r["device"], r["batch_size"], r["hidden_units"]) == g)
                for g in groups] or [1])
    fig, axes = plt.subplots(len(groups), 1, figsize=(8, (0.9 + 0.32 * most) * len(groups)),
                             squeeze=False)
    for ax, (device, batch_size, hidden) in zip(axes[:, 0], groups):
        group = [r for r in rows if (r["device"], r["batch_size"], r["hidden_units"]) ==
                 (device, batch_size, hidden)]
        labels = [f"{label_color(r['implementation'])[0]} {r['mode']}" for r in group]
        colors = [label_color(r["implementation"])[1] for r in group]
        # The bar is the median over processes; the whisker spans the fastest to the slowest.
        medians = [r["median_epoch_s"] for r in group]
        spread = [[m - r["min_epoch_s"] for m, r in zip(medians, group)],
                  [r["max_epoch_s"] - m for m, r in zip(medians, group)]]
        bars = ax.barh(labels, medians, color=colors, xerr=spread, capsize=2)
        for bar, r in zip(bars, group):
            bar.set_hatch("//" if r["unstable"] else "")
        ax.bar_label(bars, labels=[f"{r['median_epoch_s']:.3g} s" + (
            f"  (x{r['speedup_vs_fit_default']:.1f})" if r["speedup_vs_fit_default"] else "")
            + ("  unstable" if r["unstable"] else "") for r in group], fontsize=8, padding=3)
        ax.set_xscale("log")
        ax.invert_yaxis()
        ax.set_xlabel("median seconds per epoch over processes, whisker: fastest to slowest "
                      f"(log scale; x = speed-up over fit() default; hatched: unstable, "
                      f"slowest > {UNSTABLE}x fastest)", fontsize=8)
        ax.set_title(f"{device.upper()}, batch size {batch_size}, {hidden} hidden units")
        ax.set_xlim(right=ax.get_xlim()[1] * 3)
    fig.tight_layout()
    save_figure(fig, path)


def scaling_chart(rows: list[dict], peak: dict | None, n_full: int, flops: dict[int, int],
                  path: Path, floors: dict[tuple[int, int], float] | None = None) -> None:
    """Seconds per epoch (log) against the model's parameter count (log), one line per way of
    training, one panel per device and batch size; dotted: the arithmetic at the measured peak;
    dash-dotted: the floor (the step's matmuls alone, measured)."""
    from shared.plotting import save_figure

    plt = common.pyplot()
    rows = [r for r in rows if r["median_epoch_s"]]
    groups = sorted({(r["device"], r["batch_size"]) for r in rows})
    fig, axes = plt.subplots(1, len(groups), figsize=(12 * len(groups), 6.5), squeeze=False)
    markers = "os^vD<>pP*Xh"
    for ax, (device, batch_size) in zip(axes[0], groups):
        group = [r for r in rows if (r["device"], r["batch_size"]) == (device, batch_size)]
        ways = list(dict.fromkeys((r["implementation"], r["mode"]) for r in group))
        for i, (impl, mode) in enumerate(ways):
            line = sorted((r["params"], r["median_epoch_s"]) for r in group
                          if (r["implementation"], r["mode"]) == (impl, mode))
            label, color = label_color(impl)
            ax.plot(*zip(*line), marker=markers[i % len(markers)], color=color,
                    linestyle="-" if impl in SIDES else "--", label=f"{label} {mode}")
        sizes = sorted({(r["params"], r["hidden_units"]) for r in group})
        if peak and device == "cpu":
            ax.plot([p for p, _ in sizes], [flops[h] * n_full / peak["peak_flops"] for _, h in sizes],
                    color="black", linestyle=":", label="arithmetic alone at the measured matmul "
                    f"peak ({peak['peak_flops'] / 1e9:.0f} GFLOP/s)")
        floor = [(params, (floors or {}).get((batch_size, h))) for params, h in sizes]
        if device == "cpu" and all(seconds for _, seconds in floor):
            ax.plot(*zip(*floor), color="black", linestyle="-.", marker="x",
                    label="floor: the step's matmuls alone, an epoch in one XLA loop (measured)")
        ax.set(xscale="log", yscale="log", xlabel="model size: parameters (log scale)",
               ylabel="median seconds per epoch (log scale)",
               title=f"{device.upper()}, batch size {batch_size}, {n_full} images per epoch")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    save_figure(fig, path)


def build_parser() -> argparse.ArgumentParser:
    """Options of the speed benchmark."""
    p = options.Parser(prog=f"{PROG} bench speed", description=__doc__.split("\n\n")[0])
    options.add_training_options(
        p, ["--device", "--strategy", "--cpu-replicas", "--mixed-precision", "--epochs", "--limit",
            "--seed", "--data-dir", "--out", "--overwrite"], epochs=3, out="runs/bench-speed")
    p.add_argument("--batch-sizes", type=options.whole_numbers, default=[32], metavar="N,N",
                   help="comma-separated (default 32)")
    p.add_argument("--hidden-units", dest="hidden_sizes", type=options.whole_numbers,
                   default=[128], metavar="N,N",
                   help="widths of the hidden layer to sweep, comma-separated (default 128)")
    p.add_argument("--peers", type=options.names_from(peers.PEERS), default=[], metavar="NAME,NAME",
                   help=f"also train in other frameworks, on the CPU: {', '.join(peers.PEERS)} "
                        f"(needs {peers.INSTALL})")
    p.add_argument("--rows", type=options.names_from(ROW_NAMES), default=list(ROW_NAMES),
                   metavar="IMPL:ROW,...", help="time only these TensorFlow rows, e.g. "
                   f"high:default,low:epoch (default all: {', '.join(ROW_NAMES)})")
    p.add_argument("--repeats", type=options.positive_int, default=3,
                   help="fresh processes per row, run round-robin across the rows (default 3)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--threads", choices=THREAD_POLICIES, default="all",
                   help="every framework's thread pools: all the cores (default), or one core "
                        "(each process pinned to it)")
    p.add_argument("--eager-limit", type=options.positive_int, default=3200, metavar="N",
                   help="eager rows time N images and scale to a full epoch (default 3200)")
    return p


def checked_configs(args: argparse.Namespace) -> list[TrainConfig]:
    """One configuration per batch size and model size, every rule about the options checked
    before anything slow; a UserError naming the option otherwise."""
    try:
        configs = [options.make_config(args, batch_size=b, hidden_units=h)
                   for b in args.batch_sizes for h in args.hidden_sizes]
    except UserError as e:  # TrainConfig's rule names --batch-size; the user typed --batch-sizes
        raise UserError(str(e).replace("--batch-size ", "--batch-sizes ", 1)) from None
    options.check_sides(configs[0], SIDES)
    if not rows_for(args.strategy, args.rows):
        raise UserError(f"--rows {','.join(args.rows)}: none of these runs under --strategy "
                        f"{args.strategy}; these do: {', '.join(r.key for r in rows_for(args.strategy))}")
    if args.peers and args.strategy != "default":
        raise UserError(f"--peers: the peer rows run on one device; drop --strategy {args.strategy}")
    return configs


def devices_to_time(args: argparse.Namespace) -> list[str]:
    """"cpu" and/or "gpu", as --device asks and the machine has; a UserError for --device gpu
    on a machine whose TensorFlow sees no GPU."""
    devices = ["cpu"] if args.device in ("cpu", "auto") else []
    if args.device in ("gpu", "auto"):
        if gpu_names():
            devices.append("gpu")
        elif args.device == "gpu":
            raise UserError("--device gpu: TensorFlow sees no GPU on this machine")
        else:
            print("GPU rows skipped: TensorFlow sees no GPU on this machine.")
    if args.mixed_precision and "gpu" not in devices:
        print("--mixed-precision applies to GPU rows only; there are none in this run.")
    return devices


def run(args: argparse.Namespace) -> dict:
    """The whole matrix; writes results.json, results.md, speed.png and scaling.png into
    ``args.out``. Peers whose packages are missing are one line, and the rest still runs."""
    from fit_vs_tape.runtime import load_dataset

    configs = checked_configs(args)
    check_out(args.out, args.overwrite)  # a directory that holds a run: refused before anything slow
    dataset = load_dataset(args.data_dir)  # checks the data (and fetches it) once, up front
    for config in configs:
        n_full = options.checked(lambda: config.check_data(len(dataset.x_train)))
    devices = devices_to_time(args)
    gone = peers.missing(args.peers)
    if gone:  # said now, so a long run is not a surprise; the error comes at the end
        print(f"peers skipped: {', '.join(gone)} (not installed; see the error at the end)")
    if args.peers and "cpu" not in devices:
        print("--peers: the peer rows run on the CPU only; there are none in this run.")
    out = new_run_dir(args.out, overwrite=args.overwrite)
    planned = plan_all(args, configs, devices, n_full, out,
                       peer_rows=peers.rows([name for name in args.peers if name not in gone]))
    runs = interleaved(planned, args.repeats, quiet=args.quiet)
    peak, floors = summarize_limits(planned, runs, n_full)
    if peak:
        print(f"matmul peak: {peak['peak_flops'] / 1e9:.1f} GFLOP/s (best of {peak['processes']} "
              f"processes of {peak['repeats']} XLA float32 products of {peak['size']}x{peak['size']}; "
              f"median {peak['median_flops'] / 1e9:.1f})", flush=True)
    counts = limits.count(args.hidden_sizes, configs[0].model)
    rows, environments = result_rows(planned, runs, args, n_full, peak, floors, counts)
    record = {"benchmark": "speed", "command": " ".join(sys.argv), "settings": {
        k: v for k, v in vars(args).items() if k != "func"}, **environments, "matmul_peak": peak,
        "skipped_peers": gone, "flops_per_sample": {h: n["flops"] for h, n in counts.items()},
        "floor_epoch_s": {f"batch {b}, hidden {h}": seconds for (b, h), seconds in floors.items()},
        "rows": rows}
    write_results(record, out, n_full, floors)
    if gone:
        raise UserError(peers.missing_message(gone))
    return record


def write_results(record: dict, out: RunDir, n_full: int, floors: dict) -> None:
    """The table printed; results.json, results.md, speed.png and scaling.png in ``out``."""
    rows, env, peak, flops = (record[k] for k in ("rows", "environment", "matmul_peak",
                                                  "flops_per_sample"))
    versions = ", ".join(f"{k} {v}" for k, v in record["peer_environment"].items() if k != "keras_backend")
    table = markdown_table(rows, COLUMNS)
    print("\n" + table + "\n\n" + AGREEMENT)
    write_json(out.results, record)
    write_text(out.results_table, "# Speed: seconds per epoch\n\n"
               f"Machine: {env.get('cpu')} ({env.get('cpu_cores')} cores), GPUs: "
               f"{', '.join(env.get('gpus', [])) or 'none'}; TensorFlow {env.get('tensorflow')}, "
               f"Keras {env.get('keras')}, NumPy {env.get('numpy')}"
               + (f"; peers: {versions}" if versions else "") + ".\n\n"
               + (f"Matmul peak (best of {peak['repeats']} XLA float32 {peak['size']}x{peak['size']} "
                  f"products): {peak['peak_flops'] / 1e9:.1f} GFLOP/s. Training FLOPs per image, "
                  f"counted from the model's matmuls (benchmarks/limits.py): "
                  + ", ".join(f"{n:,} at H={h}" for h, n in flops.items()) + ".\n\n" if peak else "")
               + f"{table}\n\n{AGREEMENT}\n\n![seconds per epoch]({out.speed_chart.name})\n\n"
               f"![seconds per epoch against model size]({out.scaling_chart.name})\n")
    bar_chart(rows, out.speed_chart)
    scaling_chart(rows, peak, n_full, flops, out.scaling_chart, floors)
    print(f"\nwrote {out.path}/" + ", ".join(path.name for path in (
        out.results, out.results_table, out.speed_chart, out.scaling_chart)))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m benchmarks.speed``; ``--worker JOB`` is the per-row process."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return worker_main("benchmarks.speed", worker, argv)
    return bench_main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
