"""The `mistakes` command: every classic mistake of low_level/mistakes.py run against fit() from
the same start on the same batches; a table, gallery.json, the diffs and a figure."""

from __future__ import annotations

import ast
import contextlib
import difflib
import inspect
import io
import statistics
import textwrap
import tokenize
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from fit_vs_tape import check
from fit_vs_tape.rundir import RunDir, write_json, write_text
from low_level import mistakes as gallery
from low_level import train as loop_lib
from shared.config import TrainConfig
from shared.model import build_model, make_optimizer
from shared.order import steps_per_epoch


def diff(mistake: gallery.Mistake) -> str:
    """The mistake as a unified diff against what it changes: train.py's train_step, or the
    gallery's correct loop."""
    if mistake.step is not loop_lib.train_step:
        before, after = loop_lib.train_step, mistake.step
    else:
        before, after = gallery.loop, mistake.loop
    # The name, docstring and comments differ by design; the diff shows the code.
    return "".join(difflib.unified_diff(_code(before), _code(after), fromfile=_where(before),
                                        tofile=_where(after), n=1))


def _where(function) -> str:
    path = Path(inspect.getsourcefile(function))
    return f"{path.parent.name}/{path.name} {function.__name__}"


def _code(function) -> list[str]:
    """The lines of ``function``'s body after its docstring, without comments or blank lines."""
    source = textwrap.dedent(inspect.getsource(function))
    node = ast.parse(source).body[0]
    body = node.body[1:] if ast.get_docstring(node) else node.body
    lines = source.splitlines(keepends=True)[body[0].lineno - 1:node.end_lineno]
    comments = {(token.start[0], token.start[1]) for token in
                tokenize.generate_tokens(io.StringIO("".join(lines)).readline)
                if token.type == tokenize.COMMENT}
    kept = []
    for number, line in enumerate(lines, start=1):
        cut = next((col for row, col in comments if row == number), None)
        line = (line[:cut] if cut is not None else line).rstrip()
        if line.strip():
            kept.append(line + "\n")
    return kept


def _median_after_first(seconds: list[float]) -> float | None:
    """Seconds of an epoch after the first (which traces), or of the only one (report.py's
    leaves a one-epoch run without a number; the gallery's table needs one)."""
    return statistics.median(seconds[1:] or seconds) if seconds else None


def run_gallery(x, y, x_test, y_test, config: TrainConfig) -> dict:
    """fit(), then every mistake: each recorded step by step against fit() run the same way
    (eagerly for a mistake that runs only eagerly), then timed without recording; their
    verdicts, test accuracy and seconds per epoch (against fit()'s, run as ``config`` says)."""
    with warnings.catch_warnings(), _quiet_tensorflow_log():
        # The gallery shows what Keras' warning (from_logits) and TensorFlow's (retracing) would
        # say: their lines would only hide its table.
        warnings.simplefilter("ignore", UserWarning)
        return _run_gallery(x, y, x_test, y_test, config)


@contextlib.contextmanager
def _quiet_tensorflow_log():
    import tensorflow as tf

    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


def _run_gallery(x, y, x_test, y_test, config: TrainConfig) -> dict:
    def build():
        return build_model(config.hidden_units, model=config.model)

    compile_args = dict(optimizer=make_optimizer(config), loss="sparse_categorical_crossentropy",
                        metrics=["accuracy"])
    weights = check.snapshot(build, config.seed)
    references = {}  # fit() run as each mistake runs (eagerly for the eager ones), recorded once

    def reference(run_config: TrainConfig) -> tuple:
        if run_config.mode not in references:
            references[run_config.mode] = check.run_fit(build, compile_args, weights, x, y, run_config)
        return references[run_config.mode]

    reference_model, recorded = reference(config)
    names = check.variable_names(reference_model)
    steps_per = steps_per_epoch(len(x), config.batch_size)
    _, timed = check.run_fit(build, compile_args, weights, x, y, config,
                             recorder=check.Recorder(copy_weights=False))
    fit_row = {"name": "fit()", "title": "model.fit(), the reference",
               "test_accuracy": loop_lib.evaluate(reference_model, x_test, y_test, config)["accuracy"],
               "epoch_s": _median_after_first(timed.epoch_seconds)}

    def measured(run_config: TrainConfig, **mistake) -> tuple:
        """A loop (``mistake``: its step or loop, else the right one) checked against fit() run
        alike, then timed in a run of its own (recording every weight would slow it): its model,
        verdict, traces and seconds per epoch."""
        model, mine, calls = check.run_loop(build, compile_args, weights, x, y, run_config, **mistake)
        verdict = check.compare(reference(run_config)[1], mine, names, steps_per)
        _, timed, _ = check.run_loop(build, compile_args, weights, x, y, run_config, **mistake,
                                     recorder=check.Recorder(copy_weights=False))
        return model, verdict, calls, _median_after_first(timed.epoch_seconds)

    # The loop done right: checked against fit() as every mistake is, and the speed each loop
    # mistake is measured against.
    loop_model, loop_verdict, loop_traces, loop_s = measured(config)
    fit_row.update(loop_epoch_s=loop_s, loop_bit_identical=loop_verdict.bit_identical,
                   loop_traces=None if config.mode == "eager" else loop_traces,
                   loop_test_accuracy=loop_lib.evaluate(loop_model, x_test, y_test, config)["accuracy"])
    rows = []
    for mistake in gallery.MISTAKES:
        run_config = replace(config, mode="eager") if mistake.eager else config
        model, verdict, calls, seconds = measured(run_config, step=mistake.step, loop=mistake.loop)
        rows.append({
            "name": mistake.name, "title": mistake.title, "eager": mistake.eager,
            "first_divergence": None if verdict.first is None else vars(verdict.first),
            "callbacks_differ": verdict.logs, "callback_calls_differ": verdict.calls,
            "traces": None if mistake.eager else calls,
            "test_accuracy": loop_lib.evaluate(model, x_test, y_test, config)["accuracy"],
            "epoch_s": seconds,
            "slowdown_vs_fit": seconds / fit_row["epoch_s"] if seconds and fit_row["epoch_s"] else None,
            "slowdown_vs_loop": seconds / loop_s if seconds and loop_s else None,
            "max_abs_by_step": verdict.max_abs_by_step, "diff": diff(mistake),
        })
    return {"config": config.to_dict(), "steps": len(recorded.weights), "fit": fit_row, "mistakes": rows}


