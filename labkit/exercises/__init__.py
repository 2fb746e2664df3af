"""Exercises that end each notebook: the learner writes a function, `check` tries it and says pass or fail.

Each notebook's exercises live in their own module here (`labkit/exercises/<topic>.py`); every module in this
package is loaded on first use, so adding a file is enough to add exercises. A module registers one exercise per
function with `@exercise(...)`: the decorated function receives the learner's answer and raises `Failed` with a
concrete message on the first property it breaks. The right answer (`reference`) lives beside it, outside the
notebooks, and the tests prove each checker passes it and fails plausible wrong answers.

    from labkit.exercises import check
    check("causal_mask", my_causal_mask)   # ✓ causal_mask: passed — or ✗ with what went wrong and a hint
"""

from __future__ import annotations

import importlib
import pkgutil
import traceback
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["Exercise", "Failed", "Result", "exercise", "expect", "check", "exercises"]

Checker = Callable[[Callable[..., Any]], None]


class Failed(AssertionError):
    """Raised by a checker: the message says which property the answer broke, with the numbers."""


def expect(condition: bool, message: str) -> None:
    """Raise `Failed(message)` unless `condition` holds: one property of a right answer."""
    if not condition:
        raise Failed(message)


@dataclass(frozen=True)
class Exercise:
    """One exercise: what to write, a hint for when it fails, its checker and a right answer."""

    name: str
    notebook: str  # the notebook's number, "01"
    task: str
    hint: str
    checker: Checker
    reference: Callable[..., Any]


@dataclass(frozen=True)
class Result:
    """What `check` found; truthy when the answer passed."""

    name: str
    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return self.message

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """Nothing more in a notebook: `check` has already printed the verdict."""


_REGISTRY: dict[str, Exercise] = {}
_loaded = False


def exercise(name: str, notebook: str, task: str, hint: str,
             reference: Callable[..., Any]) -> Callable[[Checker], Checker]:
    """Register the decorated checker as exercise `name` of notebook `notebook`."""
    def register(checker: Checker) -> Checker:
        if name in _REGISTRY:
            raise ValueError(f"exercise {name!r} is registered twice")
        _REGISTRY[name] = Exercise(name, notebook, task, hint, checker, reference)
        return checker
    return register


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{module.name}")


def exercises(notebook: str | None = None) -> dict[str, Exercise]:
    """Every registered exercise by name, or only those of one notebook ("01")."""
    _load()
    return {n: e for n, e in _REGISTRY.items() if notebook is None or e.notebook == notebook}


def _where(err: BaseException) -> str:
    """The learner's line that raised, when the traceback reaches one (not labkit's own frames)."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if "labkit" not in f.filename.replace("\\", "/")]
    return f" (line {frames[-1].lineno}: {frames[-1].line})" if frames and frames[-1].line else ""


def check(name: str, answer: Callable[..., Any], *, quiet: bool = False) -> Result:
    """Run exercise `name`'s checker on `answer`, print ✓ or ✗ with what went wrong and a hint, return the Result."""
    known = exercises()
    if name not in known:
        raise KeyError(f"no exercise named {name!r}; the exercises are: {', '.join(sorted(known))}")
    if not callable(answer):
        raise TypeError(f"check({name!r}, answer) needs the function you wrote, got {type(answer).__name__}")
    ex = known[name]
    try:
        ex.checker(answer)
    except Failed as err:
        result = Result(name, False, f"✗ {name}: {err}\n  hint: {ex.hint}")
    except NotImplementedError:
        result = Result(name, False, f"✗ {name}: not written yet — replace the `raise NotImplementedError` line.\n"
                                     f"  task: {ex.task}")
    except Exception as err:  # the learner's code raised: say what and where, not a wall of traceback
        result = Result(name, False, f"✗ {name}: your function raised {type(err).__name__}: {err}{_where(err)}\n"
                                     f"  hint: {ex.hint}")
    else:
        result = Result(name, True, f"✓ {name}: passed")
    if not quiet:
        print(result.message)
    return result
