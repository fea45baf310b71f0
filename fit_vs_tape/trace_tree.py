"""Reading a recorded trace (fit_vs_tape/trace.py): an indented tree per side, the sides in
columns, repeated steps collapsed; what the callbacks saw, compared side by side; syncs per step.

Works on the JSON-shaped event lists alone (no TensorFlow), so a trace.json can be read again
later, e.g. in the notebook.
"""

from __future__ import annotations

import difflib
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

#: The fields of an event that say what happened, not when: two steps whose events agree on
#: these are the same step (batch and epoch numbers, sequence numbers aside).
_WHAT = ("kind", "hook", "function", "traces", "in_trace", "via", "dtype", "shape", "metric",
         "logs", "params", "built_before")


#: The phases of a run, in order: before training, an epoch's start, its steps, its end, after.
PHASES = ("start", "begin", "step", "end", "finish")


class Part(NamedTuple):
    """Where a block lies in a run: its phase, and for an epoch's parts the epoch and step."""

    phase: str
    """One of PHASES."""
    epoch: int = 0
    step: int = 0

    @property
    def in_epoch(self) -> bool:
        """An epoch's start, step or end (not before or after training)."""
        return self.phase in ("begin", "step", "end")

    @property
    def order(self) -> tuple:
        """Its place in the run, for sorting: before training, then each epoch's start, steps
        and end, then after training."""
        if not self.in_epoch:
            return (PHASES.index(self.phase),)
        return (1, self.epoch, PHASES.index(self.phase), self.step)


@dataclass
class Block:
    """A part of a run: what happened before training, in an epoch's start, in one step (or
    one execution of several steps), at an epoch's end, after training."""

    key: Part
    title: str
    events: list[dict] = field(default_factory=list)
    """Top-level events (no parent), in order; their children hang off them."""


def children(events: list[dict]) -> dict[int | None, list[dict]]:
    """Every event's direct children, by the parent's sequence number (None: top level)."""
    tree: dict[int | None, list[dict]] = {}
    for event in events:
        tree.setdefault(event["parent"], []).append(event)
    return tree


def blocks(events: list[dict]) -> list[Block]:
    """The run cut at the callbacks' hooks: before training (through on_train_begin), then per
    epoch its start (through on_epoch_begin), each step (through on_train_batch_end) and its end
    (through on_epoch_end); after training (on_train_end and what follows)."""
    result = [Block(Part("start"), "before training")]
    epoch, step, pending, started = None, 0, [], False
    for event in children(events).get(None, []):
        dispatch = event["kind"] == "callbacks"
        hook = event.get("hook") if dispatch else None
        if not started:
            result[-1].events.append(event)
            started = hook == "on_train_begin"
        elif hook == "on_epoch_begin":
            epoch, step = event["number"], 0
            result.append(Block(Part("begin", epoch), f"epoch {epoch + 1}", pending + [event]))
            pending = []
        elif hook == "on_train_end":
            result.append(Block(Part("finish"), "after training", pending + [event]))
            pending = []
        elif result[-1].key.phase == "finish":
            result[-1].events.append(event)
        else:
            pending.append(event)
            if hook == "on_train_batch_end":
                first = next((e["number"] for e in pending if e["kind"] == "callbacks"
                              and e["hook"] == "on_train_batch_begin"), event["number"])
                last = event["number"]
                title = f"step {first + 1}" if first == last else f"steps {first + 1}-{last + 1}, one call"
                result.append(Block(Part("step", epoch, step), title, pending))
                pending, step = [], step + 1
            elif hook == "on_epoch_end":
                result.append(Block(Part("end", epoch), "end of epoch", pending))
                pending = []
    if pending:
        result.append(Block(Part("finish"), "after training", pending))
    return result


def signature(block: Block, tree: dict) -> tuple:
    """What happens in ``block``, without its batch and epoch numbers."""

    def of(event: dict, depth: int) -> list:
        where = tuple((f["file"], f["line"]) for f in event["stack"][:2])
        driver = event["driver"] and event["driver"]["line"]
        own = (depth, driver, where, tuple(repr(event.get(k)) for k in _WHAT))
        return [own] + [x for child in tree.get(event["seq"], []) for x in of(child, depth + 1)]

    return tuple(x for event in block.events for x in of(event, 0))


#: File names that are not enough alone: shown with their directory.
_AMBIGUOUS = ("trainer.py", "train.py", "core.py", "optimizer.py", "checkpoint.py")


