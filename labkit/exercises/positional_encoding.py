"""Notebook 02's exercises: the sinusoidal table from its formula, and RoPE's rotation of query/key pairs."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from labkit.exercises import expect, exercise
from labkit.exercises._compare import expect_tensor, max_difference, same
from labkit.positional import apply_rope, sinusoidal_table

BASE = 10000.0


def reference_sinusoidal_encoding(max_len: int, d_model: int) -> Tensor:
    return sinusoidal_table(max_len, d_model, BASE)


@exercise("sinusoidal_encoding", "02",
          task="sinusoidal_encoding(max_len, d_model) → the (max_len, d_model) table PE[pos, 2i] = sin(pos·ω_i), "
               "PE[pos, 2i+1] = cos(pos·ω_i), with ω_i = 10000^(−2i/d_model)",
          hint="omega = 10000 ** (-torch.arange(0, d_model, 2) / d_model) gives ω_i for every pair at once; "
               "fill pe[:, 0::2] with the sines and pe[:, 1::2] with the cosines",
          reference=reference_sinusoidal_encoding)
def check_sinusoidal_encoding(answer: Callable[[int, int], Any]) -> None:
    for max_len, d_model in ((7, 6), (50, 16)):
        pe = expect_tensor(answer(max_len, d_model), (max_len, d_model),
                           f"sinusoidal_encoding({max_len}, {d_model})")
        expect(pe.dtype.is_floating_point, f"sinusoidal_encoding({max_len}, {d_model}) has dtype {pe.dtype}; "
                                           f"sines and cosines need a floating-point tensor")
    pe = pe.double()
    expected = reference_sinusoidal_encoding(50, 16).double()
    pos = torch.arange(50, dtype=torch.float64)
    halves = torch.cat([torch.zeros(8), torch.ones(8)]).double()
    expect(not same(pe[0], 1 - expected[0], 1e-4), "position 0 reads 1, 0, 1, 0, …: sin and cos are swapped "
                                                   "(sin goes in the even dims 0, 2, …, cos in the odd ones)")
    expect(not same(pe[0], halves, 1e-4), "position 0 reads eight 0s then eight 1s: sines fill the first half and "
                                          "cosines the second; interleave them (dim 2i = sin, dim 2i+1 = cos)")
    expect(same(pe[0], expected[0], 1e-4), f"position 0 should be 0 in every even dim (sin 0) and 1 in every odd "
                                           f"dim (cos 0), got {[round(v, 3) for v in pe[0].tolist()]}")
    expect(same(pe[:, 0], pos.sin(), 1e-4), "dim 0 should be sin(pos): pair 0 turns at ω_0 = 10000^0 = 1")
    expect(not same(pe[:, 2], (pos * BASE ** (-1 / 16)).sin(), 1e-4),
           "pair i must turn at ω_i = 10000^(−2i/d_model); yours turns at 10000^(−i/d_model): the exponent uses the "
           "even dim's index 2i")
    worst = max_difference(pe, expected)
    expect(worst <= 1e-4, f"sinusoidal_encoding(50, 16) differs from the formula by up to {worst:.3g}")


def reference_rope_rotate(x: Tensor, positions: Tensor) -> Tensor:
    return apply_rope(x, positions, BASE)


def _rotate_half_layout(x: Tensor, positions: Tensor) -> Tensor:
    """RoPE with dim i paired with dim i + d/2 (Hugging Face's layout), to recognise that mix-up."""
    half = x.shape[-1] // 2
    angle = positions.double()[:, None] * BASE ** (-torch.arange(0, 2 * half, 2, dtype=torch.float64) / (2 * half))
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    first, second = x[..., :half], x[..., half:]
    return torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)


@exercise("rope_rotate", "02",
          task="rope_rotate(x, positions) → x (seq, d_head) with each pair (2i, 2i+1) of token t turned by the "
               "angle m·θ_i, where m = positions[t] and θ_i = 10000^(−2i/d_head)",
          hint="with x1, x2 = x[:, 0::2], x[:, 1::2] and angle = positions[:, None] * theta, the turned pair is "
               "(x1·cos − x2·sin, x1·sin + x2·cos); torch.stack(..., dim=-1).flatten(-2) puts the pairs back",
          reference=reference_rope_rotate)
def check_rope_rotate(answer: Callable[[Tensor, Tensor], Any]) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 8, generator=gen)
    positions = torch.arange(6)
    out = expect_tensor(answer(x.clone(), positions), (6, 8), "rope_rotate(x of shape (6, 8), positions 0..5)")
    norms, expected_norms = out.double().norm(dim=-1), x.double().norm(dim=-1)
    worst = int((norms - expected_norms).abs().argmax())
    expect(same(norms, expected_norms, 1e-4), f"a rotation keeps every vector's length, but token {worst}'s norm "
                                              f"went from {expected_norms[worst]:.4f} to {norms[worst]:.4f}")
    expect(same(out[0], x[0], 1e-5), "the token at position 0 changed: its angle is 0·θ_i = 0, so it must come out "
                                     "as it went in (did you forget to multiply by the position?)")
    expect(not same(out, reference_rope_rotate(x, -positions), 1e-5),
           "each pair turned by −m·θ_i, the wrong way: the first member becomes x1·cos − x2·sin, the second "
           "x1·sin + x2·cos")
    expect(not same(out, _rotate_half_layout(x, positions), 1e-5),
           "you paired dim i with dim i + d_head/2 (Hugging Face's rotate_half layout); this exercise, like "
           "notebook 02, pairs neighbours: (0, 1), (2, 3), …")
    worst_diff = max_difference(out, reference_rope_rotate(x, positions))
    expect(worst_diff <= 1e-5, f"differs from RoPE by up to {worst_diff:.3g}")
    shuffled = torch.tensor([3, 10, 4, 0, 7, 1])
    out = expect_tensor(answer(x.clone(), shuffled), (6, 8), "rope_rotate(x, positions [3, 10, 4, 0, 7, 1])")
    worst_diff = max_difference(out, reference_rope_rotate(x, shuffled))
    expect(worst_diff <= 1e-5, f"with positions [3, 10, 4, 0, 7, 1] it differs from RoPE by up to {worst_diff:.3g}: "
                               f"turn token t by positions[t], not by its index t")
