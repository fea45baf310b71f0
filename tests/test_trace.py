"""A proof of structure beside the proof of weights: the trace (fit_vs_tape/trace.py) records
what each rung does at run time, and the three rungs' callbacks must see the same hooks, in
the same order, with the same batch and epoch numbers, log keys and params."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest

from fit_vs_tape import trace_tree
from fit_vs_tape.cli import main
from fit_vs_tape.runs import Splits
from fit_vs_tape.sides import SIDES
from shared.config import TrainConfig
from shared.model import initial_weights, max_abs_weight_diff
from tests.conftest import synthetic

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402 - after TensorFlow

from fit_vs_tape import trace, trace_record  # noqa: E402 - after TensorFlow

#: Its tests share a module-scoped fixture or cache: they run on one xdist worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("trace")

RUNGS = list(SIDES)  # high_level (fit()), custom_step (fit() + own train_step), low_level (loop)
LABELS = {side: SIDES[side].label for side in RUNGS}
STEPS = 3  # 96 images, batch 32
VALIDATION_BATCHES = 2  # 40 images, batch 32


def _splits(validation: bool) -> Splits:
    x, y = synthetic(96 + 40, 3)
    return Splits(x[:96], y[:96], (x[96:], y[96:]) if validation else None, x[:8], y[:8])


def _config(mode: str, model: str = "tutorial") -> TrainConfig:
    return TrainConfig(epochs=2, batch_size=32, hidden_units=16, mode=mode, model=model)


_CACHE: dict = {}


def traced(mode: str, validation: bool = True, resumed_after: int = 0, tmp_path=None,
           model: str = "tutorial") -> dict:
    """Every rung's trace of one configuration, recorded once per test session."""
    key = (mode, validation, resumed_after, model)
    if key not in _CACHE:
        _CACHE[key] = trace.trace_sides(RUNGS, _splits(validation), _config(mode, model),
                                        resumed_after, tmp_path)
    return _CACHE[key]


def hooks_of(traces: dict) -> dict[str, list[dict]]:
    return {side: trace_tree.hooks(t.events) for side, t in traces.items()}


def expected_hooks(epochs: range, logs: list[str], validation_end_batches: list[int]) -> list[tuple]:
    """The hooks fit() gives a callback, written out from keras/src/backend/tensorflow/trainer.py
    TensorFlowTrainer.fit (and evaluate() for validation, with the same CallbackList)."""
    params = repr({"epochs": 2, "steps": STEPS, "verbose": 0})
    val = ["val_" + k for k in logs] if validation_end_batches else []
    seq = [("set_params", None, None, (), params), ("on_train_begin", None, None, (), params)]
    for epoch in epochs:
        seq.append(("on_epoch_begin", None, epoch, (), "None"))
        for step in range(STEPS):
            seq += [("on_train_batch_begin", step, None, (), "None"),
                    ("on_train_batch_end", step, None, tuple(logs), "None")]
        if validation_end_batches:
            seq.append(("on_test_begin", None, None, (), "None"))
            begin = 0
            for end in validation_end_batches:
                seq += [("on_test_batch_begin", begin, None, (), "None"),
                        ("on_test_batch_end", end, None, tuple(logs), "None")]
                begin = end + 1
            seq.append(("on_test_end", None, None, tuple(logs), "None"))
        seq.append(("on_epoch_end", None, epoch, tuple(sorted(logs + val)), "None"))
    seq.append(("on_train_end", None, None, tuple(sorted(logs + val)), "None"))
    return seq


@pytest.mark.parametrize("mode", ["graph", "xla", "eager"])
def test_every_rung_gives_its_callbacks_the_same_hooks(mode):
    got = {side: [trace_tree.hook_signature(h) for h in hooks]
           for side, hooks in hooks_of(traced(mode)).items()}
    want = expected_hooks(range(2), ["accuracy", "loss"], list(range(VALIDATION_BATCHES)))
    for side in RUNGS:
        assert got[side] == want, side
    assert trace_tree.hook_differences(hooks_of(traced(mode)), LABELS) == []


