"""Notebook 10's exercises: each checker passes its reference, agrees with labkit, and names the mistake in
plausible wrong answers (WRONG_ANSWERS, run by tests/test_exercises.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from labkit.corpus import random_batch
from labkit.exercises import check, exercises
from labkit.loop import trailing_mean
from labkit.positional import alibi_bias, alibi_slopes
from labkit.positional_workbench import mean_loss_up_to

NAMES = ["alibi_head_slopes", "alibi_bias_from_slopes", "windows_longer_than_context", "loss_per_position",
         "extrapolation_ratio", "trailing_mean_curve"]


def test_notebook_10_has_its_six_exercises_in_reading_order() -> None:
    assert list(exercises("10")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_the_reference_passes(name: str) -> None:
    result = check(name, exercises("10")[name].reference, quiet=True)
    assert result, result.message


def test_the_references_agree_with_labkit() -> None:
    ex = {name: e.reference for name, e in exercises("10").items()}
    for n in (1, 2, 4, 8, 16):
        assert torch.allclose(ex["alibi_head_slopes"](n), alibi_slopes(n))
    assert torch.equal(ex["alibi_bias_from_slopes"](alibi_slopes(4), 9), alibi_bias(4, 9))

    # the windows corpus.batch draws: the same starts from the same generator, then the same cut
    ids = torch.randint(65, (500,), generator=torch.Generator().manual_seed(1))
    block_size, factor = 8, 4
    starts = torch.randint(len(ids) - factor * block_size, (16,), generator=torch.Generator().manual_seed(0))
    x, y = ex["windows_longer_than_context"](ids, block_size, factor, starts)
    lab_x, lab_y = random_batch(ids, 16, factor * block_size, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, lab_x) and torch.equal(y, lab_y)

    # the ratio from labkit's mean_loss_up_to: the mean past the context from the means up to 4T and up to T
    curve = torch.rand(32, generator=torch.Generator().manual_seed(2)) + 1.5
    within, whole = mean_loss_up_to(curve, 8), mean_loss_up_to(curve, 32)
    assert math.isclose(ex["extrapolation_ratio"](curve, 8), (32 * whole - 8 * within) / 24 / within, rel_tol=1e-5)

    # the trailing mean the workbench figure draws, also on a learned curve (nan past its table)
    for k in (1, 3, 4, 8):
        for values in (curve.tolist(), curve.tolist()[:8] + [math.nan] * 24):
            ours = ex["trailing_mean_curve"](torch.tensor(values, dtype=torch.float64), k).numpy()
            assert np.allclose(ours, trailing_mean(values, k), equal_nan=True)


def test_labkit_passes_where_it_applies() -> None:
    assert check("alibi_head_slopes", alibi_slopes, quiet=True)  # powers of two: the same slopes
    assert check("windows_longer_than_context", lambda ids, b, f, s: _cut(ids, f * b, s), quiet=True)
    assert check("trailing_mean_curve", lambda v, k: torch.from_numpy(trailing_mean(v.tolist(), k)), quiet=True)


def test_other_right_answers_pass() -> None:
    def cumsum_trailing_mean(values: torch.Tensor, k: int) -> torch.Tensor:
        sums = torch.cat([values.new_zeros(1), values.cumsum(0)])
        i = torch.arange(len(values))
        lo = (i - k + 1).clamp(min=0)
        return (sums[i + 1] - sums[lo]) / (i + 1 - lo)

    assert check("trailing_mean_curve", cumsum_trailing_mean, quiet=True)
    assert check("extrapolation_ratio", lambda c, b: (c[b:].mean() / c[:b].mean()).item(), quiet=True)
    assert check("extrapolation_ratio", lambda c, b: c[b:].mean() / c[:b].mean(), quiet=True)  # a 0-d tensor
    assert check("windows_longer_than_context",
                 lambda ids, b, f, s: (torch.stack([ids[i:i + f * b] for i in s.tolist()]),
                                       torch.stack([ids[i + 1:i + 1 + f * b] for i in s.tolist()])), quiet=True)


def test_an_unwritten_stub_says_so() -> None:
    def loss_per_position(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # your code here

    assert "not written yet" in check("loss_per_position", loss_per_position, quiet=True).message


# --- plausible wrong answers --------------------------------------------------------------------------------------

def _distance(n: int) -> torch.Tensor:
    return torch.arange(n)[:, None] - torch.arange(n)  # i - j


def _cut(ids: torch.Tensor, length: int, starts: torch.Tensor, shift: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows of `length` at `starts`, and the targets `shift` tokens later."""
    offsets = starts[:, None] + torch.arange(length)
    return ids[offsets], ids[(offsets + shift).clamp(min=0)]


