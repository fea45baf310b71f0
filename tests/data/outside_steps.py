"""Training steps written the way people outside this project write them, for the checker's tests
(tests/test_check.py) and for trying `fit-vs-tape check --step tests/data/outside_steps.py:NAME`.
Each takes the checker's signature, train_step(model, optimizer, loss_fn, metrics, images, labels);
the rest is as their authors wrote it."""

import keras
import tensorflow as tf


@tf.function
def loop_guide_step(model, optimizer, loss_fn, metrics, images, labels):
    """The step of keras.io's "Writing a training loop from scratch" (TensorFlow), only its
    signature changed: decorated with tf.function, `optimizer.apply`, the accuracy metric alone,
    and it returns the loss value, not a dict of metric results. It leaves out model.losses."""
    with tf.GradientTape() as tape:
        predictions = model(images, training=True)
        loss_value = loss_fn(labels, predictions)
    grads = tape.gradient(loss_value, model.trainable_weights)
    optimizer.apply(grads, model.trainable_weights)
    metrics["accuracy"].update_state(labels, predictions)
    return loss_value


def step_that_raises(model, optimizer, loss_fn, metrics, images, labels):
    """A step with a bug of its own author's."""
    predictions = model(images, training=True)
    raise RuntimeError(f"expected 3 classes, got {predictions.shape[-1]}")


def step_with_failing_assertion(model, optimizer, loss_fn, metrics, images, labels):
    """A check its author put in, which fails when the graph runs, not when it is traced."""
    predictions = model(images, training=True)
    tf.debugging.assert_less(tf.reduce_max(predictions), 0.5, message="a confident prediction")
    return {"loss": tf.reduce_mean(predictions)}


def penalty_logged_not_trained(model, optimizer, loss_fn, metrics, images, labels):
    """The L2 penalties left out of the gradients but added to the loss it logs: the weights of
    the gallery's model_losses_dropped, reached by another route, with other logs."""
    with tf.GradientTape() as tape:
        predictions = model(images, training=True)
        data_loss = loss_fn(labels, predictions)
    grads = tape.gradient(data_loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    metrics["loss"].update_state(data_loss + tf.add_n(model.losses), sample_weight=tf.shape(labels)[0])
    metrics["accuracy"].update_state(labels, predictions)
    return {name: metric.result() for name, metric in metrics.items()}


def rows_lstm():
    """A model whose input has a None dimension: an LSTM reading the image's rows in turn."""
    return keras.Sequential([keras.Input((None, 28)), keras.layers.LSTM(8),
                             keras.layers.Dense(10, activation="softmax")])
