"""A timeline of a few training steps, drawn from a ``--profile`` run's profiler output for report.md
(the profiler's timeline; ``fit-vs-tape trace``, fit_vs_tape/trace.py, is another thing).

Since TensorFlow 2.11 the profiler writes only ``*.xplane.pb`` (an XSpace protobuf); every view
of it is derived by the profiler plugin. So we do not parse it ourselves: the plugin's own
converter (xprof's ``trace_viewer`` tool, the data behind TensorBoard's Trace Viewer) turns it
into Chrome trace-event JSON, and matplotlib draws a short window of that: one lane per host
thread, nested events stacked downwards, coloured by what they are.

The converter comes with ``pip install -e '.[profile]'`` (tensorboard-plugin-profile, which
installs xprof). Without it ``draw_timeline`` raises ``ConverterMissing`` and report.md says how
to get the pictures.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections import defaultdict

from shared import plotting

#: (colour, meaning) of each kind of event, in the order of the legend.
CALL = ("tab:red", "call of the compiled function (__inference_*)")
INPUT = ("tab:green", "input pipeline: tf.data, GetNext")
EAGER = ("tab:orange", "other eager op on the Python thread")
KERNEL = ("tab:blue", "op kernel or XLA thunk: the maths")
RUNTIME = ("lightgrey", "runtime: executor, thread pools, Python wrappers")
LEGEND = (CALL, INPUT, EAGER, KERNEL, RUNTIME)

# Events of TensorFlow's runtime that only dispatch, wait or wrap: what is left is the maths.
_RUNTIME_PREFIXES = (
    "Threadpool", "Executor", "Eager", "KernelAndDevice", "FunctionRun", "TFE_", "Validate",
    "ThunkExecutor", "CpuExecutable", "BlockUntil", "end: ",
)
# What the thread pools TensorFlow names its threads after are for, for the lane labels.
_THREAD_ROLES = (
    ("tf_Compute", "TF executor"),
    ("tf_numa_", "Eigen pool"),
    ("tf_data", "tf.data"),
    ("tf_XLA", "XLA"),
)
_MAX_DEPTH = 5  # nested deeper than this is too thin to see; the lane keeps a fixed height
_ROW = 0.14  # height of one nesting level, in lanes


class ConverterMissing(ImportError):
    """The profiler plugin's converter (xprof) is not installed."""


class ProfileError(ValueError):
    """The trace does not hold what a picture needs (no compiled call, nothing converted)."""


def profile_events(xplane_path: str | os.PathLike) -> list[dict]:
    """The Chrome trace events of the profiler trace ``xplane_path`` (``*.xplane.pb``), as
    xprof's ``trace_viewer`` tool makes them. Raises ``ConverterMissing`` without xprof,
    ``ProfileError`` if the converter gives nothing."""
    try:
        from xprof.convert import raw_to_tool_data
    except ImportError as e:
        raise ConverterMissing(str(e)) from e
    # The converters may leave cache files beside their input: convert a copy, so the run
    # directory holds only what the run wrote.
    with tempfile.TemporaryDirectory(prefix="fit-vs-tape-trace-") as tmp:
        copy = shutil.copy(xplane_path, tmp)
        data, _ = raw_to_tool_data.xspace_to_tool_data([copy], "trace_viewer", {})
    if not data:
        raise ProfileError(f"the profiler's converter returned nothing for {xplane_path}")
    return json.loads(data)["traceEvents"]


def _is_call(event: dict) -> bool:
    # The Python thread's eager call of a tf.function: one step (or steps_per_execution steps,
    # or a whole epoch) of training.
    return event["name"].startswith("EagerLocalExecute: __inference_")


def _function_name(event_name: str) -> str:
    """``EagerLocalExecute: __inference_train_step_812`` -> ``train_step``."""
    return re.sub(r"_\d+$", "", event_name.split("__inference_", 1)[-1])


def _window(calls: list[dict], steps: int, zoom_ms: float, at: float) -> tuple[float, float, str]:
    """(start, end) in µs of what to draw, and what it is, for the title."""
    if len(calls) > steps:
        # One call per step (or per steps_per_execution): ``steps`` calls and the gaps after
        # them. The first traced call also pays for starting the trace, so skip it if we can.
        first = 1 if len(calls) > steps + 1 else 0
        start, end = calls[first]["ts"], calls[first + steps]["ts"]
        return (start - 0.02 * (end - start), end,
                f"{steps} calls of its compiled function and what runs between them")
    # One call holds the whole epoch (mode epoch): zoom into it, where the steps repeat.
    call = calls[0]
    width = min(zoom_ms * 1e3, call["dur"])
    start = min(call["ts"] + at * call["dur"], call["ts"] + call["dur"] - width)
    return (start, start + width,
            f"{width / 1e3:.1f} ms from {at:.0%} into its one call, which runs the whole epoch")


def _category(name: str, lane_name: str, on_python_thread: bool) -> tuple[str, str]:
    if "__inference_" in name:
        return CALL
    if "Iterator" in name or "GetNext" in name or lane_name.startswith("tf_data"):
        return INPUT
    if name.startswith(("EagerLocalExecute", "TFE_Py_Fast")):
        return EAGER
    if on_python_thread or name.startswith(_RUNTIME_PREFIXES):
        return RUNTIME
    return KERNEL


