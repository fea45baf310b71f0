"""The command line's options, defined once for every command that takes them.

What a training setting may be is decided by ``shared.config.TrainConfig`` (its rules raise
ValueError); here the options are only spelled, parsed and turned into a TrainConfig, whose
ValueError becomes the one-line ``fit-vs-tape: error: ...``. Options that are not training
settings (the benchmarks' --seeds, --repeats, ...), and the settings a chosen side cannot run
with (check_sides, asking the side), have their rules here, once.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from fit_vs_tape.errors import UserError
from fit_vs_tape.sides import SIDES
from shared.config import DEVICES, MODELS, MODES, STRATEGIES, TrainConfig
from shared.data import CLASS_NAMES

#: The command line's short names of the sides (``train --side``) -> their names (results.json).
SHORT_NAMES = {side.short: name for name, side in SIDES.items()}


class Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line (no usage block) and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def whole_number(text: str) -> int:
    """argparse type: a whole number (what range it may take is TrainConfig's to say)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def number(text: str) -> float:
    """argparse type: a number."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def positive_int(text: str) -> int:
    """argparse type for options that are not training settings: a whole number, at least 1."""
    value = whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def whole_numbers(text: str) -> list[int]:
    """argparse type: comma-separated whole numbers, e.g. 32,256."""
    try:
        return [whole_number(part) for part in text.split(",")]
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {e}") from None


def class_weights(text: str) -> tuple[float, ...]:
    """argparse type: CLASS=WEIGHT pairs, comma-separated (e.g. 0=2,6=3), as a weight for each of
    the ten classes; a class not named weighs 1. (fit()'s own map gives 1 only to the classes
    below the largest one named, and a label above it fails in tf.gather: so all ten are passed
    on.) What a weight may be is TrainConfig's to say."""
    weights = [1.0] * len(CLASS_NAMES)
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            index, weight = int(name), float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r} is not CLASS=WEIGHT, e.g. 6=2") from None
        if not (sep and 0 <= index < len(weights)):
            raise argparse.ArgumentTypeError(f"{part!r}: the class must be 0-{len(weights) - 1}")
        weights[index] = weight
    return tuple(weights)


def names_from(choices: Iterable[str]):
    """argparse type: one or more of ``choices``, comma-separated (e.g. ``--peers jax,torch``),
    returned in the order of ``choices``."""
    choices = list(choices)

    def parse(text: str) -> list[str]:
        names = [part.strip() for part in text.split(",")]
        unknown = [name for name in names if name not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"{unknown[0]!r} is not one of {', '.join(choices)}")
        return [name for name in choices if name in names]

    return parse


def sides(text: str, least: int = 2) -> list[str]:
    """argparse type: ``least`` or more (compare: two) of ``train --side``'s names,
    comma-separated, e.g. high,low; returned as side names in the ladder's order."""
    chosen = [SHORT_NAMES[name] for name in names_from(SHORT_NAMES)(text)]
    if len(chosen) < least:
        raise argparse.ArgumentTypeError(f"{text!r}: compare needs two or more of "
                                         f"{', '.join(SHORT_NAMES)}")
    return chosen


def any_sides(text: str) -> list[str]:
    """argparse type: one or more of ``train --side``'s names, comma-separated (trace)."""
    return sides(text, least=1)


_D = TrainConfig()
#: What each of --model's choices is, for its help.
MODEL_HELP = {"tutorial": "the tutorial's MLP",
              "regularized": "the same with an L2 penalty, batch norm and dropout"}
