"""Reading a recorded trace (fit_vs_tape/trace.py): the run cut into named parts, one summary
(what the callbacks saw, how the sides differ, syncs per step), and the printed tree: per side an
indented tree in a column, repeated steps collapsed.

Works on the JSON-shaped event lists alone (no TensorFlow), so a trace.json can be read again
later, e.g. in the notebook.
"""

from __future__ import annotations

import difflib
import itertools
import statistics
from collections import Counter
from collections.abc import Iterator
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
    epoch: int = 0
    step: int = 0
    """A step block's place in its epoch: its call of the train function (one step, or several
    with --steps-per-execution), not a batch number."""

    @property
    def in_epoch(self) -> bool:
        """An epoch's start, step or end (not before or after training)."""
        return self.phase in ("begin", "step", "end")

    @property
    def order(self) -> tuple:
        """Its place in the run, for sorting."""
        if not self.in_epoch:
            return (PHASES.index(self.phase),)
        return (1, self.epoch, PHASES.index(self.phase), self.step)

    def where(self, title: str) -> str:
        """How a later repeat names this part: ``epoch 1's step 2``, ``before training``."""
        if not self.in_epoch:
            return title
        return f"epoch {self.epoch + 1}'s " + ("start" if self.phase == "begin" else title)


@dataclass
class Block:
    """A part of a run: what happened before training, in an epoch's start, in one step (or
    one execution of several steps), at an epoch's end, after training."""

    key: Part
    title: str
    events: list[dict] = field(default_factory=list)
    """Top-level events (no parent), in order; their children hang off them."""
    batches: tuple[int, int] = (0, 0)
    """A step block's first and last batch number."""


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
        hook = event.get("hook") if event["kind"] == "callbacks" else None
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
                first = next((e["number"] for e in pending if e.get("hook") == "on_train_batch_begin"
                              and e["kind"] == "callbacks"), event["number"])
                last = event["number"]
                title = f"step {first + 1}" if first == last else f"steps {first + 1}-{last + 1}, one call"
                result.append(Block(Part("step", epoch, step), title, pending, (first, last)))
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


# --- One line per event (or per group of alike events) ------------------------------------------

#: File names that are not enough alone: shown with their directory.
_AMBIGUOUS = ("trainer.py", "train.py", "core.py", "optimizer.py", "checkpoint.py")
_OPTIMIZER_FILES = ("keras/src/optimizers/", "keras/src/backend/tensorflow/optimizer.py")
#: Where Keras makes a variable on behalf of whoever asked: its variables, optimizers, metrics
#: (the compiled metrics' container too), layers and seed generators.
_VARIABLE_FILES = (*_OPTIMIZER_FILES, "keras/src/backend/common/", "keras/src/backend/tensorflow/core.py",
                   "keras/src/metrics/", "keras/src/trainers/compile_utils.py", "keras/src/layers/",
                   "keras/src/random/")
#: Frames an event's place skips: the dispatch itself, and Keras acting for whoever asked.
_SKIP = {"apply": _OPTIMIZER_FILES, "variable": _VARIABLE_FILES}


def short(frame: dict) -> str:
    """``python_utils.py:189 pythonify_logs``, ``tensorflow/trainer.py:399 fit``: a frame by
    its file name (with its directory where the name alone is ambiguous), line and function."""
    parts = frame["file"].split("/")
    name = "/".join(parts[-2:]) if parts[-1] in _AMBIGUOUS else parts[-1]
    return f"{name}:{frame['line']} {frame['function']}"


def _at(event: dict) -> str:
    """Where an event happened: its innermost frame and the function that called it; for the
    optimizer's events and a variable's creation, the first frame outside the Keras code that
    made it (who made it act: for a compiled metric's variable, the statement of the train step)."""
    skip = ("keras/src/callbacks/callback_list.py", *_SKIP.get(event["kind"], ()))
    stack = [f for f in event["stack"] if not f["file"].startswith(skip)]
    if not stack:
        return ""
    caller = next((f["function"] for f in stack[1:] if f["function"] != stack[0]["function"]), None)
    return f" at {short(stack[0])}" + (f" < {caller}" if caller else "")


