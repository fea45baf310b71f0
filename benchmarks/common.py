"""What both benchmarks share: workers in fresh processes, errors, output tables."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence

from fit_vs_tape.errors import UserError, report_errors


def run_worker(module: str, job: dict, hide_gpus: bool, env: Mapping[str, str] | None = None) -> dict:
    """Run ``python -m module --worker JOB`` in a fresh process and return its JSON answer.

    A fresh process per configuration: TensorFlow's memory and caches from one configuration
    never leak into the next one's time or peak memory. ``env``: variables the process must see
    before its first import (``KERAS_BACKEND=jax``: Keras reads it once, when it is imported).
    """
    env = {**os.environ, **(env or {})}
    if hide_gpus:
        # Hidden before TensorFlow starts: a CPU row runs on the CPU only (every row states
        # jit_compile itself, so Keras' "auto" never decides).
        env["CUDA_VISIBLE_DEVICES"] = "-1"
    result = subprocess.run(
        [sys.executable, "-m", module, "--worker", json.dumps(job)],
        capture_output=True, text=True, env=env,
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"benchmark worker {job} failed: {tail}")
    return json.loads(lines[-1])


def worker_main(module: str, worker, argv: Sequence[str] | None) -> int:
    """``python -m module --worker JOB``: run ``worker(job)`` in this process, print its JSON
    answer (what run_worker reads)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] != ["--worker"] or len(argv) != 2:
        print(f"usage: python -m {module} --worker JOB", file=sys.stderr)
        return 2
    print(json.dumps(worker(json.loads(argv[1]))))
    return 0


def gpu_names() -> list[str]:
    """Names of the GPUs TensorFlow sees, asked in a separate process."""
    code = ("from fit_vs_tape.runtime import import_tensorflow, environment; import_tensorflow(); "
            "import json; print(json.dumps(environment()['gpus']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"could not start TensorFlow: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def bench_main(parser: argparse.ArgumentParser, run, argv) -> int:
    """Parse ``argv``, call ``run(args)``; a UserError is one line on stderr and exit code 2."""
    args = parser.parse_args(argv)

    def command() -> int:
        run(args)
        return 0

    return report_errors(command)


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
