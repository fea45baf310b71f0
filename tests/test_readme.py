"""The README stays true: its commands are what CI runs, its code references still exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _definition_source(path: Path, name: str) -> str | None:
    """The source of the top-level function or class ``name`` in ``path`` (None if absent)."""
    source = path.read_text()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
            return ast.get_source_segment(source, node)
    return None


def _rows(section_title: str) -> list[str]:
    section = README.split(section_title, 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| `fit()` does")]


def test_fit_table_cites_functions_and_lines_that_exist():
    rows = _rows("## What `fit()` does for you")
    assert len(rows) >= 20
    for row in rows:
        by_hand = row.rstrip(" |").rsplit(" | ", 1)[1]
        path, function, snippets = ROOT / "low_level" / "train.py", None, []
        for token in re.findall(r"`([^`]+)`", by_hand):
            if token.endswith(".py"):
                path = ROOT / token
            elif token.endswith("()") and function is None:
                function = token[:-2]
            else:
                snippets.append(token)
        assert function and snippets, f"a row must cite a function and a line: {row}"
        body = _definition_source(path, function)
        assert body is not None, f"README cites {function}() in {path.name}, which is gone"
        for snippet in snippets:
            assert snippet in body, f"README cites a line that is not in {function}(): {snippet}"


def test_ci_runs_the_readme_test_command():
    command = re.search(r"^(pip install -e '\.\[test\]' && pytest)", README, re.M).group(1)
    assert command in (ROOT / ".ci" / "run").read_text()