def test_the_regularized_model_gives_its_callbacks_the_same_hooks():
    """Dropout, batch norm and L2 change what a step computes, not what fit() tells callbacks:
    the three rungs' hooks are fit()'s, in the same order, as for the tutorial's model."""
    traces = traced("graph", model="regularized")
    want = expected_hooks(range(2), ["accuracy", "loss"], list(range(VALIDATION_BATCHES)))
    for side, hooks in hooks_of(traces).items():
        assert [trace_tree.hook_signature(h) for h in hooks] == want, side
    assert trace_tree.hook_differences(hooks_of(traces), LABELS) == []


def test_epoch_mode_differs_only_in_the_validation_batch_numbers():
    """Mode epoch: fit() runs with steps_per_execution = one epoch (3) and validates with it
    too, so its one validation call reports batch 0..2 whatever the number of batches
    (keras/src/trainers/epoch_iterator.py: `step + self.steps_per_execution - 1`); the loop
    validates batch by batch. The training hooks are the same (one execution per epoch)."""
    got = {side: [trace_tree.hook_signature(h) for h in hooks]
           for side, hooks in hooks_of(traced("epoch")).items()}
    # Which batch ends an execution: its last step in Keras 3.15 (`on_train_batch_end(end_step,
    # logs)`), its first in older Keras (3.8: `on_train_batch_end(step, logs)`); the loop says
    # the last, as today's fit().
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer
    end = STEPS - 1 if "end_step" in inspect.getsource(TensorFlowTrainer.fit) else 0

    def one_call(last):
        return [("on_train_batch_begin", 0, None, (), "None"),
                ("on_train_batch_end", last, None, ("accuracy", "loss"), "None")]

    def with_one_training_call(seq, last):
        out, skip = [], 0
        for item in seq:
            if skip:
                skip -= 1
                continue
            if item[0] == "on_train_batch_begin" and item[1] == 0:
                out += one_call(last)
                skip = 2 * STEPS - 1
                continue
            out.append(item)
        return out

    fit_way = with_one_training_call(expected_hooks(range(2), ["accuracy", "loss"], [end]), end)
    loop_way = with_one_training_call(expected_hooks(range(2), ["accuracy", "loss"],
                                                     list(range(VALIDATION_BATCHES))), STEPS - 1)
    assert got["high_level"] == got["custom_step"] == fit_way
    assert got["low_level"] == loop_way
    if end != STEPS - 1:
        return  # older Keras: the training batch numbers differ too, as asserted above
    # ... and the trace says so, exactly.
    assert trace_tree.hook_differences(hooks_of(traced("epoch")), LABELS) == [
        "GradientTape loop vs fit():",
        "  on_test_batch_end: batch fit() 2, GradientTape loop 0 (2x)",
        "  on_test_batch_begin: only GradientTape loop's callbacks get it (2x)",
        "  on_test_batch_end: only GradientTape loop's callbacks get it (2x)",
    ]


def test_a_resumed_run_gives_the_same_hooks_and_builds_the_optimizer_on_restore(tmp_path):
    traces = traced("graph", validation=False, resumed_after=1, tmp_path=tmp_path)
    want = expected_hooks(range(1, 2), ["accuracy", "loss"], [])
    for side, t in traces.items():
        assert [trace_tree.hook_signature(h) for h in trace_tree.hooks(t.events)] == want, side
        # Restoring needs the optimizer's variables before the first step: created eagerly,
        # inside on_train_begin (BackupAndRestore or the loop's checkpoint callback).
        made = _slots(t.events)
        assert len(made) == 8 and not any(e["in_trace"] for e in made), side
        by_seq = {e["seq"]: e for e in t.events}
        for event in made:
            while event["parent"] is not None:
                event = by_seq[event["parent"]]
            assert (event["kind"], event.get("hook")) == ("callbacks", "on_train_begin"), side


def _slots(events: list[dict]) -> list[dict]:
    """The optimizer's variables made when it is built: its 2 moments per weight (its iteration
    counter and learning rate are made with the optimizer)."""
    return [e for e in events if e["kind"] == "variable" and e["owner"].startswith("Adam ")
            and e["name"] not in ("iteration", "learning_rate")]


