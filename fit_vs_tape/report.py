"""report.md and its figures: what a `compare` run leaves for a learner to open."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fit_vs_tape import profile_timeline
from fit_vs_tape.rundir import RunDir, write_text
from fit_vs_tape.runtime import quiet_tensorflow
from fit_vs_tape.sides import SIDES
from shared import plotting

#: The tutorial shows test images 0 and 12 beside their probability bars.
TUTORIAL_TEST_IMAGES = (0, 12)


def tutorial_figures(
    side: str, label: str, probs: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
    class_names, directory: Path,
) -> list[tuple[str, Path]]:
    """The tutorial's prediction figures for one model; returns (caption, path) pairs."""
    made = []
    for i in (i for i in TUTORIAL_TEST_IMAGES if i < len(x_test)):
        path = plotting.image_and_probabilities(
            x_test[i], probs[i], int(y_test[i]), class_names, directory / f"{side}_test_{i}.png",
            title=f"{label}: test image {i}")
        made.append((f"{label}: test image {i} and its probabilities", path))
    path = plotting.prediction_grid(x_test[:15], probs[:15], y_test[:15], class_names,
                                    directory / f"{side}_grid.png",
                                    title=f"{label}: first 15 test images (blue right, red wrong)")
    made.append((f"{label}: first test images, predicted (true)", path))
    path = plotting.probability_bars(probs[0], class_names, directory / f"{side}_bars_0.png",
                                     true_label=int(y_test[0]), title=f"{label}: test image 0")
    made.append((f"{label}: probabilities of test image 0", path))
    return made


def _median_after_first(seconds: list[float]) -> float | None:
    return statistics.median(seconds[1:]) if len(seconds) > 1 else None


def _fmt(value, spec=".4f") -> str:
    return "-" if value is None else format(value, spec)


def _image(out: RunDir, caption: str, path: Path) -> str:
    # Relative links: the run directory can be moved or shared as it is.
    return f"**{caption}**\n\n![{caption}]({path.relative_to(out.path).as_posix()})\n"


def _newest_profile(out: RunDir, side: str) -> Path | None:
    # Timestamped folders: the last one sorted by name is the newest profile.
    profiles = sorted(out.logs(side).glob("train/plugins/profile/*/*.xplane.pb"))
    return profiles[-1] if profiles else None


def profile_pictures(out: RunDir, labels: Mapping[str, str], mode: str) -> list[str]:
    """A timeline PNG of a few traced training steps per profiled side
    (figures/profile_<side>.png) and its report.md lines; without the profiler plugin, one line
    on how to get them. A side whose profile cannot be drawn gets one line saying so: a picture
    never fails the report."""
    profiles = {side: profile for side in labels if (profile := _newest_profile(out, side))}
    lines = []
    for side, profile in profiles.items():
        png = out.figures / f"profile_{side}.png"
        try:
            # The converter's C++ side logs its progress (and a harmless "No
            # UnifiedProfileProcessor registered") to stderr: keep it off the terminal.
            with quiet_tensorflow():
                what = profile_timeline.draw_timeline(profile, png, f"{labels[side]}, --mode {mode}")
        except profile_timeline.ConverterMissing:
            return ["Timelines of a few traced steps of every side appear here with the profiler "
                    "plugin: `pip install -e '.[profile]'`, then run the same command again.", ""]
        except Exception as e:  # whatever the profile holds, the report is written
            png.unlink(missing_ok=True)  # a picture left by an earlier report would be stale
            reason = (str(e).strip().splitlines() or [""])[0][:200]
            lines += [f"No timeline for {labels[side]}: its profile could not be drawn "
                      f"({type(e).__name__}: {reason}).", ""]
        else:
            lines.append(_image(out, f"{labels[side]}, profiled: {what}", png))
    return lines


