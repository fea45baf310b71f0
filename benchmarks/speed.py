"""Seconds per epoch of every way to train the tutorial's model, each in a fresh process.

    python -m benchmarks.speed --device cpu --batch-sizes 32   (or: fit-vs-tape bench speed ...)
    fit-vs-tape bench speed --peers jax,torch --hidden-units 32,128,512,2048

Rows: fit() at its default, with XLA, with steps_per_execution = one epoch, and with both; the
same four for fit() driving its own train_step (high_level/custom_step.py); the
loop eager, as a tf.function, with XLA, and as one XLA computation per epoch; with ``--peers``,
the same training in Keras on JAX, JAX + Optax and PyTorch (benchmarks/peers.py). The first epoch
(tracing, compiling) is reported apart and left out of the median. Every row gets its achieved
FLOP/s and its share of this machine's matmul peak, measured in the same run
(benchmarks/limits.py); ``--hidden-units`` repeats everything for each model size (scaling.png).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import limits, peers
from benchmarks.common import THREAD_POLICIES, bench_main, gpu_names, markdown_table, run_worker, worker_main
from fit_vs_tape import options
from fit_vs_tape.errors import PROG, UserError
from fit_vs_tape.rundir import RunDir, new_run_dir, write_json, write_text
from shared.config import SIDES, TrainConfig
from shared.model import parameter_count
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
#: What ``--rows`` accepts: ``train --side``'s name and the row's, e.g. high:default, low:epoch.
ROW_NAMES = tuple(f"{SIDES[implementation].short}:{name}" for implementation, name, _, _ in ROWS)
COLUMNS = ["implementation", "mode", "hidden_units", "batch_size", "device", "median_epoch_s",
           "min_epoch_s", "max_epoch_s", "unstable", "repeats", "load_1min", "thread_policy", "compile_s",
           "samples_per_s", "speedup_vs_fit_default", "gflop_per_s", "share_of_peak", "share_of_floor",
           "peak_rss_mb", "test_accuracy", "note"]
AGREEMENT = ("Rows of one framework with the same compilation choice end with the same test "
             "accuracy (the same training, run differently); rows of different frameworks agree "
             "in accuracy, not in bits (their kernels sum in other orders, Optax's and PyTorch's "
             "Adam place epsilon differently, Keras on JAX clips the probabilities in its loss: "
             "benchmarks/peer_common.py).")


def label_color(implementation: str) -> tuple[str, str]:
    """A row's name and colour in figures, TensorFlow side or peer."""
    if implementation in SIDES:
        return SIDES[implementation].label, SIDES[implementation].color
    return peers.LABELS[implementation]


