"""The README stays true: its commands are what CI runs, its code references still exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_fit_table_points_at_lines_that_exist():
    section = README.split("## What `fit()` does for you", 1)[1].split("\n## ", 1)[0]
    source = (ROOT / "low_level" / "train.py").read_text()
    table = section.split("|---|---|\n", 1)[1]
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(rows) >= 12
    for row in rows:
        by_hand = row.rstrip(" |").rsplit(" | ", 1)[1]
        snippets = [s for s in re.findall(r"`([^`]+)`", by_hand) if s != "(seed, epoch)"]
        for snippet in snippets:
            if snippet.startswith("fit()"):
                continue
            haystack = source if "config.jit_compile" not in snippet else (
                ROOT / "high_level" / "train.py").read_text()
            assert snippet.split("; ")[0] in haystack, f"README cites a line that is gone: {snippet}"


def test_ci_runs_the_readme_test_command():
    command = re.search(r"^(pip install -e '\.\[test\]' && pytest)", README, re.M).group(1)
    assert command in (ROOT / ".ci" / "run").read_text()
