"""Notebook 10's exercises: each checker passes its reference and names the mistake in plausible wrong answers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from labkit.exercises import check, exercises
from labkit.positional import alibi_bias, alibi_slopes


def test_notebook_10_has_its_three_exercises() -> None:
    assert set(exercises("10")) == {"alibi_head_slopes", "alibi_bias_from_slopes", "loss_per_position"}


@pytest.mark.parametrize("name", ["alibi_head_slopes", "alibi_bias_from_slopes", "loss_per_position"])
def test_the_reference_passes(name: str) -> None:
    result = check(name, exercises("10")[name].reference, quiet=True)
    assert result, result.message


def test_the_references_agree_with_labkit() -> None:
    ex = exercises("10")
    for n in (1, 2, 4, 8, 16):
        assert torch.allclose(ex["alibi_head_slopes"].reference(n), alibi_slopes(n))
    slopes = alibi_slopes(4)
    assert torch.equal(ex["alibi_bias_from_slopes"].reference(slopes, 9), alibi_bias(4, 9))


def test_labkit_passes_where_it_applies() -> None:
    assert check("alibi_head_slopes", alibi_slopes, quiet=True)  # powers of two: the same slopes


@pytest.mark.parametrize("wrong, message", [
    (lambda n: 2.0 ** (-8.0 * torch.arange(n, 0, -1) / n), "reverse order"),
    (lambda n: 2.0 ** (-8.0 * torch.arange(1, n + 1)), "starts at 0.00391"),
    (lambda n: 2.0 ** (-torch.arange(1, n + 1) / n), "expected 2^(-1) = 0.5"),
    (lambda n: 2.0 ** (-1.0 * torch.arange(1, n + 1)), "the exponent divides by n_heads"),
    (lambda n: -(2.0 ** (-8.0 * torch.arange(1, n + 1) / n)), "has a slope <= 0"),
    (lambda n: 1.0 / (8.0 * torch.arange(1, n + 1) / n), "is not geometric"),
    (lambda n: torch.arange(1, n + 1), "use a float tensor"),
    (lambda n: [2.0 ** (-8 * h / n) for h in range(1, n + 1)], "returned a list"),
])
def test_alibi_head_slopes_names_the_mistake(wrong, message: str) -> None:
    result = check("alibi_head_slopes", wrong, quiet=True)
    assert not result and message in result.message, result.message


def _distance(n: int) -> torch.Tensor:
    return torch.arange(n)[:, None] - torch.arange(n)  # i - j


@pytest.mark.parametrize("wrong, message", [
    (lambda s, n: s[:, None, None] * _distance(n).abs(), "the bias is positive"),
    (lambda s, n: -s[:, None, None] * _distance(n), "above the diagonal"),
    (lambda s, n: s[:, None, None] * _distance(n), "below the diagonal"),
    (lambda s, n: -s[:, None, None] * (_distance(n).abs() + 1), "the diagonal is not 0"),
    (lambda s, n: -s[:1, None, None] * _distance(n).abs(), "expected (heads, seq, seq) = (3, 6, 6)"),
    (lambda s, n: -s * _distance(n).abs(), "your function raised RuntimeError"),
])
def test_alibi_bias_from_slopes_names_the_mistake(wrong, message: str) -> None:
    result = check("alibi_bias_from_slopes", wrong, quiet=True)
    assert not result and message in result.message, result.message


def _per_token(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view(targets.shape)


@pytest.mark.parametrize("wrong, message", [
    (lambda lg, t: F.cross_entropy(lg.flatten(0, 1), t.flatten()), "gave shape ()"),
    (lambda lg, t: _per_token(lg, t).mean(1), "gave shape (4,)"),
    (lambda lg, t: _per_token(lg, t).sum(0), "summed over the batch"),
    (lambda lg, t: -lg.softmax(-1).gather(-1, t[..., None])[..., 0].mean(0), "not its log"),
    (lambda lg, t: _per_token(lg[:, :, :4], t.clamp(max=3)).mean(0), "differs from the mean cross-entropy"),
])
def test_loss_per_position_names_the_mistake(wrong, message: str) -> None:
    result = check("loss_per_position", wrong, quiet=True)
    assert not result and message in result.message, result.message


def test_an_unwritten_stub_says_so() -> None:
    def loss_per_position(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # your code here

    assert "not written yet" in check("loss_per_position", loss_per_position, quiet=True).message
