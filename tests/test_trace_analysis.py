"""The trace's analysis (fit_vs_tape/trace_tree.py) on a recorded trace, without TensorFlow.

tests/data/trace_two_sides.json holds the events of one real recording, made with
`fit-vs-tape trace --sides high,low --limit 64 --epochs 2 --hidden-units 8 --mode graph`
(TensorFlow 2.21.0, Keras 3.15.1; each event's stack cut to its six innermost frames): fit()
and the loop, 2 epochs of 2 steps. What TensorFlow does is tested in tests/test_trace.py; this
tests what the analysis makes of it.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fit_vs_tape import trace_tree

#: Its tests share a module-scoped fixture or cache: they run on one xdist worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("trace_analysis")

FIXTURE = Path(__file__).resolve().parent / "data" / "trace_two_sides.json"


@pytest.fixture(scope="module")
def recorded() -> dict:
    return json.loads(FIXTURE.read_text())


def test_the_analysis_needs_no_tensorflow():
    done = subprocess.run([sys.executable, "-c", "import sys, fit_vs_tape.trace_tree; "
                           "print('tensorflow' in sys.modules)"], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parent.parent)
    assert done.stdout.strip() == "False", done.stderr


def test_a_run_is_cut_into_named_parts_in_order(recorded):
    expected = [("start", 0, 0)] + [
        part for epoch in range(2) for part in
        [("begin", epoch, 0), ("step", epoch, 0), ("step", epoch, 1), ("end", epoch, 0)]
    ] + [("finish", 0, 0)]
    for side, events in recorded["events"].items():
        parts = [block.key for block in trace_tree.blocks(events)]
        assert [tuple(part) for part in parts] == expected, side
        assert sorted(parts, key=lambda part: part.order) == parts  # the order is the run's
        assert [part.in_epoch for part in parts] == [False] + [True] * 8 + [False]


def test_the_summary_is_what_both_the_report_and_the_json_say(recorded):
    events, labels = recorded["events"], recorded["labels"]
    summary = trace_tree.summarize(events, labels)
    assert summary.hook_differences == []
    assert {side: len(seen) for side, seen in summary.hooks.items()} == {"high_level": 15,
                                                                         "low_level": 15}
    # Per step after the first: both read the two logs to the host; fit() also reads whether its
    # iterator gave a batch (keras/src/backend/tensorflow/trainer.py: `if not
    # opt_outputs.has_value():`).
    assert {side: s["median_after_first"] for side, s in summary.syncs.items()} == {
        "high_level": 3, "low_level": 2}
    text = trace_tree.report(events, labels, 140, summary)
    assert text == trace_tree.report(events, labels, 140)  # the same summary, made again
    assert "The callbacks received the same hooks on every side (fit(), GradientTape loop)" in text
    assert "fit(): 3 (" in text and "GradientTape loop: 2 (" in text


def test_a_hook_one_side_lacks_is_named(recorded):
    events = copy.deepcopy(recorded["events"])
    # The loop's callback never hears of training's end.
    events["low_level"] = [e for e in events["low_level"]
                           if not (e["kind"] == "hook" and e["hook"] == "on_train_end")]
    summary = trace_tree.summarize(events, recorded["labels"])
    assert summary.hook_differences and len(summary.hooks["low_level"]) == 14
    assert any("on_train_end" in line for line in summary.hook_differences), summary.hook_differences
    text = trace_tree.report(events, recorded["labels"], 140, summary)
    assert "What the callbacks received differs:" in text


def test_a_hook_numbered_otherwise_is_paired_and_its_other_differences_named(recorded):
    """A hook one side numbers differently is still the same hook: its number is named, and so is
    any other difference in it (its logs here), not reported as one hook missing, another extra."""
    hooks = {side: trace_tree.hooks(events) for side, events in recorded["events"].items()}
    loop = next(h for h in hooks["low_level"] if h["hook"] == "on_train_batch_end")
    loop["batch"] += 5
    loop["logs"] = [*loop["logs"], "extra"]
    lines = trace_tree.hook_differences(hooks, recorded["labels"])
    assert lines[0] == "GradientTape loop vs fit():"
    assert "  on_train_batch_end: batch fit() 0, GradientTape loop 5 (1x)" in lines
    assert ("  on_train_batch_end: logs fit() [accuracy, loss], GradientTape loop "
            "[accuracy, loss, extra] (1x)") in lines
    assert not any("only" in line for line in lines), lines


def _dispatches(*hooks) -> list[dict]:
    """Top-level callback dispatches, as the recorder writes them: (hook, number or None)."""
    return [{"seq": seq, "kind": "callbacks", "hook": hook, "parent": None, "in_trace": False,
             "driver": None, "stack": [], **({} if number is None else {"number": number})}
            for seq, (hook, number) in enumerate(hooks)]


def test_repeated_steps_are_named_by_each_sides_own_batches():
    """With two steps per call on one side only, the same call index covers other batches on
    each side: each column names its own (steps 3-6 are fit()'s calls 2 and 3; the loop's 2-3)."""
    def run(calls):
        return _dispatches(("on_train_begin", None), ("on_epoch_begin", 0),
                           *[(hook, n) for first, last in calls for hook, n in
                             (("on_train_batch_begin", first), ("on_train_batch_end", last))],
                           ("on_epoch_end", 0), ("on_train_end", None))

    text = trace_tree.render({"fit": run([(0, 1), (2, 3), (4, 5)]),
                              "loop": run([(b, b) for b in range(6)])},
                             {"fit": "fit()", "loop": "loop"}, width=200)
    rows = [[cell.strip() for cell in line.split(" | ")] for line in text.splitlines()]
    assert ["steps 3-6: each the same as epoch 1's steps 1-2, one call",
            "steps 2-3: each the same as epoch 1's step 1"] in rows, text
    assert ["", "steps 5-6: each the same as epoch 1's step 4"] in rows, text