#: Every training option: name -> (TrainConfig field or None, argparse keyword arguments). A
#: help that states its default ends with it, ``(default ...)``: add_training_options rewrites it
#: for a command that changes the default.
TRAINING_OPTIONS: dict[str, tuple[str | None, dict]] = {
    "--model": ("model", dict(choices=MODELS, default=_D.model,
                              help="; ".join(f"{name}: {MODEL_HELP[name]}" for name in MODELS)
                                   + f" (default {_D.model})")),
    "--mode": ("mode", dict(choices=MODES, default=_D.mode,
                            help="how the loop runs its step; fit() gets the same compilation "
                                 f"choice (default {_D.mode})")),
    "--steps-per-execution": ("steps_per_execution", dict(
        type=whole_number, default=_D.steps_per_execution, metavar="N",
        help="fit(): training steps per call of its compiled function (default 1; mode epoch: "
             "one epoch)")),
    "--jit-compile": (None, dict(action="store_true",
                                 help="compile(jit_compile=True) for fit() and an XLA-compiled loop step: "
                                      "--mode graph becomes xla (xla and epoch already use XLA)")),
    "--mixed-precision": ("mixed_precision", dict(
        action="store_true", help="float16 compute, float32 weights, loss scaling; GPU only")),
    "--class-weight": ("class_weight", dict(
        type=class_weights, default=None, metavar="C=W,...",
        help="fit(class_weight=...): weigh class C's images W times in training, e.g. 6=2 "
             "(classes not named: 1)")),
    "--epochs": ("epochs", dict(type=whole_number, default=_D.epochs,
                                help=f"default {_D.epochs}")),
    "--batch-size": ("batch_size", dict(type=whole_number, default=_D.batch_size,
                                        help=f"default {_D.batch_size}")),
    "--lr": ("learning_rate", dict(type=number, default=_D.learning_rate,
                                   help=f"Adam learning rate (default {_D.learning_rate})")),
    "--hidden-units": ("hidden_units", dict(
        type=whole_number, default=_D.hidden_units, metavar="N",
        help=f"width of the hidden Dense(relu) layer (default {_D.hidden_units}, as the tutorial)")),
    "--seed": ("seed", dict(type=whole_number, default=_D.seed,
                            help=f"initial weights and data order (default {_D.seed})")),
    "--limit": ("limit", dict(type=whole_number, default=None,
                              help="train on the first N training images only (quick runs)")),
    "--validation-split": ("validation_split", dict(
        type=number, default=_D.validation_split, metavar="F",
        help="hold out the last fraction F of the training set for validation (default 0: "
             "none, as in the tutorial)")),
    "--data-dir": (None, dict(default=None, metavar="DIR",
                              help="directory with the four Fashion-MNIST .gz files (default: "
                                   "$FASHION_MNIST_DIR, /usr/share/datasets/fashion-mnist, "
                                   "~/.keras/datasets/fashion-mnist, else download)")),
    "--out": (None, dict(default=None, metavar="DIR",
                         help="run directory to write into (default runs/<timestamp>/)")),
    "--overwrite": (None, dict(action="store_true",
                               help="with an --out DIR that holds a run, stopped or complete: "
                                    "remove that run's files first (default: such a DIR is "
                                    "refused)")),
    "--device": (None, dict(choices=DEVICES, default="auto",
                            help="cpu: hide GPUs; gpu: require one; auto: TensorFlow's choice "
                                 "(default)")),
    "--strategy": ("strategy", dict(
        choices=STRATEGIES, default=_D.strategy,
        help="tf.distribute strategy: one device (default); mirrored over all GPUs or "
             "--cpu-replicas logical CPUs; multiworker as $TF_CONFIG says")),
    "--cpu-replicas": ("cpu_replicas", dict(
        type=whole_number, default=_D.cpu_replicas, metavar="N",
        help="with --strategy mirrored and no GPU: N logical CPU devices (default 1)")),
    "--quiet": (None, dict(action="store_true", help="no progress bars")),
    "--no-tensorboard": (None, dict(action="store_true",
                                    help="write no TensorBoard logs (default: RUN_DIR/tensorboard/)")),
    "--profile": (None, dict(action="store_true",
                             help="trace up to ten steps of the second epoch of every side with "
                                  "TensorFlow's profiler, beside the TensorBoard logs")),
    "--resume": (None, dict(default=None, metavar="RUN_DIR",
                            help="carry on an interrupted run from its last completed epoch, "
                                 "with that run's own configuration (other training options "
                                 "are not used)")),
}


def add_training_options(parser: argparse.ArgumentParser, names: Iterable[str] = TRAINING_OPTIONS,
                         **defaults) -> None:
    """Add the training options ``names`` (all by default) to ``parser``; ``defaults`` overrides
    a default by destination name, e.g. ``epochs=3``."""
    for name in names:
        kwargs = dict(TRAINING_OPTIONS[name][1])
        dest = _dest(name)
        if dest in defaults:
            kwargs["default"] = defaults[dest]
            text = kwargs["help"]
            kwargs["help"] = (f"default {defaults[dest]}" if text.startswith("default ") else
                              text.split(" (default")[0] + f" (default {defaults[dest]})")
        parser.add_argument(name, **kwargs)