def tensorboard_section(out: RunDir, sides) -> list[str]:
    """Where the TensorBoard logs are and the command that shows them (nothing if none)."""
    logs = out.tensorboard
    if not logs.is_dir():
        return []
    profiled = sorted({p.relative_to(logs).parts[0] for p in logs.glob("*/train/plugins/profile/*")})
    lines = ["## TensorBoard", "",
             f"Per-epoch loss and accuracy of every side, overlaid: [`{logs.name}/`]({logs.name}/), "
             "one folder per side. To look at them:", "",
             "```", f"tensorboard --logdir {logs}", "```", ""]
    if profiled:
        lines += [f"Profiler traces of the second epoch ({', '.join(profiled)}): TensorBoard's "
                  "Profile tab, after `pip install tensorboard-plugin-profile`.", ""]
    for note in dict.fromkeys(SIDES[side].tensorboard_note for side in sides):  # each note once
        if note:
            lines += [note, ""]
    return lines


@dataclass(frozen=True)
class Pair:
    """Two sides of a compare run, measured against each other."""

    a: str
    b: str
    max_abs_weight_diff: float
    prediction_agreement: float
    """The share of test images both give the same class."""
    differences: list[str]
    """What differs besides weights and seconds (runs.differences); empty if nothing does."""

    @property
    def key(self) -> str:
        """Its key in results.json's "pairs": ``"a vs b"``."""
        return f"{self.a} vs {self.b}"

    @property
    def bit_identical(self) -> bool:
        """Equal weights, and nothing else differs."""
        return self.max_abs_weight_diff == 0 and not self.differences

    def to_dict(self) -> dict:
        """Its entry in results.json's "pairs"."""
        return {"max_abs_weight_diff": self.max_abs_weight_diff,
                "prediction_agreement": self.prediction_agreement, "differences": self.differences}


@dataclass(frozen=True)
class Comparison:
    """What a compare run found, beyond each side's own numbers: every pair, and how often all
    sides predict the same class. report.md renders it; results.json records ``to_dict()``."""

    labels: dict[str, str]
    """Each side's label, in the order the sides trained."""
    pairs: list[Pair]
    probabilities: dict[str, np.ndarray]
    """Each side's test-set probabilities."""
    agreeing: int
    """How many test images every side gives the same class."""

    @property
    def agreement(self) -> float:
        """The share of test images every side gives the same class."""
        return self.agreeing / len(next(iter(self.probabilities.values())))

    @property
    def max_abs_weight_diff(self) -> float:
        """The largest weight difference of any pair."""
        return max(pair.max_abs_weight_diff for pair in self.pairs)

    @property
    def bit_identical(self) -> bool:
        """Every pair bit-identical."""
        return all(pair.bit_identical for pair in self.pairs)

    def to_dict(self) -> dict:
        """results.json's summary of the comparison."""
        return {"max_abs_weight_diff": self.max_abs_weight_diff, "bit_identical": self.bit_identical,
                "prediction_agreement": self.agreement,
                "pairs": {pair.key: pair.to_dict() for pair in self.pairs}}


def write_report(out: RunDir, record: Mapping, comparison: Comparison, data, class_names) -> Path:
    """Draw every figure of a compare run into its ``figures/`` and write its ``report.md``.
    ``record``: its results.json; ``data``: the arrays it trained and tested on (runs.Splits)."""
    fig_dir = out.figures
    fig_dir.mkdir(exist_ok=True)
    labels, sides = comparison.labels, list(comparison.labels)
    predicted = {labels[s]: comparison.probabilities[s].argmax(axis=1) for s in sides}
    colors = {labels[s]: SIDES[s].color for s in sides}
    curves = [
        ("Training curves of every side", plotting.training_curves(
            {labels[s]: record[s]["history"] for s in sides}, fig_dir / "curves.png", colors)),
        ("Seconds per epoch", plotting.epoch_times(
            {labels[s]: record[s]["epoch_seconds"] for s in sides}, fig_dir / "epoch_seconds.png",
            colors)),
        ("Confusion matrices on the test set", plotting.confusion_matrices(
            data.y_test, predicted, class_names, fig_dir / "confusion.png")),
        ("Test images they classify differently", plotting.disagreements(
            data.x_test, data.y_test, predicted, class_names, fig_dir / "disagreements.png")),
    ]
    lines = [*_summary(out, record, comparison, len(data.y_test)),
             *(_image(out, c, p) for c, p in curves),
             *tensorboard_section(out, sides),
             *profile_pictures(out, labels, record["config"]["mode"]),
             *_configuration(record),
             *_data_and_tutorial(out, comparison, data, class_names)]
    write_text(out.report, "\n".join(lines))
    return out.report


