"""Where does a loop leave fit()? The engine of ``fit-vs-tape check`` and ``fit-vs-tape mistakes``.

fit() and a step or loop of yours train from one snapshot of initial weights on the same batches
in the same order (shared/order.py). After every step both models' variables are copied out; the
logs the callbacks got and the order they were called in are kept. The first step at which a
variable differs (by any bit), the first call and the first log that differ are the verdict.
``check_step`` does it for a step of yours and names a known mistake (low_level/mistakes.py)
when your weights follow that mistake's, bit for bit, at every step.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from fit_vs_tape.callbacks import EpochTimer
from low_level import mistakes as gallery
from low_level.train import make_metrics, train_step
from shared.config import TrainConfig
from shared.model import max_abs_diff
from shared.order import normalize, steps_per_epoch, train_batches

#: How a step is called: the signature of low_level/train.py's train_step.
STEP_ARGUMENTS = ("model", "optimizer", "loss_fn", "metrics", "images", "labels")


class Recorder(EpochTimer):
    """Every step's variables and logs, each epoch's logs and seconds (``epoch_seconds``, as
    EpochTimer times them), and the callback structure: which of a callback's training methods
    were called, in what order, with which epoch or batch number (``calls``). On either side.
    ``copy_weights=False``: no variables (a timed run: copying every variable out after every
    step costs time, and a sync)."""

    def __init__(self, *, copy_weights: bool = True) -> None:
        super().__init__()
        self.copy_weights = copy_weights
        self.weights: list[list[np.ndarray]] = []
        self.logs: list[dict[str, float]] = []
        self.epochs: list[dict[str, float]] = []
        self.calls: list[str] = []
        self.no_logs: str | None = None
        """Why this side's logs cannot be compared with fit()'s (a step that returns no dict of
        metric results), or None."""

    def on_train_begin(self, logs=None):
        self.calls.append("on_train_begin()")

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self.calls.append(f"on_epoch_begin({epoch})")

    def on_train_batch_begin(self, batch, logs=None):
        self.calls.append(f"on_train_batch_begin({batch})")

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(f"on_train_batch_end({batch})")
        if self.copy_weights:
            self.weights.append([v.numpy() for v in self.model.variables])
        self.logs.append({k: float(v) for k, v in (logs or {}).items()})

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        self.calls.append(f"on_epoch_end({epoch})")
        self.epochs.append({k: float(v) for k, v in (logs or {}).items()})

    def on_train_end(self, logs=None):
        self.calls.append("on_train_end()")


@dataclass(frozen=True)
class Divergence:
    """The first step at which the weights differ from fit()'s."""

    step: int
    """1-based, counted over all epochs."""
    epoch: int
    """1-based."""
    variable: str
    """The variable by its layer's place in ``model.layers`` and its own name
    (``layers[4].kernel``): the same on every build of the model (see variable_names)."""
    max_abs: float
    """Its largest absolute difference at that step (inf where one side is NaN)."""