def rows_for(strategy: str, chosen: Sequence[str] = ROW_NAMES) -> tuple:
    """The rows to time: those ``chosen`` (``--rows``, default all), and of them under a
    distribution strategy only fit() default and the graph loop: XLA and the compiled epoch are
    single-device modes here, and fit(steps_per_execution > 1) under MirroredStrategy fails in
    its compiled multi-step function (TF 2.21, Keras 3.15)."""
    rows = tuple(row for key, row in zip(ROW_NAMES, ROWS) if key in chosen)
    if strategy == "default":
        return rows
    return tuple(r for r in rows if r[2:] == ("graph", 1))


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
    return {
        "epoch_seconds": result.epoch_seconds,
        "test_accuracy": result.test_accuracy,
        "n_train": config.limit,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "environment": environment(),
        "threads": {"tensorflow_intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                    "tensorflow_inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
    }


#: A row is unstable when its slowest process took more than this times its fastest.
UNSTABLE = 1.3


@dataclass(frozen=True)
class Planned:
    """One row of the matrix, before it runs: what to start, and how often."""

    implementation: str
    name: str
    device: str
    batch_size: int
    hidden_units: int
    job: dict
    module: str
    env: tuple = ()
    n_full: int = 0


def plan(implementation: str, mode_name: str, mode: str, spe: int | None, batch_size: int,
         hidden_units: int, device: str, args: argparse.Namespace, n_full: int,
         peer_env: tuple | None = None, weights: Path | None = None) -> Planned:
    """The worker job of one row. ``peer_env`` (with ``weights``, the saved initial weights): a
    peer row, run by benchmarks/peers.py in a process started with that environment."""
    # Eager is ~10x slower: it times fewer images and scales to the full epoch (and says so).
    limit = min(args.eager_limit, n_full) if mode == "eager" and peer_env is None else n_full
    config = options.make_config(
        args, batch_size=batch_size, hidden_units=hidden_units, mode=mode, limit=limit,
        steps_per_execution=spe or steps_per_epoch(limit, batch_size),
        mixed_precision=args.mixed_precision and device == "gpu")
    job = {"implementation": implementation, "config": config.to_dict(), "data_dir": args.data_dir,
           "threads": args.threads}
    if peer_env is None:
        return Planned(implementation, mode_name, device, batch_size, hidden_units, job,
                       "benchmarks.speed", (), n_full)
    job.update(mode=mode_name, weights=str(weights))
    return Planned(implementation, mode_name, device, batch_size, hidden_units, job,
                   "benchmarks.peers", peer_env, n_full)


def run_planned(planned: Planned) -> dict:
    """One fresh process of a planned row, and the load average (1 minute) when it ended."""
    answer = run_worker(planned.module, planned.job, hide_gpus=planned.device == "cpu" or
                        planned.module == "benchmarks.peers", env=dict(planned.env) or None)
    return {**answer, "load_1min": os.getloadavg()[0]}


def summarize(planned: Planned, runs: list[dict], args: argparse.Namespace) -> dict:
    """A row from its processes: each process's median seconds per epoch after the first,
    their median (the row's), their spread (min, max) and the load while they ran; unstable when
    max > UNSTABLE x min."""
    config = planned.job["config"]
    n, n_full = runs[0]["n_train"], planned.n_full
    row = {
        "implementation": planned.implementation, "mode": planned.name,
        "hidden_units": planned.hidden_units,
        "params": parameter_count(planned.hidden_units, config["model"]),
        "batch_size": planned.batch_size, "device": planned.device,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "test_accuracy": statistics.median(r["test_accuracy"] for r in runs),
        "epochs": args.epochs, "repeats": len(runs), "mixed_precision": config["mixed_precision"],
        "strategy": args.strategy, "note": runs[0].get("note", ""),
        "load_1min": statistics.mean(r["load_1min"] for r in runs),
        "threads": runs[0]["threads"],
        "thread_policy": f"{runs[0]['threads']['policy']}: {runs[0]['threads']['cores']} core(s)",
        "process_epoch_seconds": [r["epoch_seconds"] for r in runs],
        "median_epoch_s": None, "min_epoch_s": None, "max_epoch_s": None, "unstable": None,
        "compile_s": None, "samples_per_s": None,
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


#: Rows compared with one another: the same device, batch size and model size.
SAME_GROUP = ("device", "batch_size", "hidden_units")


def interleaved(planned: Sequence[Planned], repeats: int, quiet: bool = False) -> list[list[dict]]:
    """Every planned row ``repeats`` times, each time in a fresh process, round-robin (A B C,
    A B C, ...) so that a burst of load on the machine hits every row alike; a progress bar
    over the processes, with an ETA, on stderr unless ``quiet``.

    Not pyperf: its Runner runs one benchmark's worker processes before the next benchmark's,
    so it cannot interleave rows of different frameworks, each needing its own environment
    (KERAS_BACKEND=jax) and its own fresh interpreter; the statistics needed here are a median,
    a minimum and a maximum (``summarize``)."""
    from tqdm import tqdm

    runs: list[list[dict]] = [[] for _ in planned]
    with tqdm(total=repeats * len(planned), unit="process", disable=quiet, file=sys.stderr,
              desc="bench speed") as bar:
        for _ in range(repeats):
            for i, row in enumerate(planned):
                bar.set_postfix_str(f"{row.implementation} {row.name} H={row.hidden_units}")
                runs[i].append(run_planned(row))
                bar.update()
    return runs


def limit_jobs(args: argparse.Namespace, model: str, n_full: int) -> list[Planned]:
    """The peak's job and one floor job per batch size and model size (CPU only)."""
    jobs = [Planned("limits", "peak", "cpu", 0, 0, {"size": limits.PEAK_SIZE,
                    "repeats": limits.PEAK_REPEATS, "threads": args.threads}, "benchmarks.limits")]
    for batch_size in args.batch_sizes:
        for hidden in args.hidden_sizes:
            job = {"hidden_units": hidden, "model": model, "batch_size": batch_size,
                   "batches": max(1, n_full // batch_size), "repeats": 3, "threads": args.threads}
            jobs.append(Planned("limits", "floor", "cpu", batch_size, hidden, job,
                                "benchmarks.limits", (), n_full))
    return jobs


def summarize_limits(planned: Sequence[Planned], runs: list[list[dict]],
                     n_full: int) -> tuple[dict | None, dict[tuple[int, int], float]]:
    """The peak (the best of every process's best) and each floor (the fastest epoch of every
    process, its full batches scaled to ``n_full`` images), by (batch size, hidden units)."""
    peak, floors = None, {}
    for job, job_runs in zip(planned, runs):
        if job.module != "benchmarks.limits":
            continue
        if job.name == "peak":
            peak = {"size": job.job["size"], "repeats": job.job["repeats"], "processes": len(job_runs),
                    "peak_flops": max(r["peak_flops"] for r in job_runs),
                    "median_flops": statistics.median(r["median_flops"] for r in job_runs),
                    "threads": job_runs[0]["threads"], "runs": job_runs}
        else:
            images = job.job["batches"] * job.batch_size
            floors[(job.batch_size, job.hidden_units)] = min(r["best_s"] for r in job_runs) * n_full / images
    return peak, floors


def add_limits(row: dict, n_full: int, peak: dict | None, flops_per_sample: int) -> None:
    """The row's executed FLOP/s (the training FLOPs of the model's matmuls, counted from the
    model: benchmarks/limits.py) and its share of the measured matmul peak (CPU rows; no peak is
    measured for a GPU)."""
    flops = flops_per_sample * n_full
    row["flops_per_epoch"] = flops
    seconds = row["median_epoch_s"]
    row["gflop_per_s"] = flops / seconds / 1e9 if seconds else None
    row["share_of_peak"] = (flops / seconds / peak["peak_flops"]
                            if seconds and peak and row["device"] == "cpu" else None)


def bar_chart(rows: list[dict], path: Path) -> None:
    """Median seconds per epoch of each row, one panel per device, batch size and model size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from shared.plotting import save_figure

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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from shared.plotting import save_figure

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
        if peak and device == "cpu":
            sizes = sorted({(r["params"], r["hidden_units"]) for r in group})
            ax.plot([p for p, _ in sizes],
                    [flops[h] * n_full / peak["peak_flops"] for _, h in sizes],
                    color="black", linestyle=":", label="arithmetic alone at the measured matmul "
                    f"peak ({peak['peak_flops'] / 1e9:.0f} GFLOP/s)")
        floor = sorted((params, (floors or {}).get((batch_size, h))) for params, h in
                       {(r["params"], r["hidden_units"]) for r in group})
        if device == "cpu" and all(seconds for _, seconds in floor):
            ax.plot(*zip(*floor), color="black", linestyle="-.", marker="x",
                    label="floor: the step's matmuls alone, an epoch in one XLA loop (measured)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("model size: parameters (log scale)")
        ax.set_ylabel("median seconds per epoch (log scale)")
        ax.set_title(f"{device.upper()}, batch size {batch_size}, {n_full} images per epoch")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
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


def run(args: argparse.Namespace) -> dict:
    """The whole matrix; writes results.json, results.md, speed.png and scaling.png into
    ``args.out``. Peers whose packages are missing are one line, and the rest still runs."""
    from fit_vs_tape.runtime import load_dataset

    configs = checked_configs(args)
    dataset = load_dataset(args.data_dir)  # checks the data (and fetches it) once, up front
    for config in configs:
        n_full = options.checked(lambda: config.check_data(len(dataset.x_train)))
    devices = devices_to_time(args)
    gone = peers.missing(args.peers)
    if gone:  # said now, so a long run is not a surprise; the error comes at the end
        print(f"peers skipped: {', '.join(gone)} (not installed; see the error at the end)")
    if args.peers and "cpu" not in devices:
        print("--peers: the peer rows run on the CPU only; there are none in this run.")
    out = new_run_dir(args.out)
    planned = plan_all(args, configs[0].model, devices, n_full, out,
                       peer_rows=peers.rows([name for name in args.peers if name not in gone]))
    runs = interleaved(planned, args.repeats, quiet=args.quiet)
    peak, floors = summarize_limits(planned, runs, n_full)
    if peak:
        print(f"matmul peak: {peak['peak_flops'] / 1e9:.1f} GFLOP/s (best of {peak['processes']} "
              f"processes of {peak['repeats']} XLA float32 products of {peak['size']}x{peak['size']}; "
              f"median {peak['median_flops'] / 1e9:.1f})", flush=True)
    flops = limits.count_flops(args.hidden_sizes, configs[0].model)
    rows, env, peer_env = result_rows(planned, runs, args, n_full, peak, floors, flops)
    record = {"benchmark": "speed", "command": " ".join(sys.argv), "settings": {
        k: v for k, v in vars(args).items() if k != "func"}, "environment": env,
        "peer_environment": peer_env, "matmul_peak": peak, "skipped_peers": gone,
        "flops_per_sample": flops,
        "floor_epoch_s": {f"batch {b}, hidden {h}": seconds for (b, h), seconds in floors.items()},
        "rows": rows}
    write_results(record, out, n_full, floors)
    if gone:
        raise UserError(peers.missing_message(gone))
    return record


def checked_configs(args: argparse.Namespace) -> list[TrainConfig]:
    """One configuration per batch size and model size, every rule about the options checked
    before anything slow; a UserError naming the option otherwise."""
    try:
        configs = [options.make_config(args, batch_size=b, hidden_units=h)
                   for b in args.batch_sizes for h in args.hidden_sizes]
    except UserError as e:  # TrainConfig's rule names --batch-size; the user typed --batch-sizes
        raise UserError(str(e).replace("--batch-size ", "--batch-sizes ", 1)) from None
    options.checked(lambda: configs[0].check_sides(SIDES))
    if not rows_for(args.strategy, args.rows):
        allowed = [key for key, row in zip(ROW_NAMES, ROWS) if row in rows_for(args.strategy)]
        raise UserError(f"--rows {','.join(args.rows)}: none of these runs under --strategy "
                        f"{args.strategy}; these do: {', '.join(allowed)}")
    if args.peers and args.strategy != "default":
        raise UserError(f"--peers: the peer rows run on one device; drop --strategy {args.strategy}")
    if args.peers and configs[0].model != "tutorial":
        raise UserError(f"--peers: the peers write the tutorial's model only; drop --model "
                        f"{configs[0].model}")
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


def plan_all(args: argparse.Namespace, model: str, devices: list[str], n_full: int, out: RunDir, *,
             peer_rows: list) -> list[Planned]:
    """Every process to run once per repeat: the two limits (the matmul peak, and per batch and
    model size the floor: the step's own matmuls alone, benchmarks/limits.py floor_worker), then
    each row per device, batch size and model size, the peers' on the CPU only."""
    weights = {}
    if peer_rows and "cpu" in devices:  # one start for the peers, saved where their workers read it
        for h in args.hidden_sizes:
            weights[h] = out.initial_weights(h, args.seed)
            weights[h].parent.mkdir(exist_ok=True)
            peers.save_initial_weights(h, args.seed, weights[h])
    planned = limit_jobs(args, model, n_full) if "cpu" in devices else []
    for device in devices:
        jobs = [(impl, name, mode, spe, None) for impl, name, mode, spe in rows_for(args.strategy, args.rows)]
        if device == "cpu":
            # torch.compile's C++ and its caches go into the run directory, not /tmp
            cache = (("TORCHINDUCTOR_CACHE_DIR", str(out.torch_cache)),)
            jobs += [(impl, name, "graph", None if name == "spe" else 1, penv + cache)
                     for impl, name, penv in peer_rows]
        planned += [plan(implementation, name, mode, spe, batch_size, hidden, device, args, n_full,
                         penv, weights.get(hidden))
                    for batch_size in args.batch_sizes for hidden in args.hidden_sizes
                    for implementation, name, mode, spe, penv in jobs]
    return planned


def result_rows(planned: list[Planned], runs: list, args: argparse.Namespace, n_full: int, peak,
                floors: dict, flops: dict) -> tuple[list[dict], dict, dict]:
    """The table's rows (each against both limits and against fit() default of the same device
    and sizes, if --rows kept it), TensorFlow's environment and the peers'."""
    rows, env, peer_env = [], {}, {}
    for row_plan, row_runs in zip(planned, runs):
        if row_plan.module == "benchmarks.limits":
            continue
        row = summarize(row_plan, row_runs, args)
        (env if row_plan.module == "benchmarks.speed" else peer_env).update(row_runs[0]["environment"])
        add_limits(row, n_full, peak, flops[row["hidden_units"]])
        floor = floors.get((row["batch_size"], row["hidden_units"])) if row["device"] == "cpu" else None
        row["floor_epoch_s"] = floor
        row["share_of_floor"] = floor / row["median_epoch_s"] if floor and row["median_epoch_s"] else None
        rows.append(row)
    for row in rows:
        base = next((r["median_epoch_s"] for r in rows if (r["implementation"], r["mode"]) ==
                     ("high_level", "default") and all(r[k] == row[k] for k in SAME_GROUP)), None)
        row["speedup_vs_fit_default"] = (base / row["median_epoch_s"]
                                         if base and row["median_epoch_s"] else None)
    return rows, env, peer_env


def write_results(record: dict, out: RunDir, n_full: int, floors: dict) -> None:
    """The table printed; results.json, results.md, speed.png and scaling.png in ``out``."""
    rows, env, peak, flops = record["rows"], record["environment"], record["matmul_peak"], \
        record["flops_per_sample"]
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
