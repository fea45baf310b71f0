"""What every peer row shares: Keras' Adam settings, the loss they match, the saved initial
weights, and the shared order cut into batches.

A leaf module: it imports no other module of benchmarks/, so the module that starts the peer
rows (benchmarks/peers.py) and the ones that train them (peer_jax.py, peer_torch.py) both depend
on it, and not on each other. It imports NumPy and shared/order.py only, no framework: the
worker imports it before it knows which framework its row needs.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from shared.order import epoch_permutation, steps_per_epoch

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
