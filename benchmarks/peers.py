"""Peer rows of ``bench speed``: the same training in the frameworks people pick instead.

    pip install -e '.[peers]'
    fit-vs-tape bench speed --peers jax,torch

Every peer row trains the tutorial's model (Flatten -> Dense(H, relu) -> Dense(10, softmax))
from the *same initial weights* as the TensorFlow rows (drawn once by shared/model.py's
``initial_weights`` in a TensorFlow process and copied in), on the *same batches in the same
order* (shared/order.py's ``epoch_permutation``), with Adam at Keras' defaults, and reports the
test accuracy. Cross-framework rows agree in accuracy, not in bits: their kernels sum in other
orders, and two things differ by design of the frameworks (see ``ADAM`` and ``LOSS`` below).

Each row runs in its own fresh process, as the TensorFlow rows do (benchmarks/common.py
run_worker); the Keras-on-JAX rows' process is started with ``KERAS_BACKEND=jax``, which Keras
reads once, when it is first imported.
"""

from __future__ import annotations

import importlib.util
import resource
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.order import epoch_permutation, steps_per_epoch


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

# What the peers' Adam does differently from Keras' (which all TensorFlow rows and both
# Keras-on-JAX rows use): Keras adds epsilon to sqrt(v) *before* bias-correcting v
# (keras/src/optimizers/adam.py Adam.update_step: `alpha = lr * ops.sqrt(1 - beta_2_power) /
# (1 - beta_1_power)`; its update: `ops.multiply(m, alpha), ops.add(ops.sqrt(v), self.epsilon)`);
# optax.adam and torch.optim.Adam add it to sqrt(v_hat). So Keras' epsilon acts as theirs would
# at epsilon / sqrt(1 - beta_2^t): with the same 1e-7, theirs is the smaller, by 32x at step 1
# and 1.26x at step 1,000 (1.0x from about step 5,000). That matters for gradients below about
# 1e-5 in the first few dozen steps (at step 1, 23% on a gradient of 1e-5) and below about 1e-6
# after a few hundred.
ADAM = dict(learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7)
# The peers' loss: the mean over the batch of -log_softmax(logits)[label]. That is what Keras
# computes on the TensorFlow backend from the softmax output: the softmax caches its logits
# (keras/src/backend/tensorflow/nn.py softmax: `output._keras_logits = logits`) and the loss
# uses them (keras/src/backend/tensorflow/nn.py _get_logits: `output_ = output._keras_logits`),
# so no probability is clipped. The JAX backend's loss has no such path: given probabilities it
# always takes the log of clipped ones (keras/src/backend/jax/nn.py
# sparse_categorical_crossentropy: `output = jnp.clip(output, backend.epsilon(), 1.0 -
# backend.epsilon())`), so the Keras-on-JAX rows' loss is at most -log(1e-7) = 16.1 per image,
# and an image whose true class gets a probability below 1e-7 or above 1 - 1e-7 gives no gradient.
LOSS = "mean over the batch of -log_softmax(logits)[label]"


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


def load_weights(path: str) -> list[np.ndarray]:
    """The saved initial weights: kernel (784, H), bias (H,), kernel (H, 10), bias (10,)."""
    with np.load(path) as f:
        return [f[f"arr_{i}"] for i in range(len(f.files))]


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1], as shared/order.py's ``normalize`` (times 1/255, in float32)."""
    return images.astype(np.float32) * np.float32(1.0 / 255.0)


def epoch_order(x: np.ndarray, y: np.ndarray, seed: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """Epoch ``epoch``'s images and labels in the shared order (still uint8)."""
    perm = epoch_permutation(seed, epoch, len(x))
    return x[perm], y[perm]


def batches(n: int, batch_size: int) -> Iterator[slice]:
    """The slices of one epoch's batches, the last one smaller if ``batch_size`` does not
    divide ``n`` (as shared/order.py's train_batches cuts them)."""
    for step in range(steps_per_epoch(n, batch_size)):
        yield slice(step * batch_size, min(n, (step + 1) * batch_size))


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
