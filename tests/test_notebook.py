"""The walk-through notebook runs top to bottom, on a slice of the data, and proves its point."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REAL_DATA, write_dataset

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "walkthrough.ipynb"


def _outputs(cell) -> str:
    return "".join(o.get("text", "") + str(o.get("data", {}).get("text/markdown", ""))
                   for o in cell.get("outputs", []))


def test_committed_notebook_has_its_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.get("execution_count") for cell in code), "commit the notebook executed"
    images = sum("image/png" in o.get("data", {}) for cell in code for o in cell.outputs)
    assert images >= 6
    text = "".join(_outputs(cell) for cell in code)
    assert "max |w_fit - w_loop|: 0.0" in text and "Traceback" not in text


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    parameters = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    data_dir = REAL_DATA if (REAL_DATA / "t10k-labels-idx1-ubyte.gz").is_file() \
        else write_dataset(tmp_path / "data", n_train=1000, n_test=200)
    parameters.source = (f"LIMIT = 1000\nEPOCHS = 2\nHIDDEN_UNITS = 32\n"
                         f"DATA_DIR = {str(data_dir)!r}\nMODES_LIMIT = 256\n")
    # Raises CellExecutionError, naming the cell, if any cell fails.
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    text = "".join(_outputs(cell) for cell in notebook.cells if cell.cell_type == "code")
    assert "max |w_fit - w_step|: 0.0" in text and "max |w_fit - w_loop|: 0.0" in text
    assert "histories equal: True" in text
    assert "regularized: max |w_fit - w_other|: [0.0, 0.0]" in text
    assert "regularized: histories equal: True" in text
    assert "training images (1000, 28, 28)" in text
    # The mistakes gallery: the loop done right, and a mistake found at its step.
    assert "the loop, done right" in text and "weights never (bit-identical)" in text
    assert "optimizer_in_step      step 2, " in text
    for mode in ("eager", "graph", "xla", "epoch"):
        assert f"| {mode} |" in text


@pytest.mark.parametrize("name", ["LIMIT", "EPOCHS", "HIDDEN_UNITS", "DATA_DIR"])
def test_the_parameters_cell_is_first_and_tagged(name):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    first_code = next(c for c in notebook.cells if c.cell_type == "code")
    assert "parameters" in first_code.metadata.get("tags", [])
    assert f"{name} = " in first_code.source
