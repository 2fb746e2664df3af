"""The notebooks' exercises: the learner writes a function or a module, `check` tries it and says pass or fail.

Each notebook's exercises live in their own module here (`labkit/exercises/<topic>.py`); every public module in
this package is loaded on first use, so adding a file is enough to add exercises. A module registers one exercise
per function with `@exercise(...)`: the decorated function receives the learner's answer and raises `Failed` with a
concrete message on the first property it breaks. The right answer (`reference`) lives beside it, outside the
notebooks, and the tests prove each checker passes it and refuses plausible wrong answers.

    from labkit.exercises import check, use, solution, progress
    check("causal_mask", my_causal_mask)        # ✓ causal_mask: passed — or ✗ with what went wrong and a hint
    causal_mask = use("causal_mask", causal_mask)  # yours once it passes, else the reference (the notebook goes on)
    solution("causal_mask")                     # print the reference answer and return it
    progress()                                  # what you have passed, per notebook (kept across restarts)

Passing an exercise is recorded in a small JSON file outside the repository (`labkit.exercises._progress`);
`python -m labkit.exercises` (or `python3 lab.py progress`) prints the same table as `progress()`.
"""

from __future__ import annotations

import html
import importlib
import inspect
import pkgutil
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from labkit.exercises._progress import passed_exercises, record_pass

__all__ = ["Exercise", "Failed", "Result", "Progress", "exercise", "expect", "check", "use", "solution", "exercises",
           "progress"]

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
            if not module.name.startswith("_"):  # _compare, _progress and __main__ hold no exercises
                importlib.import_module(f"{__name__}.{module.name}")


def exercises(notebook: str | None = None) -> dict[str, Exercise]:
    """Every registered exercise by name, or only those of one notebook ("01")."""
    _load()
    return {n: e for n, e in _REGISTRY.items() if notebook is None or e.notebook == notebook}


def _where(err: BaseException) -> str:
    """The learner's line that raised, when the traceback reaches one (not labkit's own frames)."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if "labkit" not in f.filename.replace("\\", "/")]
    return f" (line {frames[-1].lineno}: {frames[-1].line})" if frames and frames[-1].line else ""


def _exercise(name: str) -> Exercise:
    known = exercises()
    if name not in known:
        raise KeyError(f"no exercise named {name!r}; the exercises are: {', '.join(sorted(known))}")
    return known[name]


def check(name: str, answer: Callable[..., Any], *, quiet: bool = False) -> Result:
    """Run exercise `name`'s checker on `answer`, print ✓ or ✗ with what went wrong and a hint, return the Result.
    A pass is recorded in the progress file (see `progress`)."""
    ex = _exercise(name)
    if not callable(answer):
        raise TypeError(f"check({name!r}, answer) needs the function you wrote, got {type(answer).__name__}")
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
        record_pass(name)
    if not quiet:
        print(result.message)
    return result


def use(name: str, answer: Callable[..., Any]) -> Callable[..., Any]:
    """`check` the answer; return it if it passed, else say so and return the reference answer, so that the cells
    below run either way (on the learner's code once it is right)."""
    if check(name, answer):
        return answer
    print(f"  → the cells below use the reference answer until yours passes; solution({name!r}) shows it")
    return _exercise(name).reference


def solution(name: str) -> Callable[..., Any]:
    """Print exercise `name`'s reference answer (its source) and return it, to use in place of your own."""
    reference = _exercise(name).reference
    try:
        print(inspect.getsource(reference))
    except (OSError, TypeError):
        print(f"the reference for {name!r} is {reference!r}")
    return reference


@dataclass(frozen=True)
class Progress:
    """Which exercises have passed, per notebook: {notebook: (passed names, all names)}. Prints as a table in a
    terminal, draws as one in a notebook; for a single notebook, one line."""

    notebooks: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]

    def _line(self, notebook: str) -> str:
        done, names = self.notebooks[notebook]
        todo = [n for n in names if n not in done]
        rest = f"; to do: {', '.join(todo)}" if todo else " — all done"
        return f"notebook {notebook}: {len(done)} of {len(names)} exercises passed{rest}"

    def __str__(self) -> str:
        if len(self.notebooks) == 1:
            return self._line(next(iter(self.notebooks)))
        lines = [f"{'notebook':>8}  {'passed':>9}  to do"]
        for notebook, (done, names) in self.notebooks.items():
            todo = ", ".join(n for n in names if n not in done) or "all done"
            lines.append(f"{notebook:>8}  {len(done):>4} / {len(names):<2}  {todo}")
        total = sum(len(d) for d, _ in self.notebooks.values()), sum(len(n) for _, n in self.notebooks.values())
        lines.append(f"{'all':>8}  {total[0]:>4} / {total[1]:<2}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{nb}</td><td>{len(done)} / {len(names)}</td><td>"
            + ", ".join(f"{'✓' if n in done else '○'} {html.escape(n)}" for n in names) + "</td></tr>"
            for nb, (done, names) in self.notebooks.items())
        return (f"<table><tr><th>notebook</th><th>passed</th><th>exercises (✓ passed, ○ to do)</th></tr>{rows}"
                f"</table>")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


def progress(notebook: str | None = None) -> Progress:
    """What you have passed, per notebook (or for one, "04"), read from the progress file."""
    done = passed_exercises()
    known = exercises(notebook)
    if notebook is not None and not known:
        raise ValueError(f"notebook {notebook!r} has no exercises; the notebooks with exercises are "
                         f"{', '.join(sorted({e.notebook for e in exercises().values()}))}")
    by_notebook: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    for nb in sorted({e.notebook for e in known.values()}):
        names = tuple(n for n, e in known.items() if e.notebook == nb)
        by_notebook[nb] = (tuple(n for n in names if n in done), names)
    return Progress(by_notebook)
