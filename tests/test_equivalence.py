"""The oracle: fit(), fit() driving our own train_step, and the GradientTape loop, from the same
start on the same batches, agree bit for bit, in every mode."""

from __future__ import annotations

import numpy as np
import pytest

import high_level.custom_step as step
import high_level.train as high
import low_level.train as low
from fit_vs_tape.callbacks import EpochTimer
from shared.config import TrainConfig
from shared.model import initial_weights, max_abs_weight_diff, model_from_weights
from tests.conftest import synthetic


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


def _train_both(small, config):
    x, y, validation = small
    weights = initial_weights(config.hidden_units, config.seed)
    models, histories = {}, {}
    for name, impl in RUNGS:
        models[name] = model_from_weights(config.hidden_units, weights)
        histories[name] = impl.train(models[name], x, y, config, validation, verbose=False)
    return models, histories


@pytest.mark.parametrize("mode", ["eager", "graph", "xla", "epoch"])
def test_fit_custom_step_and_loop_are_bit_identical(small, mode):
    config = TrainConfig(epochs=1 if mode == "eager" else 2, mode=mode, seed=5)
    models, histories = _train_both(small, config)
    _assert_all_identical(models)
    assert histories["high"] == histories["step"] == histories["low"]
    assert set(histories["low"]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    # And training did something: the weights moved away from the start.
    start = model_from_weights(config.hidden_units, initial_weights(config.hidden_units, config.seed))
    assert max_abs_weight_diff(start, models["low"]) > 1e-3


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
    x, y, _ = small
    config = TrainConfig(epochs=2, mode="graph")
    seen = {}
    for name, impl in RUNGS:
        timer = EpochTimer()
        impl.train(model_from_weights(128, initial_weights(128, 0)), x, y, config,
                   callbacks=[timer], verbose=False)
        seen[name] = timer.epoch_seconds
    assert len(seen["high"]) == len(seen["step"]) == len(seen["low"]) == 2
    assert all(s > 0 for s in seen["high"] + seen["step"] + seen["low"])


def test_epoch_mode_matches_xla_mode(small):
    """The whole-epoch XLA computation trains on the same batches as a per-step XLA loop."""
    x, y, validation = small
    weights = initial_weights(128, 9)
    models, histories = {}, {}
    for mode in ("xla", "epoch"):
        models[mode] = model_from_weights(128, weights)
        histories[mode] = low.train(models[mode], x, y, TrainConfig(epochs=2, mode=mode, seed=9),
                                    validation, verbose=False)
    assert max_abs_weight_diff(models["xla"], models["epoch"]) < 1e-5
    for key in histories["xla"]:
        np.testing.assert_allclose(histories["epoch"][key], histories["xla"][key], atol=1e-5)


def test_fit_with_steps_per_execution_is_still_bit_identical(small):
    x, y, _ = small
    weights = initial_weights(128, 4)
    config = TrainConfig(epochs=2, mode="graph", seed=4, steps_per_execution=5)
    models = {name: model_from_weights(128, weights) for name, _ in RUNGS}
    for name, impl in RUNGS:
        impl.train(models[name], x, y, config, verbose=False)
    _assert_all_identical(models)


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
