"""The benchmark harnesses on a tiny configuration: well-formed outputs, not speed claims."""

from __future__ import annotations

import json

import pytest

from benchmarks import speed
from benchmarks.accuracy import mean_difference
from fit_vs_tape import options
from fit_vs_tape.cli import main
from fit_vs_tape.errors import UserError
from fit_vs_tape.rundir import RunDir
from fit_vs_tape.runtime import import_tensorflow
from tests.conftest import run_in_empty_directory


@pytest.mark.slow
def test_speed_harness_writes_every_output_and_nothing_else(tiny_data_dir, tmp_path):
    # Three of the twelve rows (a fresh TensorFlow process each): fit() at its default, and the
    # loop eager and in graph mode (not as one XLA epoch, whose compiling cost 20 s for nothing
    # more: every mode's training is proven bit-identical in process, tests/test_equivalence.py);
    # this proves the harness. Run from an empty working directory, which stays empty (as every
    # command's does).
    out, cwd = tmp_path / "speed", tmp_path / "cwd"
    done = run_in_empty_directory(["bench", "speed", "--device", "cpu", "--limit", "128",
                                   "--epochs", "2", "--eager-limit", "64", "--repeats", "2", "--rows",
                                   "low:graph,high:default,low:eager", "--data-dir",
                                   str(tiny_data_dir), "--out", str(out)], cwd)
    assert done.returncode == 0, done.stderr[-2000:]
    assert list(cwd.iterdir()) == []
    # The progress bar: 3 rows, the matmul peak and the floor, twice each.
    assert "bench speed: 100%" in done.stderr and "10/10" in done.stderr
    record = json.loads((out / "results.json").read_text())
    rows = record["rows"]
    # In the table's order, not the order typed.
    assert [(r["implementation"], r["mode"]) for r in rows] == [
        ("high_level", "default"), ("low_level", "eager"), ("low_level", "graph")]
    eager = 1
    for row in rows:
        assert row["device"] == "cpu" and row["batch_size"] == 32
        assert row["median_epoch_s"] > 0 and row["samples_per_s"] > 0 and row["peak_rss_mb"] > 100
        # Two processes per row, each with its own epochs; the row is their median, with spread.
        assert row["repeats"] == len(row["process_epoch_seconds"]) == 2
        assert all(len(epochs) == 2 for epochs in row["process_epoch_seconds"])
        assert row["min_epoch_s"] <= row["median_epoch_s"] <= row["max_epoch_s"]
        assert row["unstable"] == (row["max_epoch_s"] > speed.UNSTABLE * row["min_epoch_s"])
        assert row["load_1min"] >= 0
        assert row["threads"]["policy"] == "all" and row["threads"]["cores"] >= 1
        assert row["threads"]["tensorflow_intra_op"] == row["threads"]["cores"]
        assert row["samples_per_s"] == pytest.approx(128 / row["median_epoch_s"])
        assert row["speedup_vs_fit_default"] == pytest.approx(
            rows[0]["median_epoch_s"] / row["median_epoch_s"])
        assert 0 <= row["test_accuracy"] <= 1
        # Both limits were measured among the rows: the peak, and this model's matmuls alone.
        assert row["share_of_peak"] == pytest.approx(
            row["gflop_per_s"] * 1e9 / record["matmul_peak"]["peak_flops"])
        assert row["share_of_floor"] == pytest.approx(
            record["floor_epoch_s"]["batch 32, hidden 128"] / row["median_epoch_s"])
    assert record["matmul_peak"]["processes"] == 2
    assert rows[0]["speedup_vs_fit_default"] == 1.0
    assert "timed on 64 images, scaled to 128" in rows[eager]["note"]
    # Same start, same batches: every row but eager (trained on fewer images) ends the same.
    assert len({r["test_accuracy"] for i, r in enumerate(rows) if i != eager}) == 1
    env = record["environment"]
    assert env["tensorflow"] and env["keras"] and env["numpy"] and env["cpu_cores"] >= 1
    md = (out / "results.md").read_text()
    assert md.count("\n| ") == len(rows) + 1 and "speed.png" in md
    assert (out / "speed.png").read_bytes()[:4] == b"\x89PNG"


def test_the_rows_run_round_robin_each_in_fresh_processes(monkeypatch):
    """A B C, A B C: a burst of load on the machine falls on every row alike."""
    order = []
    monkeypatch.setattr(speed, "run_worker", lambda module, job, hide_gpus, env:
                        order.append(job["mode"]) or {"n": len(order)})
    planned = [speed.Planned(speed.Row("low_level", name, "graph"), "cpu", 32, 8, {"mode": name})
               for name in ("a", "b", "c")]
    runs = speed.interleaved(planned, repeats=3, quiet=True)
    assert order == ["a", "b", "c"] * 3
    assert [[r["n"] for r in row] for row in runs] == [[1, 4, 7], [2, 5, 8], [3, 6, 9]]