def _summary(out: RunDir, record: Mapping, comparison: Comparison, n_test: int) -> list[str]:
    """The title, each side's numbers side by side, and every pair."""
    labels, sides = comparison.labels, list(comparison.labels)
    rows = [
        ("test accuracy", lambda s: _fmt(record[s]["test_accuracy"])),
        ("test loss", lambda s: _fmt(record[s]["test_loss"])),
        ("last epoch's train accuracy", lambda s: _fmt(record[s]["history"]["accuracy"][-1])),
        ("last epoch's train loss", lambda s: _fmt(record[s]["history"]["loss"][-1])),
        ("first epoch, s (includes tracing)", lambda s: _fmt(record[s]["epoch_seconds"][0], ".2f")),
        ("median s/epoch after the first",
         lambda s: _fmt(_median_after_first(record[s]["epoch_seconds"]), ".2f")),
    ]
    return [
        f"# {' vs '.join(labels[s] for s in sides)}: run `{out.path.name}`",
        "",
        f"All {len(sides)} models started from the same initial weights and saw the same batches "
        "in the same order" + (", and ended bit-identical." if comparison.bit_identical else "."),
        "",
        "| | " + " | ".join(labels[s] for s in sides) + " |",
        "|---|" + "---|" * len(sides),
        *(f"| {name} | " + " | ".join(get(s) for s in sides) + " |" for name, get in rows),
        "",
        *(f"- largest weight difference, {labels[pair.a]} vs {labels[pair.b]}: "
          f"**{pair.max_abs_weight_diff:.3g}**" + (" (bit-identical)" if pair.bit_identical else "")
          + "".join(f"; differ in {what}" for what in pair.differences)
          for pair in comparison.pairs),
        f"- all {len(sides)} predict the same class for **{100 * comparison.agreement:.2f}%** of "
        f"{n_test} test images",
        "",
    ]


def _configuration(record: Mapping) -> list[str]:
    """The run's settings, and the machine and versions it ran on."""
    env = record["environment"]
    return [
        "## Configuration", "", "| setting | value |", "|---|---|",
        *(f"| {k} | {v} |" for k, v in record["config"].items()),
        f"| data | `{record['data']}` |",
        "",
        "## Machine and versions", "", "| | |", "|---|---|",
        f"| CPU | {env['cpu']} ({env['cpu_cores']} cores) |",
        f"| GPU | {', '.join(env['gpus']) or 'none visible'} |",
        f"| platform | {env['platform']} |",
        *(f"| {k} | {env[k]} |" for k in ("python", "tensorflow", "keras", "numpy")),
        "",
    ]


def _data_and_tutorial(out: RunDir, comparison: Comparison, data, class_names) -> list[str]:
    """The tutorial's first look at the data, and its prediction figures for each model."""
    fig_dir = out.figures
    data_figures = [
        ("A training image and its pixel values", plotting.image_with_colorbar(
            data.x_train[0], fig_dir / "training_image.png", title="training image 0: pixel values")),
        ("The first 25 training images", plotting.image_grid(
            data.x_train, data.y_train, class_names, fig_dir / "first_25.png")),
    ]
    tutorial = [fig for side, label in comparison.labels.items() for fig in tutorial_figures(
        side, label, comparison.probabilities[side], data.x_test, data.y_test, class_names, fig_dir)]
    return ["## The data, as the tutorial first looks at it", "",
            *(_image(out, c, p) for c, p in data_figures),
            "## The tutorial's prediction figures, for each model", "",
            *(_image(out, c, p) for c, p in tutorial)]
