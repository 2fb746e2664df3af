"""Every notebook is committed clean and runs top to bottom headless, as a learner's "Run All" would.

They run against a hub that accepts connections and never answers. Training notebooks run in the lab's fast mode
(LABKIT_FAST=1: the "smoke" preset, trained for real but briefly) unless LABKIT_FAST is already set;
`LABKIT_FAST=0 python3 lab.py test -k notebook` runs the full presets."""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def test_the_lab_has_its_notebooks() -> None:
    names = [nb.name for nb in NOTEBOOKS]
    assert "01-attention-step-by-step.ipynb" in names
    assert "02-positional-encoding.ipynb" in names
    assert "04-tiny-gpt.ipynb" in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs or execution counts; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path: Path, monkeypatch: pytest.MonkeyPatch, silent_hub: str) -> None:
    monkeypatch.setenv("LABKIT_FAST", os.environ.get("LABKIT_FAST", "1"))  # the kernel inherits it
    # A hub that accepts connections and never answers, with nothing switching it off: every notebook must still
    # resolve its models and data within seconds (from LABKIT_DATA, the cache or the packaged encoder).
    monkeypatch.setenv("HF_ENDPOINT", silent_hub)
    for switch in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(switch, raising=False)
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    client.execute()  # raises CellExecutionError, naming the cell, on the first failing cell
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert re.search(r"^seed: \d+$", printed, re.MULTILINE), f"{path.name} does not print the seed it sets"
