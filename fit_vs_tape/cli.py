"""The `fit-vs-tape` command. TensorFlow is imported only by the commands that train."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from shared.config import MODES, TrainConfig
from shared.errors import RunInterrupted, UserError

PROG = "fit-vs-tape"


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line (no usage block) and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be 0 or more")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _add_training_options(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p.add_argument("--mode", choices=MODES, default=d.mode,
                   help="how the loop runs its step; fit() gets the same compilation choice "
                        f"(default {d.mode})")
    p.add_argument("--steps-per-execution", type=positive_int, default=1, metavar="N",
                   help="fit(): training steps per call of its compiled function (default 1; "
                        "mode epoch: one epoch)")
    p.add_argument("--jit-compile", action="store_true",
                   help="fit(jit_compile=True) and an XLA-compiled loop step: --mode graph "
                        "becomes xla (xla and epoch already compile with XLA)")
    p.add_argument("--mixed-precision", action="store_true",
                   help="float16 compute, float32 weights, loss scaling; GPU only")
    p.add_argument("--epochs", type=positive_int, default=d.epochs, help=f"default {d.epochs}")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size,
                   help=f"default {d.batch_size}")
    p.add_argument("--lr", type=_number, default=d.learning_rate,
                   help=f"Adam learning rate (default {d.learning_rate})")
    p.add_argument("--seed", type=_non_negative_int, default=d.seed,
                   help=f"initial weights and data order (default {d.seed})")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="train on the first N training images only (quick runs)")
    p.add_argument("--validation-split", type=_number, default=0.0, metavar="F",
                   help="hold out the last fraction F of the training set for validation "
                        "(default 0: none, as in the tutorial)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="directory with the four Fashion-MNIST .gz files "
                        "(default: $FASHION_MNIST_DIR, /usr/share/datasets/fashion-mnist, "
                        "~/.keras/datasets/fashion-mnist, else download)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="run directory to write into (default runs/<timestamp>/)")
    p.add_argument("--device", choices=("cpu", "gpu", "auto"), default="auto",
                   help="cpu: hide GPUs; gpu: require one; auto: TensorFlow's choice (default)")
    p.add_argument("--strategy", choices=("default", "mirrored", "multiworker"), default="default",
                   help="tf.distribute strategy: one device (default); mirrored over all GPUs or "
                        "--cpu-replicas logical CPUs; multiworker as $TF_CONFIG says")
    p.add_argument("--cpu-replicas", type=positive_int, default=1, metavar="N",
                   help="with --strategy mirrored and no GPU: N logical CPU devices (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="carry on an interrupted run from its last completed epoch, with that "
                        "run's own configuration (other training options are not used)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = _Parser(
        prog=PROG,
        description="Train the TensorFlow tutorial's Fashion-MNIST classifier with Keras' fit() "
                    "and with a hand-written GradientTape loop, and prove they compute the same.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)
    p = sub.add_parser("compare", help="train both ways from the same start and compare (main job)",
                       description="Train fit() and the GradientTape loop from the same initial "
                                   "weights on the same batches; compare weights, predictions, time.")
    _add_training_options(p)
    p = sub.add_parser("train", help="train one implementation",
                       description="Train one implementation and save model.keras, results.json.")
    p.add_argument("--impl", choices=("high", "low"),
                   help="high: compile + fit; low: GradientTape loop (required unless --resume)")
    _add_training_options(p)
    p = sub.add_parser("predict", help="classify one image with a saved model",
                       description="Classify one test image or one PNG/JPEG file with a saved "
                                   "model; print the top classes and save the probability figure.")
    p.add_argument("--model", default=None, metavar="PATH",
                   help="a .keras file (default: the latest run's model under runs/)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--index", type=_non_negative_int, help="a test-set image, 0-9999")
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
    return parser


def _config(args: argparse.Namespace) -> TrainConfig:
    if args.jit_compile and args.mode == "eager":
        raise UserError("--jit-compile: cannot compile with --mode eager")
    return TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr, seed=args.seed,
        limit=args.limit, validation_split=args.validation_split, mode="xla" if args.jit_compile and args.mode == "graph" else args.mode,
        steps_per_execution=args.steps_per_execution, mixed_precision=args.mixed_precision,
        strategy=args.strategy, cpu_replicas=args.cpu_replicas,
    )


def _run(args: argparse.Namespace) -> int:
    if args.command == "explore":
        from fit_vs_tape.inspect_cmds import explore

        explore(args.data_dir, args.out)
        return 0
    if args.command == "predict":
        from shared.runtime import import_tensorflow

        import_tensorflow()
        from fit_vs_tape.inspect_cmds import predict

        predict(args.model, args.index, args.image, args.data_dir, args.out)
        return 0
    if args.resume:
        from fit_vs_tape.runs import read_run

        impl, config, source = read_run(Path(args.resume), args.command)
        args.impl = {"high_level": "high", "low_level": "low"}.get(impl, getattr(args, "impl", None))
        data_dir = args.data_dir or source
        print(f"resuming {args.resume} with its own configuration")
    else:
        config = _config(args)  # validate everything before the slow import
        data_dir = args.data_dir
    if config.strategy == "multiworker" and (args.command == "compare" or args.impl == "high"):
        raise UserError("--strategy multiworker: Keras 3's fit() does not run under "
                        "MultiWorkerMirroredStrategy (keras-team/keras#20585); the loop does: "
                        "fit-vs-tape train --impl low --strategy multiworker")
    from shared import data
    from shared.results import new_run_dir

    dataset = data.load(data_dir)
    if config.limit is not None and config.limit > len(dataset.x_train):
        raise UserError(f"--limit {config.limit}: the training set has {len(dataset.x_train)} images")
    n_train = int((config.limit or len(dataset.x_train)) * (1 - config.validation_split))
    if config.batch_size > n_train:
        raise UserError(f"--batch-size {config.batch_size}: larger than the {n_train} training images")
    from shared.runtime import import_tensorflow

    # --device gpu without a GPU fails here, before any file is written.
    tf = import_tensorflow(args.device, config.cpu_replicas,
                           start=config.strategy != "multiworker")
    from shared.distribute import make_strategy

    strategy = make_strategy(config.strategy, config.cpu_replicas)  # once, at program start
    if config.mixed_precision and not tf.config.list_physical_devices("GPU"):
        raise UserError("--mixed-precision: float16 pays only on a GPU, and TensorFlow sees none")
    out = new_run_dir(args.resume or args.out)
    from fit_vs_tape import runs

    print(f"data: {dataset.source}   run directory: {out}")
    if args.command == "compare":
        return runs.compare(config, dataset, out, not args.quiet, bool(args.resume), strategy)
    return runs.train({"high": "high_level", "low": "low_level"}[args.impl], config, dataset, out,
                      not args.quiet, bool(args.resume), strategy)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code (tests call it directly)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train" and args.impl is None and not args.resume:
        parser.error("train: the following argument is required: --impl")
    if args.command == "bench":
        if args.benchmark == "speed":
            from benchmarks.speed import main as bench_main
        else:
            from benchmarks.accuracy import main as bench_main
        return bench_main(args.options)
    try:
        return _run(args)
    except UserError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outside training (loading, evaluating): nothing half-written
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except RunInterrupted as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 130
