"""tf.distribute in the loop: what fit() does for you once the model is created under a strategy.

Under ``strategy.scope()`` fit() distributes its dataset over the replicas, runs its train step
on each of them with ``strategy.run`` and reduces what they return (TensorFlowTrainer._make_function
in keras/src/backend/tensorflow/trainer.py), and, for a model created in the strategy's scope,
it creates the optimizer's variables before the first trace. A hand-written loop does each of
these itself; the functions here are all it takes. Outside any strategy they change nothing, so
the lesson in train.py reads the same with or without one.

The loss: Keras 3 losses divide by the number of replicas under a strategy, so that summing the
replicas' gradients gives the gradient of the global mean. The loss tracker multiplies that back
(``unscale_loss_for_distribution`` in shared/model.py, as Keras' own train_step does), or the
printed loss would be too small.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf


def is_distributed() -> bool:
    """True inside ``strategy.scope()`` of a strategy other than TensorFlow's default one."""
    return tf.distribute.has_strategy()


def distribute_dataset(dataset: tf.data.Dataset):
    """Split each global batch across the replicas (fit() does it in its TFEpochIterator)."""
    if not is_distributed():
        return dataset
    return tf.distribute.get_strategy().experimental_distribute_dataset(dataset)


def build_early(optimizer, model) -> None:
    """Under a strategy, create the optimizer's variables now, in the strategy's scope, before
    anything is traced, as fit() does for a model created in that scope
    (keras/src/trainers/trainer.py Trainer._symbolic_build:
    `self.optimizer.build(self.trainable_variables)`); for any other model fit() skips this
    (keras/src/backend/tensorflow/trainer.py TensorFlowTrainer._maybe_symbolic_build:
    `if self._distribute_strategy is None:`) and the first trace builds them. Outside a
    strategy: nothing."""
    if is_distributed():
        optimizer.build(model.trainable_variables)


def make_distributed_function(step: Callable) -> Callable:
    """``step`` run on every replica with ``strategy.run``; what the replicas return (each
    metric's value so far) reduced to their mean, as fit() reduces it: reduction "auto" is
    "mean" off TPUs (keras/src/backend/tensorflow/trainer.py reduce_per_replica:
    `reduction = "mean"`). Compiled with tf.function, as fit() compiles its train function."""
    strategy = tf.distribute.get_strategy()

    def distributed_step(*batch):  # images, labels and, with class weights, sample weights
        per_replica = strategy.run(step, args=batch)
        return {name: strategy.reduce("MEAN", value, axis=None) for name, value in per_replica.items()}

    # reduce_retracing, as fit() traces its function (keras/src/backend/tensorflow/trainer.py
    # TensorFlowTrainer._make_function: `multi_step_on_iterator, reduce_retracing=True`): a
    # smaller last batch is then traced with an unknown batch size, as fit() sees every batch.
    # Traced for its own static size, batch norm's statistics came out rounded otherwise
    # (measured: weights 1e-7 apart from fit() after 2 epochs on 500 images, 2 replicas).
    return tf.function(distributed_step, reduce_retracing=True)
