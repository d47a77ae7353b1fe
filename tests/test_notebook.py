"""notebooks/walkthrough.ipynb: stored without outputs, and runs end to end (nbclient) against
a checkpoint of a tiny training."""

import os
from pathlib import Path

import pytest
from conftest import train_tiny_checkpoint

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "walkthrough.ipynb"


def test_notebook_is_stored_without_outputs():
    nbformat = pytest.importorskip("nbformat", reason="the [notebook] extra is not installed")
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.slow
def test_notebook_runs(tmp_path, tiny_data_dir, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="the [notebook] extra is not installed")
    nbclient = pytest.importorskip("nbclient", reason="the [notebook] extra is not installed")
    checkpoint = train_tiny_checkpoint(tmp_path, tiny_data_dir, iters=6)
    repo = str(NOTEBOOK.parents[1])
    monkeypatch.setenv("FASTERRCNN_CHECKPOINT", str(checkpoint))
    monkeypatch.setenv("FASTERRCNN_WALKTHROUGH_WIDTH", "0.125")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))
    )
    monkeypatch.setenv("MPLBACKEND", "agg")
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()  # raises CellExecutionError naming the failing cell
    images = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if "image/png" in out.get("data", {})
    ]
    assert len(images) == 5  # the five drawings
    printed = "".join(
        out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
    )
    assert "base_feat (conv5_3)" in printed and "1x18x37x50" in printed
