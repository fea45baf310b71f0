"""Peer rows of ``bench speed``: the same training in the frameworks people pick instead
(``pip install -e '.[peers]'``, ``fit-vs-tape bench speed --peers jax,torch``).

Every peer row trains the tutorial's model from the *same initial weights* as the TensorFlow
rows (shared/model.py's, drawn in a TensorFlow process and saved in the run directory), on the
*same batches in the same order* (shared/order.py), with Keras' Adam settings; they agree with
the TensorFlow rows in accuracy, not in bits (benchmarks/peer_common.py). Each row runs in a
fresh process of this module, started with its framework's environment (``KERAS_BACKEND=jax``,
which Keras reads once, when it is first imported).
"""

from __future__ import annotations

import importlib.util
import resource
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from benchmarks import peer_jax, peer_torch
from benchmarks.common import run_worker, worker_main
from benchmarks.peer_common import load_weights
from fit_vs_tape.errors import UserError
from fit_vs_tape.rundir import RunDir


@dataclass(frozen=True)
class PeerRow:
    """One peer row: its implementation and mode (the table's columns), its label and colour in
    figures, and the function that trains it, ``train(mode, config, weights, data)``, in a
    process of this module (``worker``) started with ``env``."""

    implementation: str
    name: str
    label: str
    color: str
    train: Callable[..., dict]
    env: tuple[tuple[str, str], ...] = ()
    one_epoch: bool = False
    """steps_per_execution = one epoch (else 1), in the config its trainer gets."""
    mode: ClassVar[str] = "graph"  # the TrainConfig mode its job carries: peers compile their own way
    module: ClassVar[str] = "benchmarks.peers"
    record_env: ClassVar[str] = "peer_environment"  # where the record keeps its processes' versions

    def environment(self, out: RunDir) -> dict[str, str]:
        """What the row's process starts with: its framework's variables, and torch.compile's
        C++ and caches sent into the run directory, not /tmp."""
        return {**dict(self.env), "TORCHINDUCTOR_CACHE_DIR": str(out.torch_cache)}

    def files(self, out: RunDir, hidden_units: int, seed: int) -> dict[str, str]:
        """What the row's job reads: shared/model.py's initial weights, saved in ``out`` by the
        first row that needs them, drawn in a TensorFlow process (``initial_weights_worker``:
        Keras on the JAX backend would draw other numbers from the same seed)."""
        path = out.initial_weights(hidden_units, seed)
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            run_worker("benchmarks.peers", {"kind": "initial_weights", "hidden_units": hidden_units,
                                            "seed": seed, "path": str(path)}, hide_gpus=True)
        return {"weights": str(path)}


@dataclass(frozen=True)
class Peer:
    """One framework family behind ``--peers NAME``: what must be importable for it (what
    ``.[peers]`` installs), and its rows."""

    packages: tuple[str, ...]
    rows: tuple[PeerRow, ...]


_JAX = (("KERAS_BACKEND", "jax"), ("JAX_PLATFORMS", "cpu"))
_KERAS_JAX, _JAX_LOOP = ("Keras 3 fit(), JAX backend", "tab:purple"), ("JAX + Optax loop", "tab:red")
_TORCH = ("PyTorch loop", "tab:brown")
#: ``--peers`` names, in the order their rows are printed.
PEERS = {
    "jax": Peer(("jax", "optax"), (
        PeerRow("keras_jax", "default", *_KERAS_JAX, peer_jax.keras_fit, _JAX),
        PeerRow("keras_jax", "spe", *_KERAS_JAX, peer_jax.keras_fit, _JAX, one_epoch=True),
        PeerRow("jax", "jit", *_JAX_LOOP, peer_jax.jax_loop, _JAX),
        PeerRow("jax", "scan", *_JAX_LOOP, peer_jax.jax_loop, _JAX))),
    "torch": Peer(("torch",), tuple(PeerRow("torch", mode, *_TORCH, peer_torch.train)
                                    for mode in ("dataloader", "eager", "compile"))),
}
INSTALL = "pip install -e '.[peers]'"


def chosen(names: Sequence[str]) -> list[Peer]:
    """The peers ``names``, in PEERS' order; a UserError for a name that is none of them."""
    unknown = [name for name in names if name not in PEERS]
    if unknown:
        raise UserError(f"--peers {','.join(unknown)}: not one of {', '.join(PEERS)}")
    return [peer for name, peer in PEERS.items() if name in names]


def missing(names: Sequence[str]) -> dict[str, list[str]]:
    """For each requested peer whose packages are not importable: the missing packages."""
    chosen(names)  # an unknown name is one line, not a KeyError
    gone = {name: [p for p in PEERS[name].packages if importlib.util.find_spec(p) is None]
            for name in names}
    return {name: packages for name, packages in gone.items() if packages}


def missing_message(gone: dict[str, list[str]]) -> str:
    """The one line for peers that cannot run here."""
    what = "; ".join(f"--peers {name} needs {', '.join(packages)}" for name, packages in gone.items())
    return f"{what}: install .[peers] ({INSTALL}); the TensorFlow rows ran without them"


def rows(names: Sequence[str]) -> list[PeerRow]:
    """Every row of the peers ``names``, in PEERS' order."""
    return [row for peer in chosen(names) for row in peer.rows]


def row_named(implementation: str, mode: str) -> PeerRow:
    """The peer row of that implementation and mode; a ValueError naming those there are."""
    found = {(row.implementation, row.name): row for peer in PEERS.values() for row in peer.rows}
    if (implementation, mode) not in found:
        raise ValueError(f"no peer row {implementation} {mode}; the peers' rows are "
                         + ", ".join(f"{i} {m}" for i, m in found))
    return found[implementation, mode]


# -- in the worker processes -------------------------------------------------------------------

def initial_weights_worker(job: dict) -> dict:
    """Draw shared/model.py's initial weights and save them where ``job["path"]`` says."""
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
        return initial_weights_worker(job)
    row = row_named(job["implementation"], job["mode"])
    from fit_vs_tape.runtime import load_dataset

    dataset = load_dataset(job["data_dir"])
    limit = job["config"]["limit"] or len(dataset.x_train)
    data = (dataset.x_train[:limit], dataset.y_train[:limit].astype(np.int32),
            dataset.x_test, dataset.y_test.astype(np.int32))
    result = row.train(row.name, job["config"], load_weights(job["weights"]), data)
    return {**result, "n_train": limit,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv: Sequence[str] | None = None) -> int:
    """``--worker JOB``: one peer row's own process."""
    return worker_main("benchmarks.peers", worker, argv)


if __name__ == "__main__":
    sys.exit(main())
