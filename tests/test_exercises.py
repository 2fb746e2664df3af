"""The exercise framework, and what every exercise owes: its reference passes, and its notebook asks for it."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
import torch

from labkit.exercises import check, exercises

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
ALL = exercises()


def _wrong_answers() -> dict[str, list[tuple[Callable, str]]]:
    """Every tests/test_exercises_*.py module's WRONG_ANSWERS merged: exercise name → [(wrong answer, a piece of
    the message the checker must give it)]."""
    merged: dict[str, list[tuple[Callable, str]]] = {}
    for path in sorted(Path(__file__).parent.glob("test_exercises_*.py")):
        for name, cases in getattr(importlib.import_module(path.stem), "WRONG_ANSWERS", {}).items():
            merged.setdefault(name, []).extend(cases)
    return merged


WRONG = _wrong_answers()


@pytest.mark.parametrize("name", sorted(ALL))
def test_the_reference_answer_passes(name: str) -> None:
    assert check(name, ALL[name].reference, quiet=True), check(name, ALL[name].reference, quiet=True).message


@pytest.mark.parametrize("name, wrong, message",
                         [(n, w, m) for n, cases in sorted(WRONG.items()) for w, m in cases],
                         ids=[f"{n}-{i}" for n, cases in sorted(WRONG.items()) for i in range(len(cases))])
def test_the_wrong_answer_is_refused_with_its_own_message(name: str, wrong: Callable, message: str) -> None:
    assert name in ALL, f"WRONG_ANSWERS names {name!r}, which is not a registered exercise"
    result = check(name, wrong, quiet=True)
    assert not result and message in result.message, result.message


def _checked_in(path: Path) -> list[str]:
    """The names the notebook's code cells pass to check(...) or use(...)."""
    source = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    return re.findall(r"""\b(?:check|use)\(\s*["']([a-z_0-9]+)["']""", source)


@pytest.mark.parametrize("path", [p for p in sorted(NOTEBOOK_DIR.glob("[01][0-9]*-*.ipynb"))
                                  if not p.name.startswith("00")], ids=lambda p: p.stem)
def test_each_notebook_checks_its_exercises(path: Path) -> None:
    number = path.name.split("-", 1)[0]  # "04b"; notebook 00 checks the environment and has no exercises
    registered = set(exercises(number))
    assert len(registered) >= 2, f"notebook {number} has {len(registered)} exercises, expected at least 2"
    assert set(_checked_in(path)) == registered, f"{path.name} checks {_checked_in(path)}, registered {registered}"


def test_a_wrong_answer_fails_with_the_hint(capsys: pytest.CaptureFixture[str]) -> None:
    result = check("causal_mask", lambda n: torch.ones(n, n, dtype=torch.bool).triu())
    assert not result
    out = capsys.readouterr().out
    assert out.startswith("✗ causal_mask: a query may attend to a later key")
    assert "hint: query i may see keys 0..i" in out


def test_an_unwritten_answer_says_so() -> None:
    def causal_mask(seq_len: int) -> torch.Tensor:
        raise NotImplementedError

    assert "not written yet" in check("causal_mask", causal_mask, quiet=True).message


def test_an_answer_that_raises_is_reported_not_raised() -> None:
    result = check("attention_scores", lambda q, k: q @ k, quiet=True)
    assert not result and "your function raised RuntimeError" in result.message


def test_unknown_exercise_and_non_function_are_clear_errors() -> None:
    with pytest.raises(KeyError, match="no exercise named 'causal_mask_2'; the exercises are: "):
        check("causal_mask_2", lambda n: n)
    with pytest.raises(TypeError, match="needs the function you wrote, got Tensor"):
        check("causal_mask", torch.ones(2, 2))


def test_split_heads_written_by_hand_passes() -> None:
    def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
        batch, seq, d_model = x.shape
        return x.reshape(batch, seq, n_heads, d_model // n_heads).permute(0, 2, 1, 3)

    assert check("split_heads", split_heads, quiet=True)
