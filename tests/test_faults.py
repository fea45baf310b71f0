"""Faults mid-run: SIGTERM in every mode, a full disk, lost write permission, a run directory that
goes away, a disk too small for one checkpoint. Each ends with one line and its exit code, and what was
completed can be resumed (signals stopping a real run and its resume: tests/test_robust.py)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import high_level.custom_step as step
import high_level.train as high
import low_level.train as low
from fit_vs_tape.callbacks import GracefulInterrupt
from fit_vs_tape.errors import RunStopped
from fit_vs_tape.options import SHORT_NAMES
from fit_vs_tape.rundir import load_model
from fit_vs_tape.sides import SIDES
from shared.config import TrainConfig
from shared.model import initial_weights, max_abs_weight_diff, model_from_weights
from tests.conftest import RESUME_EPOCHS, resume_options, start_cli, synthetic, wait_for_file


@contextlib.contextmanager
def tmpfs(directory: Path, size: str):
    """A tmpfs of ``size`` mounted on ``directory`` (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    directory.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def _same_weights(model_file: Path, reference: Path, side: str) -> None:
    assert max_abs_weight_diff(load_model(model_file), load_model(reference / f"{side}.keras")) == 0


@pytest.mark.parametrize("mode", ["graph", "epoch"])
@pytest.mark.parametrize("impl", [high, step, low], ids=["high", "step", "low"])
def test_sigterm_stops_every_side_between_steps_in_every_mode(impl, mode):
    """SIGTERM sent during epoch 1 stops training at the next end of a step (of an execution,
    in epoch mode) of epoch 2: the epoch in progress is never finished."""
    import keras

    class TermAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                os.kill(os.getpid(), signal.SIGTERM)

    x, y = synthetic(320, 0)
    model = model_from_weights(128, initial_weights(128, 0))
    # (pytest.raises outside: the exception passes GracefulInterrupt on its way out.)
    with pytest.raises(RunStopped) as stop, GracefulInterrupt() as interrupt:
        impl.train(model, x, y, TrainConfig(epochs=3, mode=mode), callbacks=[TermAfterFirstEpoch(),
                   interrupt], verbose=False)
    assert stop.value.signum == signal.SIGTERM and stop.value.code == 143
    assert stop.value.where.startswith("in epoch 2, step")
    assert str(stop.value).startswith("terminated (SIGTERM) in epoch 2, step")
    assert signal.getsignal(signal.SIGTERM) != interrupt._handle  # handler given back


@pytest.mark.slow
def test_full_disk_mid_run_then_resume_is_bit_identical(tmp_path, resume_reference):
    data_dir, reference = resume_reference
    with tmpfs(tmp_path / "small", "40m") as disk:
        run = disk / "run"
        proc = start_cli("compare", "--sides", "high,low", *resume_options(data_dir), "--out", str(run))
        wait_for_file(run / "state" / "high_level" / "progress.json", proc)  # fit()'s epoch 1 done
        # Another program fills the disk: 256 KB stay free, less than a checkpoint needs.
        filler = disk / "filler"
        with open(filler, "wb") as f, contextlib.suppress(OSError):
            while (free := shutil.disk_usage(disk).free) > 256 * 1024:
                f.write(b"\0" * min(1 << 20, free - 256 * 1024))
                f.flush()
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, err
        # Whichever write finds the disk full (a checkpoint, or the side's final model) fails
        # whole: one line, the checkpoint at most one epoch behind the progress record.
        state = run / "state" / "high_level"
        _one_line_no_space(err, state, f"fit-vs-tape compare --resume {run}")
        done = json.loads((state / "progress.json").read_text())["completed_epochs"]
        assert SIDES["high_level"].saved_epochs(state / "checkpoint") in (done, done - 1)  # no further apart
        assert not list(run.rglob(".*"))

        filler.unlink()  # space freed
        _resume_completes_bit_identical(run, reference)


def _resume_completes_bit_identical(run: Path, reference: Path) -> None:
    """`compare --resume` of a two-side run: exit 0, both sides' weights the reference's, complete."""
    resumed = start_cli("compare", "--resume", str(run), "--quiet")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    for side in ("high_level", "low_level"):
        _same_weights(run / f"{side}.keras", reference, side)
    assert json.loads((run / "results.json").read_text())["status"] == "complete"


def _one_line_no_space(err: str, state: Path, resume: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"fit-vs-tape: error: {state}"), lines[0]
    assert ": no space left on device (" in lines[0], lines[0]
    assert lines[0].endswith(f"resume with: {resume}"), lines[0]


#: Runs the CLI with the disk filled by "another program" at the worst moment: as the checkpoint
#: of epoch 2 is about to be written. argv: filler file, CLI args.
_FILL_AT_SAVE = """
import sys
from fit_vs_tape.cli import main
from fit_vs_tape.runtime import quiet_tensorflow
with quiet_tensorflow():  # as the CLI imports TensorFlow: without its start-up log lines
    import fit_vs_tape.fit_checkpoint as fit_ck, low_level.checkpoint as loop_ck

def fill():
    try:
        with open(sys.argv[1], "wb") as f:
            while True:
                f.write(b"\\0" * 65536)
                f.flush()
    except OSError:  # full (the last flush, on closing, fails too)
        pass

def before(save, epoch_of):
    def patched(self, *args):
        if epoch_of(self, *args) == 2:
            fill()
        return save(self, *args)
    return patched

fit_ck.BackupAndRestore.save = before(fit_ck.BackupAndRestore.save, lambda self, done: done)
loop_ck.EpochCheckpoint.save = before(loop_ck.EpochCheckpoint.save, lambda self, done: done)
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("impl", ["high", "low"])
def test_disk_full_during_the_checkpoint_write_then_resume_is_bit_identical(
        tmp_path, resume_reference, impl):
    """The save fails whole: the previous checkpoint stays loadable, no partial file is left,
    HDF5 does not crash the process on its way out, and resuming redoes the lost epoch."""
    data_dir, reference = resume_reference
    with tmpfs(tmp_path / "small", "40m") as disk:
        run, filler = disk / "run", disk / "filler"
        proc = subprocess.run([sys.executable, "-c", _FILL_AT_SAVE, str(filler), "train",
                               "--side", impl, *resume_options(data_dir), "--out", str(run)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1, proc.stderr  # not -11: no segmentation fault at exit
        state = run / "state" / SHORT_NAMES[impl]
        _one_line_no_space(proc.stderr, state / "checkpoint", f"fit-vs-tape train --resume {run}")
        assert "the checkpoint of epoch 2 was not written" in proc.stderr
        assert json.loads((state / "progress.json").read_text())["completed_epochs"] == 2
        assert SIDES[SHORT_NAMES[impl]].saved_epochs(state / "checkpoint") == 1  # epoch 1's checkpoint, whole
        assert not list(run.rglob(".*"))  # no temporary file left behind

        filler.unlink()
        resumed = start_cli("train", "--resume", str(run), "--quiet")
        _, err = resumed.communicate(timeout=300)
        assert resumed.returncode == 0, err
        _same_weights(run / "model.keras", reference, SHORT_NAMES[impl])
        saved = json.loads((run / "results.json").read_text())[SHORT_NAMES[impl]]
        assert len(saved["epoch_seconds"]) == RESUME_EPOCHS and len(saved["history"]["loss"]) == RESUME_EPOCHS


#: The last file each kind of checkpoint writes for an epoch.
_CHECKPOINTED = {"high": "training_metadata.json", "low": "checkpoint"}


def _without_root_powers() -> list[str]:
    """A command prefix under which root obeys file permissions as any user does (it drops the
    capabilities that let root write anywhere); nothing for other users."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("root ignores file permissions, and setpriv (util-linux) is not here")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", "--"]


