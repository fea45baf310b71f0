"""Figures: the tutorial's own, for either model, and the fit()-vs-loop comparisons.

Every function writes one PNG and returns its path. Matplotlib's non-interactive Agg backend is
used, so nothing opens a window and it works on machines without a display.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from shared.files import atomic_path  # noqa: E402

TRUE_COLOR, WRONG_COLOR, OTHER_COLOR = "tab:blue", "tab:red", "#999999"
#: For a figure of many lines (the mistakes gallery's): a colour each, then a marker each, so no
#: two lines look alike: tab10's ten colours, then four far from them.
LINE_COLORS = (*(f"tab:{c}" for c in ("blue", "orange", "green", "red", "purple", "brown", "pink",
                                      "gray", "olive", "cyan")), "black", "gold", "navy", "lime")
LINE_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">", "h", "p", "d", "8")


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG atomically and close it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def _show_image(ax, image: np.ndarray) -> None:
    ax.imshow(image, cmap=plt.cm.binary)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def _bars(ax, probs: np.ndarray, true_label: int | None, class_names: Sequence[str] | None) -> None:
    """Probability bars as in the tutorial: the prediction red, the true class blue on top."""
    bars = ax.bar(range(len(probs)), probs, color=OTHER_COLOR)
    ax.set_ylim(0, 1)
    predicted = int(np.argmax(probs))
    bars[predicted].set_color(WRONG_COLOR)
    if true_label is not None:
        bars[int(true_label)].set_color(TRUE_COLOR)
    if class_names:
        ax.set_xticks(range(len(probs)), class_names, rotation=45, ha="right")
    else:
        ax.set_xticks(range(len(probs)))
        ax.tick_params(axis="x", labelsize=7)
    ax.set_yticks([0, 0.5, 1])


def _caption(probs: np.ndarray, true_label: int | None, class_names: Sequence[str]) -> tuple[str, str]:
    predicted = int(np.argmax(probs))
    text = f"{class_names[predicted]} {100 * probs[predicted]:.0f}%"
    if true_label is None:  # an image of the user's: no true class to compare with
        return text, "black"
    text += f" ({class_names[true_label]})"
    return text, TRUE_COLOR if predicted == true_label else WRONG_COLOR


def image_with_colorbar(image: np.ndarray, path: str | os.PathLike, title: str = "") -> Path:
    """One image with a colour bar of its pixel values (the tutorial's first look at the data)."""
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    shown = ax.imshow(image)
    fig.colorbar(shown, ax=ax)
    ax.set_title(title or f"pixel values {image.min()}-{image.max()}")
    ax.grid(False)
    return save_figure(fig, path)


def image_grid(
    images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], path: str | os.PathLike
) -> Path:
    """The first 25 images with their class names, 5x5 (the tutorial's check of the data)."""
    fig = plt.figure(figsize=(8, 8.6))
    for i in range(min(25, len(images))):
        ax = fig.add_subplot(5, 5, i + 1)
        _show_image(ax, images[i])
        ax.set_xlabel(class_names[int(labels[i])], fontsize=9)
    fig.suptitle("First 25 training images", fontsize=12)
    fig.tight_layout()
    return save_figure(fig, path)


def image_and_probabilities(
    image: np.ndarray,
    probs: np.ndarray,
    true_label: int | None,
    class_names: Sequence[str],
    path: str | os.PathLike,
    title: str = "",
) -> Path:
    """An image beside its probability bars; true class blue, a wrong prediction red
    (``true_label`` None: the user's own image, prediction in red)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.6), gridspec_kw={"width_ratios": [1, 1.6]})
    _show_image(left, image)
    text, color = _caption(probs, true_label, class_names)
    left.set_xlabel(text, color=color)
    _bars(right, probs, true_label, class_names)
    right.set_ylabel("probability")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def prediction_grid(
    images: np.ndarray,
    probs: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike,
    rows: int = 5,
    cols: int = 3,
    title: str = "",
) -> Path:
    """The tutorial's grid of test images, each with predicted class, confidence and true class
    (blue when right, red when wrong) and its probability bars."""
    n = min(rows * cols, len(images))
    fig = plt.figure(figsize=(2 * 2.3 * cols, 2.2 * rows))
    for i in range(n):
        ax = fig.add_subplot(rows, 2 * cols, 2 * i + 1)
        _show_image(ax, images[i])
        text, color = _caption(probs[i], int(labels[i]), class_names)
        ax.set_xlabel(text, color=color, fontsize=8)
        _bars(fig.add_subplot(rows, 2 * cols, 2 * i + 2), probs[i], int(labels[i]), None)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def probability_bars(
    probs: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike,
    true_label: int | None = None,
    title: str = "",
) -> Path:
    """One image's probability bars, class names as ticks."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    _bars(ax, probs, true_label, class_names)
    ax.set_ylabel("probability")
    ax.set_title(title or f"predicted: {class_names[int(np.argmax(probs))]}")
    fig.tight_layout()
    return save_figure(fig, path)


