"""The trace's instrumentation: what `fit-vs-tape trace` watches, and how, in one table of patches.

Nothing here describes Keras, and nothing here imports the application: it watches Keras.
While ``recording()`` is active (one at a time, under a lock), these methods are wrapped (and
unwrapped on leaving, whatever happens):

- ``keras.callbacks.CallbackList``'s hooks (``on_epoch_begin``, ``on_train_batch_end``, ...):
  where fit() or the loop dispatches to the callbacks; what happens inside the dispatch
  (Keras converting the logs to floats) is recorded as happening inside it;
- a recording callback, first in the list: which hook each callback receives, with which batch or
  epoch, the sorted keys of its logs, and the ``params`` it was given (``set_params``);
- ``tf.function``'s ``__call__``: every call of a compiled function, and how many new concrete
  functions (traces) it made (``experimental_get_tracing_count``);
- ``keras.Variable``'s ``__init__``: every Keras variable created while training runs (a layer's
  weights, a metric's totals, the optimizer's slots, a seed generator's state all are one), with
  its owner: the innermost layer, metric, optimizer or seed generator whose method created it;
- ``keras.optimizers.Optimizer.apply``: when the update's Python runs (inside a trace, or eagerly);
- ``reset_state`` of every ``keras.metrics.Metric`` class that defines one;
- each device-to-host read (a sync: where a device runs queued work, a GPU, Python waits for
  it there). ``float()``, ``int()``,
  ``bool()``, ``.numpy()`` and ``repr()`` of an eager tensor go through TensorFlow's
  ``EagerTensor._numpy``; ``np.array()`` and ``np.asarray()`` do not: NumPy takes the tensor's
  buffer, which TensorFlow implements in C (measured: 0 calls of ``_numpy``), and that is how
  Keras 3.15's ``convert_to_numpy`` reads the logs (Keras 3.8's ``pythonify_logs`` calls
  ``float()``, through ``_numpy``). So both are wrapped: ``_numpy``, and NumPy's
  ``array``/``asarray``/``asanyarray`` when given an eager tensor. (A read by another way, such
  as ``memoryview(tensor)`` or ``np.float32(tensor)``, is not seen.)

Each event keeps the frames of the installed Keras (``keras/src/``) and of the teaching code
(``high_level/``, ``low_level/``, ``shared/``) that led to it, innermost first, with the line of
source; ``driver`` is the statement of fit() (``TensorFlowTrainer.fit``) or of the loop
(``low_level/train.py`` ``train``) it happened under. The wrappers only append to a list: every
argument and result passes through untouched, so training is bit-identical with and without them
(tests/test_trace.py checks every weight, in every mode, on all three rungs).

What is private and relied on: ``EagerTensor._numpy`` (TensorFlow has no public hook for a
device-to-host read; checked at start, a clear error if it is gone). Everything else wrapped is
public API (NumPy's constructors, and): ``keras.callbacks.CallbackList``, ``keras.callbacks.Callback``,
``keras.Variable``, ``keras.optimizers.Optimizer.apply``, ``keras.metrics.Metric.reset_state``,
``tf.function``'s type (``tf.types.experimental.PolymorphicFunction``) and its
``experimental_get_tracing_count``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import linecache
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
#: NumPy's functions that turn a tensor into an array through its buffer, not through _numpy.
NUMPY_CONSTRUCTORS = ("array", "asarray", "asanyarray")
#: Hooks given a batch number (the others get an epoch number or nothing).
BATCH_HOOKS = ("on_train_batch_begin", "on_train_batch_end", "on_test_batch_begin",
               "on_test_batch_end", "on_predict_batch_begin", "on_predict_batch_end")


class TraceUnsupported(RuntimeError):
    """The installed TensorFlow or Keras lacks a method the trace wraps."""


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
    """The events of one side's run, in the order they happened, and the scopes open now (a
    callback dispatch, a call of a compiled function): each event names its innermost open
    scope as ``parent``."""

    events: list[dict] = field(default_factory=list)
    open_scopes: list[int] = field(default_factory=list)
    thread: int = field(default_factory=threading.get_ident)
    _files: dict = field(default_factory=dict)

    def add(self, kind: str, **details) -> dict | None:
        """Record an event of ``kind`` with ``details`` and where it came from; None if it
        happened on another thread (none does in fit() on TensorFlow, nor in the loop)."""
        if threading.get_ident() != self.thread:
            return None
        stack = self._stack()
        driver = next((frame for frame in reversed(stack)
                       if (frame["file"], frame["function"]) in DRIVERS), None)
        event = {"seq": len(self.events), "kind": kind, **details,
                 "parent": self.open_scopes[-1] if self.open_scopes else None,
                 "in_trace": tf.inside_function(), "driver": driver, "stack": stack}
        self.events.append(event)
        return event

    @contextlib.contextmanager
    def scope(self, kind: str, **details) -> Iterator[dict | None]:
        """An event whose inner events are its children (``parent``) until the block ends."""
        event = self.add(kind, **details)
        if event is None:
            yield None
            return
        self.open_scopes.append(event["seq"])
        try:
            yield event
        finally:
            self.open_scopes.pop()

    def _stack(self) -> list[dict]:
        """The Keras and teaching-code frames of the caller, innermost first."""
        frames = []
        frame = inspect.currentframe()
        while frame is not None:
            code = frame.f_code
            name = self._files.get(code.co_filename)
            if name is None:
                name = self._files[code.co_filename] = where(code.co_filename) or ""
            if name:
                frames.append({"file": name, "function": code.co_name, "line": frame.f_lineno,
                               "code": linecache.getline(code.co_filename, frame.f_lineno).strip()})
            frame = frame.f_back
        return frames


class RecordingCallback(keras.callbacks.Callback):
    """Records every hook it receives: batch or epoch, the sorted keys of its logs, and the
    params it was given. It reads no value, so it waits for nothing."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def set_params(self, params):
        super().set_params(params)
        self.recorder.add("hook", hook="set_params", params=_plain(params))

    def _hook(self, hook: str, number=None, logs=None) -> None:
        key = "batch" if hook in BATCH_HOOKS else "epoch"
        self.recorder.add("hook", hook=hook, **({} if number is None else {key: int(number)}),
                          logs=None if logs is None else sorted(logs),
                          log_types=sorted({type(v).__name__ for v in (logs or {}).values()}),
                          **({"params": _plain(self.params)} if hook == "on_train_begin" else {}))


