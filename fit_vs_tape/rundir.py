"""The run directory: every name in it (RunDir), what a run writes, always whole (temporary name,
then rename), and what ``--resume`` reads back. Nothing here imports
TensorFlow, except saving and loading models, so a wrong ``--resume`` path is reported before
the slow import."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fit_vs_tape.errors import UserError, resume_hint
from fit_vs_tape.sides import SIDES
from shared.config import TrainConfig
from shared.data import CLASS_NAMES, IMAGE_SIZE
from shared.files import atomic_path


@dataclass(frozen=True)
class SideState:
    """One side's folder in a run directory's ``state/``: what --resume needs of it."""

    directory: Path

    @property
    def progress(self) -> Path:
        """Each completed epoch's logs and seconds (callbacks.RunRecorder), after every epoch."""
        return self.directory / "progress.json"

    @property
    def done(self) -> Path:
        """The finished side's history, seconds and stop, beside ``final_model``."""
        return self.directory / "done.json"

    @property
    def final_model(self) -> Path:
        """The finished side's model, so that a resumed run does not train it again."""
        return self.directory / "final.keras"

    @property
    def checkpoint(self) -> Path:
        """The side's checkpoint folder (fit_checkpoint.py or low_level/checkpoint.py)."""
        return self.directory / "checkpoint"


