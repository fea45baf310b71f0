"""The JAX peers, in a worker process started with ``KERAS_BACKEND=jax`` (benchmarks/peers.py).

- ``keras_fit``: shared/model.py's model, ``compile`` + ``fit()`` as on the TensorFlow rows.
  Keras' JAX trainer jit-compiles ``train_step`` and hands the per-step logs to the callbacks on
  a thread of their own (keras/src/callbacks/callback_list.py
  CallbackList._configure_async_dispatch: `if not backend.IS_THREAD_SAFE:` -- JAX is); its
  ``steps_per_execution`` is a Python loop over the jitted step (keras/src/backend/jax/trainer.py
  JAXTrainer._make_function: `for _ in range(self.steps_per_execution - 1):`).
- ``jax_loop``: a ``jax.jit`` step (forward, ``jax.value_and_grad``, ``optax.adam``) called once
  per batch (``jit``), or the epoch's full batches as one ``jax.lax.scan`` in one jitted call,
  its uint8 images gathered in the shared order first (``scan``, low_level/whole_epoch.py's idea).
"""

from __future__ import annotations

import time
from functools import partial

import numpy as np

from benchmarks.peer_common import ADAM, batches, epoch_order, normalize


def _versions() -> dict:
    """The versions a JAX row ran with, and the backend Keras read from KERAS_BACKEND."""
    import jax
    import keras
    import optax

    return {"jax": jax.__version__, "optax": optax.__version__, "keras": keras.__version__,
            "keras_backend": keras.backend.backend()}


def keras_fit(mode: str, config: dict, weights: list[np.ndarray], data) -> dict:
    """Train a ``keras_jax`` row (steps_per_execution as its config says): epoch seconds, test
    accuracy and versions."""
    import keras

    from fit_vs_tape.callbacks import EpochTimer
    from shared.config import TrainConfig
    from shared.model import make_optimizer, model_from_weights

    if keras.backend.backend() != "jax":
        raise RuntimeError("the keras_jax rows need KERAS_BACKEND=jax set before keras is imported")
    x, y, x_test, y_test = data
    cfg = TrainConfig(**config)
    steps = -(-len(x) // cfg.batch_size)
    model = model_from_weights(cfg.hidden_units, weights)
    model.compile(optimizer=make_optimizer(cfg), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=True,
                  steps_per_execution=cfg.steps_per_execution)

    class AllEpochs(keras.utils.PyDataset):
        """Every epoch's batches in the shared order, as one sequence: fit() keeps one iterator
        running across epochs when given steps_per_epoch (keras/src/trainers/epoch_iterator.py
        EpochIterator._enumerate_iterator: `if self._current_iterator is None or
        self.steps_per_epoch is None:`), so batch i is epoch i // steps, step i % steps."""

        def __init__(self):
            super().__init__()
            # Every epoch's order now, before fit() times anything, as the other rows do.
            self._orders = [epoch_order(x, y, cfg.seed, epoch) for epoch in range(cfg.epochs)]

        def __len__(self):
            return steps * cfg.epochs

        def __getitem__(self, i):
            epoch, step = divmod(i, steps)
            xs, ys = self._orders[epoch]
            part = slice(step * cfg.batch_size, (step + 1) * cfg.batch_size)
            return normalize(xs[part]), ys[part]

    # The TensorFlow rows' timer: epoch hooks only, so fit() still dispatches the batch logs
    # asynchronously on JAX (CallbackList._configure_async_dispatch).
    timer = EpochTimer()
    # shuffle=False: a PyDataset would otherwise be read in a random order of its indices.
    model.fit(AllEpochs(), epochs=cfg.epochs, steps_per_epoch=steps, shuffle=False, verbose=0,
              callbacks=[timer])
    accuracy = model.evaluate(normalize(x_test), y_test, batch_size=cfg.batch_size, verbose=0,
                              return_dict=True)["accuracy"]
    return {"epoch_seconds": timer.epoch_seconds, "test_accuracy": float(accuracy), "note": "",
            "environment": _versions()}


def _forward(params, x_u8):
    import jax.numpy as jnp

    w1, b1, w2, b2 = params
    x = x_u8.reshape(x_u8.shape[0], -1).astype(jnp.float32) * jnp.float32(1.0 / 255.0)
    hidden = jnp.maximum(x @ w1 + b1, 0.0)
    return hidden @ w2 + b2  # logits; the softmax is folded into the loss (peer_common.LOSS)


def _loss(params, x_u8, labels):
    import jax
    import jax.numpy as jnp

    log_probs = jax.nn.log_softmax(_forward(params, x_u8))
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))


def jax_loop(mode: str, config: dict, weights: list[np.ndarray], data) -> dict:
    """Train a ``jax`` row, ``jit`` or ``scan``: epoch seconds, test accuracy and versions."""
    import jax
    import jax.numpy as jnp
    import optax

    x, y, x_test, y_test = data
    batch_size, seed = config["batch_size"], config["seed"]
    tx = optax.adam(ADAM["learning_rate"], b1=ADAM["beta_1"], b2=ADAM["beta_2"],
                    eps=ADAM["epsilon"])

    def step(params, opt_state, x_u8, labels):
        loss, grads = jax.value_and_grad(_loss)(params, x_u8, labels)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    train_step = jax.jit(step, donate_argnums=(0, 1))

    @partial(jax.jit, donate_argnums=(0, 1))
    def train_epoch(params, opt_state, xs, ys):
        def body(carry, batch):
            params, opt_state, loss = step(*carry, *batch)
            return (params, opt_state), loss

        (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), (xs, ys))
        return params, opt_state, losses

    params = tuple(jnp.asarray(w) for w in weights)
    opt_state = tx.init(params)
    # Every epoch's order before any timing, as the TensorFlow rows build theirs before fit().
    orders = [epoch_order(x, y, seed, epoch) for epoch in range(config["epochs"])]
    seconds = []
    for xs, ys in orders:
        start = time.perf_counter()
        if mode == "scan":
            full = len(xs) // batch_size * batch_size
            if full:
                params, opt_state, _ = train_epoch(
                    params, opt_state, xs[:full].reshape(-1, batch_size, *xs.shape[1:]),
                    ys[:full].reshape(-1, batch_size))
            if full < len(xs):
                params, opt_state, _ = train_step(params, opt_state, xs[full:], ys[full:])
        else:
            for part in batches(len(xs), batch_size):
                params, opt_state, _ = train_step(params, opt_state, xs[part], ys[part])
        jax.block_until_ready(params)  # the epoch's only wait for the device
        seconds.append(time.perf_counter() - start)
    predict = jax.jit(lambda params, x_u8: jnp.argmax(_forward(params, x_u8), axis=1))
    accuracy = float(np.mean(np.asarray(predict(params, x_test)) == y_test))
    return {"epoch_seconds": seconds, "test_accuracy": accuracy, "note": "", "environment": _versions()}
