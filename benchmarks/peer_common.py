"""What every peer row shares: Keras' Adam settings, the loss they match, the saved initial
weights, and the shared order cut into batches. A leaf: it imports NumPy and shared/order.py
only, so the registry of peer rows (benchmarks/peers.py) and the trainers (peer_jax.py,
peer_torch.py) both depend on it, and not on each other.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from shared.order import epoch_permutation, steps_per_epoch

# Keras' Adam at its defaults. Keras adds epsilon to sqrt(v) before bias-correcting v, optax.adam
# and torch.optim.Adam after: with the same 1e-7 theirs is 32x smaller at step 1, 1.26x at step
# 1,000 (docs/benchmarks.md, "The peers", cites Keras' lines for this and for LOSS).
ADAM = dict(learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7)
# The peers' loss: what Keras computes on the TensorFlow backend from the softmax's cached logits,
# with no clipping; Keras on JAX clips the probabilities instead.
LOSS = "mean over the batch of -log_softmax(logits)[label]"


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
