"""bench speed's peers, model-size sweep and distance to the limit, on tiny slices.

Well-formed outputs and agreement in accuracy, not speed claims. One TensorFlow row runs here
(``--rows low:graph``): tests/test_benchmarks.py runs the harness's own.
"""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

from benchmarks import limits, peers
from fit_vs_tape.cli import main
from fit_vs_tape.errors import UserError
from shared.config import MODELS
from tests.conftest import REAL_DATA, needs_real_data


def _traced_matmul_flops(model, batch: int) -> int:
    """FLOPs of every MatMul in TensorFlow's traced train step (low_level/train.py's, the
    forward pass and the gradients the tape adds), from the ops' own shapes and transposes."""
    import functools

    import keras
    import tensorflow as tf

    from low_level.train import make_metrics, train_step
    from shared.config import TrainConfig
    from shared.model import make_optimizer

    optimizer = make_optimizer(TrainConfig())
    optimizer.build(model.trainable_variables)
    step = tf.function(functools.partial(train_step, model, optimizer,
                                         keras.losses.SparseCategoricalCrossentropy(), make_metrics()))
    graph = step.get_concrete_function(tf.TensorSpec((batch, 28, 28), tf.float32),
                                       tf.TensorSpec((batch,), tf.int64)).graph
    total = 0
    for op in graph.get_operations():
        assert op.type not in ("BatchMatMulV2", "Einsum"), op.type  # would need counting too
        if op.type == "MatMul":
            a, b = (t.shape.as_list() for t in op.inputs)
            m, k = reversed(a) if op.get_attr("transpose_a") else a
            n = b[0] if op.get_attr("transpose_b") else b[1]
            total += 2 * m * k * n
    return total


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("hidden_units", [16, 128])
def test_the_flop_count_is_what_the_traced_train_step_multiplies(model, hidden_units):
    """benchmarks/limits.py counts from the model, every model --model builds; the traced step
    says what actually runs: forward, weights' gradients, and no gradient for the input images
    (5 MatMuls, not 6)."""
    pytest.importorskip("tensorflow")
    from shared.model import build_model

    built = build_model(hidden_units, model=model)
    count = limits.training_flops_per_sample(built)
    assert _traced_matmul_flops(built, 32) == 32 * count
    # 1.49x less than the "6 x parameters" of MFU figures, which counts the input's gradient too.
    assert 6 * (784 + 10) * hidden_units / count == pytest.approx(4764 / 3196)
    # What bench speed reports: Keras' own parameter count, and this FLOP count.
    assert limits.model_counts(built) == {"params": built.count_params(), "flops": count}


def test_a_layer_the_flop_count_does_not_know_is_an_error_not_an_undercount():
    """A convolution, or a Dense over the rows of an image (a batch of matmuls per image), would
    be counted as nothing by a count of Dense kernels alone."""
    pytest.importorskip("tensorflow")
    import keras

    conv = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3), keras.layers.Flatten(),
                             keras.layers.Dense(10)])
    with pytest.raises(TypeError, match=r"\(Conv2D, input .*\): benchmarks/limits.py counts"):
        limits.training_flops_per_sample(conv)
    rows = keras.Sequential([keras.Input((28, 28)), keras.layers.Dense(8), keras.layers.Flatten(),
                             keras.layers.Dense(10)])
    with pytest.raises(TypeError, match=r"\(Dense, input \(None, 28, 28\)\)"):
        limits.training_flops_per_sample(rows)


