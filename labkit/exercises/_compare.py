"""What the checkers share: "is the answer a tensor of this shape", "does it equal that tensor", and inputs drawn
from a seed of their own, so that a check never moves the notebook's random state."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from labkit.exercises import expect

__all__ = ["expect_tensor", "same", "max_difference", "seeded", "seeded_randn"]


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Inside the block torch's global random state is seeded with `seed` (layers built there get the same weights
    every time); on exit the caller's random state, CUDA's included, is back as it was."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield


def seeded_randn(*shape: int, seed: int) -> Tensor:
    """A standard-normal tensor of `shape` drawn from a generator of its own seeded with `seed`."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def expect_tensor(value: Any, shape: tuple[int, ...], what: str) -> Tensor:
    """`value` if it is a tensor of `shape`; else `Failed` naming `what` (e.g. "split_heads(x, 3)")."""
    expect(isinstance(value, Tensor), f"{what} returned a {type(value).__name__}, not a tensor")
    expect(tuple(value.shape) == tuple(shape), f"{what} has shape {tuple(value.shape)}, expected {tuple(shape)}")
    return value


def max_difference(actual: Tensor, expected: Tensor) -> float:
    """The largest |actual - expected| (inf where one is -inf and the other is not, or on NaN)."""
    a, b = actual.detach().cpu().double(), expected.detach().cpu().double()
    both_inf = (a == b) & a.isinf()
    diff = (a - b).abs().masked_fill(both_inf, 0.0)
    return float(diff.nan_to_num(nan=float("inf")).max()) if diff.numel() else 0.0


def same(actual: Any, expected: Tensor, atol: float = 1e-5) -> bool:
    """True when `actual` is a tensor of `expected`'s shape within `atol` of it (equal infinities count as equal)."""
    return (isinstance(actual, Tensor) and actual.shape == expected.shape
            and max_difference(actual, expected) <= atol)
