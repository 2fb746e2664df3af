"""Notebook 10's exercises: ALiBi's slopes and bias matrix, and the loss at each position of a window."""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from labkit.exercises import expect, exercise


def _is_tensor(value: Any, what: str) -> None:
    expect(isinstance(value, Tensor), f"{what} returned a {type(value).__name__}, not a tensor")


def reference_alibi_head_slopes(n_heads: int) -> Tensor:
    return 2.0 ** (-8.0 * torch.arange(1, n_heads + 1) / n_heads)


@exercise("alibi_head_slopes", "10",
          task="alibi_head_slopes(n_heads) → (n_heads,) float slopes 2^(-8/n), 2^(-16/n), …, 2^(-8) for a power "
               "of two n_heads",
          hint="head h = 1..n gets 2 ** (-8 * h / n): a geometric sequence from 2^(-8/n) down to 2^(-8) = 1/256",
          reference=reference_alibi_head_slopes)
def check_alibi_head_slopes(answer: Callable[[int], Any]) -> None:
    for n in (1, 4, 8, 16):
        slopes = answer(n)
        _is_tensor(slopes, f"alibi_head_slopes({n})")
        expect(slopes.shape == (n,), f"alibi_head_slopes({n}) has shape {tuple(slopes.shape)}, expected ({n},)")
        expect(slopes.dtype.is_floating_point, f"alibi_head_slopes({n}) has dtype {slopes.dtype}; slopes are "
                                               f"fractions, use a float tensor")
    slopes = answer(8).double()
    expected = reference_alibi_head_slopes(8).double()
    expect(bool((slopes > 0).all()), f"alibi_head_slopes(8) = {slopes.tolist()} has a slope <= 0; the slopes are "
                                     f"positive and the bias subtracts them")
    expect(not torch.allclose(slopes, expected.flip(0)), "the slopes are in reverse order: head 1 gets the steepest "
                                                         "slope, 2^(-8/n), and the last head the gentlest, 2^(-8)")
    ratios = slopes[1:] / slopes[:-1]
    expect(torch.allclose(ratios, ratios[0].expand_as(ratios), rtol=1e-4),
           f"alibi_head_slopes(8) = {[round(s, 5) for s in slopes.tolist()]} is not geometric: each slope must be "
           f"the previous one times the same ratio")
    worst = float((slopes - expected).abs().max())
    expect(worst <= 1e-6, f"alibi_head_slopes(8) starts at {slopes[0]:.5f} and ends at {slopes[-1]:.5f}, expected "
                          f"2^(-1) = 0.5 and 2^(-8) = {2 ** -8:.5f}")
    spread = answer(16).double()
    worst = float((spread - reference_alibi_head_slopes(16).double()).abs().max())
    expect(worst <= 1e-6, f"alibi_head_slopes(16) differs from 2^(-8h/16) by up to {worst:.3g}: the exponent "
                          f"divides by n_heads")


def reference_alibi_bias_from_slopes(slopes: Tensor, seq_len: int) -> Tensor:
    distance = (torch.arange(seq_len)[:, None] - torch.arange(seq_len)).abs()  # (seq, seq): |i - j|
    return -slopes[:, None, None] * distance


@exercise("alibi_bias_from_slopes", "10",
          task="alibi_bias_from_slopes(slopes, seq_len) → (heads, seq_len, seq_len): -slopes[h] · |i - j| for query "
               "i and key j",
          hint="build |i - j| as a (seq, seq) table from two aranges, then multiply by -slopes[:, None, None]",
          reference=reference_alibi_bias_from_slopes)
def check_alibi_bias_from_slopes(answer: Callable[[Tensor, int], Any]) -> None:
    slopes = torch.tensor([0.5, 0.25, 0.0625])
    bias = answer(slopes, 6)
    _is_tensor(bias, "alibi_bias_from_slopes(slopes, 6)")
    expect(bias.shape == (3, 6, 6), f"3 slopes and seq_len 6 gave shape {tuple(bias.shape)}, expected "
                                    f"(heads, seq, seq) = (3, 6, 6)")
    expected = reference_alibi_bias_from_slopes(slopes, 6)
    expect(bool(bias.diagonal(dim1=-2, dim2=-1).eq(0).all()), "the diagonal is not 0: a query at distance 0 from "
                                                              "its key gets no penalty")
    expect(not torch.allclose(bias, -expected), "the bias is positive: ALiBi subtracts slope · distance, so far "
                                                "keys score lower")
    below = torch.ones(6, 6, dtype=torch.bool).tril(-1)
    expect(torch.allclose(bias[:, below], expected[:, below]), "below the diagonal (keys before the query) the bias "
                                                               "is not -slope · (i - j)")
    expect(torch.allclose(bias, expected, atol=1e-6), "above the diagonal the bias is not -slope · (j - i): use the "
                                                      "absolute distance |i - j|, so that it is symmetric")


def reference_loss_per_position(logits: Tensor, targets: Tensor) -> Tensor:
    losses = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")  # (batch · seq,)
    return losses.view(targets.shape).mean(0)


@exercise("loss_per_position", "10",
          task="loss_per_position(logits, targets) → (seq,): the cross-entropy at each position, averaged over the "
               "batch, for logits (batch, seq, vocab) and targets (batch, seq)",
          hint="F.cross_entropy(..., reduction='none') on the flattened logits and targets gives one loss per token; "
               "reshape to (batch, seq) and average over dim 0 (the batch)",
          reference=reference_loss_per_position)
def check_loss_per_position(answer: Callable[[Tensor, Tensor], Any]) -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 7, 5, generator=gen) * 3
    targets = torch.randint(5, (4, 7), generator=gen)
    losses = answer(logits, targets)
    _is_tensor(losses, "loss_per_position(logits, targets)")
    expected = reference_loss_per_position(logits, targets)
    expect(losses.shape == (7,), f"logits (4, 7, 5) and targets (4, 7) gave shape {tuple(losses.shape)}, expected "
                                 f"(seq,) = (7,): average over the batch, keep the positions")
    per_token = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view(4, 7)
    expect(not torch.allclose(losses, per_token.sum(0)), "summed over the batch: take the mean instead")
    probs = logits.softmax(-1).gather(-1, targets[..., None])[..., 0]
    expect(not torch.allclose(losses, -probs.mean(0)), "used the probability of the target, not its log: the loss "
                                                       "is -log p")
    worst = float((losses - expected).abs().max())
    expect(worst <= 1e-5, f"differs from the mean cross-entropy at each position by up to {worst:.3g}")
