"""The one model definition: the tutorial's Flatten -> Dense(128, relu) -> Dense(10, softmax)."""

from __future__ import annotations

import numpy as np

from shared.data import CLASS_NAMES, IMAGE_SIZE


def build_model(hidden_units: int = 128):
    """A new, built (weights created) but uncompiled Keras model."""
    import keras

    return keras.Sequential(
        [
            keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE)),
            keras.layers.Flatten(),
            keras.layers.Dense(hidden_units, activation="relu"),
            keras.layers.Dense(len(CLASS_NAMES), activation="softmax"),
        ],
        name="fashion_mnist_mlp",
    )


def initial_weights(hidden_units: int, seed: int) -> list[np.ndarray]:
    """One snapshot of initial weights, drawn from ``seed``, to copy into both models."""
    import keras

    keras.utils.set_random_seed(seed)
    return build_model(hidden_units).get_weights()


def model_from_weights(hidden_units: int, weights: list[np.ndarray]):
    """A fresh model holding a copy of ``weights`` (the same start for both implementations)."""
    model = build_model(hidden_units)
    model.set_weights(weights)
    return model


def max_abs_weight_diff(a, b) -> float:
    """Largest absolute difference between corresponding weights of two models."""
    return max(
        float(np.max(np.abs(wa - wb))) for wa, wb in zip(a.get_weights(), b.get_weights())
    )