def _group_key(event: dict) -> tuple | None:
    """Consecutive events with one key print as one line: syncs alike, variables of one owner
    created alike, metrics reset by the same statement; None: an event that stands alone."""
    fields = {"sync": ("dtype", "shape", "via", "in_trace"), "variable": ("owner", "in_trace"),
              "reset_state": ()}.get(event["kind"])
    return None if fields is None else (event["kind"], *(repr(event[k]) for k in fields), _at(event))


def _reset_chain(event: dict, tree: dict) -> str:
    inner = [_reset_chain(c, tree) for c in tree.get(event["seq"], []) if c["kind"] == "reset_state"]
    return event["metric"] + (f" ({', '.join(inner)})" if inner else "")


def _describe(group: list[dict], tree: dict) -> tuple[str, bool]:
    """One line for ``group`` (one event, or several alike); True if the children of its event
    are folded into the line."""
    event, n = group[0], len(group)
    tracing = " (tracing)" if event["in_trace"] else ""
    kind, how = event["kind"], tracing or " (eagerly)"
    if kind == "callbacks":  # the statement above names the hook; this, what a callback received
        got = [c for c in tree.get(event["seq"], []) if c["kind"] == "hook"]
        text = f"-> {event['hook']}({event.get('number', '')})"
        return text + (f" logs [{', '.join(got[0]['logs'] or [])}]" if got else ": no callback got it"), False
    if kind == "hook" and event["hook"] == "set_params":
        params = ", ".join(f"{k}={v}" for k, v in (event["params"] or {}).items())
        return f"-> set_params({{{params}}})", True
    if kind == "hook":
        return f"-> {event['hook']} logs [{', '.join(event['logs'] or [])}]", True
    if kind == "call":
        traces = event.get("traces", 0)
        traced = "" if not traces else ", traced" + (f" {traces}x" if traces > 1 else "")
        return f"call {event['function']}{traced}{tracing}", False
    if kind == "apply":
        build = ", builds the optimizer" if not event["built_before"] else ""
        return f"optimizer.apply{how}{build}{_at(event)}", False
    if kind == "reset_state":
        return f"reset_state {', '.join(_reset_chain(e, tree) for e in group)}{_at(event)}", True
    if kind == "variable" and n > 1:
        return f"{n} variables of {event['owner']} created{how}{_at(event)}", True
    if kind == "variable":
        return f"variable {event['name']} of {event['owner']}{how}{_at(event)}", True
    value = f"{event['dtype']}[{','.join(map(str, event['shape']))}]"  # a sync: the last kind
    return (f"{n} syncs " if n > 1 else "sync ") + f"{value}{tracing}{_at(event)}", True


def _lines(events: list[dict], tree: dict, depth: int) -> list[str]:
    lines = []
    # A hook a callback received is shown on its dispatch's line (callbacks.on_...).
    shown = [e for e in events if not (e["kind"] == "hook" and e["parent"] is not None)]
    # An event with no key gets a new object(), equal to no other: it stands alone.
    runs = itertools.groupby(shown, lambda e: _group_key(e) or object())
    for group in (list(g) for _, g in runs):
        text, folded = _describe(group, tree)
        lines.append("  " * depth + text)
        if not folded:
            lines.extend(_lines(tree.get(group[0]["seq"], []), tree, depth + 1))
    return lines


def block_lines(block: Block, tree: dict) -> list[str]:
    """The lines of one block: each statement of the loop (fit()'s or ours) that caused events,
    with its line number and code, and the events under it."""
    lines = []
    for _, group in itertools.groupby(block.events, lambda event: event["driver"]):
        group = list(group)
        driver, stack = group[0]["driver"], group[0]["stack"]
        lines.append(f"  {driver['line']:>4} {driver['code']}" if driver else
                     f"  before the loop: {short(stack[-1]) if stack else '?'}")
        lines.extend(_lines(group, tree, 2))
    return lines


# --- The sides in columns, repeats collapsed -------------------------------------------------------

