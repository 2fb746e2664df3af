"""Notebook 10's exercises: ALiBi's slopes and bias matrix, evaluation windows longer than the training context,
the loss at each position of a window, the extrapolation ratio, and the trailing mean that smooths a loss curve."""

from __future__ import annotations

import math
import numbers
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


def reference_windows_longer_than_context(ids: Tensor, block_size: int, factor: int,
                                          starts: Tensor) -> tuple[Tensor, Tensor]:
    length = factor * block_size  # the evaluation window: factor times the training context
    offsets = starts[:, None] + torch.arange(length)  # (batch, length)
    return ids[offsets], ids[offsets + 1]


@exercise("windows_longer_than_context", "10",
          task="windows_longer_than_context(ids, block_size, factor, starts) → (x, y), each (batch, factor · "
               "block_size): row b of x is ids[s : s + L] at s = starts[b], L = factor · block_size, and y the same "
               "window one token later",
          hint="L = factor * block_size; offsets = starts[:, None] + torch.arange(L) is (batch, L); x = ids[offsets] "
               "and y = ids[offsets + 1]",
          reference=reference_windows_longer_than_context)
def check_windows_longer_than_context(answer: Callable[[Tensor, int, int, Tensor], Any]) -> None:
    ids = torch.arange(100, 164)  # token id = 100 + its index, so a wrong window shows where it was cut
    block_size, factor, starts = 4, 3, torch.tensor([0, 9, 30, 47])
    result = answer(ids.clone(), block_size, factor, starts.clone())
    expect(isinstance(result, (tuple, list)) and len(result) == 2,
           f"windows_longer_than_context returned {type(result).__name__}; expected a pair (x, y)")
    what = "windows_longer_than_context(ids, block_size=4, factor=3, starts=[0, 9, 30, 47])"
    x, y = result
    _is_tensor(x, f"x of {what}")
    _is_tensor(y, f"y of {what}")
    expect(tuple(x.shape) != (4, block_size), f"x has shape {tuple(x.shape)}: windows of block_size = 4 tokens; the "
                                              f"evaluation windows are factor × block_size = 3 × 4 = 12 tokens long")
    expect(tuple(x.shape) != (4, factor * block_size + 1),
           f"x has shape {tuple(x.shape)}: 13 tokens per window, one too many; x holds L = 12 tokens and y the 12 "
           f"that follow them")
    expected_x, expected_y = reference_windows_longer_than_context(ids, block_size, factor, starts)
    expect(tuple(x.shape) == (4, 12) and tuple(y.shape) == (4, 12),
           f"x and y have shapes {tuple(x.shape)} and {tuple(y.shape)}, expected (len(starts), factor × block_size) "
           f"= (4, 12)")
    expect(x.dtype == ids.dtype, f"x has dtype {x.dtype}; keep the ids' dtype ({ids.dtype}): they are token ids")
    expect(not torch.equal(x, expected_y), "x starts one token late, at starts[b] + 1: x is the window from "
                                           "ids[starts[b]] (did you return (y, x)?)")
    expect(torch.equal(x[:, 0], expected_x[:, 0]),
           f"x's windows start at positions {[i - 100 for i in x[:, 0].tolist()]} of ids, expected the starts "
           f"{starts.tolist()}: cut window b at starts[b]")
    expect(torch.equal(x, expected_x), f"x[1] should be ids[9:21] = {expected_x[1].tolist()}, got {x[1].tolist()}")
    expect(not torch.equal(y, x), "y equals x: the target at position t is the next token, ids[s + t + 1]")
    expect(not torch.equal(y[:, 1:], x[:, :-1]), "y is shifted the wrong way, one token back; it is one token ahead "
                                                 "of x")
    expect(torch.equal(y, expected_y), f"y[1] should be ids[10:22] = {expected_y[1].tolist()}, got {y[1].tolist()}")


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


def _number(value: Any, what: str) -> float:
    expect(isinstance(value, numbers.Real) or (isinstance(value, Tensor) and value.numel() == 1),
           f"{what} returned {type(value).__name__}"
           f"{' of shape ' + str(tuple(value.shape)) if isinstance(value, Tensor) else ''}; expected one number")
    return float(value)


def reference_extrapolation_ratio(per_position: Tensor, block_size: int) -> float:
    within = per_position[:block_size].mean()  # positions 0..block_size-1: seen in training
    beyond = per_position[block_size:].mean()  # positions block_size..: never seen
    return float(beyond / within)


@exercise("extrapolation_ratio", "10",
          task="extrapolation_ratio(per_position, block_size) → a float: the mean loss at positions past the "
               "training context (block_size and on) divided by the mean loss at positions 0..block_size-1, from a "
               "loss-by-position curve (seq,)",
          hint="per_position[block_size:].mean() / per_position[:block_size].mean(), as a float: above 1 means "
               "worse past the context",
          reference=reference_extrapolation_ratio)