def short(frame: dict | None) -> str:
    """``python_utils.py:189 pythonify_logs``, ``tensorflow/trainer.py:399 fit``: a frame by
    its file name (with its directory where the name alone is ambiguous), line and function."""
    if frame is None:
        return "?"
    parts = frame["file"].split("/")
    name = "/".join(parts[-2:]) if parts[-1] in _AMBIGUOUS else parts[-1]
    return f"{name}:{frame['line']} {frame['function']}"


def _at(event: dict) -> str:
    """Where an event happened: its innermost frame and the function that called it; for the
    optimizer's events and a variable's creation, the first frame outside the Keras code that
    made it (who made it act: for a compiled metric's variable, the statement of the train step)."""
    stack = [f for f in event["stack"] if not f["file"].endswith("callbacks/callback_list.py")]
    if event["kind"] == "apply":
        stack = [f for f in stack if not f["file"].startswith(_OPTIMIZER_FILES)]
    if event["kind"] == "variable":
        stack = [f for f in stack if not f["file"].startswith(_VARIABLE_FILES)]
    if not stack:
        return ""
    caller = next((f["function"] for f in stack[1:] if f["function"] != stack[0]["function"]), None)
    return f" at {short(stack[0])}" + (f" < {caller}" if caller else "")


_OPTIMIZER_FILES = ("keras/src/optimizers/", "keras/src/backend/tensorflow/optimizer.py")
#: Where Keras makes a variable on behalf of whoever asked: its variables, optimizers, metrics
#: (the compiled metrics' container too), layers and seed generators.
_VARIABLE_FILES = (*_OPTIMIZER_FILES, "keras/src/backend/common/", "keras/src/backend/tensorflow/core.py",
                   "keras/src/metrics/", "keras/src/trainers/compile_utils.py", "keras/src/layers/",
                   "keras/src/random/")


def _value(event: dict) -> str:
    """``float32[]``, ``uint8[96]``: what a sync read."""
    return f"{event['dtype']}[{','.join(map(str, event['shape']))}]"


def _tracing(event: dict) -> str:
    return " (tracing)" if event["in_trace"] else ""


def _how(event: dict) -> str:
    return _tracing(event) or " (eagerly)"


def _describe(event: dict, tree: dict) -> tuple[str, bool]:
    """One line for ``event``; True if its children are folded into the line."""
    kind = event["kind"]
    if kind == "callbacks":
        # The statement above names the hook; this line says what a callback received.
        got = [c for c in tree.get(event["seq"], []) if c["kind"] == "hook"]
        number = f"({event['number']})" if "number" in event else "()"
        text = f"-> {event['hook']}{number}"
        text += f" logs [{', '.join(got[0]['logs'] or [])}]" if got else ": no callback got it"
        return text, False
    if kind == "hook":
        if event["hook"] == "set_params":
            params = ", ".join(f"{k}={v}" for k, v in (event["params"] or {}).items())
            return f"-> set_params({{{params}}})", True
        return f"-> {event['hook']} logs [{', '.join(event['logs'] or [])}]", True
    if kind == "call":
        traces = event.get("traces", 0)
        traced = "" if not traces else ", traced" + (f" {traces}x" if traces > 1 else "")
        return f"call {event['function']}{traced}{_tracing(event)}", False
    if kind == "apply":
        build = ", builds the optimizer" if not event["built_before"] else ""
        return f"optimizer.apply{_how(event)}{build}{_at(event)}", False
    if kind == "reset_state":
        return f"reset_state {_reset_chain(event, tree)}{_at(event)}", True
    if kind == "variable":
        return f"variable {event['name']} of {event['owner']}{_how(event)}{_at(event)}", True
    if kind == "sync":
        return f"sync {_value(event)}{_tracing(event)}{_at(event)}", True
    return kind, True


def _groups(events: list[dict]) -> list[list[dict]]:
    """Consecutive events that print as one line: syncs alike, variables of one owner created
    alike, metrics reset by the same statement."""
    result: list[list[dict]] = []
    for event in events:
        if result and _alike(result[-1][-1], event):
            result[-1].append(event)
        else:
            result.append([event])
    return result


def _alike(a: dict, b: dict) -> bool:
    if a["kind"] != b["kind"]:
        return False
    if a["kind"] == "sync":
        return all(a[k] == b[k] for k in ("dtype", "shape", "via", "in_trace")) and _at(a) == _at(b)
    if a["kind"] == "variable":
        return a["owner"] == b["owner"] and a["in_trace"] == b["in_trace"] and _at(a) == _at(b)
    if a["kind"] == "reset_state":
        return _at(a) == _at(b)
    return False


