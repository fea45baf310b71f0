"""The run directory (fit_vs_tape/rundir.py RunDir): the one place that names what a run writes,
and the room it asks for before it writes it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fit_vs_tape import gallery
from fit_vs_tape.cli import main
from fit_vs_tape.errors import UserError
from fit_vs_tape.rundir import RunDir, room_for_run, run_bytes
from shared.config import TrainConfig

PREFIX = "renamed-"


def _rename_every_name(monkeypatch) -> None:
    """Give every file and folder RunDir names (each property and method that returns a Path)
    another name: a module that spells a name of its own then writes or reads the old one."""
    for name, attr in list(vars(RunDir).items()):
        if isinstance(attr, property) and attr.fget.__annotations__.get("return") == "Path":
            monkeypatch.setattr(RunDir, name, property(
                lambda self, get=attr.fget: _renamed(get(self))))
        elif callable(attr) and getattr(attr, "__annotations__", {}).get("return") == "Path":
            monkeypatch.setattr(RunDir, name, lambda self, *args, get=attr: _renamed(get(self, *args)))


def _renamed(path: Path) -> Path:
    return path.with_name(PREFIX + path.name)


def test_a_compare_run_holds_exactly_the_names_its_run_dir_gives(tiny_data_dir, tmp_path,
                                                                   monkeypatch, capsys):
    """With every name renamed, a compare run (TensorBoard logs on, so every folder is made)
    leaves only renamed files, its report links them, and --resume finds its run file and sees
    that the run is complete (its state folder gone)."""
    _rename_every_name(monkeypatch)
    out = tmp_path / "run"
    assert main(["compare", "--sides", "high,low", "--limit", "64", "--epochs", "1", "--quiet",
                 "--data-dir", str(tiny_data_dir), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(PREFIX + name for name in (
        "run.json", "results.json", "report.md", "figures", "tensorboard", "high_level.keras",
        "low_level.keras"))
    logs = out / f"{PREFIX}tensorboard"
    assert sorted(p.name for p in logs.iterdir()) == [f"{PREFIX}high_level", f"{PREFIX}low_level"]
    printed = capsys.readouterr().out
    assert f"wrote {out / f'{PREFIX}results.json'}, {PREFIX}high_level.keras, " \
           f"{PREFIX}low_level.keras, {PREFIX}figures/" in printed
    report = (out / f"{PREFIX}report.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", report)
    assert f"{PREFIX}tensorboard/" in links and any(link.startswith(f"{PREFIX}figures/") for link in links)
    assert [link for link in links if not (out / link).exists()] == []

    assert main(["compare", "--resume", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"fit-vs-tape: error: --resume {out}: nothing to resume, that run is complete")


def test_the_gallery_writes_the_names_its_run_dir_gives(tmp_path, monkeypatch):
    _rename_every_name(monkeypatch)
    result = {"config": {"model": "tutorial", "batch_size": 32}, "steps": 2, "mistakes": [
        {"name": "a_mistake", "title": "A mistake", "first_divergence": {"step": 2},
         "max_abs_by_step": [0.0, 1e-3], "diff": "-a\n+b\n"}]}
    written = gallery.write_gallery(result, RunDir(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written) == [
        f"{PREFIX}diffs.md", f"{PREFIX}gallery.json", f"{PREFIX}mistakes.png"]
    assert json.loads((tmp_path / f"{PREFIX}gallery.json").read_text()) == result


def test_the_room_a_compare_asks_for_covers_it_at_its_fullest(tiny_data_dir, tmp_path, monkeypatch):
    """Measured just before state/ goes, when every side's checkpoint, final model and model
    file are on disk beside the figures, report and TensorBoard logs; and a resumed run asks
    for that room less what its directory holds."""
    fullest = []
    remove_state = RunDir.remove_state

    def measured(self: RunDir) -> None:
        fullest.append(self.bytes_held())
        assert self.state.is_dir()
        remove_state(self)

    monkeypatch.setattr(RunDir, "remove_state", measured)
    out = tmp_path / "run"
    assert main(["compare", "--limit", "64", "--epochs", "1", "--quiet",
                 "--data-dir", str(tiny_data_dir), "--out", str(out)]) == 0
    config = TrainConfig()
    estimate = run_bytes(config.hidden_units, sides=3, figures=True, model=config.model)
    assert len(fullest) == 1 and 0 < fullest[0] <= estimate, (fullest, estimate)
    run_dir = RunDir(out)
    assert room_for_run(config.hidden_units, 3, config.model, figures=True, profile=False,
                        resuming=run_dir) == estimate - run_dir.bytes_held()


@pytest.mark.parametrize("damage", ["data", "sides", "config", "not json"])
def test_a_damaged_run_file_is_one_line_naming_it(tmp_path, damage):
    """--resume reads run.json whole before it believes any of it: a key missing (the data
    directory read last among them) is the same one-line error as text that is not JSON."""
    run = RunDir(tmp_path)
    run.start_run("compare", ["high_level"], TrainConfig(), "/data")
    record = json.loads(run.run_file.read_text())
    if damage == "not json":
        run.run_file.write_text("{")
    else:
        del record[damage]
        run.run_file.write_text(json.dumps(record))
    with pytest.raises(UserError, match=rf"^--resume {re.escape(str(tmp_path))}: run\.json is damaged"):
        run.read_run("compare")
