"""The one model definition, in two kinds (``--model``): the tutorial's
Flatten -> Dense(128, relu) -> Dense(10, softmax) (as published with 0.8732; the tutorial now
outputs logits and trains with ``from_logits=True``), and the same MLP with what a learner meets
next: TensorFlow's "Overfit and underfit" tutorial's L2 weight penalty on each Dense kernel and
Dropout, and BatchNormalization (which that tutorial names but does not cover). The second is
where hand-written loops usually part from fit(): its layers behave differently in training
(``training=True``), it adds losses of its own (``model.losses``), it updates non-trainable state
(batch norm's moving statistics) and it draws random numbers (Dropout's seed generator), all of
which the three rungs must get the same."""

from __future__ import annotations

import numpy as np

from shared.config import TrainConfig
from shared.data import CLASS_NAMES, IMAGE_SIZE

#: The regularized model's L2 penalty on each Dense kernel and its dropout rate: the values of
#: TensorFlow's "Overfit and underfit" tutorial (`regularizers.l2(0.0001)`, `layers.Dropout(0.5)`).
L2_PENALTY = 1e-4
DROPOUT_RATE = 0.5


def build_model(hidden_units: int = TrainConfig.hidden_units, mixed_precision: bool = False,
                model: str = TrainConfig.model):
    """A new, built (weights created) but uncompiled Keras model of kind ``model``
    (shared.config.MODELS).

    ``mixed_precision``: the hidden layers compute in float16 (weights stay float32), set per
    layer rather than through Keras' global policy; the softmax always runs in float32.
    """
    import keras

    compute = "mixed_float16" if mixed_precision else "float32"
    classes = len(CLASS_NAMES)
    if model == "tutorial":
        layers = [
            keras.layers.Flatten(dtype=compute),
            keras.layers.Dense(hidden_units, activation="relu", dtype=compute),
            keras.layers.Dense(classes, activation="softmax", dtype="float32"),
        ]
    elif model == "regularized":
        l2 = keras.regularizers.L2(L2_PENALTY)  # adds L2_PENALTY * sum(kernel**2) to the loss
        layers = [
            keras.layers.Flatten(dtype=compute),
            keras.layers.Dense(hidden_units, activation="relu", kernel_regularizer=l2, dtype=compute),
            # Normalises with the batch's statistics in training and with moving averages of
            # them (non-trainable weights the step updates) otherwise. synchronized=True: under
            # tf.distribute the statistics are the global batch's, summed across replicas
            # (keras/src/backend/tensorflow/nn.py _compute_moments_sync:
            # `y_sum = replica_ctx.all_reduce(tf.distribute.ReduceOp.SUM, local_sum)`), and on one
            # device the same sums (variance E[x^2] - E[x]^2, where the default's tf.nn.moments
            # differs in the last bits); Keras' default keeps each replica's own, so the replicas'
            # moving statistics drift apart (docs/glossary.md), and no one copy is the model.
            keras.layers.BatchNormalization(synchronized=True, dtype=compute),
            # In training, zeroes each activation with probability 0.5 and doubles the rest, a new
            # mask every step, drawn from the layer's own seed generator (a variable, but not one
            # of model.weights).
            keras.layers.Dropout(DROPOUT_RATE, dtype=compute),
            keras.layers.Dense(classes, activation="softmax", kernel_regularizer=l2, dtype="float32"),
        ]
    else:
        raise ValueError(f"--model {model}: no such model")
    return keras.Sequential([keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE)), *layers],
                            name=f"fashion_mnist_{model}")


def initial_weights(hidden_units: int, seed: int, model: str = TrainConfig.model) -> list[np.ndarray]:
    """One snapshot of a new model's initial state, drawn from ``seed``, to copy into every
    side's model: the value of every variable, in ``model.variables``' order. For the tutorial's
    model that is its weights; the regularized one adds Dropout's seed generator state, which is
    not among ``model.weights`` (so not in ``get_weights()``), and without which two models
    built alike would drop different units."""
    import keras

    keras.utils.set_random_seed(seed)
    return [variable.numpy() for variable in build_model(hidden_units, model=model).variables]


def seed_generators(model) -> list:
    """The variables of ``model``'s seed generators (its Dropout layers' random state): those
    among ``model.variables`` that are not among ``model.weights``, in ``model.variables``'
    order. Keras' save_weights() leaves them out; low_level/checkpoint.py and the application's
    fit() checkpoint (fit_vs_tape/fit_checkpoint.py) save them."""
    weights = {id(weight) for weight in model.weights}
    return [variable for variable in model.variables if id(variable) not in weights]


def model_from_weights(hidden_units: int, weights: list[np.ndarray], mixed_precision: bool = False,
                       model: str = TrainConfig.model):
    """A fresh model holding a copy of ``weights``, an ``initial_weights`` snapshot (the same
    start for every side)."""
    built = build_model(hidden_units, mixed_precision, model)
    if len(built.variables) != len(weights):
        raise ValueError(f"a snapshot of {len(weights)} variables does not fit the {model} model's "
                         f"{len(built.variables)}")
    for variable, value in zip(built.variables, weights):
        variable.assign(value)
    return built


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


def compute_loss(model, loss_fn, labels, probs, sample_weight=None):
    """The loss of one batch as Keras' compute_loss makes it: the loss function's value
    (each image's loss times its ``sample_weight``, if any, summed and divided by the batch
    size) plus every loss the model's layers add (weight regularisers, ``add_loss``), each
    summed (keras/src/trainers/trainer.py Trainer.compute_loss: `for loss in self.losses:`).
    The tutorial's model adds none; the regularized one adds its L2 penalties, and a step that
    left model.losses out would silently train without them. The terms are added as Keras adds
    them, in one sum over their stack (`total_loss = ops.sum(losses)`): ``tf.add_n`` gives the
    same gradients but can round the loss one unit in the last place apart."""
    import keras
    import tensorflow as tf

    losses = [loss_fn(labels, probs, sample_weight=sample_weight),
              *(_scale_loss_for_distribution(tf.reduce_sum(extra)) for extra in model.losses)]
    return losses[0] if len(losses) == 1 else keras.ops.sum(losses)


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


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute difference between two arrays (inf if their shapes differ).

    A NaN in the same place in both counts as equal (two runs that diverged identically);
    a NaN in only one of them is an infinite difference.
    """
    if a.shape != b.shape:
        return float("inf")
    diff = np.abs(a.astype(np.float64) - b)
    diff[np.isnan(a) & np.isnan(b)] = 0.0
    diff[np.isnan(diff)] = np.inf
    return float(diff.max()) if diff.size else 0.0


def max_abs_weight_diff(a, b) -> float:
    """Largest absolute difference between corresponding weights of two models (``max_abs_diff``)."""
    return max((max_abs_diff(wa, wb) for wa, wb in zip(a.get_weights(), b.get_weights())), default=0.0)
