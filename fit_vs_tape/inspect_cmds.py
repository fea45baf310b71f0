"""The `predict` and `explore` commands: the tutorial's looks at the data and at one prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fit_vs_tape.errors import UserError
from fit_vs_tape.rundir import RunDir, load_model, new_run_dir
from fit_vs_tape.runtime import load_dataset
from shared import data as data_lib
from shared import plotting


def latest_model(runs_root: Path = Path("runs")) -> Path:
    """The model of the most recent run under ``runs/`` (model.keras, else fit()'s model)."""
    runs = runs_root.iterdir() if runs_root.is_dir() else ()
    candidates = [model for run in runs if (model := RunDir(run).saved_model())]
    if not candidates:
        raise UserError(f"no --model given and no saved model under {runs_root}/: "
                        "run `fit-vs-tape compare` first, or pass --model PATH")
    return max(candidates, key=lambda p: p.stat().st_mtime)


def load_image(path: Path) -> np.ndarray:
    """A PNG or JPEG as a 28x28 uint8 Fashion-MNIST-like image: grayscale, light on dark."""
    from PIL import Image, UnidentifiedImageError  # Matplotlib's own dependency

    if not path.is_file():
        raise UserError(f"--image {path}: no such file")
    if path.stat().st_size == 0:
        raise UserError(f"--image {path}: file is empty")
    try:
        with Image.open(path) as img:
            if img.format not in ("PNG", "JPEG"):
                raise UserError(f"--image {path}: a {img.format} image; give a PNG or JPEG")
            gray = img.convert("L").resize((data_lib.IMAGE_SIZE,) * 2, Image.Resampling.LANCZOS)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise UserError(f"--image {path}: not a readable PNG or JPEG image ({e})") from None
    pixels = np.asarray(gray, dtype=np.uint8)
    # Fashion-MNIST is light clothing on black. A photo on a light background has a light
    # border: invert it so the model sees what it was trained on.
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if border.mean() > 127:
        pixels = 255 - pixels
    return pixels


def check_finite(model, name: str) -> None:
    """A UserError if a weight of ``model`` is NaN or infinite (a run that diverged saved it):
    every probability it gives is then NaN, which would print as ``nan%``."""
    bad = [getattr(w, "path", w.name) for w in model.weights if not np.isfinite(np.asarray(w)).all()]
    if bad:
        shown = ", ".join(bad[:2]) + (f" and {len(bad) - 2} more" if len(bad) > 2 else "")
        raise UserError(f"{name}: its weights are not finite (NaN or infinity in {shown}), so it "
                        "cannot classify; a training that diverged saves such weights")


def predict(model_path: str | None, index: int | None, image: str | None,
            data_dir: str | None, out: str | None, top: int = 3) -> dict:
    """Classify one test image (``index``) or one image file; print the top classes and save
    the image beside its probability bars. Returns what was printed, as a dict."""
    from shared.order import normalize

    path = Path(model_path) if model_path else latest_model()
    true_label = None
    if index is not None:
        dataset = load_dataset(data_dir)
        if not 0 <= index < len(dataset.x_test):
            raise UserError(f"--index {index}: the test set has images 0-{len(dataset.x_test) - 1}")
        pixels, true_label = dataset.x_test[index], int(dataset.y_test[index])
        name = f"test image {index}"
        stem = f"predict_test_{index}"
    else:
        pixels = load_image(Path(image))
        name, stem = Path(image).name, f"predict_{Path(image).stem}"
    model = load_model(path)
    check_finite(model, f"--model {path}" if model_path else f"model {path} (the latest run's)")
    probs = np.asarray(model(normalize(pixels[None]), training=False))[0]
    out_dir = new_run_dir(Path(out) if out else path.parent).path
    names = data_lib.CLASS_NAMES
    ranked = np.argsort(probs)[::-1][:top]
    print(f"{name}, model {path}:")
    for k in ranked:
        print(f"  {names[k]:<12} {100 * probs[k]:6.2f}%")
    if true_label is not None:
        verdict = "right" if ranked[0] == true_label else "wrong"
        print(f"  true class: {names[true_label]} ({verdict})")
    figure = plotting.image_and_probabilities(pixels, probs, true_label, names,
                                              out_dir / f"{stem}.png", title=name)
    print(f"figure: {figure}")
    return {"probabilities": probs.tolist(), "top": [names[k] for k in ranked], "figure": str(figure)}


def explore(data_dir: str | None, out: str | None) -> dict:
    """The tutorial's look at the data: shapes, dtype, pixel range, images per class, figures.
    Needs no TensorFlow."""
    dataset = load_dataset(data_dir)
    out_dir = new_run_dir(out or "runs/explore").path
    print(f"data: {dataset.source}")
    for split, x, y in (("train", dataset.x_train, dataset.y_train),
                        ("test", dataset.x_test, dataset.y_test)):
        print(f"{split:>5}: images {x.shape} {x.dtype}, pixels {x.min()}-{x.max()}; "
              f"labels {y.shape} {y.dtype}")
    counts = {split: np.bincount(y, minlength=len(data_lib.CLASS_NAMES))
              for split, y in (("train", dataset.y_train), ("test", dataset.y_test))}
    print(f"\n{'class':<3} {'name':<12} {'train':>6} {'test':>6}")
    for k, name in enumerate(data_lib.CLASS_NAMES):
        print(f"{k:<3} {name:<12} {counts['train'][k]:>6} {counts['test'][k]:>6}")
    figures = [
        plotting.image_with_colorbar(dataset.x_train[0], out_dir / "training_image.png",
                                     title="training image 0: pixel values"),
        plotting.image_grid(dataset.x_train, dataset.y_train, data_lib.CLASS_NAMES,
                            out_dir / "first_25.png"),
    ]
    print("\nfigures: " + ", ".join(str(f) for f in figures))
    return {"counts": {k: v.tolist() for k, v in counts.items()}, "figures": [str(f) for f in figures]}