@dataclass
class Verdict:
    """What a comparison with fit() found."""

    steps: int
    """Steps compared."""
    first: Divergence | None
    """The first weight difference, or None: bit-identical at every step."""
    logs: str | None
    """The first difference in what the callbacks got, or None."""
    calls: str | None
    """The first difference in the callback structure (which methods were called, in what
    order, with which numbers), or None."""
    max_abs_by_step: list[float]
    """The largest weight difference at each step (for the figure)."""
    traces: int | None = None
    """How many times the step was traced (None: run eagerly, or not counted)."""
    explained_by: str | None = None
    """The gallery mistake whose weights this follows bit for bit at every step, if any."""
    explained_logs: str | None = None
    """Where the logs differ from that mistake's (the same weights reached another way), or None."""
    logs_not_compared: str | None = None
    """Why the logs were not compared (the step returns no dict of metric results), or None."""

    @property
    def bit_identical(self) -> bool:
        """Weights equal at every step, and the callbacks called alike and given the same logs
        (where the step returns logs to compare)."""
        return self.first is None and self.logs is None and self.calls is None

    def summary(self) -> str:
        """The verdict in a few lines."""
        unlogged = f"\nthe logs were not compared: {self.logs_not_compared}" if self.logs_not_compared else ""
        if self.bit_identical:
            if self.logs_not_compared:
                return (f"bit-identical to fit(): every variable at each of {self.steps} steps and "
                        f"every callback call{unlogged}")
            return (f"bit-identical to fit(): every variable at each of {self.steps} steps, every "
                    f"callback call and every log")
        lines = []
        if self.first is None:
            lines.append(f"the weights are bit-identical to fit()'s at each of {self.steps} steps")
        else:
            d = self.first
            lines.append(f"first divergence from fit(): step {d.step} (epoch {d.epoch}), variable "
                         f"{d.variable}, by {d.max_abs:.3g}")
        if self.calls:
            lines.append(f"the callbacks were called otherwise: {self.calls}")
        if self.logs:
            lines.append(f"what the callbacks got differs: {self.logs}")
        if self.explained_by:
            mistake = next(m for m in gallery.MISTAKES if m.name == self.explained_by)
            lines.append(f"this is the known mistake {mistake.name!r}: {mistake.title} "
                         f"(low_level/mistakes.py)")
            if self.explained_logs:
                lines.append(f"the same weights at every step, reached another way: your logs differ "
                             f"from that mistake's ({self.explained_logs})")
        return "\n".join(lines) + unlogged


