"""Figures, report.md, and the predict / explore commands."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from fit_vs_tape.cli import main
from shared import plotting
from shared.data import CLASS_NAMES
from tests.conftest import synthetic

#: Its tests share a module-scoped fixture or cache: they run on one xdist worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("figures_and_report")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG_MAGIC


@pytest.fixture
def small_predictions():
    x, y = synthetic(30, 0)
    probs = np.random.default_rng(0).dirichlet(np.ones(10), size=30).astype(np.float32)
    return x, y, probs


def test_every_figure_function_writes_a_png(tmp_path, small_predictions):
    x, y, probs = small_predictions
    history = {"loss": [1.0, 0.5], "accuracy": [0.6, 0.8], "val_loss": [0.9, 0.7],
               "val_accuracy": [0.6, 0.7]}
    other = probs.argmax(1).copy()
    other[[3, 7]] = (other[[3, 7]] + 1) % 10
    made = [
        plotting.image_with_colorbar(x[0], tmp_path / "a.png"),
        plotting.image_grid(x, y, CLASS_NAMES, tmp_path / "b.png"),
        plotting.image_and_probabilities(x[0], probs[0], int(y[0]), CLASS_NAMES, tmp_path / "c.png"),
        plotting.image_and_probabilities(x[0], probs[0], None, CLASS_NAMES, tmp_path / "c2.png"),
        plotting.prediction_grid(x, probs, y, CLASS_NAMES, tmp_path / "d.png"),
        plotting.probability_bars(probs[0], CLASS_NAMES, tmp_path / "e.png", true_label=int(y[0])),
        plotting.training_curves({"fit()": history, "GradientTape loop": history}, tmp_path / "f.png"),
        plotting.epoch_times({"fit()": [1.0, 0.5], "GradientTape loop": [0.9, 0.4]}, tmp_path / "g.png"),
        plotting.confusion_matrices(y, {"fit()": probs.argmax(1), "loop": other}, CLASS_NAMES,
                                    tmp_path / "h.png"),
        plotting.disagreements(x, y, {"fit()": probs.argmax(1), "loop": other}, CLASS_NAMES,
                               tmp_path / "i.png"),
        plotting.disagreements(x, y, {"fit()": other, "loop": other}, CLASS_NAMES, tmp_path / "j.png"),
    ]
    assert all(_is_png(p) for p in made)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in made)  # no temp files
    # Two disagreements are drawn as images; agreement is a one-line statement: a different figure.
    assert Image.open(tmp_path / "i.png").size != Image.open(tmp_path / "j.png").size


@pytest.fixture(scope="module")
def compare_run(tmp_path_factory):
    from tests.conftest import write_dataset

    root = tmp_path_factory.mktemp("cmp")
    data_dir = write_dataset(root / "data")
    out = root / "run"
    assert main(["compare", "--limit", "160", "--epochs", "2", "--data-dir", str(data_dir),
                 "--out", str(out), "--quiet", "--validation-split", "0.2"]) == 0
    return data_dir, out


def test_report_links_only_files_that_exist(compare_run):
    _, out = compare_run
    report = (out / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(links) >= 14
    for link in links:
        assert not link.startswith("/"), "links must be relative so the run directory can move"
        assert _is_png(out / link), link
    record = json.loads((out / "results.json").read_text())
    assert f"{record['low_level']['test_accuracy']:.4f}" in report
    assert record["environment"]["tensorflow"] in report
    assert "bit-identical" in report


def test_predict_index_from_saved_model(compare_run, tmp_path, capsys):
    data_dir, out = compare_run
    code = main(["predict", "--model", str(out / "low_level.keras"), "--index", "12",
                 "--data-dir", str(data_dir), "--out", str(tmp_path)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "test image 12" in printed and "true class:" in printed
    shown = re.findall(r"^  (\S.*?)\s+([\d.]+)%$", printed, re.M)
    assert len(shown) == 3 and all(name in CLASS_NAMES for name, _ in shown)
    percents = [float(p) for _, p in shown]
    assert percents == sorted(percents, reverse=True)
    assert _is_png(tmp_path / "predict_test_12.png")


def test_predict_image_inverts_dark_on_light(compare_run, tmp_path, capsys):
    _, out = compare_run
    from fit_vs_tape.inspect_cmds import load_image

    drawing = np.full((56, 56), 255, np.uint8)  # a dark shape on white, like a photo
    drawing[10:46, 20:36] = 0
    Image.fromarray(drawing).save(tmp_path / "drawn.png")
    pixels = load_image(tmp_path / "drawn.png")
    assert pixels.shape == (28, 28) and pixels.dtype == np.uint8
    assert pixels[0, 0] < 20 and pixels[14, 14] > 200  # now light on dark, as Fashion-MNIST
    code = main(["predict", "--model", str(out / "high_level.keras"), "--image",
                 str(tmp_path / "drawn.png"), "--out", str(tmp_path)])
    assert code == 0
    assert _is_png(tmp_path / "predict_drawn.png")


@pytest.mark.parametrize("kind, needle", [
    ("not-image", "not a readable PNG or JPEG image"),
    ("empty", "file is empty"),
    ("missing", "no such file"),
])
def test_predict_rejects_bad_images(compare_run, tmp_path, capsys, kind, needle):
    _, out = compare_run
    path = tmp_path / "x.png"
    if kind == "not-image":
        path.write_text("this is not an image\n")
    elif kind == "empty":
        path.write_bytes(b"")
    code = main(["predict", "--model", str(out / "high_level.keras"), "--image", str(path),
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err and str(path) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_predict_rejects_foreign_model_file(tmp_path, capsys):
    fake = tmp_path / "model.keras"
    fake.write_bytes(b"\x80\x04\x95 a pickle, never to be loaded")
    assert main(["predict", "--model", str(fake), "--index", "0"]) == 2
    assert "not a Keras .keras model file" in capsys.readouterr().err


def test_explore_prints_the_data_and_draws_it(tiny_data_dir, tmp_path, capsys):
    assert main(["explore", "--data-dir", str(tiny_data_dir), "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "images (256, 28, 28) uint8" in printed and "images (64, 28, 28) uint8" in printed
    train_counts = np.bincount(synthetic(256, 1)[1], minlength=10)
    assert re.search(rf"^0\s+T-shirt/top\s+{train_counts[0]}\s", printed, re.M)
    assert _is_png(tmp_path / "first_25.png") and _is_png(tmp_path / "training_image.png")


def test_predict_refuses_a_model_whose_weights_are_nan(compare_run, tmp_path, capsys):
    """A diverged run's model would print nan% for every class and exit 0: one line and exit 2."""
    import keras

    data_dir, out = compare_run
    model = keras.saving.load_model(out / "low_level.keras")
    weights = model.get_weights()
    weights[0][:] = np.nan
    model.set_weights(weights)
    nan_model = tmp_path / "diverged.keras"
    model.save(nan_model)
    code = main(["predict", "--model", str(nan_model), "--index", "0", "--data-dir", str(data_dir),
                 "--out", str(tmp_path / "o")])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.strip().splitlines() == [
        f"fit-vs-tape: error: --model {nan_model}: its weights are not finite (NaN or infinity in "
        f"{model.weights[0].path}), so it cannot classify; a training that diverged saves such weights"]
    assert "nan%" not in captured.out and not (tmp_path / "o").exists()


