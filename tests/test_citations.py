"""Every sentence about what Keras does cites the line that does it, and the line is still there.

A citation names a Keras function and quotes a line of it. In the Markdown pages it is a link to
that line on GitHub at one Keras version, whose text is the function's name, then a colon and
the quoted line in backticks: [`TensorFlowTrainer.fit`](https://github.com/keras-team/keras/
blob/vX.Y.Z/keras/src/backend/tensorflow/trainer.py#L399): `logs = ...` (one line in the page).
In the code's comments and docstrings it is the file, the function, a colon and the quote:
keras/src/backend/tensorflow/trainer.py TensorFlowTrainer.fit: `logs = ...`

The test imports the installed Keras, finds each function with ``inspect`` and fails, naming the
claim, when the quote is no longer in it. On the Keras version the links name it also checks
that the link lands on the quoted line. On a newer Keras it still checks every quote (a release
that moves a line fails here); on an older one, inside the supported range, the citations
describe a later Keras than the one installed, and the test lists what differs and skips.

Where Keras changed between the floor pyproject.toml allows (keras>=3.8: 3.8.0) and the newest,
a page cites both: the floor's line with a link at v3.8.0. Those are checked, line and quote,
on the floor (CI's floor pass); on a later Keras the quote may be gone, which is the point.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

keras = pytest.importorskip("keras")

# Counted apart from the behaviour tests in the suite's summary (tests/conftest.py); select them
# alone with `pytest -m citation`, or leave them out with `-m "not citation"`.
pytestmark = pytest.mark.citation

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CODE = sorted(p for d in ("high_level", "low_level", "shared", "fit_vs_tape", "benchmarks")
              for p in (ROOT / d).glob("*.py"))
LINK = re.compile(r"\[`(?P<name>[\w.]+)`\]\(https://github\.com/keras-team/keras/blob/v(?P<version>[\w.]+)/"
                  r"keras/src/(?P<path>[\w/]+)\.py#L(?P<line>\d+)\): `(?P<quote>[^`]+)`")
IN_CODE = re.compile(r"keras/src/(?P<path>[\w/]+)\.py (?P<name>[\w.]+): `(?P<quote>[^`]+)`")
#: Our own lines, quoted in the README's third column: [`train()`](low_level/train.py#L12): `code`
OWN_LINK = re.compile(r"\[`(?P<name>\w+)\(\)`\]\((?P<path>[\w/]+\.py)#L(?P<line>\d+)\): `(?P<quote>[^`]+)`")


def _citations() -> list[dict]:
    found = []
    for page in PAGES:
        for m in LINK.finditer(page.read_text()):
            found.append({**m.groupdict(), "where": page.name})
    for path in CODE:
        text = re.sub(r"\n\s*# ?", " ", path.read_text())  # a comment may wrap a citation
        for m in IN_CODE.finditer(" ".join(text.split())):
            found.append({**m.groupdict(), "version": None, "line": None,
                          "where": path.relative_to(ROOT).as_posix()})
    return found


CITATIONS = _citations()
#: The lowest Keras pyproject.toml allows, as the links to its lines name it.
FLOOR = re.search(r'"keras>=([\d.]+)', (ROOT / "pyproject.toml").read_text())[1] + ".0"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _problem(citation: dict) -> str | None:
    """What is wrong with one citation against the installed Keras, or None."""
    module = importlib.import_module("keras.src." + citation["path"].replace("/", "."))
    target = module
    for part in citation["name"].split("."):
        target = getattr(target, part, None)
        if target is None:
            return f"{citation['path']}.py has no {citation['name']}"
    lines, first = inspect.getsourcelines(target)
    source = " ".join("".join(lines).split())
    quote = " ".join(citation["quote"].split())
    if quote not in source:
        return f"{citation['name']} no longer contains `{citation['quote']}`"
    if citation["line"] and _version(citation["version"]) == _version(keras.__version__):
        where = [first + i for i, line in enumerate(lines) if citation["quote"].strip() in line]
        if int(citation["line"]) not in where:
            return f"the link to `{citation['quote']}` in {citation['name']} says line " \
                   f"{citation['line']}; it is on line {where or '?'}"
    return None


def test_the_pages_cite_keras():
    """The README's two maps and the glossary carry their citations (a page that lost its
    links would otherwise pass by having nothing to check)."""
    where = [c["where"] for c in CITATIONS]
    assert where.count("README.md") >= 30, where.count("README.md")
    assert where.count("glossary.md") >= 15, where.count("glossary.md")


def _newest() -> str:
    return max({c["version"] for c in CITATIONS if c["version"]} - {FLOOR}, key=_version)


def test_every_link_names_the_newest_keras_version_or_the_floor():
    versions = {c["version"] for c in CITATIONS if c["version"]}
    assert versions - {FLOOR} == {_newest()}, versions
    readme = (ROOT / "README.md").read_text()
    assert f"This is **Keras 3** ({_newest()})" in readme, "the README names another version"


@pytest.mark.parametrize("citation", CITATIONS,
                         ids=[f"{c['where']}:{c['name']}:{c['quote'][:40]}" for c in CITATIONS])
def test_the_cited_keras_line_is_there(citation):
    try:
        problem = _problem(citation)
    except ModuleNotFoundError as e:  # keras/src/backend/jax imports JAX (the peers' extra)
        if (e.name or "keras").split(".")[0] == "keras":
            raise
        pytest.skip(f"{citation['path']}.py needs {e.name}, which is not installed "
                    "(pip install -e '.[peers]')")
    cited = citation["version"] or _newest()
    if problem and _version(keras.__version__) < _version(cited):
        pytest.skip(f"Keras {keras.__version__} is older than the cited {cited}: {problem}")
    if problem and cited == FLOOR and _version(keras.__version__) > _version(cited):
        pytest.skip(f"a line of the floor, Keras {FLOOR}, where Keras {keras.__version__} "
                    f"differs ({problem}); checked in the floor pass")
    assert problem is None, f"{citation['where']}: {problem}"


def _own_function(path: Path, name: str):
    import ast

    source = path.read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
            return node
    return None


def test_the_readme_quotes_our_own_lines_where_they_are():
    """The maps' third column: each link to our code lands on the statement it quotes, inside
    the function it names."""
    readme = (ROOT / "README.md").read_text()
    quotes = list(OWN_LINK.finditer(readme))
    assert len(quotes) >= 25, len(quotes)
    for m in quotes:
        path = ROOT / m["path"]
        node = _own_function(path, m["name"])
        assert node is not None, f"README cites {m['name']}() in {m['path']}, which is gone"
        line = path.read_text().splitlines()[int(m["line"]) - 1]
        assert m["quote"] in line, f"{m['path']} line {m['line']} is not `{m['quote']}`: {line.strip()}"
        assert node.lineno <= int(m["line"]) <= node.end_lineno, \
            f"{m['path']} line {m['line']} is outside {m['name']}()"