def make_config(args: argparse.Namespace, **settings) -> TrainConfig:
    """The TrainConfig the parsed training options (and ``settings``) describe; a setting its
    rules forbid is a UserError."""
    fields = {field: getattr(args, _dest(name)) for name, (field, _) in TRAINING_OPTIONS.items()
              if field and hasattr(args, _dest(name))}
    if getattr(args, "jit_compile", False):
        if fields.get("mode") == "eager":
            raise UserError("--jit-compile: cannot compile with --mode eager")
        if fields.get("mode") == "graph":
            fields["mode"] = "xla"
    return checked(lambda: TrainConfig(**{**fields, **settings}))


def check_sides(config: TrainConfig, sides: Iterable[str]) -> None:
    """The rule of the sides chosen with these settings: a side that cannot run under
    --strategy multiworker (fit()'s) is refused before anything slow."""
    if config.strategy == "multiworker" and not all(SIDES[side].runs_multiworker for side in sides):
        raise UserError("--strategy multiworker: Keras 3's fit() does not run under "
                        "MultiWorkerMirroredStrategy (keras-team/keras#20585); the loop "
                        "does: fit-vs-tape train --side low --strategy multiworker")


def check_logging(args: argparse.Namespace, config: TrainConfig) -> None:
    """The rule of --profile, which is not a training setting: it traces the second epoch into
    the TensorBoard logs."""
    if args.profile and (args.no_tensorboard or config.epochs < 2):
        raise UserError("--profile: traces the second epoch into the TensorBoard logs; it needs "
                        "--epochs 2 or more and no --no-tensorboard")


#: The training options `trace` takes: it records a few steps of one run on one device.
TRACE_OPTIONS = ("--model", "--class-weight", "--mode", "--steps-per-execution", "--jit-compile",
                 "--epochs", "--batch-size",
                 "--lr", "--hidden-units", "--seed", "--limit", "--validation-split", "--data-dir",
                 "--out", "--overwrite", "--device")
#: `trace`'s defaults: two epochs of three steps, enough to see the first trace and what repeats.
TRACE_DEFAULTS = dict(limit=96, epochs=2, batch_size=32)


#: The training options `mistakes` and `check` take: one short run on one device.
CHECK_OPTIONS = ("--model", "--mode", "--epochs", "--batch-size", "--hidden-units", "--seed",
                 "--limit", "--data-dir", "--device")
GALLERY_OPTIONS = (*CHECK_OPTIONS, "--out", "--overwrite")  # the checker writes nothing
#: The gallery's defaults: the regularized model (dropout, batch norm and L2 are where mistakes
#: show), 2 epochs of 3,200 images; the checker's: 2 epochs of 8 steps.
GALLERY_DEFAULTS = dict(model="regularized", epochs=2, limit=3200)
CHECK_DEFAULTS = dict(model="regularized", epochs=2, limit=256)


def check_run_dir_options(args: argparse.Namespace) -> None:
    """The rules of --out, --overwrite and --resume together, which are not training settings:
    a resumed run carries on in its own directory, so it takes neither of the others."""
    if getattr(args, "resume", None) is None:
        return
    if args.out is not None:
        raise UserError(f"--out {args.out}: a resumed run carries on in its own directory, "
                        f"--resume {args.resume}; leave --out out")
    if args.overwrite:
        raise UserError(f"--overwrite: --resume {args.resume} carries that run on; to start "
                        f"it afresh, use --out {args.resume} --overwrite instead")


def check_resumed_after(resumed_after: int, config: TrainConfig) -> None:
    """The rule of `trace --resumed-after N`, which is not a training setting: at least one
    epoch before the interruption and one after it."""
    if not 1 <= resumed_after < config.epochs:
        raise UserError(f"--resumed-after {resumed_after}: must be at least 1 and less than "
                        f"--epochs {config.epochs}")


def _dest(name: str) -> str:
    """argparse's attribute for option ``name``: --batch-size -> batch_size."""
    return name[2:].replace("-", "_")


def checked(rule):
    """Call ``rule()`` (a TrainConfig rule); its ValueError becomes a UserError."""
    try:
        return rule()
    except ValueError as e:
        raise UserError(str(e)) from None
