"""fit() and the loop under tf.distribute: 2 logical CPU replicas, and 2 local workers.

Each run is its own process: logical devices and collective ops must be set up before
TensorFlow starts, which has long happened inside the test process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from fit_vs_tape.rundir import load_model
from shared.model import max_abs_weight_diff
from tests.conftest import write_dataset

#: Its tests share a module-scoped fixture: they run on one xdist worker (--dist loadgroup). They
#: are end-to-end runs on two devices, in fresh processes: `pytest -m slow` (and CI) runs them.
pytestmark = [pytest.mark.xdist_group("distribute"), pytest.mark.slow]


def _cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fit_vs_tape", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    data_dir = write_dataset(root / "data", n_train=500, n_test=50)
    common = ["--limit", "500", "--epochs", "2", "--data-dir", str(data_dir), "--quiet"]
    mirrored = _cli("compare", "--strategy", "mirrored", "--cpu-replicas", "2", *common,
                    "--out", str(root / "mirrored"))
    assert (root / "mirrored" / "results.json").is_file(), mirrored.stderr[-2000:]
    # compare exits 1 whenever it prints that the sides differ: under a strategy they may, by
    # summation order (Keras 3.8, the floor), and the tests below bound by how much.
    record = json.loads((root / "mirrored" / "results.json").read_text())
    assert mirrored.returncode == (0 if record["bit_identical"] else 1), mirrored.stderr[-2000:]
    # On one device the three sides are bit-identical (tests/test_equivalence.py): one stands for all.
    single = _cli("train", "--side", "low", *common, "--out", str(root / "single"))
    assert single.returncode == 0, single.stderr[-2000:]
    return root, data_dir, common


def test_two_replicas_fit_and_loop_agree(runs):
    root, _, _ = runs
    record = json.loads((root / "mirrored" / "results.json").read_text())
    assert record["config"]["strategy"] == "mirrored" and record["config"]["cpu_replicas"] == 2
    assert record["max_abs_weight_diff"] <= 1e-5
    # The same global batches as on one device: the same training, up to summation order.
    for side in ("high_level", "custom_step", "low_level"):
        diff = max_abs_weight_diff(load_model(root / "mirrored" / f"{side}.keras"),
                                   load_model(root / "single" / "model.keras"))
        assert diff <= 1e-4, (side, diff)
        assert record[side]["history"]["loss"][1] < record[side]["history"]["loss"][0]


def test_two_replicas_regularized_model_is_bit_identical(runs):
    """Batch norm, dropout and L2 under MirroredStrategy, with a smaller last batch (500
    images): every rung ends bit-identical, test numbers included. That needs the loop's
    distributed step traced as fit()'s is, for any batch size (low_level/distributed.py), and
    batch norm's statistics synchronised (shared/model.py), or each replica keeps its own moving
    statistics and fit()'s distributed evaluate() reads both."""
    root, _, common = runs
    proc = _cli("compare", "--model", "regularized", "--strategy", "mirrored", "--cpu-replicas",
                "2", *common, "--out", str(root / "regularized"))
    record = json.loads((root / "regularized" / "results.json").read_text())
    assert proc.returncode == (0 if record["bit_identical"] else 1), proc.stderr[-2000:]
    assert record["max_abs_weight_diff"] == 0.0, record["pairs"]
    if _keras_older_than(3, 15):
        # Keras 3.8 (the floor): training bit-identical too, but fit()'s own evaluate() under the
        # strategy reports another test loss (seen in CI; not traced, like the loop's evaluate()
        # miscount below); the two rungs that evaluate with our test_step agree.
        for pair, numbers in record["pairs"].items():
            allowed = [d for d in numbers["differences"] if not d.startswith("test ")]
            assert allowed == [] and ("high_level" in pair or not numbers["differences"]), pair
        return
    assert record["bit_identical"], record["pairs"]
    assert "all bit-identical" in proc.stdout


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_local_workers_match_the_mirrored_run(runs):
    root, _, common = runs
    workers = [f"localhost:{p}" for p in _free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "fit_vs_tape", "train", "--side", "low", "--strategy",
             "multiworker", *common, "--out", str(root / f"worker{index}")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "TF_CONFIG": json.dumps(tf_config)}))
    try:
        outcomes = [p.communicate(timeout=240) for p in procs]  # bounded: never hangs CI
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, outcomes):
        assert p.returncode == 0, err[-2000:]
    mirrored = load_model(root / "mirrored" / "low_level.keras")
    for index in range(2):
        assert max_abs_weight_diff(load_model(root / f"worker{index}" / "model.keras"), mirrored) <= 1e-5


def test_fit_under_multiworker_is_refused_clearly(runs):
    _, _, common = runs
    result = _cli("compare", "--strategy", "multiworker", *common)
    assert result.returncode == 2
    assert "keras-team/keras#20585" in result.stderr and len(result.stderr.strip().splitlines()) == 1


_PREDICT_UNDER_A_STRATEGY = """
import json, numpy as np
from fit_vs_tape.runtime import import_tensorflow
tf = import_tensorflow(cpu_replicas=2)
import low_level.train as low
from shared.config import TrainConfig
from shared.model import initial_weights, model_from_weights
from tests.conftest import synthetic

x, y = synthetic(100, 0)
config = TrainConfig(batch_size=32)
alone = low.predict(model_from_weights(128, initial_weights(128, 0)), x, config)
with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
    model = model_from_weights(128, initial_weights(128, 0))
    mirrored = low.predict(model, x, config)
    evaluated = low.evaluate(model, x, y, config)
single = low.evaluate(model_from_weights(128, initial_weights(128, 0)), x, y, config)
print(json.dumps({"row_sums": mirrored.sum(axis=1).tolist(), "shape": list(mirrored.shape),
                  "diff": float(np.abs(mirrored - alone).max()),
                  "loss": [evaluated["loss"], single["loss"]]}))
"""


def _keras_older_than(*version: int) -> bool:
    import keras

    return tuple(int(part) for part in keras.__version__.split(".")[:3]) < version


# Seen at the floor (TensorFlow 2.18.1, Keras 3.8.0) and not yet understood: under a
# MirroredStrategy of 2 CPUs the loop's evaluate() counts 112 images for 96 (accuracy 15/112);
# on one device, and at TensorFlow 2.21 / Keras 3.15 under the strategy, 96. The pairs between
# were not tried. fit()'s and the loop's training under the strategy agree there too.
@pytest.mark.xfail(_keras_older_than(3, 15), strict=False,
                   reason="the loop's evaluate() under MirroredStrategy miscounts at Keras 3.8 "
                          "(tests/test_distribute.py)")
def test_the_loops_predict_and_evaluate_under_a_strategy_match_one_device():
    """Inside a strategy's scope (2 logical CPUs), predict() gives each image's probabilities
    once (not summed over replicas) and evaluate() the same loss as on one device."""
    proc = subprocess.run([sys.executable, "-c", _PREDICT_UNDER_A_STRATEGY], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["shape"] == [100, 10]
    assert all(abs(s - 1) < 1e-5 for s in result["row_sums"])
    assert result["diff"] < 1e-6
    assert abs(result["loss"][0] - result["loss"][1]) < 1e-5
