"""report.md's profiler timelines: drawn with the profiler plugin's own converter from a real
--profile run, a one-line hint when the plugin is missing, one line when a trace cannot be drawn."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from PIL import Image

from fit_vs_tape import profile_timeline, report
from fit_vs_tape.cli import main
from fit_vs_tape.rundir import RunDir
from tests.conftest import write_dataset

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SIDES = ("high_level", "low_level")
HINT = "pip install -e '.[profile]'"


def _profiled_run(root: Path, sides: str, limit: int) -> Path:
    data_dir = write_dataset(root / "data", n_train=limit, n_test=40)
    out = root / "run"
    assert main(["compare", "--sides", sides, "--limit", str(limit), "--epochs", "2", "--profile",
                 "--quiet", "--data-dir", str(data_dir), "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_report_shows_a_timeline_of_every_profiled_side(tmp_path, monkeypatch, capfd):
    raw_to_tool_data = pytest.importorskip(
        "xprof.convert.raw_to_tool_data",
        reason="the profiler plugin is not installed: pip install -e '.[profile]'")
    converted = []  # what the converter was given: it leaves cache files beside its input
    real = raw_to_tool_data.xspace_to_tool_data

    def spy(paths, tool, params):
        converted.extend(Path(p) for p in paths)
        return real(paths, tool, params)

    monkeypatch.setattr(raw_to_tool_data, "xspace_to_tool_data", spy)
    out = _profiled_run(tmp_path, "high,low", 600)

    text = (out / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\((figures/profile_[a-z_]+\.png)\)", text)
    assert links == [f"figures/profile_{side}.png" for side in SIDES]
    for link in links:
        png = out / link
        assert png.read_bytes()[:8] == PNG_MAGIC
        assert png.stat().st_size > 20_000, link  # a drawn timeline, not an empty canvas
        width, height = Image.open(png).size
        assert width >= 1000 and height >= 300, (link, width, height)
    # Graph mode: the window is whole calls of the compiled function, and the caption says so.
    captions = re.findall(r"^\*\*(.+), profiled: 2 calls of its compiled function", text, re.M)
    assert captions == ["fit()", "GradientTape loop"]
    assert HINT not in text and "No timeline" not in text

    # Converted from copies outside the run; the run holds only what the profiler wrote.
    assert len(converted) == len(SIDES)
    assert not any(out in p.parents for p in converted)
    for side in SIDES:
        profile_dirs = list((out / "tensorboard" / side / "train/plugins/profile").iterdir())
        assert len(profile_dirs) == 1
        assert [p.suffixes[-2:] for p in profile_dirs[0].iterdir()] == [[".xplane", ".pb"]], side
    assert not [p for p in (out / "figures").iterdir() if p.name.startswith(".")]  # no temp PNG
    # The converter's C++ log lines stay off the terminal.
    assert "UnifiedProfileProcessor" not in capfd.readouterr().err


def test_without_the_plugin_the_report_says_how_to_get_the_timelines(tmp_path, monkeypatch):
    # None in sys.modules makes any import of the package fail, installed or not.
    for name in ("xprof", "xprof.convert", "xprof.convert.raw_to_tool_data"):
        monkeypatch.setitem(sys.modules, name, None)
    out = _profiled_run(tmp_path, "high,low", 200)

    text = (out / "report.md").read_text()
    hint = [line for line in text.splitlines() if HINT in line]
    assert len(hint) == 1 and "run the same command again" in hint[0]
    assert "profile_" not in text and "Traceback" not in text
    assert not list((out / "figures").glob("profile_*"))
    assert list((out / "tensorboard").glob("*/train/plugins/profile/*/*.xplane.pb"))  # profiled


def test_a_trace_that_cannot_be_drawn_gets_one_line(tmp_path, monkeypatch):
    out = tmp_path / "run"
    for side in SIDES:
        trace = out / "tensorboard" / side / "train" / "plugins" / "profile" / "2026_01_01"
        trace.mkdir(parents=True)
        (trace / "host.xplane.pb").write_bytes(b"not an XSpace")
    fig_dir = out / "figures"
    fig_dir.mkdir()
    (fig_dir / "profile_low_level.png").write_bytes(PNG_MAGIC)  # from an earlier report: stale
    # A trace without any compiled call: what the converter gives for an unexpected trace.
    monkeypatch.setattr(profile_timeline, "profile_events", lambda path: [
        {"ph": "M", "name": "thread_name", "pid": 1, "tid": 1, "args": {"name": "python"}},
        {"ph": "X", "name": "EagerExecute", "pid": 1, "tid": 1, "ts": 0.0, "dur": 5.0}])

    lines = report.profile_pictures(RunDir(out), {"high_level": "fit()", "low_level": "loop"},
                                    "graph")
    said = [line for line in lines if line]
    assert len(said) == len(SIDES)
    assert all(line.startswith("No timeline for ") and "ProfileError" in line for line in said)
    assert not list(fig_dir.iterdir())
