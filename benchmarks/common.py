"""What both benchmarks share: workers in fresh processes, errors, output tables."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence

from fit_vs_tape.errors import UserError, report_errors


def run_worker(module: str, job: dict, hide_gpus: bool, env: Mapping[str, str] | None = None,
               failed: str | None = None) -> dict:
    """Run ``python -m module --worker JOB`` in a fresh process (no configuration's memory or
    caches leak into the next one's time) and return its JSON answer. ``env``: variables the
    process must see before its first import (``KERAS_BACKEND=jax``). A worker that fails is one
    UserError line: ``failed`` (default "benchmark worker JOB failed"), then its last line on
    stderr."""
    env = {**os.environ, **(env or {})}
    if hide_gpus:
        # Hidden before TensorFlow starts: a CPU row runs on the CPU only (every row states
        # jit_compile itself, so Keras' "auto" never decides).
        env["CUDA_VISIBLE_DEVICES"] = "-1"
    result = subprocess.run([sys.executable, "-m", module, "--worker", json.dumps(job)],
                            capture_output=True, text=True, env=env)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"{failed or f'benchmark worker {job} failed'}: {tail}")
    return json.loads(lines[-1])


#: ``--threads``: every core this process may run on (the default), or one.
THREAD_POLICIES = ("all", "1")


def thread_policy(policy: str) -> dict:
    """Apply ``policy`` to this worker process before any framework starts, the same for every
    framework, and return what it set. "1" pins the process to one core (``sched_setaffinity``:
    TensorFlow, XLA and JAX size their pools by the cores they may run on), then every pool is
    sized to the cores left: OpenMP's (PyTorch's, oneDNN's) by ``OMP_NUM_THREADS``, TensorFlow's
    intra- and inter-op pools by ``runtime.import_tensorflow(threads=...)``, PyTorch's by
    ``torch.set_num_threads`` (benchmarks/peer_torch.py); ``OMP_WAIT_POLICY=PASSIVE`` stops
    OpenMP's threads spinning while they wait, which on shared cores takes the cores from the
    threads that have work."""
    if policy not in THREAD_POLICIES:
        raise ValueError(f"thread policy {policy!r}: not one of {', '.join(THREAD_POLICIES)}")
    cores = sorted(os.sched_getaffinity(0))
    if policy == "1":
        os.sched_setaffinity(0, cores[:1])
        cores = cores[:1]
    os.environ.update(OMP_NUM_THREADS=str(len(cores)), MKL_NUM_THREADS=str(len(cores)),
                      OMP_WAIT_POLICY="PASSIVE")
    return {"policy": policy, "cores": len(cores)}


def worker_main(module: str, worker, argv: Sequence[str] | None) -> int:
    """``python -m module --worker JOB``: apply the job's thread policy (``threads``, default
    "all"), run ``worker(job)`` in this process, print its JSON answer (what run_worker reads),
    with the policy it ran under as ``threads``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] != ["--worker"] or len(argv) != 2:
        print(f"usage: python -m {module} --worker JOB", file=sys.stderr)
        return 2
    job = json.loads(argv[1])
    threads = thread_policy(job.get("threads", "all"))
    answer = worker({**job, "thread_count": threads["cores"]})
    print(json.dumps({**answer, "threads": {**threads, **answer.get("threads", {})}}))
    return 0


def gpu_names() -> list[str]:
    """Names of the GPUs TensorFlow sees, asked in a process of its own (benchmarks/limits.py
    ``gpus_worker``, GPUs left visible), so the process that plans the rows does not start
    TensorFlow to ask."""
    return run_worker("benchmarks.limits", {"kind": "gpus"}, hide_gpus=False,
                      failed="could not start TensorFlow")["gpus"]


def bench_main(parser: argparse.ArgumentParser, run, argv) -> int:
    """Parse ``argv``, call ``run(args)``; a UserError is one line on stderr and exit code 2."""
    args = parser.parse_args(argv)

    def command() -> int:
        run(args)
        return 0

    return report_errors(command)


def pyplot():
    """matplotlib's pyplot, drawing to files only (the Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table of ``rows`` restricted to ``columns``; floats to 4 significant places."""

    def cell(value) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.4g}" if abs(value) < 100 else f"{value:.0f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
