"""The mistakes gallery and the checker: each classic mistake leaves fit() where it is recorded
to, the correct loop never does, and the checker finds each mistake in a step given to it."""

from __future__ import annotations

import json
import re

import pytest

from fit_vs_tape.cli import main
from fit_vs_tape.runtime import import_tensorflow
from tests.conftest import ROOT, needs_real_data, synthetic

import_tensorflow(device="cpu")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from fit_vs_tape import check, gallery  # noqa: E402
from high_level.custom_step import OwnStepModel  # noqa: E402
from low_level import mistakes  # noqa: E402
from low_level.train import train_step  # noqa: E402
from shared.config import TrainConfig  # noqa: E402
from shared.model import build_model, make_optimizer  # noqa: E402

#: Its tests share a module-scoped fixture or cache: they run on one xdist worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("mistakes")

#: 2 epochs of 4 steps (128 images), the regularized model: dropout, batch norm and L2 all act.
CONFIG = TrainConfig(model="regularized", epochs=2, limit=128, hidden_units=16, seed=5)
STEPS = 8


@pytest.fixture(scope="module")
def data():
    x, y = synthetic(128, 3)
    x_test, y_test = synthetic(64, 4)
    return x, y, x_test, y_test


@pytest.fixture(scope="module")
def result(data):
    return gallery.run_gallery(*data, CONFIG)


def _build():
    return build_model(CONFIG.hidden_units, model=CONFIG.model)


def _compile_args():
    return dict(optimizer=make_optimizer(CONFIG), loss=keras.losses.SparseCategoricalCrossentropy(),
                metrics=["accuracy"])