def test_on_one_device_every_rung_builds_its_optimizer_inside_the_first_trace():
    for side, t in traced("graph").items():
        made = _slots(t.events)
        assert len(made) == 8 and all(e["in_trace"] for e in made), side  # 4 weights x 2 moments
        first_call = next(e for e in t.events if e["kind"] == "call" and not e["in_trace"])
        assert first_call["seq"] < made[0]["seq"]
        # tf.function traces again after a first trace that created variables.
        assert max(e.get("traces", 0) for e in t.events if e["kind"] == "call") == 2, side


def test_fit_creates_its_compiled_accuracy_in_the_first_trace_the_loop_before_it():
    """keras/src/trainers/compile_utils.py CompileMetrics.build makes the accuracy named in
    compile(metrics=...) on its first update_state, inside the first trace of the train step;
    the loop (and custom_step's own trackers) make theirs eagerly, before the first step."""
    for side, t in traced("graph").items():
        accuracy = [e for e in t.events if e["kind"] == "variable"
                    and e["owner"].startswith("SparseCategoricalAccuracy ")]
        assert [e["name"] for e in accuracy] == ["total", "count"], side
        assert [e["in_trace"] for e in accuracy] == [side == "high_level"] * 2, side


def _fit_traces(metrics, build_optimizer: bool) -> tuple[int, list[dict]]:
    """How many times fit() traced its step, and the variables it made while tracing."""
    x, y = synthetic(64, 1)
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                              keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    optimizer = keras.optimizers.Adam()
    if build_optimizer:
        optimizer.build(model.trainable_variables)
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=metrics)
    recorder = trace_record.Recorder()
    with trace_record.recording(recorder):
        model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    steps = [e for e in recorder.events if e["kind"] == "call" and e["function"] == "one_step_on_data"]
    made = [e for e in recorder.events if e["kind"] == "variable" and e["in_trace"]]
    return max(e.get("traces", 0) for e in steps), made


@pytest.mark.parametrize("metrics, build_optimizer, traces, made_by", [
    (["accuracy"], False, 2, {"Adam", "SparseCategoricalAccuracy"}),
    (["accuracy"], True, 2, {"SparseCategoricalAccuracy"}),  # built beforehand: still twice
    (None, False, 2, {"Adam"}),
    (None, True, 1, set()),  # nothing made while tracing: traced once
])
def test_fit_traces_its_step_again_whenever_the_first_trace_made_a_variable(
        metrics, build_optimizer, traces, made_by):
    got, made = _fit_traces(metrics, build_optimizer)
    assert got == traces
    assert {e["owner"].split()[0] for e in made} == made_by


def test_a_smaller_last_batch_retraces_predict_but_not_fit_or_evaluate():
    """fit() and evaluate() take each batch from the iterator inside their tf.function, whose
    batch dimension is already unknown; predict() hands each batch over from Python
    (keras/src/backend/tensorflow/trainer.py TensorFlowTrainer.predict:
    `batch_outputs = self.predict_function(data)`), so its last batch of 2 is traced anew."""
    x, y = synthetic(10, 2)
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    model.compile(optimizer, "sparse_categorical_crossentropy")  # nothing made in a trace
    traces = {}
    for what, run in (("fit", lambda: model.fit(x, y, batch_size=4, epochs=2, verbose=0)),
                      ("evaluate", lambda: model.evaluate(x, y, batch_size=4, verbose=0)),
                      ("predict", lambda: model.predict(x, batch_size=4, verbose=0))):
        recorder = trace_record.Recorder()
        with trace_record.recording(recorder):
            run()
        calls = [e for e in recorder.events if e["kind"] == "call"]
        assert len(calls) >= 3, what  # 3 batches of 4, 4 and 2 (fit: in each of 2 epochs)
        traces[what] = sum(e.get("traces", 0) for e in calls if e["function"].startswith("one_step"))
    assert traces == {"fit": 1, "evaluate": 1, "predict": 2}


