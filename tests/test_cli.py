"""The command line, called through main([...]) as a user would type it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fit_vs_tape import options
from fit_vs_tape.cli import main
from fit_vs_tape.errors import UserError
from fit_vs_tape.sides import SIDES
from shared.config import TrainConfig


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "compare" in out and "train" in out


def test_help_answers_before_tensorflow_is_imported():
    code = "import sys\nfrom fit_vs_tape.cli import main\ntry:\n    main(['compare', '--help'])\n" \
           "except SystemExit:\n    pass\nprint('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "--validation-split" in result.stdout
    assert result.stdout.strip().endswith("False")


def test_compare_tiny_run(tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["compare", "--limit", "200", "--epochs", "2", "--data-dir", str(tiny_data_dir),
                 "--out", str(out), "--quiet", "--validation-split", "0.25"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "bit-identical" in printed
    record = json.loads((out / "results.json").read_text())
    assert record["config"]["limit"] == 200 and record["config"]["epochs"] == 2
    assert record["max_abs_weight_diff"] == 0.0
    assert record["prediction_agreement"] == 1.0
    assert record["environment"]["tensorflow"] and record["environment"]["cpu_cores"] >= 1
    for side in ("high_level", "custom_step", "low_level"):
        entry = record[side]
        assert len(entry["history"]["loss"]) == 2 and len(entry["history"]["val_accuracy"]) == 2
        assert len(entry["epoch_seconds"]) == 2
        assert 0.0 <= entry["test_accuracy"] <= 1.0
        assert (out / f"{side}.keras").stat().st_size > 0
        # The same numbers on every rung; only the seconds differ.
        assert {**entry, "epoch_seconds": None} == {**record["low_level"], "epoch_seconds": None}
    assert set(record["pairs"]) == {"high_level vs custom_step", "high_level vs low_level",
                                    "custom_step vs low_level"}
    assert all(pair["max_abs_weight_diff"] == 0.0 for pair in record["pairs"].values())
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_train_one_side(tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--side", "low", "--mode", "eager", "--limit", "64", "--epochs", "1",
                 "--data-dir", str(tiny_data_dir), "--out", str(out), "--quiet"]) == 0
    record = json.loads((out / "results.json").read_text())
    assert record["side"] == "low_level" and record["config"]["mode"] == "eager"
    assert (out / "model.keras").is_file()
    assert "test accuracy" in capsys.readouterr().out


#: What a side fit() drives says of --strategy multiworker (the loop runs under it).
_MULTIWORKER = ("--strategy multiworker: Keras 3's fit() does not run under "
                "MultiWorkerMirroredStrategy (keras-team/keras#20585); the loop does: "
                "fit-vs-tape train --side low --strategy multiworker")


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train", "--side", "middle"], "argument --side: invalid choice: 'middle'"),
        (["compare", "--sides", "high"], "argument --sides: 'high': compare needs two or more"),
        (["compare", "--sides", "high,mid"], "argument --sides: 'mid' is not one of high, step, low"),
        (["compare", "--epochs", "0"], "--epochs 0: must be at least 1"),
        (["compare", "--mode", "turbo"], "argument --mode: invalid choice: 'turbo'"),
        (["compare", "--lr", "nan"], "--lr nan: must be a positive finite number"),
        (["compare", "--lr", "-1"], "--lr -1.0: must be a positive finite number"),
        (["compare", "--validation-split", "1.5"], "--validation-split 1.5"),
        (["compare", "--data-dir", "/no/such/dir"], "--data-dir /no/such/dir: no such directory"),
        (["compare", "--jit-compile", "--mode", "eager"], "--jit-compile: cannot compile with --mode eager"),
        (["compare", "--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
        (["compare", "--limit", "0"], "--limit 0: must be at least 1"),
        (["compare", "--batch-size", "0"], "--batch-size 0: must be at least 1"),
        (["compare", "--seed", "-1"], "--seed -1: must be 0 or more"),
        (["compare", "--epochs", "two"], "argument --epochs: 'two' is not a whole number"),
        (["compare", "--strategy", "mirrored", "--mode", "epoch"],
         "--mode epoch: --strategy mirrored runs with --mode graph only"),
        (["compare", "--model", "mlp"], "argument --model: invalid choice: 'mlp'"),
        (["compare", "--class-weight", "6:2"], "argument --class-weight: '6:2' is not CLASS=WEIGHT"),
        (["compare", "--class-weight", "10=2"], "argument --class-weight: '10=2': the class must be 0-9"),
        (["compare", "--class-weight", "6=-1"], "--class-weight (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -1.0"),
        (["compare", "--sides", "step,low", "--strategy", "multiworker"], _MULTIWORKER),
        (["train", "--side", "high", "--strategy", "multiworker"], _MULTIWORKER),
    ],
)
def test_user_mistakes_are_one_line_and_exit_2(argv, needle, capsys, tmp_path):
    try:
        code = main(argv + ["--out", str(tmp_path / "out")])
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err
    assert needle in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing written for a mistake


def test_only_the_sides_fit_drives_refuse_multiworker():
    config = TrainConfig(strategy="multiworker")
    options.check_sides(config, ["low_level"])  # the loop runs under it
    for side in ("high_level", "custom_step"):
        with pytest.raises(UserError, match=r"keras-team/keras#20585"):
            options.check_sides(config, ["low_level", side])
    options.check_sides(TrainConfig(), list(SIDES))


@pytest.mark.parametrize("command", ["compare", "train"])
def test_resume_takes_neither_out_nor_overwrite(command, capsys, tmp_path):
    """A resumed run carries on in its own directory: --out beside --resume is not silently
    ignored, and --overwrite is not taken to mean both."""
    argv = [command, "--resume", "runs/x"]
    assert main(argv + ["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"fit-vs-tape: error: --out {tmp_path / 'out'}: a resumed run carries "
                           "on in its own directory, --resume runs/x; leave --out out")
    assert main(argv + ["--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("fit-vs-tape: error: --overwrite: --resume runs/x carries that run on; "
                           "to start it afresh, use --out runs/x --overwrite instead")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command, default", [("compare", "tutorial"), ("mistakes", "regularized"),
                                              ("check", "regularized")])
def test_model_help_names_every_model_and_the_true_default(command, default, capsys):
    from fit_vs_tape.options import MODEL_HELP
    from shared.config import MODELS

    with pytest.raises(SystemExit):
        main([command, "--help"])
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps the lines
    text = shown.split("--model {")[2].split(" --")[0]  # after the usage line's mention
    assert all(f"{name}: {' '.join(MODEL_HELP[name].split())}" in text for name in MODELS), text
    assert text.endswith(f"(default {default})") and text.count("default") == 1, text


@pytest.mark.parametrize("name", ["KERAS_MAX_EPOCHS", "KERAS_MAX_STEPS_PER_EPOCH"])
def test_keras_debugging_caps_are_refused_in_one_line(name, tiny_data_dir, capsys, tmp_path,
                                                      monkeypatch):
    monkeypatch.setenv(name, "1")
    out = tmp_path / "out"
    assert main(["compare", "--limit", "96", "--data-dir", str(tiny_data_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{name}=1 is set" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_why_the_caps_are_refused_fit_stops_short_of_what_it_was_asked():
    """Keras 3.15 caps fit() at keras.config.set_max_epochs (what KERAS_MAX_EPOCHS sets);
    a loop knows nothing of it. Older Keras has no cap."""
    keras = pytest.importorskip("keras")
    if not hasattr(keras.config, "set_max_epochs"):
        pytest.skip(f"Keras {keras.__version__} has no epoch cap")
    from tests.conftest import synthetic

    x, y = synthetic(32, 1)
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    keras.config.set_max_epochs(1)
    try:
        with pytest.warns(UserWarning, match="Limiting epochs to 1"):
            history = model.fit(x, y, epochs=3, verbose=0)
    finally:
        keras.config.set_max_epochs(None)
    assert len(history.history["loss"]) == 1


def test_limit_and_batch_size_beyond_the_data(tiny_data_dir, capsys, tmp_path):
    assert main(["compare", "--limit", "1000", "--data-dir", str(tiny_data_dir)]) == 2
    assert "--limit 1000: the training set has 256 images" in capsys.readouterr().err
    # The case a new user tries: 160 images are 5 steps; 2 steps per execution would run fit()'s
    # epoch 1 into epoch 2's batches. Refused in one line, before a run directory is made.
    assert main(["compare", "--limit", "160", "--epochs", "3", "--steps-per-execution", "2",
                 "--data-dir", str(tiny_data_dir), "--out", str(tmp_path / "spe")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fit-vs-tape: error: --steps-per-execution 2: must divide the 5 steps "
                          "of an epoch (1, 5)") and len(err.splitlines()) == 1
    assert not (tmp_path / "spe").exists()
    assert main(["compare", "--batch-size", "300", "--data-dir", str(tiny_data_dir)]) == 2
    assert "--batch-size 300: larger than the 256 training images" in capsys.readouterr().err


def test_train_takes_its_old_option_name_without_showing_it(capsys):
    """`--side` is the one word; `--impl`, its name before, is still taken but not shown."""
    from fit_vs_tape.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["train", "--impl", "low"]).side == "low"
    assert parser.parse_args(["train", "--side", "step"]).side == "step"
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--help"])
    shown = capsys.readouterr().out
    assert "--side" in shown and "--impl" not in shown


def test_console_script_module_runs():
    result = subprocess.run([sys.executable, "-m", "fit_vs_tape", "train", "--side", "x"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "invalid choice: 'x'" in result.stderr


def test_jit_compile_flag_means_xla_for_both(tiny_data_dir, tmp_path):
    out = tmp_path / "run"
    assert main(["compare", "--jit-compile", "--limit", "64", "--epochs", "1", "--quiet",
                 "--data-dir", str(tiny_data_dir), "--out", str(out)]) == 0
    record = json.loads((out / "results.json").read_text())
    assert record["config"]["mode"] == "xla" and record["max_abs_weight_diff"] == 0.0


def test_compare_never_says_bit_identical_when_a_history_differs(tiny_data_dir, tmp_path,
                                                                 capsys, monkeypatch):
    """Equal weights are not enough: one side's recorded epoch-1 loss, changed after it trained,
    is named, and neither the output nor results.json calls the run bit-identical."""
    from fit_vs_tape import runs

    real = runs.run_side

    def one_side_off(name, *args, **kwargs):
        result = real(name, *args, **kwargs)
        if name == "low_level":
            result.history["loss"][0] += 1e-6
            result.batches[1]["sha256"] = "0" * 64
        return result

    monkeypatch.setattr(runs, "run_side", one_side_off)
    out = tmp_path / "run"
    # Exit code 1 whenever it says the sides differ, as `check` does (0: all bit-identical).
    assert main(["compare", "--sides", "high,low", "--epochs", "2", "--data-dir", str(tiny_data_dir),
                 "--out", str(out), "--quiet", "--no-tensorboard"]) == 1
    printed = capsys.readouterr().out
    assert "largest weight difference, fit() vs GradientTape loop: 0\n" in printed
    assert "but fit() and GradientTape loop differ in loss in epoch 1" in printed
    assert "differ in the logs the batch callbacks got in epoch 2" in printed
    assert "all bit-identical" not in printed
    assert "the sides differ: not bit-identical (exit code 1)" in printed
    record = json.loads((out / "results.json").read_text())
    assert record["max_abs_weight_diff"] == 0.0 and record["bit_identical"] is False
    assert "bit-identical" not in (out / "report.md").read_text().split("## Configuration")[0]


def test_compare_a_chosen_pair_of_sides(tiny_data_dir, tmp_path):
    out = tmp_path / "run"
    assert main(["compare", "--sides", "low,step", "--limit", "64", "--epochs", "1", "--quiet",
                 "--data-dir", str(tiny_data_dir), "--out", str(out)]) == 0
    record = json.loads((out / "results.json").read_text())
    assert "high_level" not in record and list(record["pairs"]) == ["custom_step vs low_level"]
    assert sorted(p.name for p in out.glob("*.keras")) == ["custom_step.keras", "low_level.keras"]
