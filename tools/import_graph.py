"""The import graph as a picture: every file of the project in the row of its layer (from
pyproject.toml's first layers contract, top to bottom), an arrow for each import, built with
grimp, the graph import-linter itself reads. An arrow that runs back up would be drawn red and
listed; there are none while `lint-imports` passes.

    python tools/import_graph.py [--out docs/images/imports.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grimp
from importlinter.api import read_configuration

ROOT = Path(__file__).resolve().parent.parent


def layer_rows(layers: list[str], modules: set[str]) -> list[list[str]]:
    """Each layer's files (a layer ``a | b`` is the files of a and of b, each with its
    descendants, but for those an earlier layer holds), top layer first."""
    rows, placed = [], set()
    for layer in layers:
        names = [name.strip() for name in layer.split("|")]
        rows.append(sorted(m for m in modules - placed
                           if any(m == name or m.startswith(name + ".") for name in names)))
        placed.update(rows[-1])
    return rows


def upward_imports(rows: list[list[str]], graph) -> list[tuple[str, str]]:
    """Every import from a file to one in a row above it."""
    row_of = {module: i for i, row in enumerate(rows) for module in row}
    return sorted((importer, imported) for importer in row_of
                  for imported in graph.find_modules_directly_imported_by(importer)
                  if imported in row_of and row_of[imported] < row_of[importer])


def draw(rows: list[list[str]], graph, path: Path) -> list[tuple[str, str]]:
    """The picture, written to ``path``; returns the upward imports (drawn red)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = max(len(row) for row in rows)
    where = {module: ((j + 0.5) * width / len(row), -i)
             for i, row in enumerate(rows) for j, module in enumerate(row)}
    up = upward_imports(rows, graph)
    fig, ax = plt.subplots(figsize=(1.9 * width, 0.9 * len(rows) + 1))
    for importer, (x0, y0) in where.items():
        for imported in graph.find_modules_directly_imported_by(importer):
            if imported in where:
                x1, y1 = where[imported]
                upward = (importer, imported) in up
                ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops=dict(
                    arrowstyle="->", lw=1.6 if upward else 0.5, alpha=1 if upward else 0.35,
                    color="red" if upward else "grey", shrinkA=9, shrinkB=9,
                    # within a row, bowed upwards whichever way the arrow runs
                    connectionstyle=f"arc3,rad={-0.3 if x0 < x1 else 0.3}" if y0 == y1
                    else "arc3,rad=0.05"))
    for module, (x, y) in where.items():
        ax.text(x, y, module, ha="center", va="center", fontsize=7,
                bbox=dict(boxstyle="round,pad=0.25", fc="white", ec="steelblue", lw=0.6))
    ax.set_xlim(-0.2, width + 0.2)
    ax.set_ylim(-len(rows) + 0.5, 0.5)
    ax.axis("off")
    ax.set_title(f"Imports, top layer first ({len(where)} files, "
                 f"{sum(len(graph.find_modules_directly_imported_by(m) & set(where)) for m in where)}"
                 f" imports, {len(up)} upward)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return up


def main(argv: list[str] | None = None) -> int:
    """Draw the picture; exit 1 if any import runs back up."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "imports.png")
    args = parser.parse_args(argv)
    config = read_configuration(str(ROOT / "pyproject.toml"))
    packages = config["session_options"]["root_packages"]
    layers = next(c for c in config["contracts_options"] if c["type"] == "layers"
                  and "containers" not in c)["layers"]
    sys.path.insert(0, str(ROOT))
    graph = grimp.build_graph(*packages, cache_dir=None)
    rows = layer_rows(layers, graph.modules)
    up = draw(rows, graph, args.out)
    for importer, imported in up:
        print(f"upward: {importer} -> {imported}", file=sys.stderr)
    print(f"wrote {args.out}: {sum(map(len, rows))} files in {len(rows)} layers, {len(up)} upward imports")
    return 1 if up else 0


if __name__ == "__main__":
    sys.exit(main())