def _draw_lanes(shown: list, lanes: dict, threads: dict, window: tuple[float, float],
                title: str):
    """The figure: one lane per thread in ``shown`` (the Python thread first), nested events
    stacked downwards and coloured by kind, over ``window`` (start and end, microseconds)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.transforms import offset_copy

    lo, hi = window
    fig, ax = plt.subplots(figsize=(14, 0.95 * len(shown) + 1.8))
    for row, key in enumerate(shown):
        lane_name = threads.get(key, str(key[1]))
        open_ends = []  # end times of the enclosing events still open: the nesting depth
        for e in sorted(lanes[key], key=lambda e: (e["ts"], -e["dur"])):
            while open_ends and open_ends[-1] <= e["ts"]:
                open_ends.pop()
            depth = len(open_ends)
            open_ends.append(e["ts"] + e["dur"])
            if depth > _MAX_DEPTH:
                continue
            y = row + depth * _ROW
            colour, _ = _category(e["name"], lane_name, row == 0)
            ax.broken_barh([((e["ts"] - lo) / 1e3, e["dur"] / 1e3)], (y, _ROW - 0.01),
                           color=colour, edgecolor="k", linewidth=0.2)
            if e["dur"] > 0.08 * (hi - lo):  # names only where they fit
                ax.text((max(e["ts"], lo) - lo) / 1e3, y + _ROW / 2,
                        f" {e['name'][:48]}  {e['dur'] / 1e3:.2f} ms",
                        fontsize=6, va="center", clip_on=True)
    labels = ["Python main thread"] + [_lane_label(threads.get(k, str(k[1])), n)
                                       for n, k in enumerate(shown[1:], start=1)]
    ax.set_yticks([r + 0.4 for r in range(len(shown))], labels, fontsize=8)
    ax.set_ylim(len(shown), -0.1)
    ax.set_xlim(0, (hi - lo) / 1e3)
    ax.set_xlabel("time, ms")
    ax.set_title(title, fontsize=9)
    # Below the time axis whatever the figure's height: 0.5 inch under the axes.
    below = offset_copy(ax.transAxes, fig=fig, y=-0.5, units="inches")
    ax.legend(handles=[Patch(color=c, label=m) for c, m in LEGEND], loc="upper center",
              bbox_to_anchor=(0.5, 0), bbox_transform=below, ncol=3, fontsize=8, frameon=False)
    return fig


def _lane_label(name: str, number: int) -> str:
    pool = name.split("/", 1)[0]
    role = next((role for prefix, role in _THREAD_ROLES if pool.startswith(prefix)), None)
    return f"{pool} #{number}" + (f"\n({role})" if role else "")


def draw_timeline(
    xplane_path: str | os.PathLike,
    png_path: str | os.PathLike,
    title: str,
    steps: int = 2,
    zoom_ms: float = 3.0,
    at: float = 0.5,
    max_lanes: int = 6,
) -> str:
    """Draw a few training steps of the profiler trace ``xplane_path`` as a timeline PNG at
    ``png_path`` (written atomically); return what the window shows, for a caption.

    A step starts where the Python thread calls the compiled function it spends most time in.
    With more than ``steps`` calls (modes graph and xla) the window is ``steps`` calls and the
    gaps after them; with one call per epoch (mode epoch) it is ``zoom_ms`` ms from fraction
    ``at`` of that call. Lanes: the Python thread first, then the ``max_lanes - 1`` threads
    busiest in the window. ``title`` starts the figure's title (which side, which mode).
    Raises ``ConverterMissing`` without the profiler plugin, ``ProfileError`` if the trace holds
    no compiled call."""
    events = profile_events(xplane_path)
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
               if e.get("ph") == "M" and e.get("name") == "thread_name"}
    lanes = defaultdict(list)
    for e in events:
        if e.get("ph") == "X":  # complete events: a start and a duration (instants are noise)
            lanes[(e["pid"], e["tid"])].append(e)
    if not lanes:
        raise ProfileError(f"no timed events in {xplane_path}")
    # Found by what it does, not by name: the Python thread is named after the process
    # ("fit-vs-tape" under the console script, "python" otherwise).
    python = max(lanes, key=lambda k: sum(e["dur"] for e in lanes[k] if _is_call(e)))
    calls = [e for e in lanes[python] if _is_call(e)]
    if not calls:
        raise ProfileError(f"no call of a compiled function (__inference_*) in {xplane_path}")
    # fit() also calls small helper functions; the training one is where the time goes.
    busiest = max({e["name"] for e in calls},
                  key=lambda n: sum(e["dur"] for e in calls if e["name"] == n))
    calls = sorted((e for e in calls if e["name"] == busiest), key=lambda e: e["ts"])
    lo, hi, what = _window(calls, steps, zoom_ms, at)
    # Only what overlaps the window: an epoch-mode trace holds 10^5-10^6 events.
    lanes = {k: [e for e in v if e["ts"] < hi and e["ts"] + e["dur"] > lo] for k, v in lanes.items()}
    busy = {k: sum(min(e["ts"] + e["dur"], hi) - max(e["ts"], lo) for e in v)
            for k, v in lanes.items() if k != python}
    shown = [python] + sorted((k for k in busy if busy[k] > 0), key=busy.get,
                              reverse=True)[:max_lanes - 1]
    fig = _draw_lanes(shown, lanes, threads, (lo, hi),
                      f"{title}: {what}\n({_function_name(busiest)}; a white gap on the Python "
                      "thread is plain Python or waiting: no event recorded)")
    plotting.save_figure(fig, png_path)
    return what