def _reset_chain(event: dict, tree: dict) -> str:
    inner = [_reset_chain(c, tree) for c in tree.get(event["seq"], []) if c["kind"] == "reset_state"]
    return event["metric"] + (f" ({', '.join(inner)})" if inner else "")


def _lines(events: list[dict], tree: dict, depth: int) -> list[str]:
    lines = []
    # A hook a callback received is shown on its dispatch's line (callbacks.on_...).
    shown = [e for e in events if not (e["kind"] == "hook" and e["parent"] is not None)]
    for group in _groups(shown):
        event, n = group[0], len(group)
        text, folded = _describe(event, tree)
        if n > 1 and event["kind"] == "variable":
            text = f"{n} variables of {event['owner']} created{_how(event)}{_at(event)}"
        elif n > 1 and event["kind"] == "reset_state":
            text = f"reset_state {', '.join(_reset_chain(e, tree) for e in group)}{_at(event)}"
        elif n > 1 and event["kind"] == "sync":
            text = f"{n} syncs {_value(event)}{_tracing(event)}{_at(event)}"
        elif n > 1:
            text = f"{n} x {text}"
        lines.append("  " * depth + text)
        if not folded:
            lines.extend(_lines(tree.get(event["seq"], []), tree, depth + 1))
    return lines


def block_lines(block: Block, tree: dict) -> list[str]:
    """The lines of one block: each statement of the loop (fit()'s or ours) that caused events,
    with its line number and code, and the events under it."""
    lines, current = [], object()
    group: list[dict] = []

    def flush():
        if group:
            lines.extend(_lines(group, tree, 2))

    for event in block.events:
        driver = event["driver"]
        statement = (driver["line"], driver["code"]) if driver else None
        if statement != current:
            flush()
            group = []
            current = statement
            if driver:
                lines.append(f"  {driver['line']:>4} {driver['code']}")
            else:
                lines.append(f"  before the loop: {short(event['stack'][-1]) if event['stack'] else '?'}")
        group.append(event)
    flush()
    return lines


