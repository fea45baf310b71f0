"""TensorBoard logs: fit()'s callback and the loop's hand-written one write the same scalars, a
real TensorBoard serves them, and --profile leaves a trace for every side."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest

from fit_vs_tape.cli import main
from fit_vs_tape.sides import SIDES
from fit_vs_tape.tb_logs import profile_window, read_scalars
from shared.config import TrainConfig
from tests.conftest import write_dataset

#: Its tests share a module-scoped fixture or cache: they run on one xdist worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("tensorboard")

SIDE_NAMES = list(SIDES)


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tb")
    data_dir = write_dataset(root / "data", n_train=700, n_test=50)
    out = root / "run"
    assert main(["compare", "--limit", "700", "--epochs", "2", "--validation-split", "0.1",
                 "--profile", "--quiet", "--data-dir", str(data_dir), "--out", str(out)]) == 0
    return out, json.loads((out / "results.json").read_text())


def test_every_side_logs_the_same_epoch_scalars_as_its_history(logged_run):
    out, record = logged_run
    for side in SIDE_NAMES:
        history = record[side]["history"]
        for folder, prefix in (("train", ""), ("validation", "val_")):
            for metric in ("loss", "accuracy"):
                logged = read_scalars(out / "tensorboard" / side / folder, f"epoch_{metric}")
                assert sorted(logged) == [0, 1], (side, folder, metric)  # step = epoch
                expected = np.float32(history[prefix + metric])
                assert np.array_equal(np.float32([logged[0], logged[1]]), expected)
        lr = read_scalars(out / "tensorboard" / side / "train", "epoch_learning_rate")
        assert np.float32(lr[1]) == np.float32(record["config"]["learning_rate"])
    # Bit-identical runs: every side logged exactly the same numbers.
    first = read_scalars(out / "tensorboard" / "high_level" / "train", "epoch_loss")
    assert all(read_scalars(out / "tensorboard" / side / "train", "epoch_loss") == first
               for side in SIDE_NAMES)


@pytest.mark.parametrize("validation", [False, True])
def test_the_loops_writer_makes_the_folders_keras_callback_makes(tmp_path, validation):
    """keras.callbacks.TensorBoard opens LOG_DIR/validation at the first validation only; the
    loop's hand-written callback, given the same logs, makes the same folders."""
    import keras

    from low_level.tensorboard import TensorBoard
    from tests.conftest import synthetic

    x, y = synthetic(64, 5)
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    split = {"validation_split": 0.25} if validation else {}
    model.fit(x, y, epochs=1, verbose=0, **split, callbacks=[
        keras.callbacks.TensorBoard(str(tmp_path / "keras"), write_graph=False),
        TensorBoard(tmp_path / "loop", learning_rate=0.001)])
    folders = {side: sorted(p.name for p in (tmp_path / side).iterdir()) for side in ("keras", "loop")}
    assert folders["keras"] == folders["loop"] == (["train", "validation"] if validation else ["train"])


def test_profile_leaves_a_trace_for_every_side(logged_run):
    out, _ = logged_run
    for side in SIDE_NAMES:
        traces = list((out / "tensorboard" / side / "train" / "plugins" / "profile").glob(
            "*/*.xplane.pb"))
        assert traces and traces[0].stat().st_size > 0, side
    report = (out / "report.md").read_text()
    assert f"tensorboard --logdir {out / 'tensorboard'}" in report
    assert "Profile tab" in report
    # fit()'s sides pay Keras' callback at every step: the report says so beside the seconds.
    assert "The seconds above include this logging" in report and "`--no-tensorboard`" in report


def test_the_profiled_window_is_in_the_second_epoch():
    config = TrainConfig(batch_size=32)
    # 640 images: 20 steps. The loop calls its step 20 times an epoch; so does fit() with
    # steps_per_execution 1; with 5 steps per execution, fit() calls 4 times; in mode epoch,
    # both once.
    assert SIDES["low_level"].calls_per_epoch(config, 640) == 20
    assert SIDES["high_level"].calls_per_epoch(config, 640) == 20
    assert SIDES["high_level"].calls_per_epoch(TrainConfig(steps_per_execution=5), 640) == 4
    assert SIDES["custom_step"].calls_per_epoch(TrainConfig(mode="epoch"), 640) == 1
    assert SIDES["low_level"].calls_per_epoch(TrainConfig(mode="epoch"), 640) == 1
    assert profile_window(20) == (11, 20)
    assert profile_window(4) == (3, 4)
    assert profile_window(1) == (1, 1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_a_real_tensorboard_serves_every_side(logged_run):
    out, record = logged_run
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(out / "tensorboard"),
         "--host", "127.0.0.1", "--port", str(port), "--load_fast", "false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        runs, deadline = [], time.time() + 90  # bounded: never hangs the suite
        while time.time() < deadline:
            try:
                runs = _get(f"{base}/data/runs")
                if len(runs) >= 2 * len(SIDE_NAMES):
                    break
            except OSError:
                pass
            assert server.poll() is None, "tensorboard exited"
            time.sleep(0.5)
        assert sorted(runs) == sorted(f"{side}/{folder}" for side in SIDE_NAMES
                                      for folder in ("train", "validation"))
        for side in SIDE_NAMES:
            query = urllib.parse.urlencode({"run": f"{side}/train", "tag": "epoch_loss"})
            served = _get(f"{base}/data/plugin/scalars/scalars?{query}")
            assert [step for _, step, _ in served] == [0, 1]
            assert np.array_equal(np.float32([value for _, _, value in served]),
                                  np.float32(record[side]["history"]["loss"]))
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def test_no_tensorboard_writes_no_logs(tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--side", "low", "--limit", "64", "--epochs", "1", "--no-tensorboard",
                 "--quiet", "--data-dir", str(tiny_data_dir), "--out", str(out)]) == 0
    assert not (out / "tensorboard").exists()
    assert "tensorboard --logdir" not in capsys.readouterr().out


def test_profile_needs_a_second_epoch(tiny_data_dir, tmp_path, capsys):
    code = main(["compare", "--profile", "--epochs", "1", "--data-dir", str(tiny_data_dir),
                 "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert "--profile" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