def same_weights(row: dict) -> str | None:
    """For a mistake whose weights never leave fit()'s, what still differs, in the words the table
    and the figure share ("bit-identical" only when the logs and callback calls match too); None
    when the weights differ."""
    if row["first_divergence"]:
        return None
    if row["callback_calls_differ"]:
        return "callback calls differ"
    return "the logs differ" if row["callbacks_differ"] else "bit-identical"


def table(result: dict) -> str:
    """The gallery as a plain-text table, and below it what to read into its columns."""
    fit = result["fit"]
    loop_traces = fit.get("loop_traces")
    head = (f"{'mistake':<22} {'first differs from fit() at':<44} {'by':>8} {'traces':>6} "
            f"{'test acc':>8} {'s/epoch':>8} {'x loop':>7}")
    fit_x = fit["epoch_s"] / fit["loop_epoch_s"] if fit["epoch_s"] and fit["loop_epoch_s"] else None
    lines = [head, "-" * len(head),
             f"{'fit() (reference)':<22} {'':<44} {'':>8} {'-':>6} {fit['test_accuracy']:>8.4f} "
             f"{fit['epoch_s']:>8.3f} {f'{fit_x:.2f}' if fit_x else '':>7}",
             f"{'the loop, done right':<22} "
             f"{'weights never (bit-identical)' if fit['loop_bit_identical'] else 'DIFFERS: a bug':<44} "
             f"{'':>8} {_traces(loop_traces):>6} {fit['loop_test_accuracy']:>8.4f} "
             f"{fit['loop_epoch_s']:>8.3f} {1.0:>7.2f}"]
    for row in result["mistakes"]:
        first = row["first_divergence"]
        where = (f"step {first['step']}, {first['variable']}" if first
                 else f"weights never ({same_weights(row)})")
        size = "" if first is None else f"{first['max_abs']:.1e}"
        slow = f"{row['slowdown_vs_loop']:.2f}" if row["slowdown_vs_loop"] else ""
        lines.append(f"{row['name']:<22} {where[:44]:<44} {size:>8} {_traces(row['traces']):>6} "
                     f"{row['test_accuracy']:>8.4f} {row['epoch_s'] or 0:>8.3f} {slow:>7}")
    width = len(head)
    return "\n".join(lines + [""] + [textwrap.fill(note, width, subsequent_indent="  ")
                                    for note in notes(result)])


def _traces(count: int | None) -> str:
    return "eager" if count is None else str(count)


