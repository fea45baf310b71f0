"""The one model definition: the tutorial's Flatten -> Dense(128, relu) -> Dense(10, softmax)."""

from __future__ import annotations

import numpy as np

from shared.config import TrainConfig
from shared.data import CLASS_NAMES, IMAGE_SIZE


def build_model(hidden_units: int = TrainConfig.hidden_units, mixed_precision: bool = False):
    """A new, built (weights created) but uncompiled Keras model.

    ``mixed_precision``: the hidden layers compute in float16 (weights stay float32), set per
    layer rather than through Keras' global policy; the softmax always runs in float32.
    """
    import keras

    compute = "mixed_float16" if mixed_precision else "float32"
    return keras.Sequential(
        [
            keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE)),
            keras.layers.Flatten(dtype=compute),
            keras.layers.Dense(hidden_units, activation="relu", dtype=compute),
            keras.layers.Dense(len(CLASS_NAMES), activation="softmax", dtype="float32"),
        ],
        name="fashion_mnist_mlp",
    )


def parameter_count(hidden_units: int) -> int:
    """``build_model(hidden_units).count_params()`` without building it (no Keras import):
    weights and biases of both Dense layers, 101,770 for the tutorial's 128."""
    classes = len(CLASS_NAMES)
    return (IMAGE_SIZE * IMAGE_SIZE + 1) * hidden_units + (hidden_units + 1) * classes


def initial_weights(hidden_units: int, seed: int) -> list[np.ndarray]:
    """One snapshot of initial weights, drawn from ``seed``, to copy into every side's model."""
    import keras

    keras.utils.set_random_seed(seed)
    return build_model(hidden_units).get_weights()


def model_from_weights(hidden_units: int, weights: list[np.ndarray], mixed_precision: bool = False):
    """A fresh model holding a copy of ``weights`` (the same start for every implementation)."""
    model = build_model(hidden_units, mixed_precision)
    model.set_weights(weights)
    return model


def make_optimizer(config: TrainConfig):
    """The optimizer every side uses: compile("adam") is keras.optimizers.Adam() with its defaults.
    Under mixed precision it is wrapped in a LossScaleOptimizer here, for every side. compile()
    would wrap it only if the *model's* dtype policy were mixed_float16
    (keras/src/trainers/trainer.py Trainer.compile: `self.dtype_policy.name == "mixed_float16"`),
    and build_model() sets the policy per layer, leaving the model's own float32."""
    import keras

    optimizer = keras.optimizers.Adam(config.learning_rate)
    if config.mixed_precision:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def compute_loss(model, loss_fn, labels, probs):
    """The loss of one batch as Keras' compute_loss makes it: the loss function's value plus
    every loss the model's layers add (weight regularisers, ``add_loss``), each summed
    (keras/src/trainers/trainer.py Trainer.compute_loss: `for loss in self.losses:`). This
    model adds none, so here it is the loss function's value; a step that left model.losses out
    would silently train without a regulariser."""
    import tensorflow as tf

    losses = [loss_fn(labels, probs), *(_scale_loss_for_distribution(tf.reduce_sum(extra))
                                        for extra in model.losses)]
    return losses[0] if len(losses) == 1 else tf.add_n(losses)


def _scale_loss_for_distribution(loss):
    """A model loss divided by the replica count under tf.distribute, as Keras' losses come
    (keras/src/backend/tensorflow/trainer.py TensorFlowTrainer._aggregate_additional_loss:
    `return loss_module.scale_loss_for_distribution(loss)`); unchanged on one device."""
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss * (1.0 / replicas) if replicas > 1 else loss


def unscale_loss_for_distribution(loss):
    """This replica's own mean loss, for the loss tracker. Under a tf.distribute strategy Keras'
    losses come divided by the replica count (so that the replicas' summed gradients are the
    global mean); this multiplies that back, as Keras' own train_step does. On one device it
    changes nothing."""
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss * replicas if replicas > 1 else loss


def max_abs_weight_diff(a, b) -> float:
    """Largest absolute difference between corresponding weights of two models.

    A NaN in the same place in both counts as equal (two runs that diverged identically);
    a NaN in only one of them is an infinite difference.
    """
    worst = 0.0
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        diff = np.abs(wa.astype(np.float64) - wb)
        both_nan = np.isnan(wa) & np.isnan(wb)
        diff[both_nan] = 0.0
        diff[np.isnan(diff)] = np.inf
        worst = max(worst, float(diff.max()))
    return worst