def _gallery_row(name, step=None, logs=None, calls=None, traces=2, accuracy=0.75, x_loop=1.0):
    first = None if step is None else {"step": step, "variable": "dense/kernel", "max_abs": 1e-3}
    return {"name": name, "first_divergence": first, "callbacks_differ": logs,
            "callback_calls_differ": calls, "traces": traces, "test_accuracy": accuracy,
            "epoch_s": 0.2 * x_loop, "slowdown_vs_loop": x_loop,
            "max_abs_by_step": [0.0] * 4 if step is None else [1e-3 * k for k in range(1, 5)]}


def _gallery_result(n_rows: int = 11) -> dict:
    """A gallery result as run_gallery returns it, made by hand: the table and the figure from
    it, without training anything."""
    rows = [_gallery_row("no_training_flag", step=1, accuracy=0.80, x_loop=0.82),
            _gallery_row("logits_loss", x_loop=1.05),
            _gallery_row("metrics_not_reset", logs="at step 3 loss is 0.5, fit()'s 0.4", x_loop=1.22),
            _gallery_row("no_train_begin_end", calls="call 1: ...", x_loop=0.87),
            _gallery_row("python_step_number", traces=4, x_loop=3.0),
            _gallery_row("optimizer_in_step", step=2, traces=None, accuracy=0.70, x_loop=20.0)]
    rows += [_gallery_row(f"another_{k}", step=1) for k in range(n_rows - len(rows))]
    return {"config": {"model": "regularized", "batch_size": 32}, "steps": 4, "mistakes": rows,
            "fit": {"test_accuracy": 0.77, "epoch_s": 0.21, "loop_epoch_s": 0.2, "loop_traces": 2,
                    "loop_bit_identical": True, "loop_test_accuracy": 0.77}}