def compare(reference: Recorder, other: Recorder, names: list[str], steps_per: int) -> Verdict:
    """``other`` against fit()'s ``reference``, step by step. A seed generator's state is a
    counter, not a weight: it counts as a difference, but its size is not a weight's, so it is
    named only when no weight differs, and the sizes by step are the weights' alone."""
    is_weight = np.array(["seed_generator" not in name for name in names])
    first, by_step = None, []
    for i, (ref, got) in enumerate(zip(reference.weights, other.weights)):
        sizes = np.array([max_abs_diff(a, b) for a, b in zip(ref, got)])
        weights = np.where(is_weight[:len(sizes)], sizes, 0.0)
        by_step.append(float(weights.max(initial=0.0)))
        if first is None and (sizes > 0).any():
            worst = int(np.argmax(weights)) if (weights > 0).any() else int(np.argmax(sizes))
            first = Divergence(i + 1, i // steps_per + 1, names[worst], float(sizes[worst]))
    logs = None
    if len(reference.weights) != len(other.weights):
        logs = f"fit() ran {len(reference.weights)} steps, the other {len(other.weights)}"
    elif other.no_logs is None:
        logs = first_logs_difference(reference, other)
    return Verdict(len(other.weights), first, logs, _first_call_difference(reference.calls, other.calls),
                   by_step, logs_not_compared=other.no_logs)


def first_logs_difference(reference: Recorder, other: Recorder, who: str = "fit()") -> str | None:
    """The first step, or epoch's end, at which the callbacks got other logs; or None."""
    for i, (ref, got) in enumerate(zip(reference.logs, other.logs)):
        if ref != got:
            return _first_log_difference(f"step {i + 1}", ref, got, who)
    for epoch, (ref, got) in enumerate(zip(reference.epochs, other.epochs)):
        if ref != got:
            return _first_log_difference(f"epoch {epoch + 1}'s end", ref, got, who)
    return None


def _first_call_difference(ref: list[str], got: list[str]) -> str | None:
    """Where two callback structures first part, or None if they never do."""
    for i, (a, b) in enumerate(zip(ref, got)):
        if a != b:
            return f"call {i + 1}: fit() called {a}, the other {b}"
    if len(ref) != len(got):
        shorter = min(len(ref), len(got))
        longer, who = (ref, "fit()") if len(ref) > len(got) else (got, "the other")
        return f"after call {shorter} only {who} went on, with {longer[shorter]}"
    return None


def _first_log_difference(where: str, ref: dict, got: dict, who: str = "fit()") -> str:
    if set(ref) != set(got):
        return f"at {where} {who} logged {sorted(ref)}, the other {sorted(got)}"
    key = next(k for k in ref if not np.array_equal(ref[k], got[k], equal_nan=True))
    return f"at {where} {key} is {_two_numbers(got[key], ref[key], who)}"


def _two_numbers(got: float, ref: float, who: str) -> str:
    """Two different numbers printed so that they look different: six digits where those
    suffice, else every digit of each and how many float32 steps (ulps) lie between them."""
    short = f"{got:.6g}, {who}'s {ref:.6g}"
    if f"{got:.6g}" != f"{ref:.6g}":
        return short
    ulps = _ulps_apart(got, ref)
    apart = f", {ulps} ulp{'s' if ulps != 1 else ''} apart in float32" if ulps else ""
    return f"{got!r}, {who}'s {ref!r}{apart}"


def _ulps_apart(a: float, b: float) -> int:
    """How many float32 values lie from ``a`` to ``b`` (0 if either is not finite)."""
    if not (np.isfinite(a) and np.isfinite(b)):
        return 0

    def ordered(v: float) -> int:  # float32 bits as an integer that orders like the float
        i = int(np.array(v, np.float32).view(np.int32))
        return i if i >= 0 else -(i & 0x7FFFFFFF)

    return abs(ordered(a) - ordered(b))


# -- the two sides ---------------------------------------------------------------------------------


def fresh(thing):
    """A new object like ``thing`` (an optimizer, loss or metric given to compile()), so that
    each side gets its own state; strings and functions are returned as they are."""
    if hasattr(thing, "get_config") and hasattr(type(thing), "from_config"):
        return type(thing).from_config(thing.get_config())
    return thing


def snapshot(build_model: Callable[[], keras.Model], seed: int) -> list[np.ndarray]:
    """The initial state every side starts from: a model built once from ``seed``."""
    keras.utils.set_random_seed(seed)
    return [v.numpy() for v in checked_model(build_model).variables]


def checked_model(build_model: Callable[[], keras.Model]) -> keras.Model:
    """``build_model()``, refused with a ValueError unless it is a built keras.Model."""
    model = build_model()
    if not isinstance(model, keras.Model):
        raise ValueError(f"the model builder returned {type(model).__name__}, not a keras.Model")
    if not model.built:
        raise ValueError("the model builder returned a model with no weights yet: give it an "
                         "Input (keras.Input(shape=(28, 28))) so it is built")
    return model


def from_snapshot(build_model: Callable[[], keras.Model], weights: list[np.ndarray]) -> keras.Model:
    """A new model holding ``weights``."""
    model = checked_model(build_model)
    for variable, value in zip(model.variables, weights, strict=True):
        variable.assign(value)
    return model


def check_inputs(model: keras.Model, x: np.ndarray) -> None:
    """A ValueError unless the model can be called on a batch of images like ``x``'s, as the
    steps will call it (float32 in [0, 1]). Called, not compared by shape: an input with a None
    dimension (an LSTM over the image's rows, ``Input((None, 28))``) takes 28 x 28 images."""
    try:
        model(normalize(x[:2]), training=False)
    except Exception as e:  # whatever Keras raises for inputs it cannot take
        message = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise ValueError(f"the model cannot take the data's images of shape {tuple(x.shape[1:])}: "
                         f"{type(e).__name__}: {message}") from None


def check_signature(step: Callable) -> None:
    """A ValueError unless ``step`` can be called as low_level/train.py's train_step."""
    try:
        inspect.signature(step).bind(*STEP_ARGUMENTS)
    except TypeError:
        raise ValueError(f"train_step{inspect.signature(step)}: a step is called as "
                         f"train_step({', '.join(STEP_ARGUMENTS)}), as low_level/train.py's") from None
    except ValueError:  # a builtin or other object without a signature
        raise ValueError(f"{step!r} is not a function that can be called as a train step") from None


def loss_object(identifier) -> keras.losses.Loss:
    """The loss function compile() makes of ``identifier``: a name or function is wrapped so that
    it averages over the batch (keras/src/trainers/compile_utils.py get_loss:
    `loss_obj = losses_module.LossFunctionWrapper(loss_obj, name=loss_name)`); called bare, the
    function would return one loss per image."""
    # Keras' own wrapper, as compile() uses it: it is not in keras.losses' public names.
    from keras.src.losses.losses import LossFunctionWrapper

    loss = keras.losses.get(fresh(identifier))
    if not isinstance(loss, keras.losses.Loss):
        name = identifier if isinstance(identifier, str) else getattr(loss, "__name__", "loss")
        loss = LossFunctionWrapper(loss, name=name)
    return loss


def run_fit(build_model, compile_args: dict, weights, x, y, config: TrainConfig, *,
            plain: bool = False, recorder: Recorder | None = None) -> tuple[keras.Model, Recorder]:
    """fit() from ``weights`` on the shared batches, recording every step. ``plain``: with
    Keras' own train_step even if the builder's class has its own (the reference for one)."""
    model = from_snapshot(build_model, weights)
    if plain:  # the same layers and variables, in a Functional model with Keras' train_step
        model = keras.Model(model.inputs, model.outputs)
    model.compile(**{k: fresh(v) for k, v in compile_args.items()}, jit_compile=config.jit_compile,
                  run_eagerly=config.mode == "eager")
    recorder = recorder or Recorder()
    model.fit(train_batches(x, y, config.seed, config.batch_size, range(config.epochs)),
              epochs=config.epochs, steps_per_epoch=steps_per_epoch(len(x), config.batch_size),
              shuffle=False, verbose=0, callbacks=[recorder])
    return model, recorder


def run_loop(build_model, compile_args: dict, weights, x, y, config: TrainConfig, *,
             step: Callable = train_step, loop: Callable = gallery.loop,
             recorder: Recorder | None = None) -> tuple[keras.Model, Recorder, int]:
    """``loop`` training ``step`` from ``weights`` on ``x``, ``y``, recording every step; also
    how many times the step's Python body ran (its traces, in a compiled mode)."""
    model = from_snapshot(build_model, weights)
    optimizer = keras.optimizers.get(fresh(compile_args.get("optimizer", "rmsprop")))
    loss_fn = loss_object(compile_args["loss"])
    calls = [0]
    recorder = recorder or Recorder()

    def counted(*args, **kwargs):
        calls[0] += 1
        returned = step(*args, **kwargs)
        if isinstance(returned, Mapping):
            return returned
        # fit()'s CallbackList takes a dict of metric results; a step that returns the loss (as
        # keras.io's "Writing a training loop from scratch" does) or nothing gives no logs.
        recorder.no_logs = (f"the step returns {_what(returned)}, not a dict of metric results as "
                            f"fit()'s train_step does; return {{name: metric.result() for name, "
                            f"metric in metrics.items()}} to compare them")
        return {}

    callbacks = keras.callbacks.CallbackList([recorder], model=model)
    loop(counted, gallery.Parts(model, optimizer, loss_fn, make_metrics()), x, y, config, callbacks)
    return model, recorder, calls[0]


def _what(value) -> str:
    """A step's return value in a few words."""
    if value is None:
        return "nothing"
    if isinstance(value, (tf.Tensor, tf.Variable, np.ndarray, float, int)):
        return "a single value (the loss?)"
    return f"a {type(value).__name__}"


def variable_names(model: keras.Model) -> list[str]:
    """Each variable named by its layer's place in ``model.layers`` and its own name, in
    ``model.variables``' order: ``layers[4].kernel``, ``layers[3].seed_generator_state``,
    ``layers[0].lstm_cell/kernel``. Keras numbers layer names per process (``dense_5`` on a third
    build of the model that named it ``dense_1``); a place is the same on every build."""
    names = {}
    for i, layer in enumerate(model.layers):
        for v in layer.variables:
            path = getattr(v, "path", v.name)
            own = path.removeprefix(f"{layer.path}/") if path.startswith(f"{layer.path}/") else v.name
            names.setdefault(id(v), f"layers[{i}].{own}")
    prefix = f"{model.name}/"
    return [names.get(id(v), getattr(v, "path", v.name).removeprefix(prefix)) for v in model.variables]


def check_step(build_model: Callable[[], keras.Model], compile_args: dict,
               step: Callable | None = None, *, x: np.ndarray, y: np.ndarray,
               config: TrainConfig | None = None, gallery_match: bool = True) -> Verdict:
    """Train your step against fit() from the same start on the same batches; say where it
    leaves fit(), if anywhere.

    ``build_model``: makes a new, built keras.Model (called once per side). ``compile_args``:
    what you give compile() (optimizer, loss, metrics). ``step``: a function called as
    low_level/train.py's ``train_step(model, optimizer, loss_fn, metrics, images, labels)``,
    run in that file's loop (metrics reset each epoch, compiled as ``config.mode`` says); or
    None, when the builder's model class has its own ``train_step``, which fit() then drives.
    ``x``, ``y``: uint8 images and labels. ``config``: epochs, batch size, seed and mode
    (default: 2 epochs, the rest TrainConfig's defaults). With ``gallery_match``, a divergence
    is also checked against each mistake of low_level/mistakes.py that runs in the same loop.
    """
    config = config or TrainConfig(epochs=2)
    if step is not None:
        check_signature(step)
    probe = checked_model(build_model)
    check_inputs(probe, x)
    own_step = type(probe).train_step is not keras.Model.train_step
    if step is None and not own_step:
        raise ValueError("no step given, and the model's class has no train_step of its own: "
                         "give a step (--step FILE.py:NAME; step=... in Python), or a builder "
                         "whose model subclasses keras.Model with a train_step")
    weights = snapshot(build_model, config.seed)
    reference_model, reference = run_fit(build_model, compile_args, weights, x, y, config,
                                         plain=own_step)
    names, steps_per = variable_names(reference_model), steps_per_epoch(len(x), config.batch_size)
    if step is None:  # fit() driving the model's own train_step
        _, mine = run_fit(build_model, compile_args, weights, x, y, config)
        return compare(reference, mine, names, steps_per)
    _, mine, calls = run_loop(build_model, compile_args, weights, x, y, config, step=step)
    verdict = compare(reference, mine, names, steps_per)
    verdict.traces = None if config.mode == "eager" else calls
    if gallery_match and not verdict.bit_identical:
        verdict.explained_by, verdict.explained_logs = _match(build_model, compile_args, weights, x,
                                                              y, config, mine, verdict)
    return verdict


def _match(build_model, compile_args, weights, x, y, config, mine: Recorder,
           verdict: Verdict) -> tuple[str | None, str | None]:
    """The step mistake whose weights follow ``mine``'s bit for bit at every step, if one does,
    and where the logs differ from that mistake's (None: they do not). Where the weights are
    fit()'s own, the weights say nothing: the mistake must match the logs and calls too."""
    for mistake in gallery.MISTAKES:
        if mistake.loop is not gallery.loop:
            continue  # loop mistakes cannot be a step's
        if mistake.eager and config.mode != "eager":
            continue  # it runs only eagerly (traced, optimizer_in_step raises at its first call)
        with warnings.catch_warnings():  # the logits mistake's warning is the gallery's, not yours
            warnings.simplefilter("ignore", UserWarning)
            _, theirs, _ = run_loop(build_model, compile_args, weights, x, y, config, step=mistake.step)
        same = len(theirs.weights) == len(mine.weights) and all(
            all(np.array_equal(a, b, equal_nan=True) for a, b in zip(t, m))
            for t, m in zip(theirs.weights, mine.weights))
        if not same or theirs.calls != mine.calls:
            continue
        logs = None if mine.no_logs else first_logs_difference(theirs, mine, who="the mistake")
        if verdict.first is not None or logs is None:
            return mistake.name, logs
    return None, None