@pytest.mark.slow
@pytest.mark.parametrize("impl", ["high", "low"])
def test_write_permission_lost_mid_run_is_one_line_and_keeps_the_last_checkpoint(
        tmp_path, resume_reference, impl):
    """The side's state directory stops being writable during epoch 2: one line naming the file
    and the cause, and epoch 1's checkpoint whole. (That a whole checkpoint resumes bit-identical
    is what the full-disk and signal tests prove; resuming here too cost 12 s and proved no more.)"""
    data_dir, _ = resume_reference
    run = tmp_path / "locked"
    state = run / "state" / SHORT_NAMES[impl]
    proc = subprocess.Popen([*_without_root_powers(), sys.executable, "-m", "fit_vs_tape", "train",
                             "--side", impl, *resume_options(data_dir), "--out", str(run)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_file(state / "checkpoint" / _CHECKPOINTED[impl], proc)  # epoch 1 checkpointed
    for directory in (state, state / "checkpoint"):
        directory.chmod(0o555)
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        for directory in (state, state / "checkpoint"):
            directory.chmod(0o755)
    assert proc.returncode == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"fit-vs-tape: error: {state}"), lines[0]
    assert ": permission denied" in lines[0], lines[0]
    assert lines[0].endswith(f"resume with: fit-vs-tape train --resume {run}"), lines[0]
    assert SIDES[SHORT_NAMES[impl]].saved_epochs(state / "checkpoint") == 1
    assert not list(run.rglob(".*"))


@pytest.mark.slow
def test_run_directory_removed_mid_run(tmp_path, resume_reference):
    data_dir, _ = resume_reference
    run = tmp_path / "gone"
    proc = start_cli("train", "--side", "low", *resume_options(data_dir), "--out", str(run))
    # Once epoch 1 is checkpointed (the checkpoint's index file is its last write), so that the
    # directory goes away while epoch 2 trains, not while epoch 1's files are still written.
    wait_for_file(run / "state" / "low_level" / "checkpoint" / "checkpoint", proc)
    shutil.rmtree(run)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"fit-vs-tape: error: {run}"), lines[0]
    assert lines[0].endswith(": no such file or directory"), lines[0]


