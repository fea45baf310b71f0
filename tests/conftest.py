"""Shared test helpers: tiny IDX files written by the tests, and quiet TensorFlow."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fit_vs_tape.runtime import quiet_log_level  # (imports no TensorFlow)
from shared import data

# The tests' own TensorFlow logs no warnings either, whatever TF_CPP_MIN_LOG_LEVEL says.
quiet_log_level()


def pytest_terminal_summary(terminalreporter) -> None:
    """The suite's count in two parts: tests of behaviour, and checks that a quoted line of Keras
    is still where a sentence cites it (tests/test_citations.py, marked ``citation``); and whether
    the slow tests were left out."""
    outcomes: dict[str, dict[str, str]] = {"behaviour tests": {}, "citation checks": {}}
    for outcome in ("passed", "failed", "error", "skipped", "xfailed", "xpassed"):
        for report in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(report, "nodeid", None)
            if nodeid:
                kind = "citation checks" if "citation" in report.keywords else "behaviour tests"
                outcomes[kind].setdefault(nodeid, outcome)  # a failure outranks a later pass
    parts = []
    for kind, by_test in outcomes.items():
        counts = {o: list(by_test.values()).count(o) for o in dict.fromkeys(by_test.values())}
        parts.append(f"{kind}: " + (", ".join(f"{n} {o}" for o, n in counts.items()) or "none"))
    if "not slow" in (terminalreporter.config.option.markexpr or ""):  # pyproject.toml's addopts
        parts.append("left out: the slow end-to-end tests (pytest -m slow runs them)")
    terminalreporter.write_line("; ".join(parts))


def idx_bytes(array: np.ndarray) -> bytes:
    """An uncompressed IDX file of unsigned bytes holding ``array``."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` as a gzipped IDX file."""
    path.write_bytes(gzip.compress(idx_bytes(array)))
    return path


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable fake images: each class lights a different band of rows, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        images[i, 2 * label : 2 * label + 6, :] += 150
    return images, labels


def write_dataset(directory: Path, n_train: int = 256, n_test: int = 64) -> Path:
    """A complete, valid Fashion-MNIST-shaped dataset of ``n_train`` + ``n_test`` images."""
    directory.mkdir(parents=True, exist_ok=True)
    x_train, y_train = synthetic(n_train, 1)
    x_test, y_test = synthetic(n_test, 2)
    for key, array in (("train_images", x_train), ("train_labels", y_train),
                       ("test_images", x_test), ("test_labels", y_test)):
        write_idx(directory / data.FILES[key], array)
    return directory


@pytest.fixture
def tiny_data_dir(tmp_path: Path) -> Path:
    """A directory with a valid tiny dataset (256 training, 64 test images)."""
    return write_dataset(tmp_path / "fmnist")


@pytest.fixture
def no_ambient_data(monkeypatch, tmp_path):
    """Hide the Debian copy, the Keras cache and $FASHION_MNIST_DIR from the loader."""
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    return tmp_path / "keras-home" / "datasets" / "fashion-mnist"


REAL_DATA = data.DEBIAN_DIR
needs_real_data = pytest.mark.skipif(
    not all((REAL_DATA / f).is_file() for f in data.FILES.values()),
    reason="real Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)


ROOT = Path(__file__).resolve().parent.parent


def run_in_empty_directory(argv: list[str], cwd: Path, timeout: float = 600):
    """Run ``python -m fit_vs_tape ARGV`` with ``cwd`` (created empty) as its working directory
    and this checkout first on the path (from another directory, ``-m`` would import whatever
    fit-vs-tape is installed); return the finished process. The caller asserts ``cwd`` stays
    empty: no command writes outside its run directory."""
    cwd.mkdir(parents=True, exist_ok=True)
    assert not list(cwd.iterdir()), f"{cwd} is not empty"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, "-m", "fit_vs_tape", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


#: The interrupted runs' options (tests/test_robust.py, tests/test_faults.py): eager on 1600
#: images, about half a second an epoch here, so a signal or a fault lands inside a known epoch.
RESUME_EPOCHS = 2


def resume_options(data_dir: Path) -> list[str]:
    """The options every interrupted and resumed run is started with."""
    return ["--mode", "eager", "--epochs", str(RESUME_EPOCHS), "--data-dir", str(data_dir), "--quiet"]


@pytest.fixture(scope="session")
def resume_reference(tmp_path_factory) -> tuple[Path, Path]:
    """(data directory, run directory) of one uninterrupted ``compare`` with
    ``resume_options``: every side ends bit-identical, so it is the reference of every
    interrupted-then-resumed run. Made once per test run, shared by pytest-xdist's workers
    (under a file lock in the directory their temporary directories share)."""
    import fcntl
    import shutil

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    done, data_dir, run = root / "resume-reference.done", root / "resume-data", root / "resume-reference"
    with open(root / "resume-reference.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other workers wait here while one trains
        if not done.is_file():
            shutil.rmtree(run, ignore_errors=True)
            write_dataset(data_dir, n_train=1600, n_test=50)
            proc = subprocess.run([sys.executable, "-m", "fit_vs_tape", "compare",
                                   *resume_options(data_dir), "--out", str(run)],
                                  capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, proc.stderr[-2000:]
            done.write_text("")
    return data_dir, run


def start_cli(*args: str) -> subprocess.Popen:
    """``python -m fit_vs_tape ARGS`` started in a fresh process, its output captured as text:
    the tests that interrupt a real run, or fault it, do so while it trains."""
    return subprocess.Popen([sys.executable, "-m", "fit_vs_tape", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_file(path: Path, proc, seconds: float = 180) -> None:
    """Wait until ``path`` exists (a run reached a known point), ``proc`` ended, or ``seconds``."""
    deadline = time.time() + seconds
    while not path.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert path.is_file(), f"{path} never appeared"
