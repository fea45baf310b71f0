"""The oracle: fit(), fit() driving our own train_step, and the GradientTape loop, from the same
start on the same batches, agree bit for bit, in every mode, for both models: the tutorial's and
the regularized one (L2 penalty, batch norm, dropout), where hand-written loops usually part
from fit()."""

from __future__ import annotations

import numpy as np
import pytest

import high_level.custom_step as step
import high_level.train as high
import low_level.train as low
from fit_vs_tape.check import Recorder
from shared.config import MODELS, TrainConfig
from shared.model import initial_weights, max_abs_weight_diff, model_from_weights, seed_generators
from tests.conftest import synthetic

#: Its tests share a module-scoped fixture or cache: they run on one xdist worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("equivalence")


@pytest.fixture(scope="module")
def small():
    x, y = synthetic(500, 0)  # 500 is not a multiple of 32: a smaller last batch every epoch
    x_val, y_val = synthetic(100, 1)
    return x, y, (x_val, y_val)


RUNGS = (("high", high), ("step", step), ("low", low))


def _assert_all_identical(models: dict) -> None:
    first, *others = models.values()
    for other in others:
        assert max_abs_weight_diff(first, other) == 0.0


def _train_both(small, config, validation=True):
    x, y, held_out = small
    weights = initial_weights(config.hidden_units, config.seed, config.model)
    models, histories = {}, {}
    for name, impl in RUNGS:
        models[name] = model_from_weights(config.hidden_units, weights, model=config.model)
        histories[name] = impl.train(models[name], x, y, config, held_out if validation else None,
                                     verbose=False)
    return models, histories


def _seed_states(model) -> list:
    return [v.numpy().tolist() for v in seed_generators(model)]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("mode", ["eager", "graph", "xla", "epoch"])
