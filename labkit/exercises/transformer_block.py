"""Notebook 03's exercises: LayerNorm by hand, one pre-LN residual step, and a block's parameter count."""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.blocks import EncoderBlock, count_parameters
from labkit.exercises import expect, exercise
from labkit.exercises._compare import expect_tensor, max_difference, same


def reference_layer_norm(x: Tensor, gamma: Tensor, beta: Tensor, eps: float = 1e-5) -> Tensor:
    return F.layer_norm(x, x.shape[-1:], gamma, beta, eps)


def _layer_norm_inputs() -> tuple[Tensor, Tensor, Tensor]:
    """x (2, 4, 16) far from mean 0 / std 1, with one constant token and one of tiny variance; random γ and β."""
    gen = torch.Generator().manual_seed(0)
    x = 3 * torch.randn(2, 4, 16, generator=gen) + 5
    x[1, 2] = 7.0  # σ² = 0: only eps keeps the division finite
    x[1, 3] = 1e-3 * torch.randn(16, generator=gen)  # σ² ≈ 1e-6, below eps: where eps goes matters
    return x, torch.randn(16, generator=gen), torch.randn(16, generator=gen)


@exercise("layer_norm", "03",
          task="layer_norm(x, gamma, beta, eps=1e-5) → γ ⊙ (x − μ) / √(σ² + ε) + β, with μ and σ² the mean and "
               "variance of each token's features (the last dim), as nn.LayerNorm computes",
          hint="mean and var over dim=-1 with keepdim=True; var(unbiased=False) divides by d, as LayerNorm does; "
               "eps goes inside the square root",
          reference=reference_layer_norm)
def check_layer_norm(answer: Callable[..., Any]) -> None:
    x, gamma, beta = _layer_norm_inputs()
    out = expect_tensor(answer(x.clone(), gamma, beta), tuple(x.shape), "layer_norm(x of shape (2, 4, 16), γ, β)")
    expect(bool(out.isfinite().all()), "NaN or inf for a token whose features are all equal (σ² = 0): "
                                       "add eps to the variance inside the square root")
    mean = x.mean(-1, keepdim=True)
    unbiased = gamma * (x - mean) / (x.var(-1, keepdim=True, unbiased=True) + 1e-5).sqrt() + beta
    expect(not same(out, unbiased, 1e-4), "you used the unbiased variance (divided by d − 1); LayerNorm divides by "
                                          "d: var(unbiased=False)")
    eps_outside = gamma * (x - mean) / (x.var(-1, keepdim=True, unbiased=False).sqrt() + 1e-5) + beta
    expect(not same(out, eps_outside, 1e-4), "eps was added to the standard deviation; it goes inside the square "
                                             "root: √(σ² + ε)")
    expect(not same(out, reference_layer_norm(x, torch.ones(16), torch.zeros(16)), 1e-4),
           "γ and β are not applied: multiply by gamma, then add beta")
    normalised = (out - beta) / gamma
    per_token = normalised[0].mean(-1).abs().max()
    expect(per_token < 1e-3, f"each token must be normalised over its own features (the last dim), but a token's "
                             f"mean after removing γ and β is {per_token:.3g}, not 0")
    worst = max_difference(out, reference_layer_norm(x, gamma, beta))
    expect(worst <= 1e-4, f"differs from F.layer_norm by up to {worst:.3g}")


def reference_pre_ln_step(x: Tensor, sublayer: Callable[[Tensor], Tensor], norm: nn.Module) -> Tensor:
    return x + sublayer(norm(x))


@exercise("pre_ln_step", "03",
          task="pre_ln_step(x, sublayer, norm) → one pre-LN residual step on x (batch, seq, d_model): the sublayer "
               "reads the normalised x, and its output is added to x itself",
          hint="pre-LN is x + sublayer(norm(x)); post-LN would be norm(x + sublayer(x))",
          reference=reference_pre_ln_step)
def check_pre_ln_step(answer: Callable[..., Any]) -> None:
    gen = torch.Generator().manual_seed(0)
    d = 8
    sublayer, norm = nn.Linear(d, d), nn.LayerNorm(d)
    with torch.no_grad():
        for p in (*sublayer.parameters(), *norm.parameters()):
            p.copy_(torch.randn(p.shape, generator=gen))
        x = 2 * torch.randn(2, 5, d, generator=gen) + 1
        out = expect_tensor(answer(x.clone(), sublayer, norm), tuple(x.shape),
                            "pre_ln_step(x of shape (2, 5, 8), sublayer, norm)")
        wrong = {
            "this is post-LN, norm(x + sublayer(x)): in pre-LN the norm sits on the sublayer's input, and the "
            "residual path is left alone": norm(x + sublayer(x)),
            "the residual connection is missing: add x back, x + sublayer(norm(x))": sublayer(norm(x)),
            "the norm went on the sublayer's output; it goes on its input: x + sublayer(norm(x))":
                x + norm(sublayer(x)),
            "the residual adds the normalised x; it adds x itself, untouched: x + sublayer(norm(x))":
                norm(x) + sublayer(norm(x)),
        }
        for message, value in wrong.items():
            expect(not same(out, value, 1e-4), message)
        worst = max_difference(out, reference_pre_ln_step(x, sublayer, norm))
    expect(worst <= 1e-4, f"differs from x + sublayer(norm(x)) by up to {worst:.3g}")


def reference_block_parameter_count(d_model: int, n_heads: int, d_ff: int) -> int:
    return sum(count_parameters(EncoderBlock(d_model, n_heads, d_ff)).values())


@exercise("block_parameter_count", "03",
          task="block_parameter_count(d_model, n_heads, d_ff) → the number of parameters of one encoder block "
               "(attention with W_Q, W_K, W_V, W_O, the feed-forward network, two LayerNorms; biases everywhere)",
          hint="attention 4·d² + 4·d (four d×d matrices and their biases), feed-forward 2·d·d_ff + d_ff + d, "
               "each LayerNorm 2·d (γ and β); the number of heads changes nothing",
          reference=reference_block_parameter_count)
def check_block_parameter_count(answer: Callable[[int, int, int], Any]) -> None:
    counts = {}
    for args in ((64, 4, 256), (32, 2, 64), (32, 8, 64)):
        value = answer(*args)
        expect(isinstance(value, int) or (isinstance(value, Tensor) and value.numel() == 1
                                          and not value.dtype.is_floating_point),
               f"block_parameter_count{args} returned {value!r}; expected a whole number (an int)")
        counts[args] = int(value)
    two, eight = counts[(32, 2, 64)], counts[(32, 8, 64)]
    expect(two == eight, f"the count changed with the number of heads ({two:,} for 2 heads, {eight:,} for 8): the "
                         f"heads split d_model between them, they add no weights")
    for (d, h, d_ff), count in counts.items():
        expected = reference_block_parameter_count(d, h, d_ff)
        what = f"block_parameter_count({d}, {h}, {d_ff}) = {count:,}"
        wrong = {
            "forgot the biases (4·d of attention, d_ff + d of the feed-forward network)":
                4 * d * d + 2 * d * d_ff + 4 * d,
            "forgot the biases and the LayerNorms": 4 * d * d + 2 * d * d_ff,
            "forgot the LayerNorms: two per block, 2·d each (γ and β)": expected - 4 * d,
            "counted one LayerNorm; a block has two (after attention and after the feed-forward network)":
                expected - 2 * d,
        }
        for message, value in wrong.items():
            expect(count != value, f"{what}: {message}")
        expect(count == expected, f"{what}, expected {expected:,}")
