"""The README and docs/ stay true: the README's commands are what CI runs, its code references
still exist, links lead somewhere, and no example depends on one machine's paths."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: The one absolute path the docs may show: where Debian and Ubuntu install Fashion-MNIST.
ALLOWED_PATHS = ("/usr/share/datasets/fashion-mnist",)


def test_ci_runs_the_readme_test_command():
    command = re.search(r"^(pip install -e '\.\[test\]' && pytest)", README, re.M).group(1)
    assert command in (ROOT / ".ci" / "run").read_text()


def test_readme_is_a_front_door():
    """At most 200 lines, and the picture of fit() within the first 80."""
    lines = README.splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move reference to docs/"
    assert "```mermaid" in lines[:80], "fit() in one picture must come within the first 80 lines"


MACHINE_PATH = re.compile(r"(?<![\w.~$/-])(/(?:tmp|root|work|home|Users|mnt|opt|srv|var|usr)/[^\s`'\")\]]*)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_machine_specific_paths(page: Path):
    """Examples use runs/..., RUN_DIR or DIR, never a path from one machine (/tmp/..., /root/...)."""
    found = [m.group(1) for m in MACHINE_PATH.finditer(page.read_text())
             if not m.group(1).startswith(ALLOWED_PATHS)]
    assert not found, f"{page.name}: machine-specific paths {found}"


def _anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    return {_anchor(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_lead_somewhere(page: Path):
    """Every relative link names a file that exists, and every #anchor a heading in that file.
    A link into our code names the file only: its lines move at every edit, so a page cites a
    function and a quoted line (tests/test_citations.py checks the quote is inside it)."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    assert targets, f"{page.name} links nowhere?"
    for target in targets:
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        assert linked.exists(), f"{page.name}: link to {target}, which does not exist"
        assert not anchor or linked.suffix == ".md", \
            f"{page.name}: link to {target}: lines move; link the file, name the function and quote"
        if anchor:
            assert anchor in _anchors(linked), f"{page.name}: link to {target}: no such heading"