def render(sides: dict[str, list[dict]], labels: dict[str, str], width: int = 160) -> str:
    """Each side's event tree, the sides side by side in columns of ``width`` // sides
    characters; a step (or an epoch's start or end) that repeats the one before it on every
    side is one line, ``same as ...``."""
    names = list(sides)
    trees = {name: children(events) for name, events in sides.items()}
    per_side = {name: {b.key: b for b in blocks(events)} for name, events in sides.items()}
    keys = sorted({key for name in names for key in per_side[name]}, key=lambda key: key.order)
    column = max(30, (width - 3 * (len(names) - 1)) // len(names))
    rows = [[labels[n] for n in names], ["-" * column for _ in names]]
    shown: dict[str, tuple] = {}  # phase -> (signatures, how a repeat names it on each side)
    run: tuple | None = None  # repeats in a row: first part, last part, of what, first batches
    for key in keys:
        got = [per_side[n].get(key) for n in names]
        sig = tuple(signature(b, trees[n]) if b else None for b, n in zip(got, names))
        if key.phase in shown and shown[key.phase][0] == sig:
            wheres = shown[key.phase][1]
            going_on = run is not None and run[0].phase == key.phase and run[2] == wheres
            run = (run[0], key, wheres, run[3]) if going_on else \
                (key, key, wheres, [b and b.batches[0] for b in got])
            line = [_same(run, i, b) if b else "" for i, b in enumerate(got)]
            if going_on:
                rows[-1] = line
                continue
            if key.phase == "begin":
                rows.append([f"epoch {key.epoch + 1}"] * len(names))
            rows.append(line)
            continue
        run = None
        shown[key.phase] = (sig, [b and key.where(b.title) for b in got])
        title = next(b.title for b in got if b)
        step_titles = key.in_epoch and key.phase != "begin"
        rows.append([f" {b.title}" if b else "" for b in got] if step_titles else [title] * len(names))
        cells = [block_lines(b, trees[n]) if b else [] for b, n in zip(got, names)]
        rows.extend([c[i] if i < len(c) else "" for c in cells] for i in range(max(map(len, cells))))
    cut = [[c if len(c) <= column else c[: column - 1] + "…" for c in row] for row in rows]  # to fit
    return "\n".join(" | ".join(row).rstrip() for row in cut)


def _same(run: tuple, side: int, last_block: Block) -> str:
    """Side ``side``'s line for repeats in a row, the last of them ``last_block``: ``steps 3-6:
    each the same as epoch 1's step 2`` (its own batch numbers, whatever its steps per call)."""
    first, last, wheres, first_batches = run
    where = wheres[side]
    if not first.in_epoch:
        return f"same as {where}"
    if first.phase == "step":
        label = (last_block.title if first == last
                 else f"steps {first_batches[side] + 1}-{last_block.batches[1] + 1}")
        return f"  {label}: each the same as {where}"
    return f"  {'start' if first.phase == 'begin' else 'end'}: the same as {where}"


# --- What the callbacks saw, and the syncs ---------------------------------------------------------

def hooks(events: list[dict]) -> list[dict]:
    """What a callback saw: every hook it received, in order, without where it came from."""
    return [{k: v for k, v in e.items()
             if k in ("hook", "batch", "epoch", "logs", "log_types", "params")}
            for e in events if e["kind"] == "hook"]


def hook_signature(hook: dict) -> tuple:
    """A hook as the structure proof compares it: name, batch or epoch, log keys, params."""
    return (hook["hook"], hook.get("batch"), hook.get("epoch"), tuple(hook.get("logs") or ()),
            repr(hook.get("params")))


#: What a hook carries, as a difference names it, and how a value of it is shown.
_FIELDS = {"batch": ("batch", str), "epoch": ("epoch", str),
           "logs": ("logs", lambda v: f"[{', '.join(v or [])}]"), "params": ("params", repr),
           "log_types": ("log values", lambda v: "/".join(v or []))}


def _aligned(a: list[dict], b: list[dict], *keys) -> Iterator[tuple[dict | None, dict | None]]:
    """``a`` and ``b`` in pairs matched by ``keys[0]`` (difflib), one side None where the other
    has nothing to match; runs that differ are matched again by the next key."""
    matcher = difflib.SequenceMatcher(a=[keys[0](x) for x in a], b=[keys[0](y) for y in b],
                                      autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            yield from zip(a[i1:i2], b[j1:j2])
        elif len(keys) > 1:
            yield from _aligned(a[i1:i2], b[j1:j2], *keys[1:])
        else:
            yield from itertools.chain(((x, None) for x in a[i1:i2]), ((None, y) for y in b[j1:j2]))


def hook_differences(hooks: dict[str, list[dict]], labels: dict[str, str]) -> list[str]:
    """How the hooks each side's callbacks received differ from the first side's, counted by kind
    of difference (paired by ``_aligned``, compared by ``_FIELDS``); empty if they do not."""
    first, *others = list(hooks)
    lines = []
    for other in others:
        found = Counter()
        pairs = _aligned(hooks[first], hooks[other], lambda h: hook_signature(h)[:3],
                         lambda h: h["hook"])
        for x, y in pairs:
            if x is None or y is None:
                found[f"{(x or y)['hook']}: only {labels[first if y is None else other]}'s "
                      "callbacks get it"] += 1
                continue
            found.update(f"{x['hook']}: {name} {labels[first]} {show(x.get(k))}, "
                         f"{labels[other]} {show(y.get(k))}"
                         for k, (name, show) in _FIELDS.items() if x.get(k) != y.get(k))
        if found:
            lines.append(f"{labels[other]} vs {labels[first]}:")
            lines.extend(f"  {text} ({n}x)" for text, n in found.items())
    return lines


def sync_summary(events: list[dict]) -> dict:
    """Syncs per training step (``per_step``; per call of several steps with
    --steps-per-execution: a call is one block), their median over the steps after the first
    (which traces), and where those steps' syncs happen (place -> how many per step)."""
    tree = children(events)

    def syncs(event: dict) -> list[dict]:
        return [event] * (event["kind"] == "sync") + [
            s for child in tree.get(event["seq"], []) for s in syncs(child)]

    steps = [[s for e in b.events for s in syncs(e)] for b in blocks(events) if b.key.phase == "step"]
    per_step = [len(step) for step in steps]
    places = Counter(f"{_at(s).removeprefix(' at ')} ({s['via']})" for step in steps[1:] for s in step)
    steady, n = per_step[1:] or per_step, max(1, len(steps) - 1)
    return {"per_step": per_step, "median_after_first": statistics.median(steady) if steady else 0,
            "where": {place: count / n for place, count in places.items()}}


@dataclass(frozen=True)
class Summary:
    """What a trace found, computed once from its events: each side's hooks and syncs, and how
    the hooks differ between sides. The printed report and trace.json both come from it."""

    hooks: dict[str, list[dict]]
    syncs: dict[str, dict]
    hook_differences: list[str]


def summarize(sides: dict[str, list[dict]], labels: dict[str, str]) -> Summary:
    """The Summary of each side's ``events`` (``sides``: side -> events)."""
    seen = {name: hooks(events) for name, events in sides.items()}
    return Summary(seen, {name: sync_summary(events) for name, events in sides.items()},
                   hook_differences(seen, labels))


# --- The report -------------------------------------------------------------------------------------

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


def report(sides: dict[str, list[dict]], labels: dict[str, str], width: int = 160,
           summary: Summary | None = None) -> str:
    """What `fit-vs-tape trace` prints: the first and last side's trees side by side; a side
    in between as its differences from the first; then whether the callbacks saw the same
    hooks on every side, and the syncs per step (from ``summary``, made here if not given)."""
    summary = summary or summarize(sides, labels)
    names = list(sides)
    first, shown = names[0], names if len(names) <= 2 else [names[0], names[-1]]
    parts = [LEGEND, "", render({n: sides[n] for n in shown}, labels, width)]
    for middle in names[1:-1]:  # its tree's lines that differ from the first's, one wide column each
        a, b = (render({n: sides[n]}, labels, 400).splitlines()[2:] for n in (first, middle))
        diff = list(difflib.unified_diff(a, b, n=1, lineterm=""))[2:]
        parts.append(f"\n{labels[middle]}: its tree is {labels[first]}'s but for these lines "
                     f"(- {labels[first]}, + {labels[middle]}):" if diff else
                     f"\n{labels[middle]}: its tree is exactly {labels[first]}'s")
        parts.extend(diff)
    if len(names) > 1 and summary.hook_differences:
        parts += ["", "What the callbacks received differs:", *summary.hook_differences]
    elif len(names) > 1:
        every = ", ".join(labels[n] for n in names)
        parts += ["", f"The callbacks received the same hooks on every side ({every}): same order, "
                  f"batch and epoch numbers, log keys and params ({len(summary.hooks[first])} hooks)."]
    parts += ["", "Device-to-host reads (syncs) per training step after the first:"]
    for n in names:
        where = "; ".join(f"{count:g} at {place}" for place, count in summary.syncs[n]["where"].items())
        parts.append(f"  {labels[n]}: {summary.syncs[n]['median_after_first']:g}"
                     + (f" ({where})" if where else ""))
    return "\n".join(parts)
