"""fit(class_weight=...) by hand: what fit()'s data adapter does to the batches.

Given ``class_weight``, fit() maps its dataset so that each batch carries a third element, each
image's weight, looked up by its label (keras/src/trainers/data_adapters/tf_dataset_adapter.py
make_class_weight_map_fn: `cw = tf.gather(class_weight_tensor, y_classes)`). The train step then
receives it as ``sample_weight`` and weighs the loss with it. Not the metrics of
``compile(metrics=[...])``: those are updated without it (keras/src/trainers/compile_utils.py
CompileMetrics.update_state: `m.update_state(y_t, y_p)`; only ``weighted_metrics`` take it), so
fit()'s accuracy with class weights is the plain one. Validation and evaluate() are unweighted.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf


def sample_weights(labels: tf.Tensor, class_weight: Sequence[float]) -> tf.Tensor:
    """Each image's weight: its class's entry in ``class_weight``."""
    return tf.gather(tf.constant(class_weight, tf.float32), tf.cast(labels, tf.int32))


def with_sample_weights(batches: tf.data.Dataset,
                        class_weight: Sequence[float] | None) -> tf.data.Dataset:
    """``batches`` of (images, labels) as fit(class_weight=...) feeds them to its step:
    (images, labels, sample weights); unchanged without ``class_weight``."""
    if class_weight is None:
        return batches
    return batches.map(lambda images, labels: (images, labels, sample_weights(labels, class_weight)))