def notes(result: dict) -> list[str]:
    """What the table's columns can and cannot say, with this run's numbers: traces (and why
    fit() has none), how noisy the seconds are, and why a mistake can score above fit()."""
    fit, rows = result["fit"], result["mistakes"]
    found = ["traces: how many times the loop's step was traced (its Python body ran; eager: not "
             "compiled). fit() traces Keras' own train_step, which the gallery does not count: "
             "`fit-vs-tape trace` shows its traces."]
    # The loops that train exactly as the loop done right (the same weights, traced as often) can
    # only differ in time by chance: their spread is this run's noise.
    alike = [row for row in rows if row["first_divergence"] is None and row["slowdown_vs_loop"]
             and row["traces"] is not None and row["traces"] == fit.get("loop_traces")]
    timing = ("s/epoch: the median of a loop's epochs after the first (which traces), each loop "
              "timed in one run, one after another in this process; x loop: against the loop done "
              "right.")
    if alike:
        factors = [row["slowdown_vs_loop"] for row in alike]
        band = max(max(factors), 1 / min(factors))  # as far from 1 as chance went, either way
        timing += (f" The loops that train exactly as it does ({', '.join(r['name'] for r in alike)}) "
                   f"took {min(factors):.2f}-{max(factors):.2f}x its time, so any factor from "
                   f"{1 / band:.2f} to {band:.2f} is within this run's noise, not a cost or a saving.")
    found.append(timing + " `fit-vs-tape bench speed` times properly.")
    above = [row for row in rows if row["test_accuracy"] > fit["test_accuracy"]]
    if above:
        accuracy = (f"test acc: one short run each ({result['steps']} steps): any other path (another "
                    "order, another rounding) moves it by a point or two, so above fit() "
                    f"({fit['test_accuracy']:.4f}) is not better: "
                    + ", ".join(f"{row['name']} {row['test_accuracy']:.4f}" for row in above) + ".")
        if any(row["name"] == "no_training_flag" and row["first_divergence"] for row in above):
            # Measured with the gallery's defaults (3200 images, 2 epochs, seed 42): fit() 0.7716,
            # its batch norm's moving statistics replaced by the training images' own 0.7892, and
            # with dropout off as well 0.7985; no_training_flag 0.8018 (seeds 1, 2, 3: above fit()
            # by 1.1, 2.8 and 1.7 points). Dropout off alone: 0.7629.
            accuracy += (" no_training_flag also for a reason: without training=True its batch norm "
                         "trains and tests with the same fixed statistics (and drops nothing), while "
                         "fit()'s model is tested with moving averages that a short run leaves far "
                         "from the data's.")
        found.append(accuracy)
    return found


def figure(result: dict, path: Path) -> None:
    """Draw ``plot(result)`` into the PNG ``path``."""
    from shared.plotting import save_figure

    save_figure(plot(result), path)


def plot(result: dict):
    """A matplotlib Figure: the largest weight difference from fit() at each step, one line per
    mistake, each its own colour and marker, the markers staggered so that lines on top of each
    other still show (log scale). A mistake whose weights never differ is drawn dotted at the
    bottom edge, and its legend entry says what the table says: bit-identical, or what differs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from shared.plotting import LINE_COLORS, LINE_MARKERS

    fig, ax = plt.subplots(figsize=(10, 5.5))
    floor = 1e-10
    steps, rows = result["steps"], result["mistakes"]
    for i, row in enumerate(rows):
        sizes = np.maximum(np.array(row["max_abs_by_step"], dtype=float), floor)
        first = row["first_divergence"]
        # About eight markers a line; the lines of one kind (leaving fit(), or on the floor on top
        # of each other) each at other steps, where there are steps enough.
        kind = [other for other in rows if bool(other["first_divergence"]) == bool(first)]
        every = max(len(kind), len(sizes) // 8, 1)
        offset = min(kind.index(row) * every // len(kind), len(sizes) - 1)
        label = (f"{row['name']}: from step {first['step']}" if first
                 else f"{row['name']}: weights never ({same_weights(row)})")
        # Past the last colour the colours repeat with other markers.
        marker = LINE_MARKERS[(i + i // len(LINE_COLORS)) % len(LINE_MARKERS)]
        ax.plot(np.arange(1, len(sizes) + 1), sizes, label=label, linestyle="-" if first else ":",
                color=LINE_COLORS[i % len(LINE_COLORS)], marker=marker, markevery=(offset, every),
                markersize=5, linewidth=1.4)
    ax.set_yscale("log")
    ax.set_ylim(bottom=floor / 3)
    ax.set_xlabel("training step (same start, same batches as fit())")
    ax.set_ylabel("largest |weight - fit()'s weight| (log; 0 drawn at 1e-10)")
    config = result["config"]
    ax.set_title(f"Where each mistake leaves fit(): {config['model']} model, "
                 f"{steps} steps, batch {config['batch_size']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig


def write_gallery(result: dict, out: RunDir) -> list[Path]:
    """gallery.json, mistakes.png and diffs.md in ``out``; returns their paths."""
    write_json(out.gallery, result)
    figure(result, out.mistakes_figure)
    write_text(out.diffs, "# The mistakes, as diffs\n\n" + "\n".join(
        f"## {row['name']}: {row['title']}\n\n```diff\n{row['diff']}```\n" for row in result["mistakes"]))
    return [out.gallery, out.mistakes_figure, out.diffs]