def _make_hook(hook: str) -> Callable:
    if hook in BATCH_HOOKS or hook.startswith("on_epoch"):
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


def _metric_classes() -> list[type]:
    """Every loaded keras.metrics.Metric class that defines its own reset_state."""
    seen, todo, found = set(), [keras.metrics.Metric], []
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        if "reset_state" in vars(cls):
            found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def _defining_class(cls: type, name: str) -> type:
    """The class in ``cls``'s MRO whose own attributes hold ``name``."""
    for klass in cls.__mro__:
        if name in vars(klass):
            return klass
    raise TraceUnsupported(f"{cls.__qualname__} has no method {name}")


def _eager_tensor_base() -> type:
    """The class that defines ``_numpy``, the device-to-host read under float(), .numpy() and
    repr() of an eager tensor (np.asarray() reads its buffer instead). Private TensorFlow API:
    checked, never assumed."""
    eager = type(tf.constant(0.0))
    for klass in eager.__mro__:
        if "_numpy" in vars(klass):
            return klass
    raise TraceUnsupported(
        f"TensorFlow {tf.__version__}: eager tensors have no _numpy method, through which "
        "float() and .numpy() read a tensor to the host; the trace cannot count "
        "syncs with this TensorFlow")


def _patches(recorder: Recorder) -> list[tuple[type, str, Callable]]:
    """(class, method name, wrapper) for every method the trace wraps: the callbacks' hooks,
    compiled functions, variables and the optimizer's apply, metric resets, host reads."""
    return [*_callback_patches(recorder), *_function_patches(recorder),
            *_creation_patches(recorder), *_metric_patches(recorder), *_sync_patches(recorder)]


def _callback_patches(recorder: Recorder) -> list[tuple[type, str, Callable]]:
    """CallbackList's hooks: each dispatch, with its batch or epoch number."""
    def dispatch(original, hook):
        @functools.wraps(original)
        def wrapper(self, *args, **kwargs):
            number = args[0] if args and (hook in BATCH_HOOKS or hook.startswith("on_epoch")) \
                else None
            with recorder.scope("callbacks", hook=hook,
                                **({} if number is None else {"number": int(number)})):
                return original(self, *args, **kwargs)
        return wrapper

    callback_list = keras.callbacks.CallbackList
    return [(callback_list, hook, dispatch(getattr(callback_list, hook), hook)) for hook in HOOKS]


