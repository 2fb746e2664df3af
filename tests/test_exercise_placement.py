"""What the exercises owe the lab as a whole: at least five in every notebook 01–10 and sixty in all, each checked
where its idea is taught and used by the cells after it, each with at least three wrong answers refused (in some
tests/test_exercises_*.py's WRONG_ANSWERS), no reference answer in a notebook's source, and a predict-then-move
question with a hidden answer above every widget."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from labkit.exercises import exercises
from test_exercises import WRONG

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[01][0-9]*-*.ipynb"))  # 04b, between 04 and 05, included
TAUGHT = [p for p in NOTEBOOKS if not p.name.startswith("00")]
ALL = exercises()
# a cell that puts something interactive on the page: a widget, an explorer, a box, bertviz's views
WIDGET = re.compile(r"^(?!#).*\b(\w*(Explorer|Widget|Box|Plot|Slider)\(|(head|model|neuron)_view\(|interact\()",
                    re.MULTILINE)


def _number(path: Path) -> str:
    """The notebook's number as its exercises name it: the part of the file name before the first "-" ("04b")."""
    return path.name.split("-", 1)[0]


def _code(path: Path) -> list[str]:
    return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def test_sixty_exercises_in_all() -> None:
    assert len(ALL) >= 60, f"{len(ALL)} exercises registered, expected at least 60"


@pytest.mark.parametrize("name", sorted(ALL))
def test_every_exercise_refuses_three_plausible_wrong_answers(name: str) -> None:
    assert len(WRONG.get(name, [])) >= 3, (f"{name} has {len(WRONG.get(name, []))} wrong answers in WRONG_ANSWERS, "
                                           f"expected at least 3")


@pytest.mark.parametrize("path", TAUGHT, ids=lambda p: p.stem)
def test_five_exercises_placed_where_taught_and_used_below(path: Path) -> None:
    number = _number(path)
    registered = exercises(number)
    assert len(registered) >= 5, f"notebook {number} has {len(registered)} exercises, expected at least 5"
    cells = _code(path)
    for name in registered:
        call = re.compile(rf"""\b(?:check|use)\(\s*["']{name}["']\s*,\s*([A-Za-z_]\w*)""")
        at = [i for i, src in enumerate(cells) if call.search(src)]
        assert at, f"{path.name} never checks {name!r}"
        answer = call.search(cells[at[0]]).group(1)
        assert any(re.search(rf"\b{answer}\b", src) for src in cells[at[0] + 1:]), (
            f"{path.name}: no cell after the check of {name!r} uses {answer}")
    first_quarter = len(cells) // 4
    assert any(re.search(r"\b(?:check|use)\(", src) for src in cells[:max(first_quarter, 1) + 3]), (
        f"{path.name}: no exercise in its first quarter; exercises go where their ideas are taught")


@pytest.mark.parametrize("path", TAUGHT, ids=lambda p: p.stem)
def test_no_reference_answer_in_the_notebook(path: Path) -> None:
    source = "\n".join(_code(path))
    for name, ex in exercises(_number(path)).items():
        assert f"reference_{name}" not in source and f"Reference{name.title().replace('_', '')}" not in source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_widget_has_a_predict_question_with_a_hidden_answer(path: Path) -> None:
    cells = nbformat.read(path, as_version=4).cells
    for i, cell in enumerate(cells):
        if cell.cell_type != "code" or not WIDGET.search(cell.source):
            continue
        above = next((c.source for c in reversed(cells[:i]) if c.cell_type == "markdown"), "")
        assert "**Predict" in above and "<details>" in above and "</details>" in above, (
            f"{path.name}, code cell {i}: a widget without a predict-then-move question and a hidden answer "
            f"(<details>) in the markdown above it:\n{cell.source[:200]}")
