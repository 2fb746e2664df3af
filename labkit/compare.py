"""Numeric checks the notebooks print: "ours equals the reference, and by how much"."""

from __future__ import annotations

from torch import Tensor

__all__ = ["assert_close"]


def assert_close(name: str, actual: Tensor, expected: Tensor, atol: float = 1e-5) -> None:
    """Print the largest absolute difference between two tensors; raise AssertionError if it exceeds `atol`."""
    if actual.shape != expected.shape:
        raise AssertionError(f"{name}: shapes differ: {tuple(actual.shape)} vs {tuple(expected.shape)}")
    diff = (actual.detach().cpu().double() - expected.detach().cpu().double()).abs()
    worst = float(diff.max()) if diff.numel() else 0.0
    if not worst <= atol:  # `not <=` also catches NaN
        raise AssertionError(f"{name}: max |difference| = {worst:.3g} exceeds the tolerance {atol:g}")
    print(f"✓ {name}: max |difference| = {worst:.1e} (tolerance {atol:g})")