def _function_patches(recorder: Recorder) -> list[tuple[type, str, Callable]]:
    """tf.function's __call__: each call of a compiled function, and the traces it caused."""
    function_type = type(tf.function(lambda: None))
    if not issubclass(function_type, tf.types.experimental.PolymorphicFunction):
        raise TraceUnsupported(f"TensorFlow {tf.__version__}: tf.function is not a "
                               "PolymorphicFunction")
    original_call = function_type.__call__

    @functools.wraps(original_call)
    def call(self, *args, **kwargs):
        before = self.experimental_get_tracing_count()
        with recorder.scope("call", function=_function_name(self)) as event:
            try:
                return original_call(self, *args, **kwargs)
            finally:
                if event is not None:
                    event["traces"] = self.experimental_get_tracing_count() - before
    return [(function_type, "__call__", call)]


def _creation_patches(recorder: Recorder) -> list[tuple[type, str, Callable]]:
    """Each Keras variable created (with its owner), and each optimizer apply (built before?)."""
    variable_base = _defining_class(keras.Variable, "__init__")
    original_init = vars(variable_base)["__init__"]

    @functools.wraps(original_init)
    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        recorder.add("variable", name=self.name, shape=list(self.shape), owner=_owner())

    apply_base = _defining_class(keras.optimizers.Optimizer, "apply")
    original_apply = apply_base.apply

    @functools.wraps(original_apply)
    def apply(self, *args, **kwargs):
        with recorder.scope("apply", built_before=bool(self.built)):
            return original_apply(self, *args, **kwargs)
    return [(variable_base, "__init__", init), (apply_base, "apply", apply)]


def _metric_patches(recorder: Recorder) -> list[tuple[type, str, Callable]]:
    """reset_state of every loaded metric class that defines its own."""
    def reset(original):
        @functools.wraps(original)
        def wrapper(self, *args, **kwargs):
            with recorder.scope("reset_state", metric=self.name):
                return original(self, *args, **kwargs)
        return wrapper

    return [(cls, "reset_state", reset(vars(cls)["reset_state"])) for cls in _metric_classes()]


def _sync_patches(recorder: Recorder) -> list[tuple[type, str, Callable]]:
    """Every device-to-host read of an eager tensor: its _numpy, and NumPy's constructors."""
    tensor_base = _eager_tensor_base()
    original_numpy = vars(tensor_base)["_numpy"]

    @functools.wraps(original_numpy)
    def numpy(self):
        recorder.add("sync", via="EagerTensor._numpy", dtype=self.dtype.name,
                     shape=list(self.shape))
        return original_numpy(self)

    # np.array(tensor) and np.asarray(tensor) do not call _numpy: NumPy takes the tensor's
    # buffer (the buffer protocol, implemented in C by TensorFlow), the read Keras'
    # convert_to_numpy makes. So NumPy's array constructors are wrapped too.
    eager_tensor = type(tf.constant(0.0))

    def from_buffer(original, name):
        @functools.wraps(original)
        def wrapper(obj, *args, **kwargs):
            if isinstance(obj, eager_tensor):
                recorder.add("sync", via=f"np.{name}", dtype=obj.dtype.name, shape=list(obj.shape))
            return original(obj, *args, **kwargs)
        return wrapper

    return [(tensor_base, "_numpy", numpy),
            *((np, name, from_buffer(getattr(np, name), name)) for name in NUMPY_CONSTRUCTORS)]


#: What owns a Keras variable: the object whose method created it.
OWNERS = (keras.layers.Layer, keras.metrics.Metric, keras.optimizers.Optimizer,
          keras.random.SeedGenerator)


def _owner() -> str:
    """``SparseCategoricalAccuracy 'accuracy'``: the innermost layer, metric, optimizer or seed
    generator on the stack whose method is running (``self``), or "?" if none."""
    frame = inspect.currentframe()
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


#: One recording at a time: the patches are process-wide, and a second set applied over the
#: first would restore the first's wrappers, not the originals.
_PATCHING = threading.Lock()


@contextlib.contextmanager
def recording(recorder: Recorder) -> Iterator[RecordingCallback]:
    """Wrap the methods the trace watches while the block runs; yield the recording callback
    to put first in the callbacks. Every wrapper is removed on leaving, even on an error. A
    RuntimeError if another recording is active in this process."""
    if not _PATCHING.acquire(blocking=False):
        raise RuntimeError("another trace recording is active in this process")
    try:
        patches = _patches(recorder)
        saved = [(cls, name, vars(cls)[name]) for cls, name, _ in patches]
        try:
            for cls, name, wrapper in patches:
                setattr(cls, name, wrapper)
            yield RecordingCallback(recorder)
        finally:
            for cls, name, original in reversed(saved):
                setattr(cls, name, original)
    finally:
        _PATCHING.release()
