"""Run directories and files written atomically: an interrupted run never leaves half a file."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from pathlib import Path

from shared.errors import UserError


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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success rename it over ``path``, on any
    failure (Ctrl-C included) delete it. Readers never see a half-written file."""
    path = Path(path)
    # Keep the suffix: Keras insists that a model file name ends in .keras.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic(path: Path, write) -> None:
    with atomic_path(path) as tmp:
        write(tmp)


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

    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(_finite_or_null(obj), f, indent=2, allow_nan=False)
            f.write("\n")

    _atomic(Path(path), write)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""

    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    _atomic(Path(path), write)


def save_model(model, path: str | os.PathLike) -> None:
    """model.save() atomically."""
    _atomic(Path(path), model.save)