@dataclass(frozen=True)
class RunDir:
    """A run directory and every name in it: the one place that spells what each command
    writes there (train, compare, trace, mistakes, bench) and what --resume reads back. The
    folders ``figures/`` and each side's TensorBoard logs are named here; what is inside them
    is their writers' (report.py, the TensorBoard callbacks)."""

    path: Path

    # What train and compare write.

    @property
    def run_file(self) -> Path:
        """What the run is (for --resume), written before training starts."""
        return self.path / "run.json"

    @property
    def state(self) -> Path:
        """What --resume needs, one folder per side; removed once the run is done."""
        return self.path / "state"

    def side_state(self, side: str) -> SideState:
        """Side ``side``'s folder in ``state/``."""
        return SideState(self.state / side)

    @property
    def resumable(self) -> bool:
        """Whether the run has state to carry on: it started and did not finish."""
        return self.state.is_dir()

    def remove_state(self) -> None:
        """Drop ``state/``, once the run is complete: nothing is left to resume."""
        shutil.rmtree(self.state)

    @property
    def results(self) -> Path:
        """The results, written at the end (and at a stop, with the progress so far); a
        benchmark's too."""
        return self.path / "results.json"

    def model(self, side: str | None = None) -> Path:
        """Side ``side``'s trained model in a compare run; with no side, a train run's one
        model."""
        return self.path / ("model.keras" if side is None else f"{side}.keras")

    def saved_model(self) -> Path | None:
        """The model the run saved: a train run's, else a compare run's first side in SIDES'
        order (fit()'s when it trained); None if it saved none."""
        candidates = (self.model(), *(self.model(side) for side in SIDES))
        return next((path for path in candidates if path.is_file()), None)

    @property
    def tensorboard(self) -> Path:
        """One folder of TensorBoard logs per side."""
        return self.path / "tensorboard"

    def logs(self, side: str) -> Path:
        """Side ``side``'s TensorBoard logs (tb_logs.py), its profile among them."""
        return self.tensorboard / side

    @property
    def report(self) -> Path:
        """A compare run's report, which links its figures by relative paths."""
        return self.path / "report.md"

    @property
    def figures(self) -> Path:
        """The figures of a compare run's report (report.py names each)."""
        return self.path / "figures"

    # What trace writes.

    @property
    def trace(self) -> Path:
        """Every event `trace` recorded."""
        return self.path / "trace.json"

    @property
    def trace_checkpoints(self) -> Path:
        """A resumed trace's checkpoints, one folder per side, while it runs."""
        return self.path / "checkpoints"

    # What mistakes writes.

    @property
    def gallery(self) -> Path:
        """What `mistakes` found, each mistake against fit()."""
        return self.path / "gallery.json"

    @property
    def mistakes_figure(self) -> Path:
        """Each mistake's weight difference from fit(), step by step."""
        return self.path / "mistakes.png"

    @property
    def diffs(self) -> Path:
        """Each mistake as a diff against the code it changes."""
        return self.path / "diffs.md"

    # What bench writes, beside results.json.

    @property
    def results_table(self) -> Path:
        """A benchmark's results as Markdown, its charts linked by name."""
        return self.path / "results.md"

    @property
    def speed_chart(self) -> Path:
        """`bench speed`: seconds per epoch of every row."""
        return self.path / "speed.png"

    @property
    def scaling_chart(self) -> Path:
        """`bench speed`: seconds per epoch against model size."""
        return self.path / "scaling.png"

    @property
    def accuracy_chart(self) -> Path:
        """`bench accuracy`: each side's test accuracy over the seeds."""
        return self.path / "accuracy.png"

    def initial_weights(self, hidden_units: int, seed: int) -> Path:
        """`bench speed`: the peers' one start for a model size and seed, where their workers
        read it."""
        return self.path / "initial_weights" / f"hidden{hidden_units}_seed{seed}.npz"

    @property
    def torch_cache(self) -> Path:
        """`bench speed`: torch.compile's C++ and caches, kept in the run, not in /tmp."""
        return self.path / "torchinductor"

    # What the directory holds, and what the run is (for --resume).

    def run_files(self) -> tuple[Path, ...]:
        """Every name a command writes at the top of the directory: what --overwrite removes,
        and nothing else that is there."""
        return (self.run_file, self.state, self.results, self.model(),
                *(self.model(side) for side in SIDES), self.tensorboard, self.report,
                self.figures, self.trace, self.trace_checkpoints, self.gallery,
                self.mistakes_figure, self.diffs, self.results_table, self.speed_chart,
                self.scaling_chart, self.accuracy_chart, self.initial_weights(0, 0).parent,
                self.torch_cache)

    def held_run(self) -> str | None:
        """What run the directory holds, in words for a message (``a stopped `compare` run
        (state/)``), or None if it holds none: no record a command writes of its run (run.json,
        state/, results.json, trace.json, gallery.json), whatever else may be there."""
        records = [path for path in (self.state, self.run_file, self.results, self.trace,
                                     self.gallery) if path.exists()]
        if not records:
            return None
        command = self.run_command()
        run = f"`{command}` run" if command else "run"
        if self.resumable:
            return f"a stopped {run} ({self.state.name}/)"
        status = _read_json(self.results).get("status") if self.results.is_file() else None
        if status:
            return f"a {run} whose {self.results.name} says \"{status}\""
        return f"a {run} ({', '.join(path.name for path in records)})"

    def run_command(self) -> str | None:
        """The command that wrote the run here, from what it left; None if nothing says."""
        if self.run_file.is_file():
            return _read_json(self.run_file).get("command")
        if self.results.is_file() and _read_json(self.results).get("benchmark"):
            return f"bench {_read_json(self.results)['benchmark']}"
        if self.trace.is_file():
            return "trace"
        return "mistakes" if self.gallery.is_file() else None

    def clear(self) -> None:
        """--overwrite: if the directory holds a run, remove every name a command writes here
        (``run_files``), and nothing else, so that no file of that run (a model, TensorBoard's
        event files) mixes with the next run's. A directory that holds no run is left as it is."""
        if self.held_run() is None:
            return
        for path in self.run_files():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()

    def start_run(self, command: str, sides: list[str], config: TrainConfig, source: str) -> None:
        """Record what the run is, before training, so that --resume can carry it on."""
        write_json(self.run_file, {"command": command, "sides": sides,
                                   "config": config.to_dict(), "data": source})

    def read_run(self, command: str) -> tuple[list[str], TrainConfig, str]:
        """What an earlier run was (for --resume): its sides, configuration and data."""
        name = self.run_file.name
        if not self.run_file.is_file():
            raise UserError(f"--resume {self.path}: not a run directory (no {name})")
        try:
            record = json.loads(self.run_file.read_text())
            config = TrainConfig(**record["config"])
            sides, source = list(record["sides"]), str(record["data"])
            if not sides or not set(sides) <= set(SIDES):
                raise ValueError(f"unknown sides {sides}")
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"--resume {self.path}: {name} is damaged ({e})") from None
        if record.get("command") != command:
            raise UserError(f"--resume {self.path}: that run was `{record.get('command')}`, "
                            f"not `{command}`")
        if not self.resumable:
            raise UserError(f"--resume {self.path}: nothing to resume, that run is complete")
        return sides, config, source