def test_a_row_is_the_median_of_its_processes_and_unstable_when_they_spread(tmp_path):
    args = speed.build_parser().parse_args(["--epochs", "3"])
    planned = speed.plan(speed.Row("low_level", "graph", "graph"), "cpu",
                         options.make_config(args, batch_size=32, hidden_units=8), args, 96,
                         RunDir(tmp_path))

    def process(*seconds):
        return {"epoch_seconds": [9.0, *seconds], "n_train": 96, "peak_rss_mb": 1.0,
                "test_accuracy": 0.5, "load_1min": 2.0, "threads": {"policy": "all", "cores": 2}}

    # Each process: the median of its epochs after the first (which traces).
    row = speed.summarize(planned, [process(1.0, 1.1), process(1.2, 1.2), process(1.5, 1.6)], args, 6442)
    assert (row["min_epoch_s"], row["median_epoch_s"], row["max_epoch_s"]) == \
        pytest.approx((1.05, 1.2, 1.55))
    assert row["unstable"] is True  # 1.55 > 1.3 x 1.05
    assert row["thread_policy"] == "all: 2 core(s)" and row["params"] == 6442
    steady = speed.summarize(planned, [process(1.0, 1.0), process(1.1, 1.1)], args, 6442)
    assert steady["unstable"] is False and steady["median_epoch_s"] == pytest.approx(1.05)


def test_speed_times_every_row_unless_told_otherwise(capsys):
    args = speed.build_parser().parse_args([])
    assert speed.rows_for(args.strategy, args.rows) == speed.ROWS and len(speed.ROWS) == 12
    assert [(row.implementation, row.name) for row in speed.rows_for("mirrored")] == [
        ("high_level", "default"), ("custom_step", "default"), ("low_level", "graph")]
    with pytest.raises(SystemExit):
        speed.build_parser().parse_args(["--rows", "low:default"])
    assert "argument --rows: 'low:default' is not one of high:default, " in capsys.readouterr().err
    args = speed.build_parser().parse_args(["--rows", "high:xla", "--strategy", "mirrored"])
    with pytest.raises(UserError, match="^--rows high:xla: none of these runs under --strategy "
                                        "mirrored; these do: high:default, step:default, low:graph$"):
        speed.run(args)


@pytest.mark.slow
def test_accuracy_harness_writes_every_output_and_nothing_else(tiny_data_dir, tmp_path):
    out, cwd = tmp_path / "acc", tmp_path / "cwd"
    done = run_in_empty_directory(["bench", "accuracy", "--seeds", "2", "--epochs", "1",
                                   "--limit", "128", "--data-dir", str(tiny_data_dir),
                                   "--out", str(out)], cwd)
    assert done.returncode == 0, done.stderr[-2000:]
    assert list(cwd.iterdir()) == []
    record = json.loads((out / "results.json").read_text())
    for side in ("high_level", "custom_step", "low_level"):
        summary = record[side]
        assert len(summary["runs"]) == 2
        assert summary["min"] <= summary["mean"] <= summary["max"]
    # The two sides are bit-identical per seed, so the difference of means is exactly zero.
    assert record["high_level"]["runs"] == record["custom_step"]["runs"] == record["low_level"]["runs"]
    assert record["difference"]["mean"] == 0.0
    assert record["anchors"]["TensorFlow tutorial, 5 epochs"] == 0.8732
    assert "difference of means" in (out / "results.md").read_text()
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG"


def test_mean_difference_interval():
    result = mean_difference([0.86, 0.87, 0.88], [0.85, 0.86, 0.87])
    assert result["mean"] == pytest.approx(0.01)
    low, high = result["ci95"]
    # Welch with equal variances 1e-4 and n=3: se = sqrt(2e-4/3), df = 4, t = 2.776.
    assert high - result["mean"] == pytest.approx(2.776 * (2e-4 / 3) ** 0.5, rel=1e-3)
    assert low < 0 < high


def test_gpu_requested_without_gpu_is_a_clear_error(tiny_data_dir, tmp_path, capsys):
    tf = import_tensorflow()
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    for argv, needle in (
        (["bench", "speed", "--device", "gpu"], "--device gpu: TensorFlow sees no GPU"),
        (["bench", "accuracy", "--device", "gpu"], "--device gpu: TensorFlow sees no GPU"),
        (["compare", "--device", "gpu"], "--device gpu: TensorFlow sees no GPU"),
        (["compare", "--mixed-precision"], "--mixed-precision: float16 pays only on a GPU"),
    ):
        code = main(argv + ["--data-dir", str(tiny_data_dir), "--out", str(tmp_path / "o")])
        assert code == 2
        assert needle in capsys.readouterr().err
        assert not (tmp_path / "o").exists()


def test_a_bad_batch_size_is_named_by_the_option_the_user_typed(tiny_data_dir, tmp_path, capsys):
    code = main(["bench", "speed", "--batch-sizes", "32,0", "--data-dir", str(tiny_data_dir),
                 "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("fit-vs-tape: error: --batch-sizes 0: "), err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("which", ["speed", "accuracy"])
def test_a_benchmark_never_replaces_an_earlier_run_unasked(tiny_data_dir, tmp_path, capsys, which):
    """Its default --out is a fixed folder: a second run there is refused in one line, before
    anything slow, and the first run's results stay as they were."""
    out = tmp_path / "bench"
    out.mkdir()
    (out / "results.json").write_text(f'{{"benchmark": "{which}"}}')
    code = main(["bench", which, "--data-dir", str(tiny_data_dir), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"--out {out}: holds a `bench {which}` run (results.json)" in err and "--overwrite" in err
    assert (out / "results.json").read_text() == f'{{"benchmark": "{which}"}}'
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]
