"""Writing a file so that no reader ever sees half of it (figures here, results in the app)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success rename it over ``path``, on any
    failure (Ctrl-C included) delete it. Readers never see a half-written file, and a file that
    was there before stays whole. A failed write (a full disk, a directory gone) raises an
    OSError that names ``path``, not the temporary name."""
    path = Path(path)
    try:
        # Keep the suffix: Keras insists that a model file name ends in .keras.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.",
                                   suffix=f".tmp{path.suffix}")
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename in (None, tmp):  # "No space left" names no file
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
