"""The run directory: what a run writes, always whole (temporary name, then rename), and what
``--resume`` reads back. Nothing here imports TensorFlow, except saving and loading models, so a
wrong ``--resume`` path is reported before the slow import."""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
import zipfile
from pathlib import Path

from fit_vs_tape.errors import UserError
from shared.config import SIDES, TrainConfig
from shared.data import CLASS_NAMES, IMAGE_SIZE
from shared.files import atomic_path

#: Inside a run directory: what the run is (for --resume), written before training starts.
RUN_FILE = "run.json"
#: Inside a run directory: what --resume needs, one folder per side; removed once the run is done.
STATE = "state"


def new_run_dir(out: str | os.PathLike | None, root: str = "runs") -> Path:
    """The directory a run writes into (``runs/<timestamp>/`` by default), created and checked
    writable now, before any training time is spent."""
    if out is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = Path(root) / stamp
        n = 1
        while path.exists():
            n += 1
            path = Path(root) / f"{stamp}-{n}"
    else:
        path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        raise UserError(f"--out {path}: cannot write there ({e.strerror or e})") from None
    return path


def _finite_or_null(obj):
    """JSON has no NaN or Infinity: a non-finite number (a diverged loss) is written as null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_null(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented, strict JSON (non-finite numbers as null), atomically."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(_finite_or_null(obj), f, indent=2, allow_nan=False)
        f.write("\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def save_model(model, path: str | os.PathLike) -> None:
    """model.save() atomically."""
    with atomic_path(path) as tmp:
        model.save(tmp)


def load_model(path: str | os.PathLike):
    """Load a saved ``.keras`` model with Keras' safe mode on (no code in the file is run) and
    check it classifies 28x28 images into 10 classes. Anything else is a UserError."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise UserError(f"--model {path}: no such file")
    if not zipfile.is_zipfile(path):  # a .keras file is a zip archive; pickles never get loaded
        raise UserError(f"--model {path}: not a Keras .keras model file")
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=True)
    except Exception as e:  # noqa: BLE001 - whatever Keras raises, the file is the problem
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"--model {path}: cannot be loaded as a Keras model ({first_line})") from None
    in_shape, out_shape = tuple(model.input_shape[1:]), tuple(model.output_shape[1:])
    if in_shape != (IMAGE_SIZE, IMAGE_SIZE) or out_shape != (len(CLASS_NAMES),):
        raise UserError(
            f"--model {path}: takes {in_shape} and gives {out_shape}; a Fashion-MNIST classifier "
            f"takes (28, 28) and gives (10,)"
        )
    return model


def start_run(out: Path, command: str, sides: list[str], config: TrainConfig, source: str) -> None:
    """Record what the run is, before training, so that --resume can carry it on."""
    write_json(out / RUN_FILE, {"command": command, "sides": sides, "config": config.to_dict(),
                                "data": source})


def read_run(run_dir: Path, command: str) -> tuple[list[str], TrainConfig, str]:
    """What an earlier run was (for --resume): its sides, configuration and data."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise UserError(f"--resume {run_dir}: not a run directory (no {RUN_FILE})")
    try:
        record = json.loads(path.read_text())
        config = TrainConfig(**record["config"])
        sides = list(record["sides"])
        if not sides or not set(sides) <= set(SIDES):
            raise ValueError(f"unknown sides {sides}")
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"--resume {run_dir}: {RUN_FILE} is damaged ({e})") from None
    if record.get("command") != command:
        raise UserError(f"--resume {run_dir}: that run was `{record.get('command')}`, "
                        f"not `{command}`")
    if not (Path(run_dir) / STATE).is_dir():
        raise UserError(f"--resume {run_dir}: nothing to resume, that run is complete")
    return sides, config, record["data"]
