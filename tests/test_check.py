"""The checker on steps written outside this project (tests/data/outside_steps.py): keras.io's
loop step, steps that raise, a mistake reached by another route, a model whose input has a None
dimension; and what it prints: numbers that differ look different, variables keep their names."""

from __future__ import annotations

import numpy as np
import pytest

from fit_vs_tape.cli import main
from fit_vs_tape.runtime import import_tensorflow
from tests.conftest import ROOT, synthetic

import_tensorflow(device="cpu")

import keras  # noqa: E402

from fit_vs_tape import check  # noqa: E402
from fit_vs_tape.user_code import load  # noqa: E402
from low_level.train import train_step  # noqa: E402
from shared.config import TrainConfig  # noqa: E402
from shared.model import build_model, make_optimizer  # noqa: E402

#: Its tests share a module-scoped fixture: they run on one xdist worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("check")

STEPS = ROOT / "tests" / "data" / "outside_steps.py"
CONFIG = TrainConfig(model="regularized", epochs=2, limit=96, hidden_units=8, seed=3)


@pytest.fixture(scope="module")
def data():
    return synthetic(96, 7)


def outside(name: str):
    return load("--step", f"{STEPS}:{name}")


def _compile_args(config: TrainConfig = CONFIG) -> dict:
    return dict(optimizer=make_optimizer(config), loss=keras.losses.SparseCategoricalCrossentropy(),
                metrics=["accuracy"])


def _check(data, step, model: str = "regularized", builder=None, **config):
    config = TrainConfig(**{**CONFIG.to_dict(), "model": model, **config})
    builder = builder or (lambda: build_model(config.hidden_units, model=config.model))
    return check.check_step(builder, _compile_args(config), step, x=data[0], y=data[1], config=config)


def test_keras_io_loop_step_gets_a_verdict_without_its_logs(data):
    """It returns the loss, not metric results: weights and callback calls are compared, the
    logs are not, and the verdict says so. On the tutorial's model (no model.losses) it is
    fit(); on the regularized one it is the gallery's model_losses_dropped, named. (Loaded anew
    for each check: a tf.function may create variables, Adam's here, on its first call only.)"""
    same = _check(data, outside("loop_guide_step"), model="tutorial")
    assert same.bit_identical and same.logs is None and same.max_abs_by_step == [0.0] * 6
    assert "returns a single value" in same.logs_not_compared
    assert "the logs were not compared" in same.summary() and "every log" not in same.summary()
    differs = _check(data, outside("loop_guide_step"))
    assert not differs.bit_identical and differs.first.step == 1
    assert differs.explained_by == "model_losses_dropped" and differs.explained_logs is None


def test_a_step_that_returns_nothing_is_compared_by_weights_and_calls(data):
    def quiet_step(*args):
        train_step(*args)  # the right step, its logs dropped

    verdict = _check(data, quiet_step)
    assert verdict.bit_identical and "returns nothing" in verdict.logs_not_compared


def test_a_mistake_reached_by_another_route_is_named_with_its_logs(data):
    verdict = _check(data, outside("penalty_logged_not_trained"))
    assert verdict.explained_by == "model_losses_dropped"
    assert verdict.explained_logs.startswith("at step 1 loss is")
    assert "reached another way" in verdict.summary()


def test_numbers_one_ulp_apart_print_apart():
    reference, other = check.Recorder(), check.Recorder()
    loss = 1.2397400140762329
    reference.logs, other.logs = [{"loss": loss}], [{"loss": float(np.nextafter(np.float32(loss),
                                                                                  np.float32(2)))}]
    reference.weights = other.weights = [[np.zeros(1)]]
    said = check.compare(reference, other, ["w"], 1).logs
    printed = said.removeprefix("at step 1 loss is ").split(", fit()'s ")
    assert printed[0] != printed[1] and said.endswith("1 ulp apart in float32"), said
    other.logs = [{"loss": 1.5}]
    assert check.compare(reference, other, ["w"], 1).logs == "at step 1 loss is 1.5, fit()'s 1.23974"


def test_variables_keep_their_names_on_every_build(data):
    """Keras numbers layers per process (dense_5 on a later build); the checker names a weight
    by its layer's place, the same however many models were built before."""
    first = check.variable_names(build_model(8, model="regularized"))
    for _ in range(2):
        build_model(8, model="regularized")
    assert check.variable_names(build_model(8, model="regularized")) == first
    assert first[:2] == ["layers[1].kernel", "layers[1].bias"] and "layers[2].moving_mean" in first
    verdict = _check(data, outside("loop_guide_step"))
    assert verdict.first.variable in first


def test_a_model_with_a_none_input_dimension_is_checked(data):
    builder = load("--builder", f"{STEPS}:rows_lstm")
    verdict = _check(data, train_step, model="tutorial", builder=builder)
    assert verdict.bit_identical, verdict.summary()
    names = check.variable_names(builder())
    assert names[0] == "layers[0].lstm_cell/kernel" and names[-1] == "layers[1].bias"


@pytest.mark.parametrize("mode", ["graph", "eager"])
def test_check_command_one_line_for_code_that_raises(tiny_data_dir, capsys, mode):
    """The user's exception is exit 2 and one line with their file and line, traced or eager;
    keras.io's step gets a verdict and exit 0 on the tutorial's model."""
    base = ["check", "--limit", "64", "--hidden-units", "8", "--data-dir", str(tiny_data_dir),
            "--mode", mode]
    source = STEPS.read_text().splitlines()
    for name, message, line in (
        ("step_that_raises", "RuntimeError: expected 3 classes, got 10", "raise RuntimeError"),
        ("step_with_failing_assertion", "InvalidArgumentError: ", "tf.debugging.assert_less"),
    ):
        assert main(base + ["--step", f"{STEPS}:{name}"]) == 2, name
        err = capsys.readouterr().err.strip()
        number = next(i for i, text in enumerate(source, 1) if line in text)
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert f"check: your code raised {message}" in err and f"({STEPS}, line {number})" in err, err
    assert main(base + ["--model", "tutorial", "--step", f"{STEPS}:loop_guide_step"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("bit-identical to fit()") and "the logs were not compared" in out