def test_the_gallery_table_says_what_its_columns_can_and_cannot_tell():
    from fit_vs_tape.runtime import import_tensorflow

    import_tensorflow(device="cpu")
    from fit_vs_tape import gallery

    text = gallery.table(_gallery_result())
    lines = {line.split()[0]: line for line in text.splitlines() if line and not line[0].isspace()}
    assert "weights never (the logs differ)" in lines["metrics_not_reset"]
    assert "weights never (callback calls differ)" in lines["no_train_begin_end"]
    assert "weights never (bit-identical)" in lines["logits_loss"]
    # Both reference rows have a traces cell: the loop's count, and fit()'s '-' (said why below).
    assert re.search(r"\s2\s+0\.7700\s+0\.200\s+1\.00$", lines["the"])
    assert re.search(r"\s-\s+0\.7700\s+0\.210\s+1\.05$", lines["fit()"])
    flat = " ".join(text.split())
    assert "fit() traces Keras' own train_step, which the gallery does not count" in flat
    # The noise: the loops that train exactly as the loop done right (same weights, as many
    # traces), not python_step_number (more traces) nor optimizer_in_step (eager, other weights).
    assert ("(logits_loss, metrics_not_reset, no_train_begin_end) took 0.87-1.22x its time, so any "
            "factor from 0.82 to 1.22 is within this run's noise") in flat
    assert "above fit() (0.7700) is not better: no_training_flag 0.8000." in flat
    assert "no_training_flag also for a reason: without training=True its batch norm" in flat
    # No mistake above fit(): no word about it.
    calm = _gallery_result()
    for row in calm["mistakes"]:
        row["test_accuracy"] = 0.70
    assert "test acc:" not in gallery.table(calm)


@pytest.mark.parametrize("n_rows", [11, 30])
def test_the_gallery_figure_draws_each_mistake_its_own_way_and_labels_it_as_the_table(n_rows, tmp_path):
    from fit_vs_tape.runtime import import_tensorflow

    import_tensorflow(device="cpu")
    from fit_vs_tape import gallery

    result = _gallery_result(n_rows)
    fig = gallery.plot(result)
    lines = fig.axes[0].get_lines()
    looks = {(line.get_color(), line.get_marker()) for line in lines}
    assert len(lines) == n_rows and len(looks) == n_rows, "two mistakes drawn alike"
    # The lines on the floor lie on top of each other: their markers at different steps.
    floor = [line.get_markevery() for line in lines if line.get_linestyle() == ":"]
    assert len(floor) == 4 and len({offset for offset, _ in floor}) == 4
    labels = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    assert labels[:4] == ["no_training_flag: from step 1", "logits_loss: weights never (bit-identical)",
                          "metrics_not_reset: weights never (the logs differ)",
                          "no_train_begin_end: weights never (callback calls differ)"]
    gallery.figure(result, tmp_path / "mistakes.png")
    assert _is_png(tmp_path / "mistakes.png")
