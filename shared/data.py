"""Fashion-MNIST: find the four IDX files (or download them), parse and validate them.

Search order: an explicit directory (``--data-dir``), ``$FASHION_MNIST_DIR``, the Debian/Ubuntu
package ``dataset-fashion-mnist``, the Keras cache, and only then a download the way
``keras.datasets.fashion_mnist`` does it. Arrays stay uint8: normalising to float happens inside
the graph (shared/order.py), which keeps memory low.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
ENV_VAR = "FASHION_MNIST_DIR"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
KERAS_SUBDIR = os.path.join("datasets", "fashion-mnist")
DOWNLOAD_BASE = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
IMAGE_SIZE = 28

# IDX header: two zero bytes, a type code, the number of dimensions. 0x08 is unsigned byte,
# the only type Fashion-MNIST uses.
_UBYTE = 0x08


@dataclass(frozen=True)
class FashionMNIST:
    """The dataset as uint8 arrays, plus where it came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    class_names: tuple[str, ...] = CLASS_NAMES


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Parse one gzipped IDX file of unsigned bytes with ``ndim`` dimensions.

    Every way the file can be wrong raises ValueError naming the file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror})") from None
    if not raw:
        raise ValueError(f"{path}: file is empty")
    if raw[:2] != b"\x1f\x8b":
        raise ValueError(f"{path}: not a gzip file")
    try:
        data = gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:
        raise ValueError(f"{path}: damaged gzip data ({e})") from None
    if len(data) < 4:
        raise ValueError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    zero, dtype, dims = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != _UBYTE or dims != ndim:
        raise ValueError(
            f"{path}: wrong magic number 0x{data[:4].hex()} "
            f"(expected 0x000008{ndim:02x}: unsigned bytes, {ndim} dimension(s))"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: header truncated ({len(data)} of {header} bytes)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(shape))
    found = len(data) - header
    if found != expected:
        what = "truncated" if found < expected else "longer than its header says"
        raise ValueError(
            f"{path}: data {what}: header gives shape {shape} = {expected} bytes, file holds {found}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _read_pair(directory: Path, images_key: str, labels_key: str) -> tuple[np.ndarray, np.ndarray]:
    images_path, labels_path = directory / FILES[images_key], directory / FILES[labels_key]
    images = read_idx(images_path, ndim=3)
    labels = read_idx(labels_path, ndim=1)
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(
            f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28"
        )
    if len(images) != len(labels):
        raise ValueError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )
    if len(labels) and labels.max() >= len(CLASS_NAMES):
        bad = int(np.argmax(labels >= len(CLASS_NAMES)))
        raise ValueError(f"{labels_path}: label {labels[bad]} at index {bad} is outside 0-9")
    return images, labels


def _has_all_files(directory: Path) -> bool:
    return all((directory / name).is_file() for name in FILES.values())


def keras_cache_dir() -> Path:
    """Where keras.datasets keeps Fashion-MNIST (honours $KERAS_HOME like Keras does)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / KERAS_SUBDIR


def download(directory: Path, fetch: Callable[[str, str, Path], None] | None = None) -> None:
    """Download the four files into ``directory`` from where keras.datasets gets them.

    ``fetch(url, filename, directory)`` does the transfer; the default uses
    ``keras.utils.get_file``. Tests pass a stub, so the suite never touches the network.
    """
    if fetch is None:
        fetch = keras_fetch
    directory.mkdir(parents=True, exist_ok=True)
    for name in FILES.values():
        if not (directory / name).is_file():
            try:
                fetch(DOWNLOAD_BASE + name, name, directory)
            except Exception as e:  # noqa: BLE001 - any transfer failure is reported the same way
                raise ConnectionError(
                    f"could not download {DOWNLOAD_BASE + name} ({e}); offline, install "
                    f"'dataset-fashion-mnist' or pass --data-dir"
                ) from None
            if not (directory / name).is_file():
                raise ConnectionError(f"download of {name} left no file in {directory}")


def keras_fetch(url: str, filename: str, directory: Path) -> None:
    """Download one file with ``keras.utils.get_file`` (what keras.datasets uses)."""
    import keras  # lazily: importing TensorFlow costs seconds

    keras.utils.get_file(filename, origin=url, cache_dir=str(directory), cache_subdir=".")


def find_data_dir(
    data_dir: str | os.PathLike | None = None,
    fetch: Callable[[str, str, Path], None] | None = None,
) -> Path:
    """Return a directory holding the four files, downloading them only as a last resort.

    An explicit ``data_dir`` (or ``$FASHION_MNIST_DIR``) must hold the files: a wrong path is a
    mistake to report, not a reason to look elsewhere.
    """
    for explicit, label in ((data_dir, "--data-dir"), (os.environ.get(ENV_VAR), f"${ENV_VAR}")):
        if explicit:
            directory = Path(explicit)
            if not directory.is_dir():
                raise ValueError(f"{label} {directory}: no such directory")
            missing = [n for n in FILES.values() if not (directory / n).is_file()]
            if missing:
                raise ValueError(f"{label} {directory}: missing {', '.join(missing)}")
            return directory
    for directory in (DEBIAN_DIR, keras_cache_dir()):
        if _has_all_files(directory):
            return directory
    target = keras_cache_dir()
    download(target, fetch)
    return target


def load(
    data_dir: str | os.PathLike | None = None,
    fetch: Callable[[str, str, Path], None] | None = None,
) -> FashionMNIST:
    """Find and load Fashion-MNIST as uint8 arrays: (N, 28, 28) images, (N,) labels."""
    directory = find_data_dir(data_dir, fetch)
    x_train, y_train = _read_pair(directory, "train_images", "train_labels")
    x_test, y_test = _read_pair(directory, "test_images", "test_labels")
    return FashionMNIST(x_train, y_train, x_test, y_test, source=str(directory))


def split_sizes(n: int, fraction: float) -> tuple[int, int]:
    """How many of ``n`` images train and how many validate when ``fraction`` is held out, as
    fit(validation_split=...) splits them: the training count is rounded down
    (keras/src/trainers/data_adapters/array_slicing.py train_validation_split:
    `split_at = int(math.floor(batch_dim * (1.0 - validation_split)))`)."""
    n_train = math.floor(n * (1.0 - fraction)) if fraction > 0 else n
    return n_train, n - n_train


def split_validation(
    x: np.ndarray, y: np.ndarray, fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Hold out the last ``fraction`` of the training set, as Keras' validation_split does.

    Returns (x_train, y_train, x_val, y_val); the validation arrays are None when fraction is 0.
    """
    if fraction <= 0:
        return x, y, None, None
    n_train, n_val = split_sizes(len(x), fraction)
    if n_train < 1 or n_val < 1:
        raise ValueError(
            f"--validation-split {fraction}: leaves {n_train} training and "
            f"{n_val} validation images; both need at least one"
        )
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]
