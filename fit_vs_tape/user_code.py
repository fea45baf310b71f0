"""Loading a user's step or model builder for `fit-vs-tape check`, and running the check with
its faults as one-line errors."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from fit_vs_tape.errors import UserError
from shared.config import TrainConfig


def load(option: str, spec: str) -> Callable:
    """The object ``NAME`` of ``FILE.py:NAME`` or ``package.module:NAME``; a UserError naming
    ``option`` if the file, module or name is not there, or the file fails to import."""
    where, _, name = spec.rpartition(":")
    if not where or not name:
        raise UserError(f"{option} {spec}: give FILE.py:NAME or MODULE:NAME")
    try:
        if where.endswith(".py"):
            path = Path(where)
            if not path.is_file():
                raise UserError(f"{option} {spec}: no such file {path}")
            module_spec = importlib.util.spec_from_file_location(f"fit_vs_tape_user_{path.stem}", path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[module_spec.name] = module  # so tf.function and pickling find it
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except UserError:
        raise
    except Exception as e:  # the user's file: any error in it is theirs to see, in one line
        raise UserError(f"{option} {spec}: importing it failed: {type(e).__name__}: {e}") from None
    if not hasattr(module, name):
        raise UserError(f"{option} {spec}: {where} has no {name}")
    found = getattr(module, name)
    if not callable(found):
        raise UserError(f"{option} {spec}: {name} is a {type(found).__name__}, not a function")
    return found


def project_builder(config: TrainConfig) -> Callable:
    """The project's model (shared/model.py) as a builder, for a step checked without --builder."""
    from shared.model import build_model

    return lambda: build_model(config.hidden_units, model=config.model)


def run_check(builder: Callable, step: Callable | None, x, y, config: TrainConfig):
    """check.check_step with the project's compile() arguments. An exception raised in the
    user's code (the files that define the step and the builder, if not the project's own)
    becomes a UserError naming the exception, its message and their file and line; a ValueError
    from the checker (a builder that is not a model, a step with the wrong signature, inputs the
    model cannot take) becomes a UserError too. Anything else is the project's own fault and is
    raised as it is."""
    import keras

    from fit_vs_tape import check
    from shared.model import make_optimizer

    compile_args = dict(optimizer=make_optimizer(config),
                        loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    try:
        return check.check_step(builder, compile_args, step, x=x, y=y, config=config)
    except Exception as e:
        where = user_frame(e, source_files([obj for obj in (step, builder) if obj is not None]))
        if where is not None:
            raise UserError(f"check: your code raised {type(e).__name__}: {exception_message(e)} "
                            f"({where[0]}, line {where[1]})") from None
        if isinstance(e, ValueError):
            raise UserError(f"check: {exception_message(e)}") from None
        raise


#: The project's own packages: an exception raised in them is not the user's.
PROJECT_PACKAGES = tuple(Path(__file__).resolve().parents[1] / name
                         for name in ("fit_vs_tape", "shared", "high_level", "low_level", "benchmarks"))


def source_files(objects: Sequence[Callable]) -> set[str]:
    """The files that define ``objects`` (a function, a tf.function, a class), but for the
    project's own."""
    files = set()
    for obj in objects:
        obj = getattr(obj, "python_function", obj)  # a tf.function: the function it wraps
        code = getattr(obj, "__code__", None)
        module = sys.modules.get(getattr(obj, "__module__", None) or "")
        for name in (code and code.co_filename, getattr(module, "__file__", None)):
            path = Path(name).resolve() if name else None
            if path and not any(path.is_relative_to(package) for package in PROJECT_PACKAGES):
                files.add(str(path))
    return files


def user_frame(error: BaseException, files: set[str]) -> tuple[str, int] | None:
    """The innermost place in ``files`` where ``error`` was raised: from its traceback (eager
    code) or, for code traced by tf.function, from the stack TensorFlow writes into the
    message (``File "step.py", line 7, in train_step``); None if no frame is in ``files``."""
    if not files:
        return None
    frames = [(f.filename, f.lineno) for f in traceback.extract_tb(error.__traceback__)]
    frames += [(name, int(line)) for name, line in
               re.findall(r'File "([^"]+)", line (\d+)', str(error))]
    mine = [(name, line) for name, line in frames if str(Path(name).resolve()) in files]
    return mine[-1] if mine else None


def exception_message(error: BaseException) -> str:
    """The exception's own message in one line, without the stack TensorFlow adds to it (an
    error in traced code: ``in user code: ... RuntimeError: boom``; an error in a graph at run
    time: ``Graph execution error: Detected at node ...``)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return "(no message)"
    if lines[0] == "in user code:":  # tf.function re-raises with the traced stack, then the error
        return lines[-1].removeprefix(f"{type(error).__name__}: ")
    if lines[0] == "Graph execution error:":
        stack = re.compile(r"^(Detected at node|File |\[\[|Node:|defined at|Stack trace)")
        rest = [line for line in lines[1:] if not stack.match(line)
                and not re.match(r"^[\w.]+(\(.*\))?$", line)]
        return rest[0] if rest else lines[0]
    # An op's error run eagerly: `{{function_node __wrapped__Reshape_device_...}} ... [Op:Reshape]`
    return re.sub(r"\s*\[Op:\w+\].*$", "", re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", lines[0]))
