"""labkit.positional against the formulas written out by hand, and the properties each scheme is built for."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from labkit.attention import fast_attention, naive_attention
from labkit.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    alibi_bias,
    alibi_slopes,
    apply_rope,
    offset_rotation,
    rope_angles,
    sinusoidal_table,
)
from labkit.viz.figures import table_heatmap
from labkit.viz.positional_widgets import SinusoidalExplorer


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ----------------------------------------------------------------------------- sinusoidal

@pytest.mark.parametrize("base", [10000.0, 100.0])
def test_table_matches_the_formula_entry_by_entry(base: float) -> None:
    d = 12
    pe = sinusoidal_table(300, d, base)
    assert pe.shape == (300, d) and pe.dtype == torch.float32
    for pos in (0, 1, 7, 123, 299):
        for i in range(d // 2):
            angle = pos / base ** (2 * i / d)
            assert abs(pe[pos, 2 * i].item() - math.sin(angle)) < 1e-6
            assert abs(pe[pos, 2 * i + 1].item() - math.cos(angle)) < 1e-6


def test_first_pair_is_sin_and_cos_of_the_position() -> None:
    pe = sinusoidal_table(2000, 16)
    pos = torch.arange(2000, dtype=torch.float64)
    assert torch.allclose(pe[:, 0].double(), pos.sin(), atol=1e-6)
    assert torch.allclose(pe[:, 1].double(), pos.cos(), atol=1e-6)


@pytest.mark.parametrize("k", [1, 5, 37, -3])
def test_an_offset_is_one_rotation_for_every_position(k: int) -> None:
    d = 16
    pe = sinusoidal_table(200, d)
    m = offset_rotation(k, d)
    start, stop = max(0, -k), 200 - max(0, k)
    shifted = pe[start:stop] @ m.T  # row p becomes M_k PE[p]
    assert torch.allclose(shifted, pe[start + k: stop + k], atol=1e-5)
    assert torch.allclose(m @ m.T, torch.eye(d), atol=1e-6)
    assert torch.allclose(offset_rotation(-k, d), m.T, atol=1e-6)
    assert torch.count_nonzero(m) == 2 * d  # block diagonal: 2x2 blocks only


def test_offset_rotation_of_zero_is_the_identity() -> None:
    assert torch.equal(offset_rotation(0, 8), torch.eye(8))


def test_dot_product_depends_only_on_the_distance() -> None:
    pe = sinusoidal_table(300, 32).double()
    ks = torch.arange(50)
    curves = torch.stack([(pe[p] * pe[p + ks]).sum(-1) for p in (0, 17, 100, 249)])  # (4, 50)
    assert torch.allclose(curves, curves[:1].expand_as(curves), atol=1e-5)
    # and equals Σ_i cos(k ω_i), written out
    omega = 10000.0 ** (-torch.arange(0, 32, 2, dtype=torch.float64) / 32)
    assert torch.allclose(curves[0], torch.cos(ks[:, None] * omega).sum(-1), atol=1e-5)
    assert curves[0, 0] == pytest.approx(16.0, abs=1e-5)  # |PE(p)|² = d/2


def test_sinusoidal_module_adds_the_table() -> None:
    enc = SinusoidalPositionalEncoding(8, max_len=20)
    x = torch.randn(2, 6, 8)
    assert torch.allclose(enc(x) - x, sinusoidal_table(6, 8).expand(2, 6, 8), atol=1e-6)
    assert list(enc.parameters()) == []
    assert "pe" not in enc.state_dict()


def test_learned_module_adds_its_table_rows() -> None:
    enc = LearnedPositionalEmbedding(10, 4)
    x = torch.randn(3, 7, 4)
    assert torch.allclose(enc(x) - x, enc.table.weight[:7].expand(3, 7, 4), atol=1e-6)
    assert sum(p.numel() for p in enc.parameters()) == 40
    enc(x).sum().backward()
    grad = enc.table.weight.grad
    assert grad[:7].abs().sum() > 0 and torch.equal(grad[7:], torch.zeros(3, 4))  # unused rows get no gradient


@pytest.mark.parametrize(("call", "match"), [
    (lambda: sinusoidal_table(10, 7), "sinusoidal encoding pairs sin/cos dims, so d_model must be even, got 7"),
    (lambda: sinusoidal_table(0, 8), "max_len must be a positive int, got 0"),
    (lambda: sinusoidal_table(10, -2), "d_model must be a positive int, got -2"),
    (lambda: sinusoidal_table(10, 8, base=1.0), r"base must be a number > 1 .*got 1.0"),
    (lambda: sinusoidal_table(10, 8, base=0.5), "base must be a number > 1"),
    (lambda: SinusoidalPositionalEncoding(5), "d_model must be even, got 5"),
    (lambda: offset_rotation(2, 9), "d_model must be even, got 9"),
    (lambda: offset_rotation(1.5, 8), "offset must be an int"),
    (lambda: LearnedPositionalEmbedding(0, 8), "max_len must be a positive int, got 0"),
])
def test_bad_sizes_are_named_in_the_error(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_modules_reject_long_sequences_and_wrong_widths() -> None:
    sin, learned = SinusoidalPositionalEncoding(8, max_len=4), LearnedPositionalEmbedding(4, 8)
    with pytest.raises(ValueError, match=r"sequence length 5 is longer than max_len=4.*larger max_len"):
        sin(torch.zeros(1, 5, 8))
    with pytest.raises(ValueError, match=r"sequence length 6 is longer than max_len=4.*learned table"):
        learned(torch.zeros(1, 6, 8))
    for module in (sin, learned):
        with pytest.raises(ValueError, match=r"d_model=8\), got \(1, 3, 6\)"):
            module(torch.zeros(1, 3, 6))


# ----------------------------------------------------------------------------- RoPE

def rope_by_hand(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """x (seq, d): the pair loop of the RoFormer paper, one 2x2 rotation at a time."""
    seq, d = x.shape
    out = torch.empty_like(x)
    for m in range(seq):
        for i in range(d // 2):
            a = m * base ** (-2 * i / d)
            c, s = math.cos(a), math.sin(a)
            out[m, 2 * i] = c * x[m, 2 * i] - s * x[m, 2 * i + 1]
            out[m, 2 * i + 1] = s * x[m, 2 * i] + c * x[m, 2 * i + 1]
    return out


def test_rope_matches_the_pairwise_rotation() -> None:
    x = torch.randn(9, 8)
    assert torch.allclose(apply_rope(x), rope_by_hand(x), atol=1e-5)
    assert torch.allclose(apply_rope(x, base=50.0), rope_by_hand(x, base=50.0), atol=1e-5)


def test_rope_is_the_identity_at_position_zero_and_keeps_norms() -> None:
    x = torch.randn(2, 3, 16, 8)
    y = apply_rope(x)
    assert torch.equal(y[..., 0, :], x[..., 0, :])
    assert not torch.allclose(y[..., 1:, :], x[..., 1:, :])
    assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1), atol=1e-5)


def test_rope_scores_depend_only_on_the_offset() -> None:
    d, seq, c = 16, 24, 7
    q, k = torch.randn(d), torch.randn(d)
    rq, rk = apply_rope(q.expand(seq, d)), apply_rope(k.expand(seq, d))
    scores = rq @ rk.T  # (m, n) = (R_m q)·(R_n k)
    assert torch.allclose(scores[:-c, :-c], scores[c:, c:], atol=1e-4)  # (m, n) and (m+c, n+c) agree
    assert not torch.allclose(scores[0, :], scores[1, :], atol=1e-3)  # but the offset itself matters
    # the same through explicit positions: shift every position by 100
    shifted = apply_rope(q.expand(seq, d), torch.arange(seq) + 100) @ apply_rope(k.expand(seq, d),
                                                                                 torch.arange(seq) + 100).T
    assert torch.allclose(shifted, scores, atol=1e-3)


def test_rope_equals_rotate_half_up_to_a_permutation() -> None:
    d = 8
    x = torch.randn(2, 10, d)
    # Hugging Face's layout: dim i pairs with dim i + d/2, and the frequencies repeat across the two halves.
    cos, sin = rope_angles(10, d)
    cos, sin = torch.cat([cos, cos], -1), torch.cat([sin, sin], -1)
    rotate_half = lambda t: torch.cat([-t[..., d // 2:], t[..., : d // 2]], -1)  # noqa: E731
    halves = torch.cat([torch.arange(0, d, 2), torch.arange(1, d, 2)])  # interleaved → halves
    hf = x[..., halves] * cos + rotate_half(x[..., halves]) * sin
    assert torch.allclose(hf, apply_rope(x)[..., halves], atol=1e-6)


def test_rope_angles_take_positions_of_any_leading_shape() -> None:
    pos = torch.tensor([[0, 1, 2], [5, 6, 7]])
    cos, sin = rope_angles(3, 4, positions=pos)
    assert cos.shape == (2, 3, 2)
    assert torch.allclose(cos[1, 0], torch.tensor([math.cos(5), math.cos(5 / 100)]), atol=1e-6)
    assert torch.allclose(sin[0, 2], torch.tensor([math.sin(2), math.sin(2 / 100)]), atol=1e-6)


def test_rotary_embedding_uses_its_cache() -> None:
    rope = RotaryEmbedding(8, max_len=32)
    q, k = torch.randn(2, 4, 10, 8), torch.randn(2, 4, 12, 8)
    rq, rk = rope(q, k)
    assert torch.allclose(rq, apply_rope(q), atol=1e-6) and torch.allclose(rk, apply_rope(k), atol=1e-6)


@pytest.mark.parametrize(("call", "match"), [
    (lambda: apply_rope(torch.zeros(4, 7)), "RoPE rotates dims in pairs, so d_head must be even, got 7"),
    (lambda: apply_rope(torch.zeros(4, 8), torch.arange(5)), r"positions must be .*seq_len=4.*got \(5,\)"),
    (lambda: apply_rope(torch.zeros(8)), r"x must be a tensor of shape \(\.\.\., seq, d_head\)"),
    (lambda: apply_rope(torch.zeros(4, 8), base=-1.0), "base must be a number > 1"),
    (lambda: RotaryEmbedding(6, max_len=4)(torch.zeros(5, 6), torch.zeros(5, 6)),
     r"q has positions up to 4, past the max_len=4"),
    (lambda: RotaryEmbedding(6)(torch.zeros(5, 6), torch.zeros(5, 4)), r"k must have shape .*d_head=6"),
    (lambda: RotaryEmbedding(3), "d_head must be even, got 3"),
])
def test_rope_errors_name_the_problem(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


# ----------------------------------------------------------------------------- ALiBi

def test_alibi_slopes_for_a_power_of_two_are_the_papers() -> None:
    assert alibi_slopes(8).tolist() == [1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64, 1 / 128, 1 / 256]
    assert alibi_slopes(1).tolist() == [1 / 256]
    expected_16 = [2 ** (-0.5 * i) for i in range(1, 17)]  # ratio 2^(-8/16)
    assert torch.allclose(alibi_slopes(16).double(), torch.tensor(expected_16, dtype=torch.float64), rtol=1e-6)


def test_alibi_slopes_for_other_head_counts_follow_the_papers_rule() -> None:
    # 6 heads: the 4-head slopes 2^-2, 2^-4, 2^-6, 2^-8, then every other one of the 8-head slopes: 2^-1, 2^-3.
    assert alibi_slopes(6).tolist() == [1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 2, 1 / 8]
    # 3 heads: the 2-head slopes 2^-4, 2^-8, then the first odd one of 4 heads: 2^-2.
    assert alibi_slopes(3).tolist() == [1 / 16, 1 / 256, 1 / 4]
    assert len(alibi_slopes(12)) == 12 and len(set(alibi_slopes(12).tolist())) == 12


def test_alibi_bias_is_linear_in_distance_per_head() -> None:
    slopes, bias = alibi_slopes(6), alibi_bias(6, 9, 9)
    assert bias.shape == (6, 9, 9) and bias.dtype == torch.float32
    assert torch.equal(bias.diagonal(dim1=-2, dim2=-1), torch.zeros(6, 9))
    assert torch.equal(bias, bias.transpose(-2, -1))
    row = bias[:, 4, 4:]  # keys to the right of query 4: distances 0, 1, 2, ...
    steps = row.diff(dim=-1)
    assert torch.allclose(steps, -slopes[:, None].expand_as(steps))  # slope -slope_h per step
    assert torch.allclose(steps.diff(dim=-1), torch.zeros(6, 3))  # second difference zero
    assert bias[2, 0, 8].item() == pytest.approx(-8 / 64)


def test_alibi_bias_works_as_an_attention_mask() -> None:
    q, k, v = torch.randn(2, 4, 5, 8), torch.randn(2, 4, 7, 8), torch.randn(2, 4, 7, 8)
    bias = alibi_bias(4, 5, 7)
    out, weights = naive_attention(q, k, v, mask=bias)
    scores = q @ k.transpose(-2, -1) / math.sqrt(8) + bias
    assert torch.allclose(weights, torch.softmax(scores, -1), atol=1e-6)
    assert torch.allclose(fast_attention(q, k, v, mask=bias), out, atol=1e-5)
    # with no content in the scores, the nearest key gets the most weight
    _, w0 = naive_attention(torch.zeros_like(q), k, v, mask=bias)
    assert torch.equal(w0[0, 0].argmax(-1), torch.arange(5))


@pytest.mark.parametrize(("call", "match"), [
    (lambda: alibi_slopes(0), "n_heads must be a positive int, got 0"),
    (lambda: alibi_bias(4, 0), "seq_q must be a positive int, got 0"),
    (lambda: alibi_bias(4, 3, 2.5), "seq_k must be a positive int, got 2.5"),
])
def test_alibi_errors_name_the_argument(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


# ----------------------------------------------------------------------------- views

def test_table_heatmap_draws_the_table_with_automatic_ticks() -> None:
    table = sinusoidal_table(30, 8)
    fig = table_heatmap(table, title="t")
    assert np.allclose(fig.data[0].z, table.numpy())
    assert fig.layout.xaxis.tickmode == "auto" and fig.layout.yaxis.autorange == "reversed"


def test_explorer_redraws_when_the_sliders_move() -> None:
    view = SinusoidalExplorer(max_len=40, d_model=16, position=3)
    assert np.allclose(view.table.data[0].z, sinusoidal_table(40, 16).numpy())
    assert np.allclose(view.curve.data[0].y, sinusoidal_table(40, 16)[3, 0::2].numpy())

    view.d_model.value = 32
    assert np.asarray(view.table.data[0].z).shape == (40, 32)
    assert len(view.curve.data[1].y) == 16

    before = np.asarray(view.table.data[0].z)
    view.base.value = 100.0
    assert not np.allclose(before, view.table.data[0].z)
    assert np.allclose(view.table.data[0].z, sinusoidal_table(40, 32, 100.0).numpy(), atol=1e-6)

    view.position.value = 20
    assert np.allclose(view.curve.data[1].y, sinusoidal_table(40, 32, 100.0)[20, 1::2].numpy(), atol=1e-6)
    assert view.table.layout.shapes[0].y0 == 19.5
    assert view.curve.layout.title.text.startswith("PE[20]")


def test_sinusoidal_scale_multiplies_the_table() -> None:
    x = torch.randn(2, 6, 8)
    scaled = SinusoidalPositionalEncoding(8, max_len=10, scale=0.25)
    assert torch.allclose(scaled(x), x + 0.25 * sinusoidal_table(6, 8))
    for bad in (0, -1.0, True, "1"):
        with pytest.raises(ValueError, match=rf"scale must be a number > 0 \(it multiplies the table\), "
                                             rf"got {re.escape(repr(bad))}"):
            SinusoidalPositionalEncoding(8, scale=bad)
