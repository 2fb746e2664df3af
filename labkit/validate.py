"""Argument checks shared by labkit's modules, so that every module words the same mistake the same way."""

from __future__ import annotations

__all__ = ["require_positive_int"]


def require_positive_int(name: str, value: object) -> None:
    """Raise ValueError naming `name` unless `value` is an int ≥ 1 (bools are not sizes)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
