"""The run directory (fit_vs_tape/rundir.py RunDir): the one place that names what a run writes."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from fit_vs_tape import gallery
from fit_vs_tape.cli import main
from fit_vs_tape.errors import UserError
from fit_vs_tape.rundir import RunDir, check_out, new_run_dir
from fit_vs_tape.sides import SIDES
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


# A run directory is never reused silently (issue 36): --out on a directory that holds a run,
# stopped or complete, is refused unless --resume (or --overwrite) says what to do with it.


def _files(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` and its bytes; every folder, as None."""
    return {str(p.relative_to(directory)): p.read_bytes() if p.is_file() else None
            for p in sorted(directory.rglob("*"))}


def _ctrl_c_once(progress: Path) -> threading.Thread:
    """Press Ctrl-C (SIGINT to this process) once ``progress``, a side's record of its completed
    epochs, appears: the run stops as a user's Ctrl-C stops it, between two steps."""
    def watch() -> None:
        deadline = time.monotonic() + 300
        while not progress.is_file() and time.monotonic() < deadline:
            time.sleep(0.005)
        if progress.is_file():  # never a stray signal into the rest of the suite
            os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _refused(capsys, needles: tuple[str, ...]) -> None:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert all(needle in err for needle in needles), err


def test_a_stopped_run_is_refused_unchanged_then_overwritten_fresh(tiny_data_dir, tmp_path, capsys):
    """The run of issue 36: Ctrl-C after fit()'s first epoch, then `compare --out` on the same
    directory with another --limit. Without --resume it is refused in one line naming the resume
    command, the directory byte for byte as it was; with --overwrite it is a fresh run of its own
    configuration, all bit-identical, no file of the stopped run left."""
    out, data = tmp_path / "run", ["--data-dir", str(tiny_data_dir)]
    watcher = _ctrl_c_once(out / "state" / "high_level" / "progress.json")
    assert main(["compare", "--sides", "high,low", "--mode", "eager", "--epochs", "3",
                 *data, "--out", str(out), "--quiet"]) == 130
    watcher.join()
    assert RunDir(out).resumable
    before = _files(out)
    capsys.readouterr()
    for command in (["compare", "--sides", "high,low", "--quiet"], ["train", "--side", "low"],
                    ["trace"], ["mistakes"]):
        assert main([*command, "--limit", "64", "--epochs", "1", *data, "--out", str(out)]) == 2
        _refused(capsys, (f"--out {out}: holds a stopped `compare` run (state/); resume with: "
                          f"fit-vs-tape compare --resume {out}, or pass another --out, or "
                          "--overwrite to replace it",))
    assert _files(out) == before

    assert main(["compare", "--sides", "high,low", "--limit", "64", "--epochs", "1", *data,
                 "--out", str(out), "--overwrite", "--quiet"]) == 0
    assert "all bit-identical" in capsys.readouterr().out
    record = json.loads((out / "results.json").read_text())
    assert record["status"] == "complete" and record["bit_identical"]
    assert record["config"]["limit"] == 64 and record["config"]["mode"] == "graph"
    assert json.loads((out / "run.json").read_text())["config"]["limit"] == 64
    assert not (out / "state").exists()
    events = sorted(p.relative_to(out).parent for p in (out / "tensorboard").rglob("events.*"))
    assert [str(p) for p in events] == ["tensorboard/high_level/train", "tensorboard/low_level/train"]


def test_a_complete_run_is_never_replaced_unasked(tiny_data_dir, tmp_path, capsys):
    """Every command that writes a run refuses a complete one, before it trains, its results
    untouched; --overwrite removes the names a run writes (a side not trained again leaves no
    model behind) and nothing else there."""
    out, data = tmp_path / "run", ["--data-dir", str(tiny_data_dir)]
    assert main(["compare", "--sides", "high,low", "--limit", "64", "--epochs", "1", *data,
                 "--out", str(out), "--quiet"]) == 0
    (out / "notes.txt").write_text("the user's own file")
    before = _files(out)
    capsys.readouterr()
    for command in (["compare", "--quiet"], ["train", "--side", "high"], ["trace"], ["mistakes"]):
        assert main([*command, "--limit", "32", "--epochs", "1", *data, "--out", str(out)]) == 2
        _refused(capsys, (f"--out {out}: holds a `compare` run whose results.json says "
                          '"complete"; pass another --out, or --overwrite to replace it',))
    assert _files(out) == before

    assert main(["train", "--side", "step", "--limit", "32", "--epochs", "1", *data,
                 "--out", str(out), "--overwrite", "--no-tensorboard", "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "model.keras", "notes.txt", "results.json", "run.json"]
    assert json.loads((out / "results.json").read_text())["side"] == "custom_step"
    assert (out / "notes.txt").read_text() == "the user's own file"


@pytest.mark.parametrize("leave, held", [
    ({}, None),
    ({"notes.txt": "{}"}, None),
    ({"trace.json": "{}"}, "a `trace` run (trace.json)"),
    ({"gallery.json": "{}", "mistakes.png": ""}, "a `mistakes` run (gallery.json)"),
    ({"results.json": '{"benchmark": "speed"}'}, "a `bench speed` run (results.json)"),
    ({"run.json": '{"command": "train"}'}, "a `train` run (run.json)"),
    ({"run.json": "{", "results.json": '{"status": "interrupted"}'},
     'a run whose results.json says "interrupted"'),
    ({"figures/mine.png": "", "report.md": "mine"}, None),
])
def test_what_a_directory_holds_is_said(tmp_path, leave, held):
    """Whatever record a run leaves (a damaged one included) is named; a directory without any
    is taken, and so is one that does not exist yet. --overwrite removes nothing from a
    directory that holds no run, whatever its files are called."""
    for name, text in leave.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert RunDir(tmp_path).held_run() == held
    if held is None:
        check_out(tmp_path, overwrite=False)
    else:
        with pytest.raises(UserError, match=f"^--out {re.escape(str(tmp_path))}: holds "
                                            f"{re.escape(held)}; pass another --out"):
            check_out(tmp_path, overwrite=False)
    check_out(tmp_path / "new", overwrite=False)
    check_out(tmp_path, overwrite=True)  # new_run_dir removes it
    check_out(tmp_path, overwrite=None)  # predict's figure, beside a run
    if held is None:
        before = _files(tmp_path)
        new_run_dir(tmp_path, overwrite=True)
        assert _files(tmp_path) == before


def test_overwrite_clears_every_name_a_run_writes(tmp_path):
    """RunDir.clear removes every name RunDir spells (each at the top of the directory, as
    run_files lists them), so no command's file of an earlier run survives --overwrite."""
    run = RunDir(tmp_path)
    spelled = [getattr(run, name) for name, attr in vars(RunDir).items()
               if isinstance(attr, property) and attr.fget.__annotations__.get("return") == "Path"]
    spelled += [run.model(), *(run.model(side) for side in SIDES), run.logs("low_level"),
                run.initial_weights(128, 0), run.side_state("high_level").checkpoint]
    tops = {tmp_path / path.relative_to(tmp_path).parts[0] for path in spelled}
    assert tops <= set(run.run_files())
    for path in sorted(spelled, key=lambda path: -len(path.parts)):  # a folder's files first
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_text("x")
    (tmp_path / "notes.txt").write_text("kept")
    new_run_dir(tmp_path, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
