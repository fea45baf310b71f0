"""The `fit-vs-tape` command. Every mistake that can be found without TensorFlow is reported
before TensorFlow is imported; only the commands that train or predict import it."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from fit_vs_tape import options, runtime
from fit_vs_tape.errors import (
    PROG,
    RunStopped,
    UserError,
    WriteFailed,
    describe_os_error,
    report_errors,
    resume_hint,
)
from fit_vs_tape.options import SHORT_NAMES
from fit_vs_tape.sides import SIDES


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = options.Parser(
        prog=PROG,
        description="Train the TensorFlow tutorial's Fashion-MNIST classifier with Keras' fit() "
                    "and with a hand-written GradientTape loop, and prove they compute the same.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=options.Parser)
    _add_training_commands(sub)
    _add_checking_commands(sub)
    _add_other_commands(sub)
    return parser


def _add_training_commands(sub) -> None:
    """compare, train and trace."""
    p = sub.add_parser("compare", help="train every way from the same start and compare (main job)",
                       description="Train fit(), fit() driving its own train_step, and the "
                                   "GradientTape loop from the same initial weights on the same "
                                   "batches; compare weights, predictions, time.")
    p.add_argument("--sides", type=options.sides, default=list(SIDES), metavar="SIDE,SIDE",
                   help=f"which of {','.join(SHORT_NAMES)} to train and compare, two or more "
                        f"(default all: {','.join(SHORT_NAMES)})")
    options.add_training_options(p)
    p = sub.add_parser("train", help="train one side",
                       description="Train one side and save model.keras, results.json.")
    p.add_argument("--side", choices=list(SHORT_NAMES),
                   help="high: compile + fit; step: fit() driving its own train_step; low: "
                        "GradientTape loop (required unless --resume)")
    # Its name before 2026-12: still taken, no longer shown.
    p.add_argument("--impl", dest="side", choices=list(SHORT_NAMES), help=argparse.SUPPRESS)
    options.add_training_options(p)
    p = sub.add_parser("trace", help="record what fit() and the loop do, step by step",
                       description="Train a few steps on every side (or --sides) while recording "
                                   "every callback hook, compiled-function call and trace, "
                                   "variable created (with its owner), metric reset and device-to-host "
                                   "read, with the Keras (or loop) line that caused it; print "
                                   "fit()'s tree beside the loop's and write trace.json.")
    p.add_argument("--sides", type=options.any_sides, default=list(SIDES), metavar="SIDE,SIDE",
                   help=f"which of {','.join(SHORT_NAMES)} to trace, one or more (default all)")
    options.add_training_options(p, options.TRACE_OPTIONS, **options.TRACE_DEFAULTS)
    p.add_argument("--resumed-after", type=options.whole_number, default=0, metavar="N",
                   help="trace a resumed run: train N epochs with a checkpoint first (not "
                        "recorded), stop as an interrupted run stops, then record the run that "
                        "restores it and trains the rest")
    p.add_argument("--width", type=options.positive_int, default=None, metavar="COLUMNS",
                   help="width of the printed tree (default: the terminal's)")


def _add_checking_commands(sub) -> None:
    """mistakes and check: where a loop leaves fit()."""
    p = sub.add_parser("mistakes", help="the classic mistakes of a first loop, run against fit()",
                       description="Run every classic mistake of a hand-written loop "
                                   "(low_level/mistakes.py) against fit() from the same start on the "
                                   "same batches: where its weights first differ, by how much, its "
                                   "traces, test accuracy and seconds per epoch; writes "
                                   "gallery.json, mistakes.png and diffs.md.")
    options.add_training_options(p, options.GALLERY_OPTIONS, **options.GALLERY_DEFAULTS)
    p = sub.add_parser("check", help="check your own train_step against fit()",
                       description="Train your step (a function called as low_level/train.py's "
                                   "train_step) or your model's own train_step against fit() from "
                                   "the same start on the same batches; say 'bit-identical' or "
                                   "where it first differs, and name the known mistake if it is "
                                   "one. A step that returns a dict of metric results has its "
                                   "logs compared too; one that returns the loss or nothing, its "
                                   "weights and callback calls. Exit code 0: bit-identical; 1: it "
                                   "differs; 2: bad input, or an exception raised in your code "
                                   "(one line: the exception, its message, your file and line).")
    p.add_argument("--step", default=None, metavar="FILE.py:NAME",
                   help="your step function (a file or module, then its name), e.g. my_loop.py:train_step")
    p.add_argument("--builder", default=None, metavar="FILE.py:NAME",
                   help="a function that returns a new, built keras.Model (default: the project's "
                        "model, as --model says); with no --step, its class's own train_step is checked")
    options.add_training_options(p, options.CHECK_OPTIONS, **options.CHECK_DEFAULTS)


def _add_other_commands(sub) -> None:
    """predict, explore and bench."""
    p = sub.add_parser("predict", help="classify one image with a saved model",
                       description="Classify one test image or one PNG/JPEG file with a saved "
                                   "model; print the top classes and save the probability figure.")
    p.add_argument("--model", default=None, metavar="PATH",
                   help="a .keras file (default: the latest run's model under runs/)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--index", type=options.whole_number, help="a test-set image, 0-9999")
    which.add_argument("--image", metavar="FILE",
                       help="a PNG or JPEG; converted to 28x28 grayscale, inverted if dark on light")
    p.add_argument("--data-dir", default=None, metavar="DIR", help="as for compare")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where to save the figure (default: the model's directory)")
    p = sub.add_parser("explore", help="the tutorial's look at the data (no training)",
                       description="Shapes, dtype, pixel range and images per class, and the "
                                   "tutorial's first figures of the data.")
    p.add_argument("--data-dir", default=None, metavar="DIR", help="as for compare")
    p.add_argument("--out", default=None, metavar="DIR", help="default runs/explore/")
    p = sub.add_parser("bench", help="benchmarks: `bench speed ...`, `bench accuracy ...`",
                       description="Run a benchmark; `fit-vs-tape bench speed --help` lists its "
                                   "options.")
    p.add_argument("benchmark", choices=("speed", "accuracy"))
    p.add_argument("options", nargs=argparse.REMAINDER, help="the benchmark's own options")


def _train_or_compare(args: argparse.Namespace) -> int:
    """`compare` and `train`: every check that needs no TensorFlow first, then train."""
    from fit_vs_tape import rundir

    options.check_run_dir_options(args)
    resuming = None
    if args.resume:
        resuming = rundir.RunDir(Path(args.resume))
        sides, config, source = resuming.read_run(args.command)
        data_dir = args.data_dir or source
        print(f"resuming {args.resume} with its own configuration")
    else:
        config = options.make_config(args)
        sides = [SHORT_NAMES[args.side]] if args.command == "train" else args.sides
        data_dir = args.data_dir
        rundir.check_out(args.out, args.overwrite)  # a run there: refused now, not after the import
    options.check_sides(config, sides)
    options.check_logging(args, config)
    runtime.choose_device(args.device)
    dataset = runtime.load_dataset(data_dir)
    options.checked(lambda: config.check_data(len(dataset.x_train)))
    # --device gpu without a GPU fails here, before any file is written.
    tf = runtime.import_tensorflow(args.device, config.cpu_replicas,
                                   start=config.strategy != "multiworker")
    strategy = runtime.make_strategy(config.strategy, config.cpu_replicas)  # once, at start
    if config.mixed_precision and not tf.config.list_physical_devices("GPU"):
        raise UserError("--mixed-precision: float16 pays only on a GPU, and TensorFlow sees none")
    from fit_vs_tape import runs

    out = (rundir.new_run_dir(resuming.path, option="--resume") if resuming
           else rundir.new_run_dir(args.out, overwrite=args.overwrite))
    print(f"data: {dataset.source}   run directory: {out.path}")
    run = runs.RunOptions(verbose=not args.quiet, resume=bool(args.resume), strategy=strategy,
                          tensorboard=not args.no_tensorboard, profile=args.profile)
    try:
        if args.command == "compare":
            return runs.compare(config, dataset, out, sides, run)
        return runs.train(sides[0], config, dataset, out, run)
    except OSError as e:  # a write failed: a full disk, a lost permission, a directory gone
        hint = ""
        if out.resumable:  # else nothing to resume: the run dir is gone, or done
            hint = (f"; completed epochs are kept in {out.path}; make room (or fix the directory), "
                    f"then {resume_hint(args.command, out.path)}")
        raise WriteFailed(describe_os_error(e) + hint) from None
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM outside training (evaluating, writing)
        stop = RunStopped.of(e)
        if stop.hint or not out.resumable:  # said already, or nothing to resume
            raise stop from None
        raise stop.with_hint(resume_hint(args.command, out.path)) from None


def _trace(args: argparse.Namespace) -> int:
    """`trace`: every check that needs no TensorFlow first, then record each side."""
    from fit_vs_tape import rundir

    config = options.make_config(args)
    rundir.check_out(args.out, args.overwrite)
    if args.resumed_after:
        options.check_resumed_after(args.resumed_after, config)
    runtime.choose_device(args.device)
    dataset = runtime.load_dataset(args.data_dir)
    options.checked(lambda: config.check_data(len(dataset.x_train)))
    runtime.import_tensorflow(args.device)
    from fit_vs_tape.trace import write_trace
    from fit_vs_tape.trace_record import TraceUnsupported

    # A failed trace leaves no directory behind.
    with rundir.disposable_run_dir(args.out, overwrite=args.overwrite) as out:
        print(f"data: {dataset.source}   run directory: {out.path}")
        try:
            text, path = write_trace(out, args.sides, config, dataset,
                                     args.resumed_after, args.width)
        except OSError as e:
            raise WriteFailed(describe_os_error(e)) from None
        except TraceUnsupported as e:  # this TensorFlow or Keras lacks a method the trace watches
            raise UserError(f"trace: {e}") from None
    print(text)
    print(f"\nwrote {path} (every event, with the Keras and loop frames that caused it)")
    return 0


def _short_run(args: argparse.Namespace):
    """`mistakes` and `check`: their configuration and data, checked, then TensorFlow started;
    returns the configuration, the dataset and its first training images and labels."""
    config = options.make_config(args)
    runtime.choose_device(args.device)
    dataset = runtime.load_dataset(args.data_dir)
    n = options.checked(lambda: config.check_data(len(dataset.x_train)))
    runtime.import_tensorflow(args.device)
    return config, dataset, dataset.x_train[:n], dataset.y_train[:n]


def _mistakes(args: argparse.Namespace) -> int:
    """`mistakes`: the gallery, run against fit()."""
    from fit_vs_tape import rundir

    rundir.check_out(args.out, args.overwrite)
    config, dataset, x, y = _short_run(args)
    from fit_vs_tape import gallery

    out = rundir.new_run_dir(args.out, overwrite=args.overwrite)
    print(f"data: {dataset.source}   run directory: {out.path}")
    result = gallery.run_gallery(x, y, dataset.x_test, dataset.y_test, config)
    try:
        written = gallery.write_gallery(result, out)
    except OSError as e:
        raise WriteFailed(describe_os_error(e)) from None
    print(gallery.table(result))
    print(f"\nwrote {', '.join(str(p) for p in written)}")
    return 0


def _check(args: argparse.Namespace) -> int:
    """`check`: a step of yours (or your model's own train_step) against fit()."""
    from fit_vs_tape import user_code

    config, _, x, y = _short_run(args)
    step = None if args.step is None else user_code.load("--step", args.step)
    builder = (user_code.project_builder(config) if args.builder is None
               else user_code.load("--builder", args.builder))
    verdict = user_code.run_check(builder, step, x, y, config)
    print(verdict.summary())
    return 0 if verdict.bit_identical else 1


def _run(args: argparse.Namespace) -> int:
    if args.command in ("train", "compare", "trace", "mistakes", "check"):
        runtime.refuse_keras_caps()
    if args.command == "trace":
        return _trace(args)
    if args.command == "mistakes":
        return _mistakes(args)
    if args.command == "check":
        return _check(args)
    if args.command == "explore":
        from fit_vs_tape.inspect_cmds import explore

        explore(args.data_dir, args.out)
        return 0
    if args.command == "predict":
        runtime.import_tensorflow()
        from fit_vs_tape.inspect_cmds import predict

        predict(args.model, args.index, args.image, args.data_dir, args.out)
        return 0
    return _train_or_compare(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code (tests call it directly)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train" and args.side is None and not args.resume:
        parser.error("train: the following argument is required: --side")
    if args.command == "bench":
        if args.benchmark == "speed":
            from benchmarks.speed import main as bench_main
        else:
            from benchmarks.accuracy import main as bench_main
        return bench_main(args.options)
    return report_errors(_run, args)

