"""The same classifier trained by hand: tf.GradientTape, apply_gradients, metrics, tf.function, XLA."""
