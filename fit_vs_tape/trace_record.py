"""The trace's instrumentation: what `fit-vs-tape trace` watches while one side trains.

It watches by observing (``sys.setprofile``: Python reports each call and return of a watched
function; nothing of Keras or TensorFlow is replaced):

- ``keras.callbacks.CallbackList``'s hooks: where fit() or the loop dispatches to the callbacks;
- ``tf.function``'s ``__call__``: each call of a compiled function, and how many traces it made;
- ``keras.Variable``'s ``__init__``: each variable created, with the layer, metric, optimizer or
  seed generator whose method made it;
- ``keras.optimizers.Optimizer.apply``, and ``reset_state`` of every metric class with its own;
- device-to-host reads (syncs): ``float()``, ``.numpy()``, ``repr()`` of an eager tensor go
  through TensorFlow's private ``EagerTensor._numpy``. ``np.array()``, ``np.asarray()`` and
  ``np.asanyarray()`` of a tensor do not (NumPy takes the buffer, in C; Keras 3.15's
  ``convert_to_numpy`` reads the logs so), and a profiler cannot see a C function's argument: these
  three NumPy functions alone are wrapped. A read by another way (``np.stack``, ``np.array`` of a
  list of tensors, ``memoryview``) is not seen.

A recording callback, put first in the callbacks, records which hook each callback receives, with
which batch or epoch, its logs' keys and the ``params``. Each event keeps the frames of the
installed Keras (``keras/src/``) and of the teaching code that led to it, innermost first, and
``driver``: the statement of fit() or of the loop it happened under. Nothing touches an argument
or a result, so training is bit-identical with and without the trace (tests/test_trace.py checks
every weight, in every mode, on all three sides). Nothing here imports the application.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import linecache
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

#: The installed Keras' source tree, and the teaching code's packages: the frames worth naming.
KERAS_SRC = Path(keras.__file__).resolve().parent / "src"
PROJECT = Path(__file__).resolve().parent.parent
TEACHING = tuple(PROJECT / name for name in ("high_level", "low_level", "shared"))
#: Keras frames that only pass a call on (a decorator's wrapper): never the cause of anything.
PASS_THROUGH = ("utils/traceback_utils.py",)
#: The loops the trace follows: fit()'s and the hand-written one's (file, function).
DRIVERS = (("keras/src/backend/tensorflow/trainer.py", "fit"), ("low_level/train.py", "train"))
#: CallbackList's hooks, in the names a callback receives them by.
HOOKS = tuple(f"on_{what}_{when}" for what in ("train", "epoch", "train_batch", "test",
                                                 "test_batch", "predict", "predict_batch")
              for when in ("begin", "end"))
#: Hooks given a batch or an epoch number (the others get nothing but logs).
NUMBERED = tuple(hook for hook in HOOKS if "batch" in hook or "epoch" in hook)
#: NumPy's functions that turn a tensor into an array through its buffer, not through _numpy.
NUMPY_CONSTRUCTORS = ("array", "asarray", "asanyarray")
#: What owns a Keras variable: the object whose method created it.
OWNERS = (keras.layers.Layer, keras.metrics.Metric, keras.optimizers.Optimizer,
          keras.random.SeedGenerator)


class TraceUnsupported(RuntimeError):
    """The installed TensorFlow or Keras lacks a method the trace watches, or the trace could not
    read what one of them was given."""


@functools.cache
def where(path: str) -> str | None:
    """``path`` relative to what a reader opens (``keras/src/...``, ``low_level/...``), or None
    for a file that is neither the installed Keras nor the teaching code."""
    resolved = Path(path).resolve()
    if resolved.is_relative_to(KERAS_SRC):
        relative = resolved.relative_to(KERAS_SRC).as_posix()
        return None if relative in PASS_THROUGH else f"keras/src/{relative}"
    for package in TEACHING:
        if resolved.is_relative_to(package):
            return resolved.relative_to(PROJECT).as_posix()
    return None


@dataclass
class Recorder:
    """The events of one side's run, in order, and the scopes open now (a callback dispatch, a
    compiled call, an optimizer apply, a metric reset): each event names the innermost as
    ``parent``."""

    events: list[dict] = field(default_factory=list)
    open_scopes: list[tuple[object, dict]] = field(default_factory=list)  # (frame, event)
    thread: int = field(default_factory=threading.get_ident)
    failures: list[str] = field(default_factory=list)
    """What the profile function could not read (it records nothing rather than break training)."""
    in_numpy: int = 0
    """Inside a NumPy wrapper: a ``_numpy`` under it (NumPy's fallback) is the same read."""

    def add(self, kind: str, frame, **details) -> dict | None:
        """Record an event of ``kind`` with ``details``, caused by the code running ``frame``; None
        if it happened on another thread (the recording callback and NumPy's wrappers could fire on
        any; none does in fit() on TensorFlow, whose callbacks run synchronously, nor in the loop)."""
        if threading.get_ident() != self.thread:
            return None
        stack = self._stack(frame)
        driver = next((f for f in reversed(stack) if (f["file"], f["function"]) in DRIVERS), None)
        event = {"seq": len(self.events), "kind": kind, **details,
                 "parent": self.open_scopes[-1][1]["seq"] if self.open_scopes else None,
                 "in_trace": tf.inside_function(), "driver": driver, "stack": stack}
        self.events.append(event)
        return event

    def _stack(self, frame) -> list[dict]:
        """The Keras and teaching-code frames from ``frame`` outwards, innermost first."""
        frames = []
        while frame is not None:
            code = frame.f_code
            if name := where(code.co_filename):
                frames.append({"file": name, "function": code.co_name, "line": frame.f_lineno,
                               "code": linecache.getline(code.co_filename, frame.f_lineno).strip()})
            frame = frame.f_back
        return frames


@dataclass(frozen=True)
class Watch:
    """A function the trace observes: the event it makes, and whether that event is a scope
    (its inner events are its children until the function returns)."""

    kind: str
    details: Callable[[dict], dict]
    """The event's details, from the function's local variables at its call (at its return if
    ``at_return``)."""
    scope: bool = True
    at_return: bool = False
    """Record at the return, not the call (a variable: its name is known once made)."""


def _owner(frame) -> str:
    """``SparseCategoricalAccuracy 'accuracy'``: the innermost layer, metric, optimizer or seed
    generator on the stack from ``frame`` whose method is running (``self``), or "?"."""
    while frame is not None:
        obj = frame.f_locals.get("self")
        if isinstance(obj, OWNERS):
            return f"{type(obj).__name__} {getattr(obj, 'name', '?')!r}"
        frame = frame.f_back
    return "?"


def _function_name(function) -> str:
    python_function = getattr(function, "python_function", None)
    python_function = getattr(python_function, "func", python_function)  # a functools.partial
    return getattr(python_function, "__name__", repr(python_function))


def _own(cls: type, name: str) -> Callable:
    """The function ``cls`` (or the first class of its MRO that has it) defines as ``name``,
    unwrapped from its decorators: its code object is what Python reports calling."""
    for klass in cls.__mro__:
        if name in vars(klass):
            return inspect.unwrap(vars(klass)[name])
    raise TraceUnsupported(f"{cls.__qualname__} has no method {name}")


def _metric_classes(cls: type = keras.metrics.Metric) -> set[type]:
    """Every loaded subclass of ``cls`` (``cls`` too) that defines its own reset_state."""
    own = {cls} if "reset_state" in vars(cls) else set()
    return own.union(*map(_metric_classes, cls.__subclasses__()))


def watched() -> dict:
    """The code object of every function the trace observes -> its Watch. Private TensorFlow API
    (``_numpy``) is checked, never assumed."""
    tensor = type(tf.constant(0.0))
    if "_numpy" not in {name for klass in tensor.__mro__ for name in vars(klass)}:
        raise TraceUnsupported(f"TensorFlow {tf.__version__}: eager tensors have no _numpy, "
                               "through which float() and .numpy() read a tensor to the host")
    function_type = type(tf.function(lambda: None))
    if not issubclass(function_type, tf.types.experimental.PolymorphicFunction):
        raise TraceUnsupported(f"TensorFlow {tf.__version__}: tf.function is not a "
                               "PolymorphicFunction")
    table = {}
    for hook in HOOKS:  # CallbackList's own (a Callback's no-op hook would match every callback)
        if hook not in vars(keras.callbacks.CallbackList):
            raise TraceUnsupported(f"Keras {keras.__version__}: CallbackList has no {hook}")
        code = _own(keras.callbacks.CallbackList, hook).__code__
        number = code.co_varnames[1] if hook in NUMBERED else None  # batch or epoch
        table[code] = Watch("callbacks", lambda local, hook=hook, number=number: {
            "hook": hook, **({} if number is None else {"number": int(local[number])})})
    table[_own(function_type, "__call__").__code__] = Watch("call", lambda local: {
        "function": _function_name(local["self"]),
        "_tracings": local["self"].experimental_get_tracing_count()})
    table[_own(keras.optimizers.Optimizer, "apply").__code__] = Watch(
        "apply", lambda local: {"built_before": bool(local["self"].built)})
    for cls in _metric_classes():
        table[_own(cls, "reset_state").__code__] = Watch(
            "reset_state", lambda local: {"metric": local["self"].name})
    table[_own(keras.Variable, "__init__").__code__] = Watch("variable", lambda local: {
        "name": local["self"].name, "shape": list(local["self"].shape)}, scope=False, at_return=True)
    table[_own(tensor, "_numpy").__code__] = Watch("sync", lambda local: {
        "via": "EagerTensor._numpy", "dtype": local["self"].dtype.name,
        "shape": list(local["self"].shape)}, scope=False)
    return table


def _observer(recorder: Recorder, table: dict) -> Callable:
    """The profile function: on a watched function's call (or return), its event. What it cannot
    read goes to ``recorder.failures``: an exception here would stop the profiler and surface
    inside the training code."""
    scopes = recorder.open_scopes
    # By the code object's identity: an int hashes at once, where a code object hashes its
    # constants and names again at every lookup (and equals another code object alike).
    by_id = {id(code): watch for code, watch in table.items()}

    def observe(frame, what, arg):
        # Python calls this at every call and return in the thread (C ones too): most of them
        # are no business of the trace, and leave here after one lookup. (A scope on the stack
        # is a watched call: its return is found the same way.)
        if what != "call" and what != "return":
            return
        watch = by_id.get(id(frame.f_code))
        if watch is None:
            return
        try:
            if what == "call":
                if watch.at_return or (watch.kind == "sync" and recorder.in_numpy):
                    return
                event = recorder.add(watch.kind, frame.f_back, **watch.details(frame.f_locals))
                if watch.scope and event is not None:
                    scopes.append((frame, event))
            elif scopes and scopes[-1][0] is frame:
                _, event = scopes.pop()
                if "_tracings" in event:  # how many traces the call made
                    count = frame.f_locals["self"].experimental_get_tracing_count()
                    event["traces"] = count - event.pop("_tracings")
            elif watch.at_return:
                recorder.add(watch.kind, frame.f_back, **watch.details(frame.f_locals),
                             owner=_owner(frame.f_back))
        except Exception as e:  # noqa: BLE001 - whatever it is, training must not see it
            recorder.failures.append(f"{frame.f_code.co_name}: {type(e).__name__}: {e}")
    return observe


def _numpy_wrappers(recorder: Recorder) -> list[tuple[str, Callable]]:
    """np.array/asarray/asanyarray, each recording a sync when given an eager tensor."""
    tensor = type(tf.constant(0.0))

    def wrap(original, name):
        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            obj = args[0] if args else kwargs.get("object", kwargs.get("a"))  # array's, asarray's
            if not isinstance(obj, tensor):
                return original(*args, **kwargs)
            event = recorder.add("sync", sys._getframe(1), via=f"np.{name}", dtype=obj.dtype.name,
                                 shape=list(obj.shape))
            if event is None:  # another thread's read: this recording's reads go on counting
                return original(*args, **kwargs)
            recorder.in_numpy += 1
            try:
                return original(*args, **kwargs)
            finally:
                recorder.in_numpy -= 1
        return wrapper

    return [(name, wrap(getattr(np, name), name)) for name in NUMPY_CONSTRUCTORS]


class RecordingCallback(keras.callbacks.Callback):
    """Records every hook it receives: batch or epoch, the sorted keys of its logs, and the
    params it was given. It reads no value, so it waits for nothing."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def set_params(self, params):
        super().set_params(params)
        self.recorder.add("hook", sys._getframe(1), hook="set_params", params=_plain(params))

    def _hook(self, hook: str, number=None, logs=None) -> None:
        key = "batch" if "batch" in hook else "epoch"
        # Frame 2: past this method and the on_* method that called it, CallbackList's dispatch.
        self.recorder.add("hook", sys._getframe(2), hook=hook,
                          **({} if number is None else {key: int(number)}),
                          logs=None if logs is None else sorted(logs),
                          log_types=sorted({type(v).__name__ for v in (logs or {}).values()}),
                          **({"params": _plain(self.params)} if hook == "on_train_begin" else {}))


def _make_hook(hook: str) -> Callable:
    if hook in NUMBERED:
        def method(self, number, logs=None):
            self._hook(hook, number, logs)
    else:
        def method(self, logs=None):
            self._hook(hook, None, logs)
    method.__name__ = hook
    return method


for _hook_name in HOOKS:
    setattr(RecordingCallback, _hook_name, _make_hook(_hook_name))


def _plain(obj):
    """``obj`` as JSON can hold it (params are ints and strings; anything else by its repr)."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in sorted(obj.items())}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return repr(obj)


#: One recording at a time: the profile function and NumPy's wrappers are process-wide.
_RECORDING = threading.Lock()


@contextlib.contextmanager
def recording(recorder: Recorder) -> Iterator[RecordingCallback]:
    """Observe this thread's training while the block runs; yield the recording callback to put
    first in the callbacks. Everything is undone on leaving, even on an error. A RuntimeError if
    another recording is active in this process."""
    if not _RECORDING.acquire(blocking=False):
        raise RuntimeError("another trace recording is active in this process")
    saved, profiler = [(name, getattr(np, name)) for name in NUMPY_CONSTRUCTORS], sys.getprofile()
    try:
        table, wrappers = watched(), _numpy_wrappers(recorder)
        for name, wrapper in wrappers:
            setattr(np, name, wrapper)
        sys.setprofile(_observer(recorder, table))
        yield RecordingCallback(recorder)
        if recorder.failures:
            raise TraceUnsupported(f"the trace could not read what it watches "
                                   f"({recorder.failures[0]})")
    finally:
        sys.setprofile(profiler)
        for name, original in saved:
            setattr(np, name, original)
        _RECORDING.release()
