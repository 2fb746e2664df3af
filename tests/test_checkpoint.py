"""Checkpoints: written atomically, and nothing in the lab ever unpickles a file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import labkit.checkpoint
from labkit.checkpoint import load_checkpoint, restore_model, save_checkpoint

PACKAGE = Path(labkit.checkpoint.__file__).resolve().parent


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Linear(4, 3)


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_a_write_that_fails_midway_leaves_the_previous_checkpoint_intact(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch,
                                                                         failure: BaseException) -> None:
    path = tmp_path / "run.safetensors"
    save_checkpoint(path, _model(0), step=1)
    real_save = labkit.checkpoint.save_file

    def half_then_fail(tensors, filename, metadata=None):
        real_save(tensors, filename, metadata=metadata)
        Path(filename).write_bytes(Path(filename).read_bytes()[:50])  # half-written
        raise failure

    monkeypatch.setattr(labkit.checkpoint, "save_file", half_then_fail)
    with pytest.raises(type(failure)):
        save_checkpoint(path, _model(1), step=2)
    assert load_checkpoint(path)["meta"]["step"] == 1
    restored = _model(2)
    restore_model(restored, load_checkpoint(path))
    assert torch.equal(restored.weight, _model(0).weight)
    assert [p.name for p in tmp_path.iterdir()] == ["run.safetensors"]  # no temporary file left behind


def _sources() -> list[Path]:
    files = sorted(PACKAGE.rglob("*.py")) + sorted((PACKAGE.parent / "benchmarks").glob("*.py"))
    assert len(files) > 20, files
    return files


@pytest.mark.parametrize("pattern, why", [
    (r"^\s*(?:import|from) (?:c?pickle|dill|joblib)\b|pickle\.loads?\(", "unpickling runs code from the file"),
    (r"torch\.load\((?![^)]*weights_only=True)", "torch.load without weights_only=True unpickles"),
    (r"trust_remote_code\s*=\s*True", "remote code runs whatever a hub repository ships"),
    (r"(?<![.\w])(?:eval|exec)\(", "eval/exec of text"),
])
def test_nothing_in_the_lab_unpickles_or_runs_loaded_code(pattern: str, why: str) -> None:
    hits = [f"{path.relative_to(PACKAGE.parent)}:{n}" for path in _sources()
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if re.search(pattern, line) and not line.lstrip().startswith("#")]
    assert not hits, f"{why}: {hits}"
