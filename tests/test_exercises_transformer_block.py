"""Notebook 03's checkers: a right answer written by hand passes, and each plausible mistake gets its own message."""

from __future__ import annotations

import pytest

from labkit.exercises import check


def _layer_norm(x, gamma, beta, eps=1e-5, unbiased=False, dim=-1, eps_outside=False, affine=True):
    mean = x.mean(dim=dim, keepdim=True)
    var = x.var(dim=dim, keepdim=True, unbiased=unbiased)
    normalised = (x - mean) / (var.sqrt() + eps if eps_outside else (var + eps).sqrt())
    return gamma * normalised + beta if affine else normalised


def test_layer_norm_written_by_hand_passes() -> None:
    assert check("layer_norm", _layer_norm, quiet=True)


@pytest.mark.parametrize("wrong, message", [
    (lambda x, g, b, eps=1e-5: _layer_norm(x, g, b, eps=0.0), "NaN or inf for a token whose features are all equal"),
    (lambda x, g, b, eps=1e-5: _layer_norm(x, g, b, unbiased=True), "the unbiased variance"),
    (lambda x, g, b, eps=1e-5: _layer_norm(x, g, b, eps_outside=True), "added to the standard deviation"),
    (lambda x, g, b, eps=1e-5: _layer_norm(x, g, b, affine=False), "γ and β are not applied"),
    (lambda x, g, b, eps=1e-5: _layer_norm(x, g, b, dim=0), "normalised over its own features"),
    (lambda x, g, b, eps=1e-5: _layer_norm(x, g, b, eps=1e-2), "differs from F.layer_norm by up to"),
])
def test_layer_norm_checker_fails_plausible_mistakes(wrong, message: str) -> None:
    result = check("layer_norm", wrong, quiet=True)
    assert not result and message in result.message, result.message


def test_pre_ln_step_written_by_hand_passes() -> None:
    def pre_ln_step(x, sublayer, norm):
        h = norm(x)
        return h.new_zeros(h.shape).add_(x).add_(sublayer(h))

    assert check("pre_ln_step", pre_ln_step, quiet=True)


@pytest.mark.parametrize("wrong, message", [
    (lambda x, f, norm: norm(x + f(x)), "this is post-LN"),
    (lambda x, f, norm: f(norm(x)), "the residual connection is missing"),
    (lambda x, f, norm: x + norm(f(x)), "the norm went on the sublayer's output"),
    (lambda x, f, norm: norm(x) + f(norm(x)), "the residual adds the normalised x"),
    (lambda x, f, norm: x + f(x), "differs from x + sublayer(norm(x))"),
])
def test_pre_ln_step_checker_fails_plausible_mistakes(wrong, message: str) -> None:
    result = check("pre_ln_step", wrong, quiet=True)
    assert not result and message in result.message, result.message


def test_block_parameter_count_written_by_hand_passes() -> None:
    def block_parameter_count(d_model: int, n_heads: int, d_ff: int) -> int:
        attention = 4 * (d_model * d_model + d_model)
        feed_forward = d_model * d_ff + d_ff + d_ff * d_model + d_model
        return attention + feed_forward + 2 * 2 * d_model

    assert check("block_parameter_count", block_parameter_count, quiet=True)


@pytest.mark.parametrize("wrong, message", [
    (lambda d, h, f: h * (4 * d * d + 4 * d) + 2 * d * f + f + d + 4 * d, "changed with the number of heads"),
    (lambda d, h, f: 4 * d * d + 2 * d * f + 4 * d, "forgot the biases (4·d of attention"),
    (lambda d, h, f: 4 * d * d + 2 * d * f, "forgot the biases and the LayerNorms"),
    (lambda d, h, f: 4 * d * d + 4 * d + 2 * d * f + f + d, "forgot the LayerNorms"),
    (lambda d, h, f: 4 * d * d + 4 * d + 2 * d * f + f + d + 2 * d, "counted one LayerNorm"),
    (lambda d, h, f: 3 * d * d + 3 * d + 2 * d * f + f + d + 4 * d, "block_parameter_count(64, 4, 256) = 45,824, "
                                                                     "expected 49,984"),
    (lambda d, h, f: float(4 * d * d + 4 * d + 2 * d * f + f + d + 4 * d), "expected a whole number"),
])
def test_block_parameter_count_checker_fails_plausible_mistakes(wrong, message: str) -> None:
    result = check("block_parameter_count", wrong, quiet=True)
    assert not result and message in result.message, result.message