def test_every_mistake_leaves_fit_where_recorded(result):
    rows = {row["name"]: row for row in result["mistakes"]}
    assert list(rows) == [m.name for m in mistakes.MISTAKES] and result["steps"] == STEPS
    for name in ("no_training_flag", "model_losses_dropped", "summed_loss", "own_shuffle",
                 "xla_on_one_side"):
        assert rows[name]["first_divergence"]["step"] == 1, name  # the very first update differs
        assert rows[name]["max_abs_by_step"][0] > 0
    # Adam's step is scale-free but for epsilon: a 32x larger loss moves the weights by far
    # less than leaving out the L2 penalty does, and prints a loss 32x fit()'s.
    assert (rows["summed_loss"]["first_divergence"]["max_abs"]
            < rows["model_losses_dropped"]["first_divergence"]["max_abs"])
    assert re.search(r"step 1 loss is", rows["summed_loss"]["callbacks_differ"])
    # A new Adam every step: its first update is fit()'s first, its second is not.
    first = rows["optimizer_in_step"]["first_divergence"]
    assert first["step"] == 2 and rows["optimizer_in_step"]["max_abs_by_step"][0] == 0
    # from_logits=True on a softmax output: Keras' TensorFlow backend takes the softmax's own
    # logits anyway, and warns; the same bits as fit().
    assert rows["logits_loss"]["first_divergence"] is None and rows["logits_loss"]["callbacks_differ"] is None
    # Without training=True batch norm neither uses nor updates the batch's statistics, so its
    # moving mean is what differs most at step 1. Dropout draws no mask either, but its seed
    # generator's counter is named only when no weight differs, and is no part of the sizes.
    first = rows["no_training_flag"]["first_divergence"]
    assert first["variable"] == "layers[2].moving_mean", first  # the regularized model's batch norm
    assert max(rows["no_training_flag"]["max_abs_by_step"]) < 0.1
    assert result["fit"]["loop_epoch_s"] > 0 and result["fit"]["loop_bit_identical"]
    assert result["fit"]["loop_test_accuracy"] == result["fit"]["test_accuracy"]
    # Metrics never reset: the weights are fit()'s, the logs from epoch 2's first step are not.
    assert rows["metrics_not_reset"]["first_divergence"] is None
    assert rows["metrics_not_reset"]["callbacks_differ"].startswith("at step 5 ")
    # Training never said to begin or end: fit()'s weights and logs, another callback structure.
    skipped = rows["no_train_begin_end"]
    assert skipped["first_divergence"] is None and skipped["callbacks_differ"] is None
    assert skipped["callback_calls_differ"] == ("call 1: fit() called on_train_begin(), "
                                                "the other on_epoch_begin(0)")
    assert all(row["callback_calls_differ"] is None for name, row in rows.items()
               if name != "no_train_begin_end")
    # Retracing costs time, not bits: one trace per step, or per distinct Python number, and one
    # more at the first, whose first trace creates Adam's moments (nothing builds them before).
    for name, traces in (("new_function_per_step", STEPS + 1), ("python_step_number", STEPS // 2 + 1)):
        assert rows[name]["first_divergence"] is None and rows[name]["callbacks_differ"] is None
        assert rows[name]["traces"] == traces, name
    assert rows["xla_on_one_side"]["traces"] == 2  # the first trace makes Adam's variables
    for row in rows.values():
        assert row["diff"].startswith("--- ") and "\n+" in row["diff"]
        assert len(row["max_abs_by_step"]) == STEPS and 0 <= row["test_accuracy"] <= 1


def test_an_optimizer_made_in_a_traced_step_fails_at_the_first_call(data):
    """optimizer_in_step runs eagerly in the gallery. Traced, its docstring says, the first trace
    creates Adam's variables, tf.function traces again with creation forbidden, and that trace's
    Adam() raises."""
    from functools import partial

    from low_level.train import make_metrics, make_train_function
    from shared.order import train_batches

    x, y, _, _ = data
    parts = mistakes.Parts(_build(), make_optimizer(CONFIG), keras.losses.SparseCategoricalCrossentropy(),
                           make_metrics())
    traces = []

    def counted(*args):
        traces.append(1)
        return mistakes.step_with_new_optimizer(*args)

    train_function = make_train_function(partial(counted, *parts), CONFIG, replicated=False)
    with pytest.raises(ValueError, match="only supports singleton tf.Variables created on the first call"):
        train_function(*next(iter(train_batches(x, y, CONFIG.seed, CONFIG.batch_size, [0]))))
    assert len(traces) == 2


def test_the_correct_loop_and_step_are_bit_identical(data):
    x, y, _, _ = data
    verdict = check.check_step(_build, _compile_args(), train_step, x=x, y=y, config=CONFIG)
    # Two traces, as fit()'s: the first creates Adam's variables, so tf.function traces again.
    assert verdict.bit_identical and verdict.traces == 2 and verdict.explained_by is None
    assert verdict.max_abs_by_step == [0.0] * STEPS
    assert verdict.summary().startswith("bit-identical to fit()")


def test_a_models_own_train_step_under_fit_is_bit_identical(data):
    x, y, _, _ = data

    def build_own():
        plain = _build()
        return OwnStepModel([keras.Input((28, 28)), *plain.layers])

    verdict = check.check_step(build_own, _compile_args(), None, x=x, y=y, config=CONFIG)
    assert verdict.bit_identical, verdict.summary()


@pytest.mark.parametrize("mistake", [m for m in mistakes.MISTAKES if m.loop is mistakes.loop
                                     and m.name != "logits_loss"], ids=lambda m: m.name)
def test_the_checker_names_each_step_mistake(data, mistake):
    x, y, _, _ = data
    config = TrainConfig(**{**CONFIG.to_dict(), "mode": "eager"}) if mistake.eager else CONFIG
    verdict = check.check_step(_build, _compile_args(), mistake.step, x=x, y=y, config=config)
    assert not verdict.bit_identical and verdict.explained_by == mistake.name
    assert mistake.name in verdict.summary()


def test_a_mistake_not_in_the_gallery_still_gets_its_first_divergence(data):
    """Written for this test, not for the checker: gradients clipped to a global norm of 1."""
    x, y, _, _ = data

    def clipped_step(model, optimizer, loss_fn, metrics, images, labels):
        with tf.GradientTape() as tape:
            probs = model(images, training=True)
            loss = loss_fn(labels, probs) + tf.add_n(model.losses)
        gradients, _ = tf.clip_by_global_norm(tape.gradient(loss, model.trainable_variables), 1.0)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        metrics["loss"].update_state(loss, sample_weight=tf.shape(labels)[0])
        metrics["accuracy"].update_state(labels, probs)
        return {name: metric.result() for name, metric in metrics.items()}

    verdict = check.check_step(_build, _compile_args(), clipped_step, x=x, y=y, config=CONFIG)
    assert verdict.first is not None and verdict.explained_by is None
    assert verdict.first.variable in check.variable_names(_build())
    assert f"step {verdict.first.step}" in verdict.summary()


def test_bad_input_is_one_clear_error(data):
    x, y, _, _ = data
    with pytest.raises(ValueError, match="returned list, not a keras.Model"):
        check.check_step(lambda: [], _compile_args(), train_step, x=x, y=y, config=CONFIG)
    with pytest.raises(ValueError, match=r"train_step\(model, images\): a step is called as "
                                         r"train_step\(model, optimizer, loss_fn, metrics"):
        check.check_step(_build, _compile_args(), lambda model, images: None, x=x, y=y, config=CONFIG)

    def flat():
        return keras.Sequential([keras.Input((784,)), keras.layers.Dense(10, activation="softmax")])

    with pytest.raises(ValueError, match=r"the model cannot take the data's images of shape "
                                         r"\(28, 28\): ValueError: "):
        check.check_step(flat, _compile_args(), train_step, x=x, y=y, config=CONFIG)
    with pytest.raises(ValueError, match="no step given"):
        check.check_step(_build, _compile_args(), None, x=x, y=y, config=CONFIG)


def test_check_command_one_line_errors_and_verdicts(tiny_data_dir, tmp_path, capsys):
    base = ["check", "--limit", "64", "--hidden-units", "8", "--data-dir", str(tiny_data_dir)]
    bad = tmp_path / "bad.py"
    bad.write_text("def train_step(model, images):\n    pass\nBUILDER = 3\n")
    for argv, message in (
        (["--step", f"{bad}:train_step"], "check: train_step(model, images): a step is called as"),
        (["--step", f"{bad}:nope"], f"--step {bad}:nope: {bad} has no nope"),
        (["--step", f"{tmp_path}/none.py:f"], "no such file"),
        (["--step", "train_step"], "give FILE.py:NAME or MODULE:NAME"),
        (["--builder", f"{bad}:BUILDER"], "BUILDER is a int, not a function"),
    ):
        assert main(base + argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert main(base + ["--step", "low_level.train:train_step"]) == 0
    assert "bit-identical to fit()" in capsys.readouterr().out
    assert main(base + ["--step", "low_level.mistakes:step_without_model_losses"]) == 1
    assert "'model_losses_dropped'" in capsys.readouterr().out


def test_mistakes_command_writes_its_table_json_and_figure(tiny_data_dir, tmp_path, capsys,
                                                           monkeypatch):
    # Two entries, one eager and one compiled: every entry is run in test_every_mistake_...;
    # this one proves the command around the gallery.
    shown = [m for m in mistakes.MISTAKES if m.name in ("optimizer_in_step", "own_shuffle")]
    monkeypatch.setattr(mistakes, "MISTAKES", tuple(shown))
    out = tmp_path / "gallery"
    assert main(["mistakes", "--limit", "64", "--hidden-units", "8", "--data-dir", str(tiny_data_dir),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fit() (reference)" in printed and "optimizer_in_step" in printed
    record = json.loads((out / "gallery.json").read_text())
    assert [row["name"] for row in record["mistakes"]] == ["optimizer_in_step", "own_shuffle"]
    assert record["mistakes"][1]["first_divergence"]["step"] == 1
    assert (out / "mistakes.png").read_bytes()[:4] == b"\x89PNG"
    assert "```diff" in (out / "diffs.md").read_text()


@needs_real_data
def test_readme_check_example_runs(capsys):
    """The README's example of checking your own step, run as written (on the real data)."""
    readme = (ROOT / "README.md").read_text()
    example = re.search(r"```python\n(# Check your own step.*?)```", readme, re.S).group(1)
    namespace = {}
    exec(compile(example, "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["verdict"].bit_identical
    assert "bit-identical to fit()" in capsys.readouterr().out
