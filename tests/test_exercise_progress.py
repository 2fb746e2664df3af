"""Progress across restarts: a pass is recorded outside the repository, read back by a new process and by
`python3 lab.py progress`; a corrupt file is reported and replaced; `use` falls back on the reference and
`solution` shows it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from labkit.exercises import check, exercises, progress, solution, use
from labkit.exercises._progress import passed_exercises, progress_path

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def progress_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "data" / "progress.json"
    monkeypatch.setenv("LABKIT_PROGRESS", str(path))
    return path


def _causal_mask(n: int) -> torch.Tensor:
    return torch.ones(n, n, dtype=torch.bool).tril()


def test_the_default_file_is_in_the_users_data_directory_not_the_repository(monkeypatch) -> None:
    monkeypatch.delenv("LABKIT_PROGRESS")
    path = progress_path()
    assert path.name == "progress.json" and "labkit" in path.parts
    assert ROOT not in path.parents


def test_a_pass_is_recorded_and_read_back_after_a_restart(progress_file: Path) -> None:
    assert not progress_file.exists()
    total = len(exercises("01"))
    assert f"0 of {total} exercises passed" in str(progress("01"))
    assert not check("causal_mask", lambda n: torch.ones(n, n, dtype=torch.bool), quiet=True)
    assert not progress_file.exists()  # a failure records nothing
    assert check("causal_mask", _causal_mask, quiet=True)
    assert list(json.loads(progress_file.read_text())) == ["causal_mask"]
    env = {**os.environ, "LABKIT_PROGRESS": str(progress_file)}
    out = subprocess.run([sys.executable, "-m", "labkit.exercises"], capture_output=True, text=True, env=env,
                         check=True).stdout  # a new process: a restarted kernel reads the same file
    row = next(line for line in out.splitlines() if line.strip().startswith("01 "))
    assert row.split()[1:4] == ["1", "/", str(total)] and "causal_mask" not in row
    assert f"(kept in {progress_file})" in out
    line = str(progress("01"))
    assert line.startswith(f"notebook 01: 1 of {total} exercises passed; to do: ") and "causal_mask" not in line
    html = progress()._repr_html_()
    assert "✓ causal_mask" in html and "○ split_heads" in html


def test_lab_py_progress_prints_the_same_table(progress_file: Path) -> None:
    check("causal_mask", _causal_mask, quiet=True)
    env = {**os.environ, "LABKIT_PROGRESS": str(progress_file)}
    out = subprocess.run([sys.executable, str(ROOT / "lab.py"), "progress"], capture_output=True, text=True,
                         env=env, check=True, cwd=ROOT).stdout
    assert str(progress()) in out


@pytest.mark.parametrize("content", ["{not json", "[1, 2, 3]", '{"causal_mask": 7}', "\udcff"])
def test_a_corrupt_file_is_reported_and_replaced(progress_file: Path, content: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    progress_file.parent.mkdir(parents=True)
    progress_file.write_bytes(content.encode("utf-8", "surrogateescape"))
    assert passed_exercises() == {}
    out = capsys.readouterr().out
    assert f"your progress file {progress_file} could not be read" in out and "a new one is started" in out
    assert progress_file.with_name("progress.json.corrupt").exists()
    assert check("causal_mask", _causal_mask, quiet=True)
    assert list(json.loads(progress_file.read_text())) == ["causal_mask"]


def test_an_unwritable_file_is_reported_not_raised(tmp_path: Path, monkeypatch, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("LABKIT_PROGRESS", str(blocker / "progress.json"))  # its folder is a file
    assert check("causal_mask", _causal_mask)
    assert "your progress could not be saved" in capsys.readouterr().out


def test_use_returns_the_answer_once_it_passes_else_the_reference(progress_file: Path, capsys) -> None:
    assert use("causal_mask", _causal_mask) is _causal_mask

    def unwritten(n: int) -> torch.Tensor:
        raise NotImplementedError

    assert use("causal_mask", unwritten) is exercises()["causal_mask"].reference
    out = capsys.readouterr().out
    assert "not written yet" in out and "the cells below use the reference answer until yours passes" in out


def test_solution_prints_the_reference_and_returns_it(capsys) -> None:
    reference = solution("head")
    assert reference is exercises()["head"].reference
    assert "def forward(self, x: Tensor) -> Tensor:" in capsys.readouterr().out


def test_progress_of_an_unknown_notebook_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="notebook '42' has no exercises; the notebooks with exercises are 01, "):
        progress("42")