def test_every_metric_value_handed_to_the_callbacks_is_read_to_the_host_each_step():
    """Every rung's callbacks get every log value as a float: CallbackList._on_train_batch_end
    converts them (python_utils.pythonify_logs), fit()'s and the loop's alike.
    One sync per log key per step, on every rung; fit() reads one more, whether its compiled
    function's result holds a value (`if not opt_outputs.has_value()`; with one step per
    execution it always does)."""
    for side, t in traced("graph", validation=False).items():
        ends = [e for e in t.events if e["kind"] == "callbacks" and e["hook"] == "on_train_batch_end"]
        assert len(ends) == 2 * STEPS
        for end in ends:  # the syncs of the statement that calls on_train_batch_end, this step
            begin = max(e["seq"] for e in t.events if e["seq"] < end["seq"] and e["kind"] == "callbacks"
                        and e["hook"] == "on_train_batch_begin")
            after = min([e["seq"] for e in t.events if e["seq"] > end["seq"] and e["kind"] == "callbacks"]
                        or [len(t.events)])
            syncs = [e for e in t.events if e["kind"] == "sync" and begin < e["seq"] < after
                     and e["driver"] == end["driver"]]
            assert len(syncs) == 2, (side, syncs)  # loss and accuracy
            assert all(any(f["function"] == "pythonify_logs" for f in s["stack"]) for s in syncs), side
        summary = trace_tree.sync_summary(t.events)
        assert summary["median_after_first"] == (3 if SIDES[side].uses_fit else 2), side


@pytest.mark.parametrize("mode", ["eager", "graph", "xla", "epoch"])
def test_training_is_bit_identical_with_and_without_the_trace(mode):
    """Every rung, in every mode: the recorded run (the one the other tests read) ends with the
    weights of the same run with nothing observed."""
    splits, config = _splits(True), _config(mode)
    weights = initial_weights(config.hidden_units, config.seed)
    for side, recorded in traced(mode).items():
        plain = trace.trace_side(side, splits, config, weights, record=False).model
        assert max_abs_weight_diff(plain, recorded.model) == 0.0, side


def test_one_recording_at_a_time():
    """The profile function and NumPy's wrappers are process-wide: a second recording inside the
    first is refused, and the first still undoes everything."""
    import sys

    before = sys.getprofile(), np.asarray
    with trace_record.recording(trace_record.Recorder()):
        with pytest.raises(RuntimeError, match="another trace recording"), \
                trace_record.recording(trace_record.Recorder()):
            pass
        assert sys.getprofile() is not None and np.asarray is not before[1]
    assert (sys.getprofile(), np.asarray) == before
    with trace_record.recording(trace_record.Recorder()):  # and a new one may start
        pass


def test_recording_undoes_everything_even_after_an_error_and_replaces_nothing_else():
    """Only NumPy's three constructors are replaced (a profiler cannot see a C function's
    argument); Keras' and TensorFlow's classes are observed, never touched."""
    import sys

    import keras

    watched = [(keras.callbacks.CallbackList, "on_train_batch_end"),
               (type(tf.function(lambda: None)), "__call__"), (keras.metrics.Mean, "reset_state")]
    before = [vars(owner)[name] for owner, name in watched]
    numpy_before = [np.array, np.asarray, np.asanyarray]
    with pytest.raises(RuntimeError, match="boom"), trace_record.recording(trace_record.Recorder()):
        assert [vars(owner)[name] for owner, name in watched] == before
        assert all(now is not b for now, b in zip([np.array, np.asarray, np.asanyarray], numpy_before))
        raise RuntimeError("boom")
    assert sys.getprofile() is None
    assert [np.array, np.asarray, np.asanyarray] == numpy_before


def test_numpy_called_by_keyword_still_works_and_each_read_counts_once():
    recorder = trace_record.Recorder()
    # bfloat16: NumPy cannot take its buffer and falls back to _numpy, which must not count again.
    tensor = tf.constant([1.0, 2.0], tf.bfloat16)
    with trace_record.recording(recorder):
        got = [np.asarray(a=tensor), np.array(object=tensor), tensor.numpy()]
    assert all(np.array_equal(x, [1.0, 2.0]) for x in got)
    assert [e["via"] for e in recorder.events if e["kind"] == "sync"] == [
        "np.asarray", "np.array", "EagerTensor._numpy"]


