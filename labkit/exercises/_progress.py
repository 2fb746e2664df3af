"""Which exercises the learner has passed, kept across kernel restarts in a small JSON file outside the repository.

The file is `$LABKIT_PROGRESS` when set, else `progress.json` in the user's data directory (platformdirs: e.g.
~/.local/share/labkit on Linux). It maps exercise names to the time they were first passed. A file that cannot be
read as such is reported, set aside as `progress.json.corrupt`, and started again: never a crash.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import platformdirs

__all__ = ["progress_path", "passed_exercises", "record_pass"]


def progress_path() -> Path:
    """Where the progress file lives: $LABKIT_PROGRESS, else progress.json in the user's data directory."""
    override = os.environ.get("LABKIT_PROGRESS")
    return Path(override) if override else Path(platformdirs.user_data_dir("labkit")) / "progress.json"


def passed_exercises() -> dict[str, str]:
    """{exercise name: when it was first passed (ISO time)}; {} when nothing is recorded yet."""
    path = progress_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return _replace_corrupt(path, f"{type(err).__name__}: {err}")
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        return _replace_corrupt(path, "it is not a JSON object of exercise names and times")
    return data


def record_pass(name: str) -> None:
    """Note that exercise `name` passed (the first time counts); a file that cannot be written is reported once."""
    done = passed_exercises()
    if name in done:
        return
    done[name] = time.strftime("%Y-%m-%dT%H:%M:%S")
    try:
        _write(progress_path(), done)
    except OSError as err:
        print(f"(your progress could not be saved to {progress_path()}: {err}; set LABKIT_PROGRESS to a file you "
              f"can write)")


def _write(path: Path, done: dict[str, str]) -> None:
    """Write atomically: a temporary file beside it, then a rename, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".progress-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(done, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _replace_corrupt(path: Path, why: str) -> dict[str, str]:
    kept = path.with_name(path.name + ".corrupt")
    try:
        os.replace(path, kept)
        where = f"it is kept as {kept}"
    except OSError:
        where = "it could not be moved aside"
    print(f"your progress file {path} could not be read ({why}); {where}, and a new one is started")
    return {}
