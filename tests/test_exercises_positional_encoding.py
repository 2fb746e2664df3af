"""Notebook 02's checkers: a right answer written by hand passes, and each plausible mistake gets its own message."""

from __future__ import annotations

import pytest
import torch

from labkit.exercises import check


def _table(max_len: int, d_model: int, exponent=lambda i, d: 2 * i / d, layout: str = "interleaved") -> torch.Tensor:
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]
    omega = 10000.0 ** (-exponent(torch.arange(d_model // 2, dtype=torch.float64), d_model))
    sin, cos = (pos * omega).sin(), (pos * omega).cos()
    if layout == "halves":
        return torch.cat([sin, cos], dim=-1)
    first, second = (cos, sin) if layout == "swapped" else (sin, cos)
    return torch.stack([first, second], dim=-1).flatten(-2)


def test_sinusoidal_encoding_written_by_hand_passes() -> None:
    assert check("sinusoidal_encoding", _table, quiet=True)


@pytest.mark.parametrize("wrong, message", [
    (lambda n, d: _table(n, d, layout="swapped"), "sin and cos are swapped"),
    (lambda n, d: _table(n, d, layout="halves"), "sines fill the first half"),
    (lambda n, d: _table(n, d, exponent=lambda i, d: i / d), "the exponent uses the even dim's index 2i"),
    (lambda n, d: _table(n, d, exponent=lambda i, d: 2 * i / (d + 2)), "differs from the formula by up to"),
    (lambda n, d: _table(n, d).int(), "has dtype torch.int32"),
    (lambda n, d: _table(n, d)[:, : d // 2], "has shape (7, 3), expected (7, 6)"),
])
def test_sinusoidal_encoding_checker_fails_plausible_mistakes(wrong, message: str) -> None:
    result = check("sinusoidal_encoding", wrong, quiet=True)
    assert not result and message in result.message, result.message


def _rope(x: torch.Tensor, positions: torch.Tensor, sign: float = 1.0, exponent: float = 2.0,
          by_index: bool = False, scale_angle: bool = True) -> torch.Tensor:
    d = x.shape[-1]
    theta = 10000.0 ** (-exponent * torch.arange(d // 2) / d)
    where = torch.arange(len(positions)) if by_index else positions
    angle = sign * (where[:, None] * theta if scale_angle else theta.expand(len(positions), -1))
    x1, x2 = x[:, 0::2], x[:, 1::2]
    return torch.stack([x1 * angle.cos() - x2 * angle.sin(), x1 * angle.sin() + x2 * angle.cos()], -1).flatten(-2)


def _rope_rotate_half(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    d = x.shape[-1]
    angle = positions[:, None] * 10000.0 ** (-2 * torch.arange(d // 2) / d)
    x1, x2 = x[:, : d // 2], x[:, d // 2:]
    return torch.cat([x1 * angle.cos() - x2 * angle.sin(), x1 * angle.sin() + x2 * angle.cos()], -1)


def _rope_typo(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """x1 where x2 belongs in the second member of each pair."""
    angle = positions[:, None] * 10000.0 ** (-2 * torch.arange(x.shape[-1] // 2) / x.shape[-1])
    x1, x2 = x[:, 0::2], x[:, 1::2]
    return torch.stack([x1 * angle.cos() - x2 * angle.sin(), x1 * angle.sin() + x1 * angle.cos()], -1).flatten(-2)


def test_rope_rotate_written_by_hand_passes() -> None:
    assert check("rope_rotate", _rope, quiet=True)


@pytest.mark.parametrize("wrong, message", [
    (lambda x, p: _rope(x, p, scale_angle=False), "did you forget to multiply by the position?"),
    (lambda x, p: _rope(x, p, sign=-1.0), "turned by −m·θ_i, the wrong way"),
    (_rope_rotate_half, "Hugging Face's rotate_half layout"),
    (lambda x, p: _rope(x, p, exponent=1.0), "differs from RoPE by up to"),
    (lambda x, p: _rope(x, p, by_index=True), "turn token t by positions[t], not by its index t"),
    (_rope_typo, "a rotation keeps every vector's length"),
])
def test_rope_rotate_checker_fails_plausible_mistakes(wrong, message: str) -> None:
    result = check("rope_rotate", wrong, quiet=True)
    assert not result and message in result.message, result.message