def training_curves(histories: Mapping[str, Mapping[str, list[float]]], path: str | os.PathLike,
                    colors: Mapping[str, str] | None = None) -> Path:
    """Loss and accuracy per epoch of each side, overlaid; validation dashed. ``colors``: a
    side's colour by its label (the rest: matplotlib's)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for i, (label, history) in enumerate(histories.items()):
            color = (colors or {}).get(label)
            epochs = np.arange(1, len(history[metric]) + 1)
            # Identical curves would hide each other: each later one is thinner, with markers.
            style = ({"lw": 3.5, "alpha": 0.6}, {"lw": 2, "marker": "s", "ms": 8, "mfc": "none"},
                     {"lw": 1, "marker": "o", "ms": 3.5})[min(i, 2)]
            ax.plot(epochs, history[metric], color=color, label=f"{label} train", **style)
            if f"val_{metric}" in history:
                ax.plot(epochs, history[f"val_{metric}"], color=color, ls="--",
                        label=f"{label} validation", **style)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(f"training {metric}")
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def epoch_times(epoch_seconds: Mapping[str, Sequence[float]], path: str | os.PathLike,
                colors: Mapping[str, str] | None = None) -> Path:
    """Seconds per epoch of each side, side by side (epoch 1 includes tracing). ``colors``: a
    side's colour by its label (the rest: matplotlib's)."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    width = 0.8 / max(1, len(epoch_seconds))
    for i, (label, seconds) in enumerate(epoch_seconds.items()):
        x = np.arange(1, len(seconds) + 1) + (i - (len(epoch_seconds) - 1) / 2) * width
        bars = ax.bar(x, seconds, width, label=label, color=(colors or {}).get(label))
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xlabel("epoch (the first includes tracing and compiling)")
    ax.set_ylabel("seconds")
    ax.set_title("time per epoch")
    ax.set_xticks(np.arange(1, max(len(s) for s in epoch_seconds.values()) + 1))
    # Room above the tallest bar, so that the legend, in one row, hides no bar's label.
    ax.set_ylim(top=ax.get_ylim()[1] * 1.25)
    ax.legend(fontsize=8, ncol=len(epoch_seconds), loc="upper center")
    fig.tight_layout()
    return save_figure(fig, path)


def confusion_matrices(
    y_true: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    path: str | os.PathLike,
) -> Path:
    """Confusion matrices side by side (rows: true class, normalised), per-class accuracy in
    the row labels."""
    k = len(class_names)
    fig, axes = plt.subplots(1, len(predictions), figsize=(6.4 * len(predictions), 5.8))
    axes = np.atleast_1d(axes)
    for ax, (label, predicted) in zip(axes, predictions.items()):
        counts = np.zeros((k, k), int)
        np.add.at(counts, (y_true.astype(int), predicted.astype(int)), 1)
        rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        for i in range(k):
            for j in range(k):
                if counts[i, j]:
                    ax.text(j, i, counts[i, j], ha="center", va="center", fontsize=6.5,
                            color="white" if rates[i, j] > 0.5 else "black")
        per_class = np.diag(rates)
        ax.set_yticks(range(k), [f"{n} {100 * a:.0f}%" for n, a in zip(class_names, per_class)],
                      fontsize=8)
        ax.set_xticks(range(k), class_names, rotation=45, ha="right", fontsize=8)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class (per-class accuracy)")
        ax.set_title(f"{label}: accuracy {100 * np.mean(predicted == y_true):.2f}%")
    fig.tight_layout()
    return save_figure(fig, path)


def disagreements(
    images: np.ndarray,
    labels: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    path: str | os.PathLike,
    max_images: int = 20,
) -> Path:
    """The test images the models classify differently, or a figure that says they agree."""
    names, predicted = list(predictions), np.stack(list(predictions.values()))
    differ = np.flatnonzero((predicted != predicted[0]).any(axis=0))
    if len(differ) == 0:
        fig, ax = plt.subplots(figsize=(6, 1.6))
        ax.axis("off")
        ax.text(0.5, 0.5, f"{', '.join(names[:-1])} and {names[-1]} predict the same class\n"
                          f"for all {len(labels)} test images",
                ha="center", va="center", fontsize=12)
        return save_figure(fig, path)
    shown = differ[:max_images]
    cols = min(5, len(shown))
    rows = -(-len(shown) // cols)
    fig = plt.figure(figsize=(2.6 * cols, (2.3 + 0.25 * len(names)) * rows + 0.6))
    for i, idx in enumerate(shown):
        ax = fig.add_subplot(rows, cols, i + 1)
        _show_image(ax, images[idx])
        ax.set_title(f"#{idx} true: {class_names[labels[idx]]}", fontsize=8)
        ax.set_xlabel("\n".join(f"{name}: {class_names[p[idx]]}" for name, p in
                                zip(names, predicted)), fontsize=7)
    fig.suptitle(f"{len(differ)} test images classified differently"
                 + (f" (first {len(shown)} shown)" if len(differ) > len(shown) else ""))
    fig.tight_layout()
    return save_figure(fig, path)