@pytest.mark.slow
def test_a_disk_too_small_for_a_checkpoint_stops_at_its_write_then_resume_is_bit_identical(
        tmp_path, resume_reference):
    """Nothing guesses sizes up front: on a disk too small for one checkpoint (1 MB; fit()'s is
    1.2 MB) the run starts and stops where the first checkpoint's write fails, in one line, exit
    1, no partial file left; once the disk has room, --resume trains epoch 1 again and ends
    bit-identical."""
    data_dir, reference = resume_reference
    with tmpfs(tmp_path / "tiny", "1m") as disk:
        run = disk / "run"
        proc = start_cli("compare", "--sides", "high,low", *resume_options(data_dir), "--out", str(run))
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 1, err
        state = run / "state" / "high_level"
        _one_line_no_space(err, state / "checkpoint", f"fit-vs-tape compare --resume {run}")
        assert "the checkpoint of epoch 1 was not written" in err
        assert SIDES["high_level"].saved_epochs(state / "checkpoint") == 0
        assert not list(run.rglob(".*"))

        subprocess.run(["mount", "-o", "remount,size=40m", str(disk)], check=True)  # room made
        _resume_completes_bit_identical(run, reference)


def test_a_failed_checkpoint_write_keeps_the_last_one(tmp_path):
    """TensorFlow's SaveV2 on a full disk: an OSError naming the directory, no partial files,
    and the previous checkpoint restores."""
    from low_level.checkpoint import EpochCheckpoint
    from shared.model import make_optimizer

    def checkpoint(directory, seed, initial_epoch=0):
        """The loop's checkpoint callback at the start of training, as train() drives it."""
        model = model_from_weights(128, initial_weights(128, seed))
        optimizer = make_optimizer(TrainConfig())
        optimizer.build(model.trainable_variables)
        saver = EpochCheckpoint(directory, optimizer, initial_epoch)
        saver.set_model(model)
        saver.on_train_begin()
        return saver

    with tmpfs(tmp_path / "ck", "2m") as disk:  # room for one checkpoint (1.2 MB), not two
        saver = checkpoint(disk / "c", 0)
        saver.save(1)
        before = sorted(p.name for p in (disk / "c").iterdir())
        with pytest.raises(OSError) as failed:
            saver.save(2)
        assert failed.value.errno == errno.ENOSPC and failed.value.filename == str(disk / "c")
        assert sorted(p.name for p in (disk / "c").iterdir()) == before
        assert int(checkpoint(disk / "c", 1, initial_epoch=1).epoch.numpy()) == 1