def _read_json(path: Path) -> dict:
    """A run's JSON record as a dict; empty if it is damaged (then it says nothing)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def check_out(out: str | os.PathLike | None, overwrite: bool | None) -> None:
    """The rule of --out, checked before anything slow: a directory that holds a run, stopped
    or complete, is refused in one line that says what is there and what to do, unless
    ``overwrite`` (--overwrite: ``new_run_dir`` removes that run first). A new or empty
    directory, or one that holds no run, is taken. ``overwrite`` None: a run there is left
    alone and written beside (predict's figure)."""
    if out is None or overwrite is not False:
        return
    run = RunDir(Path(out))
    held = run.held_run()
    if held is None:
        return
    command = run.run_command()
    todo = "pass another --out, or --overwrite to replace it"
    if run.resumable and command:
        todo = f"{resume_hint(command, out)}, or {todo}"
    raise UserError(f"--out {out}: holds {held}; {todo}")


def new_run_dir(out: str | os.PathLike | None, root: str = "runs", option: str = "--out", *,
                overwrite: bool | None = None) -> RunDir:
    """The directory a run writes into (``runs/<timestamp>/`` by default), created and checked
    writable now, before any training time is spent. ``option``: the command-line option that
    named ``out``, for the message. ``overwrite``: False refuses a directory that holds a run
    (``check_out``), True removes that run first (``RunDir.clear``), None (predict, explore)
    writes beside it."""
    check_out(out, overwrite)
    if out is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = Path(root) / stamp
        n = 1
        while path.exists():
            n += 1
            path = Path(root) / f"{stamp}-{n}"
    else:
        path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
        if overwrite:
            RunDir(path).clear()
    except OSError as e:
        raise UserError(f"{option} {path}: cannot write there ({e.strerror or e})") from None
    return RunDir(path)


@contextlib.contextmanager
def disposable_run_dir(out: str | os.PathLike | None, *,
                       overwrite: bool | None = None) -> Iterator[RunDir]:
    """``new_run_dir`` for a command that leaves nothing to resume (``trace``): if the work
    inside the ``with`` fails, the directory goes again, when this made it."""
    made = out is None or not Path(out).exists()
    run = new_run_dir(out, overwrite=overwrite)
    try:
        yield run
    except BaseException:
        if made:
            shutil.rmtree(run.path, ignore_errors=True)
        raise


def _finite_or_null(obj):
    """JSON has no NaN or Infinity: a non-finite number (a diverged loss) is written as null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_null(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented, strict JSON (non-finite numbers as null), atomically."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(_finite_or_null(obj), f, indent=2, allow_nan=False)
        f.write("\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def save_model(model, path: str | os.PathLike) -> None:
    """model.save() atomically: a failed save leaves no file, nor half a file."""
    with atomic_path(path) as tmp:
        model.save(tmp)


def load_model(path: str | os.PathLike):
    """Load a saved ``.keras`` model with Keras' safe mode on (it refuses the Python lambdas a
    file can carry; docs/usage.md lists its published holes) and check it classifies 28x28 images
    into 10 classes. Anything else is a UserError."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise UserError(f"--model {path}: no such file")
    if not zipfile.is_zipfile(path):  # a .keras file is a zip archive; pickles never get loaded
        raise UserError(f"--model {path}: not a Keras .keras model file")
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=True)
    except Exception as e:  # noqa: BLE001 - whatever Keras raises, the file is the problem
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"--model {path}: cannot be loaded as a Keras model ({first_line})") from None
    in_shape, out_shape = tuple(model.input_shape[1:]), tuple(model.output_shape[1:])
    if in_shape != (IMAGE_SIZE, IMAGE_SIZE) or out_shape != (len(CLASS_NAMES),):
        raise UserError(
            f"--model {path}: takes {in_shape} and gives {out_shape}; a Fashion-MNIST classifier "
            f"takes (28, 28) and gives (10,)"
        )
    return model
