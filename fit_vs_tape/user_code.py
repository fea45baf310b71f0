"""Loading a user's step or model builder for `fit-vs-tape check`, and running the check with
its faults as one-line errors."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
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
    """check.check_step with the project's compile() arguments; a ValueError from the checker
    (a builder that is not a model, a step with the wrong signature, inputs that do not fit the
    data) becomes a UserError."""
    import keras

    from fit_vs_tape import check
    from shared.model import make_optimizer

    compile_args = dict(optimizer=make_optimizer(config),
                        loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    try:
        return check.check_step(builder, compile_args, step, x=x, y=y, config=config)
    except ValueError as e:
        raise UserError(f"check: {e}") from None