def render(sides: dict[str, list[dict]], labels: dict[str, str], width: int = 160) -> str:
    """Each side's event tree, the sides side by side in columns of ``width`` // sides
    characters; a step (or an epoch's start or end) that repeats the one before it on every
    side is one line, ``same as ...``."""
    names = list(sides)
    trees = {name: children(events) for name, events in sides.items()}
    per_side = {name: {b.key: b for b in blocks(events)} for name, events in sides.items()}
    keys: list[tuple] = []
    for name in names:
        for key in per_side[name]:
            if key not in keys:
                keys.append(key)
    keys.sort(key=lambda key: key.order)
    column = max(30, (width - 3 * (len(names) - 1)) // len(names))
    rows = [[_fit(labels[n], column) for n in names], ["-" * column for _ in names]]
    last_seen: dict[str, tuple[tuple, str]] = {}  # phase -> (signatures, where shown)
    run: list | None = None
    for key in keys:
        got = [per_side[n].get(key) for n in names]
        title = next(b.title for b in got if b)
        sig = tuple(signature(b, trees[n]) if b else None for b, n in zip(got, names))
        kind = key.phase
        if kind in last_seen and last_seen[kind][0] == sig:
            where = last_seen[kind][1]
            if run is not None and run[0] == kind and run[3] == where:
                run[2] = key
                rows[-1] = [_fit(_same(run, got), column) for _ in names]
                continue
            run = [kind, key, key, where]
            if key.phase == "begin":
                rows.append([_fit(f"epoch {key.epoch + 1}", column) for _ in names])
            rows.append([_fit(_same(run, got), column) for _ in names])
            continue
        run = None
        last_seen[kind] = (sig, _where(key, title))
        if key.phase == "begin":
            rows.append([_fit(title, column) for _ in names])
        elif key.in_epoch:
            rows.append([_fit(f" {b.title}" if b else "", column) for b in got])
        else:
            rows.append([_fit(title, column) for _ in names])
        cells = [block_lines(b, trees[n]) if b else [] for b, n in zip(got, names)]
        for i in range(max(map(len, cells))):
            rows.append([_fit(c[i] if i < len(c) else "", column) for c in cells])
    return "\n".join(" | ".join(row).rstrip() for row in rows)


def _where(key: Part, title: str) -> str:
    if not key.in_epoch:
        return title
    return f"epoch {key.epoch + 1}'s " + ("start" if key.phase == "begin" else title)


def _same(run: list, got: list) -> str:
    _, first, last, where = run
    if not first.in_epoch:
        return f"same as {where}"
    if first.phase == "step":
        titles = [b.title for b in got if b]
        label = titles[0] if first == last else f"steps {first.step + 1}-{last.step + 1}"
        return f"  {label}: each the same as {where}"
    return f"  {'start' if first.phase == 'begin' else 'end'}: the same as {where}"


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def hooks(events: list[dict]) -> list[dict]:
    """What a callback saw: every hook it received, in order, without where it came from."""
    return [{k: v for k, v in e.items()
             if k in ("hook", "batch", "epoch", "logs", "log_types", "params")}
            for e in events if e["kind"] == "hook"]


def hook_signature(hook: dict) -> tuple:
    """A hook as the structure proof compares it: name, batch or epoch, log keys, params."""
    return (hook["hook"], hook.get("batch"), hook.get("epoch"), tuple(hook.get("logs") or ()),
            repr(hook.get("params")))


def hook_differences(hooks: dict[str, list[dict]], labels: dict[str, str]) -> list[str]:
    """How the hooks each side's callbacks received differ from the first side's, counted by
    kind of difference; empty if every side's callbacks saw exactly the same."""
    names = list(hooks)
    first = names[0]
    lines = []
    a = [hook_signature(h) for h in hooks[first]]
    for other in names[1:]:
        b = [hook_signature(h) for h in hooks[other]]
        if a == b and [h.get("log_types") for h in hooks[first]] == \
                [h.get("log_types") for h in hooks[other]]:
            continue
        found: Counter = Counter()
        matcher = difflib.SequenceMatcher(a=[x[:3] for x in a], b=[x[:3] for x in b], autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                for x, y in zip(a[i1:i2], b[j1:j2]):
                    if x[3] != y[3]:
                        found[f"{x[0]}: logs {labels[first]} [{', '.join(x[3])}], "
                              f"{labels[other]} [{', '.join(y[3])}]"] += 1
                    if x[4] != y[4]:
                        found[f"{x[0]}: params {labels[first]} {x[4]}, {labels[other]} {y[4]}"] += 1
                for x, y in zip(hooks[first][i1:i2], hooks[other][j1:j2]):
                    if x.get("log_types", []) != y.get("log_types", []):
                        found[f"{x['hook']}: log values {labels[first]} "
                              f"{'/'.join(x.get('log_types', []))}, {labels[other]} "
                              f"{'/'.join(y.get('log_types', []))}"] += 1
            if tag == "replace":  # the same hooks numbered differently, and the rest
                by_name = difflib.SequenceMatcher(a=[x[0] for x in a[i1:i2]],
                                                  b=[y[0] for y in b[j1:j2]], autojunk=False)
                for tag2, k1, k2, l1, l2 in by_name.get_opcodes():
                    if tag2 == "equal":
                        for x, y in zip(a[i1 + k1:i1 + k2], b[j1 + l1:j1 + l2]):
                            what, k = ("batch", 1) if x[1] is not None else ("epoch", 2)
                            found[f"{x[0]}: {what} {labels[first]} {x[k]}, "
                                  f"{labels[other]} {y[k]}"] += 1
                        continue
                    for x in a[i1 + k1:i1 + k2]:
                        found[f"{x[0]}: only {labels[first]}'s callbacks get it"] += 1
                    for y in b[j1 + l1:j1 + l2]:
                        found[f"{y[0]}: only {labels[other]}'s callbacks get it"] += 1
            if tag == "delete":
                for x in a[i1:i2]:
                    found[f"{x[0]}: only {labels[first]}'s callbacks get it"] += 1
            if tag == "insert":
                for y in b[j1:j2]:
                    found[f"{y[0]}: only {labels[other]}'s callbacks get it"] += 1
        lines.append(f"{labels[other]} vs {labels[first]}:")
        lines.extend(f"  {text} ({n}x)" for text, n in found.items())
    return lines


def step_syncs(events: list[dict]) -> list[int]:
    """Device-to-host reads in each training step (or execution) of a run, in order."""
    tree = children(events)

    def count(event: dict) -> int:
        return (event["kind"] == "sync") + sum(count(c) for c in tree.get(event["seq"], []))

    return [sum(count(e) for e in b.events) for b in blocks(events) if b.key.phase == "step"]


def sync_summary(events: list[dict]) -> dict:
    """Syncs per training step: the median over the steps after the first (which traces), and
    where those steps' syncs happen (frame -> how many per step)."""
    per_step = step_syncs(events)
    steady = per_step[1:] or per_step
    tree = children(events)
    places: Counter = Counter()
    step_blocks = [b for b in blocks(events) if b.key.phase == "step"][1:]

    def walk(event: dict) -> None:
        if event["kind"] == "sync":
            places[f"{_at(event).removeprefix(' at ')} ({event['via']})"] += 1
        for child in tree.get(event["seq"], []):
            walk(child)

    for block in step_blocks:
        for event in block.events:
            walk(event)
    n = max(1, len(step_blocks))
    return {"per_step": per_step, "median_after_first": statistics.median(steady) if steady else 0,
            "where": {place: count / n for place, count in places.items()}}


def middle_differences(first: list[dict], middle: list[dict], labels: tuple[str, str]) -> list[str]:
    """Where one side's tree differs from another's, line by line (unified diff, one line of
    context), both rendered in one wide column: what writing your own train_step changes."""
    a = render({"a": first}, {"a": labels[0]}, width=400).splitlines()[2:]
    b = render({"b": middle}, {"b": labels[1]}, width=400).splitlines()[2:]
    diff = list(difflib.unified_diff(a, b, labels[0], labels[1], n=1, lineterm=""))
    return diff[2:]


#: How to read the tree, printed above it.
LEGEND = """\
How to read it: a number and a statement are a line of the loop that made the events under it:
fit()'s in keras/src/backend/tensorflow/trainer.py (TensorFlowTrainer.fit, installed Keras), the
loop's in low_level/train.py (train). "-> hook(n) logs [...]": what every callback received.
"call F, traced": a call of a compiled function (tf.function) that traced it; "traced 2x": the
first trace created variables, so tf.function traced again. "(tracing)": while TensorFlow traced,
the only time a compiled step's Python runs. "sync": a device-to-host read; where the device runs
work queued ahead (a GPU), Python waits here for it (on a CPU the compiled call already has).
"at file:line function < caller": where it happened. Every event, with its whole Keras and
project stack: trace.json."""


@dataclass(frozen=True)
class Summary:
    """What a trace found, computed once from its events: each side's hooks and syncs, and how
    the hooks differ between sides. The printed report and trace.json both come from it."""

    hooks: dict[str, list[dict]]
    """Per side, what a callback saw (``hooks``)."""
    syncs: dict[str, dict]
    """Per side, its device-to-host reads per step (``sync_summary``)."""
    hook_differences: list[str]
    """Where the sides' hooks differ (``hook_differences``); empty if nowhere."""


def summarize(sides: dict[str, list[dict]], labels: dict[str, str]) -> Summary:
    """The Summary of each side's ``events`` (``sides``: side -> events)."""
    seen = {name: hooks(events) for name, events in sides.items()}
    return Summary(seen, {name: sync_summary(events) for name, events in sides.items()},
                   hook_differences(seen, labels))


def report(sides: dict[str, list[dict]], labels: dict[str, str], width: int = 160,
           summary: Summary | None = None) -> str:
    """What `fit-vs-tape trace` prints: the first and last side's trees side by side; a side
    in between as its differences from the first; then whether the callbacks saw the same
    hooks on every side, and the syncs per step (from ``summary``, made here if not given)."""
    summary = summary or summarize(sides, labels)
    names = list(sides)
    shown = names if len(names) <= 2 else [names[0], names[-1]]
    parts = [LEGEND, "", render({n: sides[n] for n in shown}, labels, width)]
    for middle in names[1:-1] if len(names) > 2 else []:
        diff = middle_differences(sides[names[0]], sides[middle], (labels[names[0]], labels[middle]))
        parts.append(f"\n{labels[middle]}: its tree is {labels[names[0]]}'s but for these lines "
                     f"(- {labels[names[0]]}, + {labels[middle]}):" if diff else
                     f"\n{labels[middle]}: its tree is exactly {labels[names[0]]}'s")
        parts.extend(diff)
    if len(names) > 1:
        parts.append("")
        if summary.hook_differences:
            parts.append("What the callbacks received differs:")
            parts.extend(summary.hook_differences)
        else:
            every = ", ".join(labels[n] for n in names)
            parts.append(f"The callbacks received the same hooks on every side ({every}): same "
                         f"order, batch and epoch numbers, log keys and params "
                         f"({len(summary.hooks[names[0]])} hooks).")
    parts.append("")
    parts.append("Device-to-host reads (syncs) per training step after the first:")
    for n in names:
        syncs = summary.syncs[n]
        where = "; ".join(f"{count:g} at {place}" for place, count in syncs["where"].items())
        parts.append(f"  {labels[n]}: {syncs['median_after_first']:g}" + (f" ({where})" if where else ""))
    return "\n".join(parts)
