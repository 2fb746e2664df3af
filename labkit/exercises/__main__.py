"""`python -m labkit.exercises`: the table of exercises passed per notebook, as `progress()` shows it."""

from labkit.exercises import progress
from labkit.exercises._progress import progress_path

print(progress())
print(f"(kept in {progress_path()})")
