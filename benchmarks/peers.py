"""Peer rows of ``bench speed``: the same training in the frameworks people pick instead.

    pip install -e '.[peers]'
    fit-vs-tape bench speed --peers jax,torch

Every peer row trains the tutorial's model (Flatten -> Dense(H, relu) -> Dense(10, softmax))
from the *same initial weights* as the TensorFlow rows (drawn once by shared/model.py's
``initial_weights`` in a TensorFlow process and copied in), on the *same batches in the same
order* (shared/order.py's ``epoch_permutation``), with Adam at Keras' defaults, and reports the
test accuracy. Cross-framework rows agree in accuracy, not in bits: their kernels sum in other
orders, and two things differ by design of the frameworks (see ``ADAM`` and ``LOSS`` in
benchmarks/peer_common.py, what the peer rows share).

Each row runs in its own fresh process, as the TensorFlow rows do (benchmarks/common.py
run_worker); the Keras-on-JAX rows' process is started with ``KERAS_BACKEND=jax``, which Keras
reads once, when it is first imported.
"""

from __future__ import annotations

import importlib.util
import resource
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.peer_common import load_weights


@dataclass(frozen=True)
class Peer:
    """One framework family behind ``--peers NAME``."""

    packages: tuple[str, ...]
    """What must be importable (what ``.[peers]`` installs for it)."""
    rows: tuple[tuple[str, str], ...]
    """(implementation, mode) of each of its rows."""
    env: tuple[tuple[str, str], ...]
    """Environment its worker processes start with."""


#: ``--peers`` names, in the order their rows are printed.
PEERS = {
    "jax": Peer(("jax", "optax"),
                (("keras_jax", "default"), ("keras_jax", "spe"), ("jax", "jit"), ("jax", "scan")),
                (("KERAS_BACKEND", "jax"), ("JAX_PLATFORMS", "cpu"))),
    "torch": Peer(("torch",), (("torch", "dataloader"), ("torch", "eager"), ("torch", "compile")), ()),
}
#: Labels and colours of the peer implementations in tables and figures.
LABELS = {"keras_jax": ("Keras 3 fit(), JAX backend", "tab:purple"),
          "jax": ("JAX + Optax loop", "tab:red"),
          "torch": ("PyTorch loop", "tab:brown")}
INSTALL = "pip install -e '.[peers]'"


def missing(names: Sequence[str]) -> dict[str, list[str]]:
    """For each requested peer whose packages are not importable: the missing packages."""
    gone = {name: [p for p in PEERS[name].packages if importlib.util.find_spec(p) is None]
            for name in names}
    return {name: packages for name, packages in gone.items() if packages}


def missing_message(gone: dict[str, list[str]]) -> str:
    """The one line for peers that cannot run here."""
    what = "; ".join(f"--peers {name} needs {', '.join(packages)}" for name, packages in gone.items())
    return f"{what}: install .[peers] ({INSTALL}); the TensorFlow rows ran without them"


def rows(names: Sequence[str]) -> list[tuple[str, str, tuple[tuple[str, str], ...]]]:
    """(implementation, mode, worker environment) of every row of the peers ``names``."""
    return [(impl, mode, PEERS[name].env) for name in PEERS if name in names
            for impl, mode in PEERS[name].rows]


# -- in the worker processes -------------------------------------------------------------------

def save_initial_weights(hidden_units: int, seed: int, path: Path) -> None:
    """Draw shared/model.py's initial weights in a TensorFlow process and save them for the peers
    (Keras on the JAX backend would draw other numbers from the same seed)."""
    from benchmarks.common import run_worker

    run_worker("benchmarks.peers", {"kind": "initial_weights", "hidden_units": hidden_units,
                                    "seed": seed, "path": str(path)}, hide_gpus=True)


def _initial_weights_worker(job: dict) -> dict:
    from fit_vs_tape.runtime import import_tensorflow
    from shared.files import atomic_path
    from shared.model import initial_weights

    import_tensorflow(device="cpu")
    weights = initial_weights(job["hidden_units"], job["seed"])
    with atomic_path(Path(job["path"])) as tmp, open(tmp, "wb") as f:
        np.savez(f, *weights)
    return {"path": job["path"]}


def worker(job: dict) -> dict:
    """Train one peer row (runs in its own process); the same answer as a TensorFlow row's."""
    if job.get("kind") == "initial_weights":
        return _initial_weights_worker(job)
    from fit_vs_tape.runtime import load_dataset

    dataset = load_dataset(job["data_dir"])
    limit = job["config"]["limit"] or len(dataset.x_train)
    data = (dataset.x_train[:limit], dataset.y_train[:limit].astype(np.int32),
            dataset.x_test, dataset.y_test.astype(np.int32))
    weights = load_weights(job["weights"])
    if job["implementation"] == "torch":
        from benchmarks.peer_torch import train
    else:
        from benchmarks.peer_jax import train
    result = train(job["implementation"], job["mode"], job["config"], weights, data)
    return {**result, "n_train": limit,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv: Sequence[str] | None = None) -> int:
    """``--worker JOB``: one peer row's own process."""
    from benchmarks.common import worker_main

    return worker_main("benchmarks.peers", worker, argv)


if __name__ == "__main__":
    sys.exit(main())
