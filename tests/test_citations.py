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

The project's own code is cited the same way but linked to the file, never to a line (our lines
move at every edit, Keras' at a release tag never do): [`train()`](low_level/train.py): `...`;
a method as `Class.method()`, a class as `Class()`. The test parses the file with ``ast`` and
fails when the named function is gone or the quote is no longer code inside it.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import io
import json
import re
import tokenize
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
#: Our own code, quoted in the maps' third column and linked to its file, never to a line:
#: [`train()`](low_level/train.py): `code`; `Class()` names a class, `Class.method()` a method.
OWN_LINK = re.compile(r"\[`(?P<name>\w+(?:\.\w+)*)(?:\(\))?`\]\((?P<path>(?:\.\./)*[\w/]+\.py)\): "
                      r"`(?P<quote>[^`]+)`")
#: Any link whose text names a function or class of our code (not a file).
NAMED_LINK = re.compile(r"\[`\w+(?:\.\w+)*\(\)`\]\((?![a-z]+:)[^)\s]*\.py[^)\s]*\)")
#: A relative link into our code by line number ([...](low_level/train.py#L12)): none may remain.
OWN_LINE_LINK = re.compile(r"\]\((?![a-z]+:)[^)\s]*\.py#L\d+\)")
#: The teaching pages: the Markdown pages and the notebooks' Markdown cells.
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


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


def _markdown(page: Path) -> str:
    """A page's Markdown: the file, or a notebook's Markdown cells."""
    if page.suffix != ".ipynb":
        return page.read_text()
    cells = json.loads(page.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def _own_quotes() -> list[dict]:
    found = []
    for page in [*PAGES, *NOTEBOOKS]:
        for m in OWN_LINK.finditer(_markdown(page)):
            found.append({**m.groupdict(), "page": page, "where": page.relative_to(ROOT).as_posix()})
    return found


OWN_QUOTES = _own_quotes()
DEFINITION = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _definitions(tree: ast.AST, name: str) -> list[ast.AST]:
    """Every function or class the dotted ``name`` may mean: ``f`` anywhere in the file (a nested
    step included), ``Class.method`` a method defined in that class's body."""
    first, *rest = name.split(".")
    nodes = [n for n in ast.walk(tree) if isinstance(n, DEFINITION) and n.name == first]
    for part in rest:
        nodes = [child for n in nodes for child in n.body
                 if isinstance(child, DEFINITION) and child.name == part]
    return nodes


def _code_lines(source: str, tree: ast.AST) -> list[str]:
    """The file's lines with comments and docstrings blanked: a quote must be a statement."""
    lines = source.splitlines()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            row, column = token.start
            lines[row - 1] = lines[row - 1][:column]
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, *DEFINITION)) and ast.get_docstring(node) is not None:
            for row in range(node.body[0].lineno, node.body[0].end_lineno + 1):
                lines[row - 1] = ""
    return lines


def _normal(code: str) -> str:
    """Whitespace made one space, and none inside brackets, so a statement wrapped over several
    lines still reads as the one-line quote."""
    return re.sub(r"([(\[{]) | (?=[)\]}])", r"\1", " ".join(code.split()))


def _own_problem(citation: dict) -> str | None:
    """What is wrong with one citation of our code, or None."""
    path = (citation["page"].parent / citation["path"]).resolve()
    if not path.is_file():
        return f"{citation['path']} does not exist"
    source = path.read_text()
    tree = ast.parse(source)
    nodes = _definitions(tree, citation["name"])
    if not nodes:
        return f"{citation['path']} has no {citation['name']}"
    lines = _code_lines(source, tree)
    quote = _normal(citation["quote"])
    if not any(quote in _normal("\n".join(lines[n.lineno - 1:n.end_lineno])) for n in nodes):
        return f"{citation['name']} in {citation['path']} no longer contains `{citation['quote']}`"
    return None


def test_the_pages_quote_our_own_code():
    """The maps' third column carries its citations of our code (a page that lost them would
    otherwise pass by having nothing to check), and a link naming one of our functions is always
    a citation: the name, then a colon and the quoted line."""
    assert len(OWN_QUOTES) >= 40, len(OWN_QUOTES)
    for page in [*PAGES, *NOTEBOOKS]:
        text = _markdown(page)
        named = [m.group(0) for m in NAMED_LINK.finditer(text)
                 if not OWN_LINK.match(text, m.start())]
        assert not named, f"{page.name}: a function named without its quoted line: {named}"


@pytest.mark.parametrize("citation", OWN_QUOTES,
                         ids=[f"{c['where']}:{c['name']}:{c['quote'][:40]}" for c in OWN_QUOTES])
def test_the_quoted_line_is_inside_the_function_named(citation):
    problem = _own_problem(citation)
    assert problem is None, f"{citation['where']}: {problem}"


@pytest.mark.parametrize("page", [*PAGES, *NOTEBOOKS], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_link_into_our_code_by_line_number(page):
    """Our lines move at every edit: link the file and name the function and the quoted line."""
    found = OWN_LINE_LINK.findall(_markdown(page))
    assert not found, f"{page.name}: {found}"
