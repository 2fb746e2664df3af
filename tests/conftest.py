"""Shared fixtures: the real datasets, found through LABKIT_DATA (default: ../shared/data beside the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("LABKIT_DATA") or REPO.parent / "shared" / "data")
# Notebook kernels and subprocesses started by the tests read the same folder.
os.environ.setdefault("LABKIT_DATA", str(DATA_DIR))


def require_data_dir() -> Path:
    """The data folder; a missing one fails under CI=true (never skipped there) and skips elsewhere."""
    if not DATA_DIR.is_dir():
        reason = f"the real datasets are missing: LABKIT_DATA / {DATA_DIR} is not a folder"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + " (CI=true: this must not be skipped)")
        pytest.skip(reason)
    return DATA_DIR


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return require_data_dir()


@pytest.fixture(scope="session")
def shakespeare(data_dir: Path) -> str:
    return (data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