def test_bad_peers_and_hidden_units_are_one_line(tiny_data_dir, tmp_path, capsys):
    common = ["--data-dir", str(tiny_data_dir), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as exit_info:  # argparse's own check of the option
        main(["bench", "speed", "--peers", "jax,tensorflow", *common])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == ("fit-vs-tape bench speed: error: argument --peers: 'tensorflow' is not one "
                   "of jax, torch\n")
    assert main(["bench", "speed", "--hidden-units", "32,0", *common]) == 2  # TrainConfig's rule
    err = capsys.readouterr().err
    assert err.startswith("fit-vs-tape: error: --hidden-units 0: must be at least 1") and err.count("\n") == 1
    # Before any data is read or TensorFlow started, and whether or not the peer is installed.
    assert main(["bench", "speed", "--peers", "torch", "--strategy", "mirrored", "--data-dir",
                 str(tmp_path / "no-data"), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == ("fit-vs-tape: error: --peers: the peer rows run on one "
                                       "device; drop --strategy mirrored\n")
    assert not (tmp_path / "o").exists()


def test_an_unknown_peer_is_an_error_wherever_it_is_named():
    """Not sent to JAX, as a name the worker did not know once was: the registry, the worker
    and the limits' worker each refuse what they do not know, naming what they do."""
    with pytest.raises(UserError, match="^--peers tensorflow: not one of jax, torch$"):
        peers.rows(["jax", "tensorflow"])
    with pytest.raises(UserError, match="^--peers tf: not one of jax, torch$"):
        peers.missing(["tf"])
    with pytest.raises(ValueError, match="^no peer row tensorflow graph; the peers' rows are "
                                         "keras_jax default, keras_jax spe, jax jit, "):
        peers.worker({"implementation": "tensorflow", "mode": "graph"})
    with pytest.raises(ValueError, match="^job kind 'matmul': not one of gpus, count, floor, peak$"):
        limits.worker({"kind": "matmul"})
    # Each peer row names its own trainer; steps_per_execution is the row's, not its name's.
    by_name = {(row.implementation, row.name): row for row in peers.rows(peers.PEERS)}
    assert [key for key, row in by_name.items() if row.one_epoch] == [("keras_jax", "spe")]
    assert {row.train.__name__ for row in by_name.values()} == {"keras_fit", "jax_loop", "train"}


@pytest.mark.slow
def test_sweep_figure_limits_and_a_missing_extra(tiny_data_dir, tmp_path, capsys, monkeypatch):
    # A peer whose package is not installed: one line naming it, and the other rows still run.
    monkeypatch.setitem(peers.PEERS, "torch", peers.Peer(("fit_vs_tape_no_such_package",),
                                                         peers.PEERS["torch"].rows[1:2]))
    out = tmp_path / "speed"
    code = main(["bench", "speed", "--device", "cpu", "--limit", "128", "--epochs", "2", "--repeats",
                 "1", "--quiet", "--threads", "1", "--rows", "low:graph", "--hidden-units", "8,16",
                 "--peers", "torch", "--data-dir", str(tiny_data_dir), "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fit_vs_tape_no_such_package" in err and "install .[peers]" in err
    record = json.loads((out / "results.json").read_text())
    assert record["skipped_peers"] == {"torch": ["fit_vs_tape_no_such_package"]}
    peak = record["matmul_peak"]["peak_flops"]
    # --threads 1: the peak and every row ran pinned to one core, TensorFlow's pools sized to it.
    assert record["matmul_peak"]["threads"] == {"policy": "1", "cores": 1}
    assert peak > 1e8  # any CPU of this century multiplies faster than 0.1 GFLOP/s
    rows = record["rows"]
    assert [(r["implementation"], r["hidden_units"]) for r in rows] == [("low_level", 8), ("low_level", 16)]
    assert set(record["flops_per_sample"]) == {"8", "16"}
    for row in rows:
        flops = record["flops_per_sample"][str(row["hidden_units"])] * 128
        assert row["params"] == (784 + 1) * row["hidden_units"] + (row["hidden_units"] + 1) * 10
        assert row["threads"] == {"policy": "1", "cores": 1, "tensorflow_intra_op": 1,
                                  "tensorflow_inter_op": 1}
        assert row["flops_per_epoch"] == flops
        assert row["gflop_per_s"] == pytest.approx(flops / row["median_epoch_s"] / 1e9)
        assert row["share_of_peak"] == pytest.approx(row["gflop_per_s"] * 1e9 / peak)
        assert row["speedup_vs_fit_default"] is None  # fit() default was not timed
        # The floor: this model's matmuls alone at this batch size, measured among the rows.
        floor = record["floor_epoch_s"][f"batch 32, hidden {row['hidden_units']}"]
        assert row["floor_epoch_s"] == floor > 0
        assert row["share_of_floor"] == pytest.approx(floor / row["median_epoch_s"])
    md = (out / "results.md").read_text()
    assert "scaling.png" in md and "agree in accuracy, not in bits" in md
    for figure in ("speed.png", "scaling.png"):
        assert (out / figure).read_bytes()[:4] == b"\x89PNG"


INSTALLED = [name for name, peer in peers.PEERS.items()
             if all(importlib.util.find_spec(p) for p in peer.packages)]


@pytest.mark.slow
@needs_real_data
@pytest.mark.skipif(not INSTALLED, reason="no peer installed (pip install -e '.[peers]')")
def test_peer_rows_agree_with_tensorflow_in_accuracy(tmp_path, monkeypatch):
    # torch.compile takes 15-45 s to compile this step on 2 cores: the full bench run exercises it.
    monkeypatch.setitem(peers.PEERS, "torch", peers.Peer(("torch",), peers.PEERS["torch"].rows[:2]))
    out = tmp_path / "speed"
    # Real data, 512 images, 2 epochs, 16 hidden units: barely trained, so the test accuracy
    # depends on the initial weights and the batch order, which the peers must copy.
    assert main(["bench", "speed", "--device", "cpu", "--limit", "512", "--epochs", "2", "--repeats", "1",
                 "--rows", "low:graph", "--hidden-units", "16", "--peers", ",".join(INSTALLED), "--data-dir",
                 str(REAL_DATA), "--out", str(out)]) == 0
    record = json.loads((out / "results.json").read_text())
    rows = {(r["implementation"], r["mode"]): r for r in record["rows"]}
    expected = [("low_level", "graph"), *((row.implementation, row.name) for row in peers.rows(INSTALLED))]
    assert list(rows) == expected
    reference = rows[("low_level", "graph")]["test_accuracy"]
    assert 0.2 < reference < 0.8  # neither untrained nor converged: the comparison means something
    for key, row in rows.items():
        # The same training in another framework: at most 20 of the 10,000 test images differ.
        assert row["test_accuracy"] == pytest.approx(reference, abs=0.002), key
        assert row["median_epoch_s"] > 0 and 0 < row["share_of_peak"] < 1
    if "jax" in INSTALLED:  # KERAS_BACKEND=jax reached the Keras rows' process
        assert record["peer_environment"]["keras_backend"] == "jax"


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed (.[peers])")
def test_torch_parts_times_each_part_in_its_own_process():
    """benchmarks/torch_parts.py, which docs/benchmarks.md quotes for why the tutorial's PyTorch
    loop is slower: every part timed, every repeat kept, the thread policy applied."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "benchmarks.torch_parts", "--images", "320", "--steps",
                           "3", "--repeats", "2"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["images"] == 320 and result["threads"] == len(os.sched_getaffinity(0))
    for part in ("dataloader_epoch_s", "sliced_epoch_s", "adam_foreach_step_s", "adam_fused_step_s"):
        assert len(result[part]["repeats"]) == 2 and result[part]["median"] > 0, part
