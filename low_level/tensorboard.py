"""TensorBoard logs by hand: what keras.callbacks.TensorBoard writes for fit(), written here
with ``tf.summary`` and, for a window of steps, ``tf.profiler``.

Keras' callback keeps two summary writers, LOG_DIR/train and, from the first validation on,
LOG_DIR/validation; at the end of every epoch it writes each training metric as ``epoch_<name>``
(and the learning rate as ``epoch_learning_rate``) to the first and each ``val_<name>`` as
``epoch_<name>`` to the second, with the epoch as the step. This class writes those epoch scalars,
so one ``tensorboard --logdir`` shows the loop's curves on top of fit()'s; the loop calls it like any
callback, with fit()'s logs. (Keras' callback also writes ``evaluation_<name>_vs_iterations`` after
each validation, the trace's graph when it profiles, and with ``write_graph`` the model's summary, of
a Sequential or functional model only (keras/src/callbacks/tensorboard.py
TensorBoard._write_keras_model_summary: `or self.model.__class__.__name__ == "Sequential"`), so not
of custom_step.py's subclass (measured); no train graph: Keras 3's ``train_function`` is plain Python.)

Its ``profile_batch=(first, last)`` traces a window of training batches (counted from the start
of training, one per call of the compiled function) with TensorFlow's profiler into LOG_DIR/train,
where TensorBoard's Profile tab finds it. Here ``profile=(first, last)`` counts the batch
callbacks from the start of the second epoch (fit_vs_tape/tb_logs.py turns one count into the
other), and starts and stops the profiler by hand.
"""

from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf


class TensorBoard(keras.callbacks.Callback):
    """Per-epoch ``epoch_loss``, ``epoch_accuracy`` and ``epoch_learning_rate`` scalars in
    ``log_dir``/train and ``log_dir``/validation; with ``profile=(first, last)``, a profiler
    trace of those batches (1-based) of the second epoch."""

    def __init__(self, log_dir: str | Path, learning_rate: float,
                 profile: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.train_dir = Path(log_dir) / "train"
        self.train_writer = tf.summary.create_file_writer(str(self.train_dir))
        self.val_dir = Path(log_dir) / "validation"
        self.val_writer = None  # made at the first validation, as Keras' callback makes it
        self.learning_rate = learning_rate
        self.profile = profile
        self.epoch, self.batches, self.tracing = 0, 0, False

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.batches = epoch, 0
        self._trace_if_due()

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        if self.tracing and self.batches >= self.profile[1]:
            self._stop_trace()
        self._trace_if_due()

    def on_epoch_end(self, epoch, logs=None):
        if self.tracing:  # an epoch that stopped early
            self._stop_trace()
        logs = logs or {}
        with self.train_writer.as_default():
            for name, value in logs.items():
                if not name.startswith("val_"):
                    tf.summary.scalar(f"epoch_{name}", value, step=epoch)
            tf.summary.scalar("epoch_learning_rate", self.learning_rate, step=epoch)
        validation = {name[4:]: value for name, value in logs.items() if name.startswith("val_")}
        if validation and self.val_writer is None:
            self.val_writer = tf.summary.create_file_writer(str(self.val_dir))
        if validation:
            with self.val_writer.as_default():
                for name, value in validation.items():
                    tf.summary.scalar(f"epoch_{name}", value, step=epoch)

    def on_train_end(self, logs=None):
        if self.tracing:
            self._stop_trace()
        self.train_writer.close()
        if self.val_writer is not None:
            self.val_writer.close()

    def _trace_if_due(self) -> None:
        """Start the profiler just before batch ``first`` of the second epoch."""
        if self.profile and self.epoch == 1 and not self.tracing \
                and self.batches == self.profile[0] - 1:
            tf.profiler.experimental.start(str(self.train_dir))
            self.tracing = True

    def _stop_trace(self) -> None:
        tf.profiler.experimental.stop()
        self.tracing = False
        self.profile = None  # one window per run