def check_extrapolation_ratio(answer: Callable[[Tensor, int], Any]) -> None:
    curve = torch.tensor([3.0, 2.2, 1.9, 1.8, 4.0, 2.0, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6])  # block_size 4, 3× windows
    block_size = 4
    value = _number(answer(curve.clone(), block_size), "extrapolation_ratio(curve of 12 losses, block_size=4)")
    expected = reference_extrapolation_ratio(curve, block_size)
    within, beyond = float(curve[:4].mean()), float(curve[4:].mean())
    mistakes = [
        (within / beyond, f"the ratio is upside down: within / beyond = {within:.4f} / {beyond:.4f}; divide the loss "
                          f"past the context by the loss within it"),
        (beyond - within, f"returned the difference beyond − within = {beyond - within:.4f}; return their ratio"),
        (float(curve.mean()) / within, "the numerator is the mean over the whole curve; take positions block_size "
                                       "and on only, those past the context"),
        (float(curve[4:].sum() / curve[:4].sum()), "summed the losses: 8 positions lie beyond and 4 within, so the "
                                                   "sums' ratio is twice too large; take the means"),
        (float(curve[5:].mean()) / float(curve[:5].mean()), "position block_size = 4 counted within the context: "
                                                           "positions 0..3 are within, 4..11 beyond"),
        (float(curve[5:].mean()) / within, "position block_size = 4 left out: it is the first position beyond the "
                                           "context (positions 0..3 are within)"),
        (float(curve[3:].mean() / curve[:3].mean()), "position 3 counted beyond the context: the context holds "
                                                     "positions 0..block_size-1 = 0..3"),
    ]
    for wrong, message in mistakes:
        expect(not (math.isclose(value, wrong, rel_tol=1e-5) and not math.isclose(value, expected, rel_tol=1e-5)),
               message)
    expect(math.isclose(value, expected, rel_tol=1e-5),
           f"extrapolation_ratio(curve, 4) = {value:.4f}, expected {beyond:.4f} / {within:.4f} = {expected:.4f}")
    other = torch.linspace(3.0, 1.5, 9)
    value = _number(answer(other.clone(), 3), "extrapolation_ratio(curve of 9 losses, block_size=3)")
    expected = reference_extrapolation_ratio(other, 3)
    expect(math.isclose(value, expected, rel_tol=1e-5),
           f"extrapolation_ratio(curve of 9 losses, block_size=3) = {value:.4f}, expected {expected:.4f}: split the "
           f"curve at block_size, not at a fixed position")


def reference_trailing_mean_curve(values: Tensor, k: int) -> Tensor:
    # position i: the mean of values[i - k + 1 .. i], fewer at the start where there are fewer before it
    return torch.stack([values[max(0, i - k + 1):i + 1].mean() for i in range(len(values))])


@exercise("trailing_mean_curve", "10",
          task="trailing_mean_curve(values, k) → (n,) for values (n,): position i holds the mean of values[i - k + "
               "1 .. i], the value and the k − 1 before it (fewer at the start)",
          hint="for each i, values[max(0, i - k + 1) : i + 1].mean(); stack the n means into one tensor",
          reference=reference_trailing_mean_curve)
def check_trailing_mean_curve(answer: Callable[[Tensor, int], Any]) -> None:
    values = torch.tensor([4.0, 1.0, 7.0, 2.0, 8.0, 3.0, 9.0, 5.0, 6.0, 0.0])
    what = "trailing_mean_curve(values of 10, k=3)"
    out = answer(values.clone(), 3)
    _is_tensor(out, what)
    expect(tuple(out.shape) != (8,), f"{what} has shape (8,): you kept only the full windows; keep one value per "
                                     f"position and average the fewer values there are at the start")
    expect(tuple(out.shape) == (10,), f"{what} has shape {tuple(out.shape)}, expected (10,): one mean per position")
    expected = reference_trailing_mean_curve(values, 3)
    changed = values.clone()
    changed[5:] += 10.0
    later = answer(changed, 3)
    expect(torch.allclose(later[:5].double(), out[:5].double()),
           "positions 0..4 change when only values 5..9 change: a trailing mean looks back, values[i - k + 1 .. i], "
           "never ahead")
    expect(not math.isclose(float(out[0]), 4.0 / 3, rel_tol=1e-5),
           f"position 0 is {float(out[0]):.4f} = 4 / 3: divided by k = 3 though only one value is there; at the "
           f"start average the values there are")
    expect(not torch.allclose(out.double(), values.cumsum(0).double() / torch.arange(1, 11)),
           "position 9 averages all 10 values, a running mean: use only the last k = 3")
    wider = reference_trailing_mean_curve(values, 4)
    expect(not torch.allclose(out.double(), wider.double()), "each position averages k + 1 = 4 values; the window "
                                                             "is the value and the k − 1 = 2 before it")
    worst = float((out.double() - expected.double()).abs().max())
    expect(worst <= 1e-5, f"{what} differs from the trailing means {[round(v, 3) for v in expected.tolist()]} by "
                          f"up to {worst:.3g}")
    expect(torch.allclose(answer(values.clone(), 1).double(), values.double()),
           "with k = 1 each position should keep its own value")