def test_what_the_trace_cannot_read_stops_it_after_training_not_during(monkeypatch):
    """An exception in the profile function would switch it off and surface inside the training
    code: it is kept, the code runs on untouched, and the recording fails at its end."""
    import sys

    monkeypatch.setattr(trace_record, "_function_name", lambda function: 1 / 0)
    add_one = tf.function(lambda x: x + 1)
    with pytest.raises(trace_record.TraceUnsupported, match="ZeroDivisionError"), \
            trace_record.recording(trace_record.Recorder()):
        assert float(add_one(tf.constant(1.0))) == 2.0
    assert sys.getprofile() is None


def test_the_command_prints_both_trees_and_writes_the_events(tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["trace", "--data-dir", str(tiny_data_dir), "--out", str(out), "--sides", "high,low",
                 "--hidden-units", "8", "--validation-split", "0.25", "--width", "140"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "fit() | GradientTape loop" in printed.splitlines()  # the two columns' heads
    assert "How to read it:" in printed
    assert "call train_step, traced" in printed  # the loop's compiled step, traced at step 1
    assert printed.count(", traced") >= 3  # fit()'s function, its step inside, the loop's
    assert "step 3: each the same as epoch 1's step 2" in printed  # repeated steps collapsed
    assert "The callbacks received the same hooks on every side" in printed
    assert "fit(): 3 (" in printed and "GradientTape loop: 2 (" in printed
    assert sorted(p.name for p in out.iterdir()) == ["trace.json"]  # nothing else, no temp file
    record = json.loads((out / "trace.json").read_text())
    assert set(record["sides"]) == {"high_level", "low_level"}
    fit_events = record["sides"]["high_level"]["events"]
    assert any(f["file"] == "keras/src/backend/tensorflow/trainer.py" and f["function"] == "fit"
               for e in fit_events for f in e["stack"])
    loop_drivers = {e["driver"]["file"] for e in record["sides"]["low_level"]["events"] if e["driver"]}
    assert loop_drivers == {"low_level/train.py"}
    assert record["hook_differences"] == []


def test_the_command_resumes_and_reports_bad_input_in_one_line(tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["trace", "--data-dir", str(tiny_data_dir), "--out", str(out), "--sides", "step",
                 "--hidden-units", "8", "--epochs", "3", "--resumed-after", "2"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["trace.json"]  # checkpoints removed
    epochs = [h["epoch"] for h in json.loads((out / "trace.json").read_text())
              ["sides"]["custom_step"]["hooks"] if h["hook"] == "on_epoch_begin"]
    assert epochs == [2]
    capsys.readouterr()
    for argv, message in [
        (["--resumed-after", "2"], "--resumed-after 2: must be at least 1 and less than --epochs 2"),
        (["--sides", "high,nope"], "'nope' is not one of high, step, low"),
        (["--limit", "0"], "--limit 0: must be at least 1"),
    ]:
        bad = tmp_path / "bad"
        code = main(["trace", "--data-dir", str(tiny_data_dir), "--out", str(bad), *argv]) \
            if argv[0] != "--sides" else _exit_code(["trace", "--out", str(bad), *argv])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and message in err, (argv, err)
        assert not bad.exists()


def test_a_failed_trace_leaves_no_run_directory(tiny_data_dir, tmp_path, capsys, monkeypatch):
    from fit_vs_tape import trace

    def unsupported(out, *args):
        (out.path / "partial.json").write_text("{")  # whatever it had written by then goes too
        raise trace_record.TraceUnsupported("this Keras has no TensorFlowTrainer.make_train_function")

    monkeypatch.setattr(trace, "write_trace", unsupported)
    out = tmp_path / "run"
    assert main(["trace", "--data-dir", str(tiny_data_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == "fit-vs-tape: error: trace: this Keras has no TensorFlowTrainer.make_train_function\n"
    assert not out.exists()
    kept = tmp_path / "existing"  # a directory the user already had is left where it was
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    assert main(["trace", "--data-dir", str(tiny_data_dir), "--out", str(kept)]) == 2
    assert (kept / "notes.txt").read_text() == "mine"


def _exit_code(argv) -> int:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    return stop.value.code
