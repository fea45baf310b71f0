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