def _per_token(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view(targets.shape)


def _windowed(values: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Position i: the mean of values[i + lo .. i + hi] that exist."""
    n = len(values)
    return torch.stack([values[max(0, i + lo):min(n, i + hi + 1)].mean() for i in range(n)])


WRONG_ANSWERS = {
    "alibi_head_slopes": [
        (lambda n: 2.0 ** (-8.0 * torch.arange(n, 0, -1) / n), "reverse order"),
        (lambda n: 2.0 ** (-8.0 * torch.arange(1, n + 1)), "starts at 0.00391"),
        (lambda n: 2.0 ** (-torch.arange(1, n + 1) / n), "expected 2^(-1) = 0.5"),
        (lambda n: 2.0 ** (-1.0 * torch.arange(1, n + 1)), "the exponent divides by n_heads"),
        (lambda n: -(2.0 ** (-8.0 * torch.arange(1, n + 1) / n)), "has a slope <= 0"),
        (lambda n: 1.0 / (8.0 * torch.arange(1, n + 1) / n), "is not geometric"),
        (lambda n: torch.arange(1, n + 1), "use a float tensor"),
        (lambda n: [2.0 ** (-8 * h / n) for h in range(1, n + 1)], "returned a list"),
    ],
    "alibi_bias_from_slopes": [
        (lambda s, n: s[:, None, None] * _distance(n).abs(), "the bias is positive"),
        (lambda s, n: -s[:, None, None] * _distance(n), "above the diagonal"),
        (lambda s, n: s[:, None, None] * _distance(n), "below the diagonal"),
        (lambda s, n: -s[:, None, None] * (_distance(n).abs() + 1), "the diagonal is not 0"),
        (lambda s, n: -s[:1, None, None] * _distance(n).abs(), "expected (heads, seq, seq) = (3, 6, 6)"),
        (lambda s, n: -s * _distance(n).abs(), "your function raised RuntimeError"),
    ],
    "windows_longer_than_context": [
        (lambda ids, b, f, s: _cut(ids, b, s), "windows of block_size = 4 tokens"),
        (lambda ids, b, f, s: _cut(ids, f * b + 1, s), "13 tokens per window, one too many"),
        (lambda ids, b, f, s: _cut(ids, f * b, s, shift=0), "y equals x"),
        (lambda ids, b, f, s: _cut(ids, f * b, s, shift=-1), "shifted the wrong way"),
        (lambda ids, b, f, s: _cut(ids, f * b, s)[::-1], "x starts one token late"),
        (lambda ids, b, f, s: _cut(ids, f * b, torch.arange(len(s))), "cut window b at starts[b]"),
        (lambda ids, b, f, s: _cut(ids, f * b, torch.arange(len(s)) * f * b), "cut window b at starts[b]"),
        (lambda ids, b, f, s: tuple(t.float() for t in _cut(ids, f * b, s)), "keep the ids' dtype"),
        (lambda ids, b, f, s: torch.stack(_cut(ids, f * b, s)), "expected a pair (x, y)"),
    ],
    "loss_per_position": [
        (lambda lg, t: F.cross_entropy(lg.flatten(0, 1), t.flatten()), "gave shape ()"),
        (lambda lg, t: _per_token(lg, t).mean(1), "gave shape (4,)"),
        (lambda lg, t: _per_token(lg, t).sum(0), "summed over the batch"),
        (lambda lg, t: -lg.softmax(-1).gather(-1, t[..., None])[..., 0].mean(0), "not its log"),
        (lambda lg, t: _per_token(lg[:, :, :4], t.clamp(max=3)).mean(0), "differs from the mean cross-entropy"),
    ],
    "extrapolation_ratio": [
        (lambda c, b: float(c[:b].mean() / c[b:].mean()), "the ratio is upside down"),
        (lambda c, b: float(c[b:].mean() - c[:b].mean()), "returned the difference"),
        (lambda c, b: float(c.mean() / c[:b].mean()), "the mean over the whole curve"),
        (lambda c, b: float(c[b:].sum() / c[:b].sum()), "summed the losses"),
        (lambda c, b: float(c[b + 1:].mean() / c[:b + 1].mean()), "position block_size = 4 counted within"),
        (lambda c, b: float(c[b + 1:].mean() / c[:b].mean()), "position block_size = 4 left out"),
        (lambda c, b: float(c[b - 1:].mean() / c[:b - 1].mean()), "position 3 counted beyond"),
        (lambda c, b: float(c[4:].mean() / c[:4].mean()), "split the curve at block_size"),
        (lambda c, b: c[b:] / c[:b].mean(), "expected one number"),
    ],
    "trailing_mean_curve": [
        (lambda v, k: _windowed(v, -(k // 2), k // 2), "never ahead"),
        (lambda v, k: _windowed(v, 0, k - 1), "never ahead"),
        (lambda v, k: F.conv1d(F.pad(v[None, None], (k - 1, 0)), torch.ones(1, 1, k) / k)[0, 0], "divided by k = 3"),
        (lambda v, k: v.unfold(0, k, 1).mean(-1), "kept only the full windows"),
        (lambda v, k: v.cumsum(0) / torch.arange(1, len(v) + 1), "a running mean"),
        (lambda v, k: _windowed(v, -k, 0), "averages k + 1 = 4 values"),
        (lambda v, k: _windowed(v, -(k - 1), 0).tolist(), "returned a list"),
        (lambda v, k: _windowed(v, -(k - 1), -1).nan_to_num(), "differs from the trailing means"),
    ],
}