def test_fit_custom_step_and_loop_are_bit_identical(small, mode, model):
    config = TrainConfig(epochs=1 if mode == "eager" else 2, mode=mode, seed=5, model=model)
    models, histories = _train_both(small, config)
    _assert_all_identical(models)
    assert histories["high"] == histories["step"] == histories["low"]
    assert set(histories["low"]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    # And training did something: the weights moved away from the start.
    start = model_from_weights(config.hidden_units, initial_weights(config.hidden_units, config.seed,
                                                                    model), model=model)
    assert max_abs_weight_diff(start, models["low"]) > 1e-3
    if model == "regularized":
        # Batch norm's moving statistics moved (they are among the weights compared above) and
        # every side drew the same number of dropout masks, one per step.
        norm = models["low"].get_layer(index=2)
        assert not np.allclose(np.array(norm.moving_mean), 0.0)
        states = {name: _seed_states(m) for name, m in models.items()}
        assert states["high"] == states["step"] == states["low"] != _seed_states(start)
        assert states["low"][0][1] == config.epochs * 16  # 500 images: 16 steps an epoch


def test_the_regularized_model_adds_its_penalties_and_trains_differently():
    """The regularized model really has what makes loops differ: losses of its own, a layer
    that behaves otherwise in training, non-trainable state, a seed generator."""
    import keras

    model = model_from_weights(128, initial_weights(128, 0, "regularized"), model="regularized")
    assert len(model.losses) == 2 and all(float(loss) > 0 for loss in model.losses)
    kinds = [type(layer) for layer in model.layers]
    assert keras.layers.BatchNormalization in kinds and keras.layers.Dropout in kinds
    assert len(model.non_trainable_weights) == 2 and len(model.variables) == len(model.weights) + 1
    images = np.ones((4, 28, 28), np.float32)
    assert np.array_equal(model(images, training=False), model(images, training=False))
    assert not np.array_equal(model(images, training=True), model(images, training=False))


@pytest.mark.parametrize("mode", ["graph", "epoch"])
def test_class_weight_is_bit_identical_and_weighs_the_loss_not_the_accuracy(small, mode):
    x, y, _ = small
    weights = (1, 1, 1, 1, 1, 1, 3.0, 1, 0.5, 1)
    config = TrainConfig(epochs=2, mode=mode, seed=2, model="regularized", class_weight=weights)
    models, histories = _train_both(small, config, validation=False)
    _assert_all_identical(models)
    assert histories["high"] == histories["step"] == histories["low"]
    plain = model_from_weights(128, initial_weights(128, 2, "regularized"), model="regularized")
    low.train(plain, x, y, TrainConfig(epochs=2, mode=mode, seed=2, model="regularized"),
              verbose=False)
    assert max_abs_weight_diff(plain, models["low"]) > 1e-3  # the weights did weigh



def test_metrics_reset_between_epochs_and_evaluate_predict_agree(small):
    config = TrainConfig(epochs=3, mode="graph", seed=6)
    models, histories = _train_both(small, config)
    # fit() resets its metrics each epoch; a loop that forgot would report running averages over
    # all epochs so far from epoch 2 on, and differ from fit() here.
    assert histories["high"] == histories["step"] == histories["low"]
    assert histories["low"]["accuracy"][2] > histories["low"]["accuracy"][0]
    x_val, y_val = small[2]
    evaluated = {name: impl.evaluate(models[name], x_val, y_val, config) for name, impl in RUNGS}
    assert evaluated["high"] == evaluated["step"] == evaluated["low"]
    p_high = high.predict(models["high"], x_val, config)
    p_low = low.predict(models["low"], x_val, config)
    assert p_low.shape == (100, 10)
    assert np.array_equal(p_high, p_low)
    assert np.array_equal(step.predict(models["step"], x_val, config), p_low)
    np.testing.assert_allclose(p_low.sum(axis=1), 1.0, rtol=1e-5)
    # evaluate() = accuracy of predict()'s argmax: the same model seen two ways.
    acc = low.evaluate(models["low"], x_val, y_val, config)["accuracy"]
    assert acc == pytest.approx(float(np.mean(p_low.argmax(1) == y_val)))


def test_loop_drives_callbacks_like_fit(small):
    """The three rungs call a callback's training methods alike: the same methods, in the same
    order, with the same epoch and batch numbers and the same logs, and time their epochs."""
    x, y, _ = small
    config = TrainConfig(epochs=2, mode="graph")
    seen = {}
    for name, impl in RUNGS:
        recorder = Recorder(copy_weights=False)
        impl.train(model_from_weights(128, initial_weights(128, 0)), x, y, config,
                   callbacks=[recorder], verbose=False)
        seen[name] = recorder
    steps = -(-len(x) // config.batch_size)
    expected = ["on_train_begin()"] + [
        call for epoch in range(2) for call in (
            [f"on_epoch_begin({epoch})"]
            + [f"on_train_batch_{when}({step})" for step in range(steps) for when in ("begin", "end")]
            + [f"on_epoch_end({epoch})"])] + ["on_train_end()"]
    for name, recorder in seen.items():
        assert recorder.calls == expected, name
        assert recorder.logs == seen["high"].logs and recorder.epochs == seen["high"].epochs, name
        assert len(recorder.epoch_seconds) == 2 and all(s > 0 for s in recorder.epoch_seconds)
    assert set(seen["high"].logs[0]) == {"loss", "accuracy"}


def test_epoch_mode_matches_xla_mode(small):
    """The whole-epoch XLA computation trains on the same batches as a per-step XLA loop."""
    x, y, validation = small
    weights = initial_weights(128, 9)
    models, histories = {}, {}
    for mode in ("xla", "epoch"):
        models[mode] = model_from_weights(128, weights)
        histories[mode] = low.train(models[mode], x, y, TrainConfig(epochs=2, mode=mode, seed=9),
                                    validation, verbose=False)
    # Bit for bit: normalising by a multiplication gives the same bits inside XLA's one
    # computation and out of it (shared/order.py normalize).
    assert max_abs_weight_diff(models["xla"], models["epoch"]) == 0.0
    assert histories["epoch"] == histories["xla"]


def test_fit_with_steps_per_execution_is_still_bit_identical(small):
    # 500 images: 16 steps an epoch, 4 executions of 4 steps; the loop runs them one by one.
    config = TrainConfig(epochs=2, mode="graph", seed=4, steps_per_execution=4, model="regularized")
    models, histories = _train_both(small, config)
    _assert_all_identical(models)
    assert histories["high"] == histories["step"] == histories["low"]
    # evaluate() and predict() run one pass with the same compiled steps_per_execution: 300
    # images are 10 steps, so their last execution is 2 steps short, which only training
    # refuses (bench speed's custom_step spe row once failed here after training).
    x_test, y_test = small[0][:300], small[1][:300]
    results = {name: impl.evaluate(models[name], x_test, y_test, config) for name, impl in RUNGS}
    assert results["high"] == results["step"] == results["low"]
    probabilities = [impl.predict(models[name], x_test, config) for name, impl in RUNGS]
    assert all(np.array_equal(probabilities[0], p) for p in probabilities[1:])


def test_steps_per_execution_that_does_not_divide_an_epoch_is_refused(small):
    """fit() would run its last execution of epoch 1 on into epoch 2's batches (shared/config.py
    TrainConfig.check_steps): refused before anything trains, on fit()'s side too."""
    x, y, _ = small
    config = TrainConfig(epochs=2, steps_per_execution=5)
    with pytest.raises(ValueError, match=r"--steps-per-execution 5: must divide the 16 steps of "
                                         r"an epoch \(1, 2, 4, 8, 16\)"):
        config.check_data(len(x))
    with pytest.raises(ValueError, match="--steps-per-execution 5"):
        high.train(model_from_weights(128, initial_weights(128, 0)), x, y, config, verbose=False)
    TrainConfig(mode="epoch", steps_per_execution=5).check_data(len(x))  # one execution per epoch


def test_mixed_precision_scales_the_loss_on_both_sides_alike(small):
    """The GPU option, run on the CPU: fit() and the loop still agree bit for bit, and the
    hidden layer really computes in float16 behind a LossScaleOptimizer."""
    import keras

    x, y, _ = small
    config = TrainConfig(epochs=1, mixed_precision=True, seed=3)
    weights = initial_weights(128, 3)
    models = {}
    for name, impl in RUNGS:
        models[name] = model_from_weights(128, weights, mixed_precision=True)
        impl.train(models[name], x, y, config, verbose=False)
    _assert_all_identical(models)
    assert isinstance(models["high"].optimizer, keras.optimizers.LossScaleOptimizer)
    assert models["low"].layers[1].compute_dtype == "float16"
    assert models["low"].layers[1].kernel.dtype == "float32"
    assert models["low"].layers[2].compute_dtype == "float32"
