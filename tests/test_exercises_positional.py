"""Notebook 02's checkers: a right answer written by hand passes, each plausible mistake gets its own message
(WRONG_ANSWERS, run by tests/test_exercises.py), and the checks leave the caller's random state alone."""

from __future__ import annotations

import math

import torch
from torch import nn

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


def test_sinusoidal_encoding_in_float32_passes() -> None:
    def float32_table(max_len: int, d_model: int) -> torch.Tensor:
        pos = torch.arange(max_len)[:, None]
        omega = 10000 ** (-torch.arange(0, d_model, 2) / d_model)
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * omega), torch.cos(pos * omega)
        return pe

    assert check("sinusoidal_encoding", float32_table, quiet=True)


def _embed(ids, token_table, pe, scale=None, scale_positions=False, rows_by_id=False, in_place=False):
    d = token_table.shape[-1]
    scale = math.sqrt(d) if scale is None else scale(d)
    if in_place:
        token_table *= scale
        tokens = token_table[ids]
    else:
        tokens = token_table[ids] * (1.0 if scale_positions else scale)
    positions = pe[ids] if rows_by_id else pe[: ids.shape[-1]]
    return (tokens + positions) * scale if scale_positions else tokens + positions


def test_embed_with_positions_written_by_hand_passes() -> None:
    assert check("embed_with_positions", _embed, quiet=True)


def _rotation(offset: int, d_model: int, transpose=False, by_offset=True, exponent=2.0, at=lambda i: 2 * i,
              dtype=torch.float64) -> torch.Tensor:
    m = torch.zeros(d_model, d_model, dtype=dtype)
    for i in range(d_model // 2):
        a = torch.tensor((offset if by_offset else 1) * 10000.0 ** (-exponent * i / d_model), dtype=torch.float64)
        block = torch.tensor([[a.cos(), a.sin()], [-a.sin(), a.cos()]], dtype=dtype)
        r = at(i)
        m[r:r + 2, r:r + 2] = block.T if transpose else block
    return m


def test_offset_rotation_matrix_written_by_hand_passes() -> None:
    assert check("offset_rotation_matrix", _rotation, quiet=True)
    assert check("offset_rotation_matrix", lambda k, d: _rotation(k, d, dtype=torch.float32), quiet=True)


def _learned(tokens, table, check_len=">", rows=lambda seq: torch.arange(seq), add=True, detach=False):
    seq = tokens.shape[1]
    if check_len == ">" and seq > table.num_embeddings or check_len == ">=" and seq >= table.num_embeddings:
        raise ValueError(f"{seq} positions, the table has {table.num_embeddings}")
    looked_up = table(rows(seq))
    if detach:
        looked_up = looked_up.detach()
    return tokens + looked_up if add else looked_up.expand_as(tokens)


def test_add_learned_positions_written_by_hand_passes() -> None:
    assert check("add_learned_positions", _learned, quiet=True)

    def by_slicing(tokens: torch.Tensor, table: nn.Embedding) -> torch.Tensor:  # the weight's first rows: the same
        if tokens.shape[1] > table.weight.shape[0]:
            raise ValueError("longer than the table")
        return tokens + table.weight[: tokens.shape[1]]

    assert check("add_learned_positions", by_slicing, quiet=True)


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


def _alibi(scores, slopes, sign=-1.0, fill=float("-inf"), diagonal=0, slope_dims=(slice(None), None, None),
           causal=True, penalty=True, in_place=False):
    seq = scores.shape[-1]
    i, j = torch.arange(seq)[:, None], torch.arange(seq)
    bias = sign * slopes[slope_dims] * (i - j).abs() if penalty else torch.zeros(())
    out = scores if in_place else scores.clone()
    out += bias
    if causal:
        out.masked_fill_(~torch.ones(seq, seq, dtype=torch.bool).tril(diagonal), fill)
    return out


def _alibi_seq_from_first_dim(scores, slopes):
    """seq read from dim 0, the heads: right while heads == seq."""
    seq = scores.shape[0]
    i, j = torch.arange(seq)[:, None], torch.arange(seq)
    return (scores - slopes[:, None, None] * (i - j)).masked_fill(j > i, float("-inf"))


def test_alibi_causal_scores_written_by_hand_passes() -> None:
    assert check("alibi_causal_scores", _alibi, quiet=True)

    def with_labkit(scores, slopes):  # labkit's bias, then the causal mask: the same thing
        from labkit.positional import alibi_bias
        seq = scores.shape[-1]
        bias = -slopes[:, None, None] * (torch.arange(seq)[:, None] - torch.arange(seq)).abs()
        assert alibi_bias(len(slopes), seq).shape == bias.shape
        return (scores + bias).masked_fill(~torch.ones(seq, seq, dtype=torch.bool).tril(), float("-inf"))

    assert check("alibi_causal_scores", with_labkit, quiet=True)


def test_checks_leave_the_callers_random_state_alone() -> None:
    from labkit.exercises import exercises
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    for name, ex in exercises("02").items():
        assert check(name, ex.reference, quiet=True), name
    assert torch.equal(torch.rand(3), expected)


WRONG_ANSWERS = {
    "sinusoidal_encoding": [
        (lambda n, d: _table(n, d, layout="swapped"), "sin and cos are swapped"),
        (lambda n, d: _table(n, d, layout="halves"), "sines fill the first half"),
        (lambda n, d: _table(n, d, exponent=lambda i, d: i / d), "the exponent uses the even dim's index 2i"),
        (lambda n, d: _table(n, d, exponent=lambda i, d: 2 * i / (d + 2)), "differs from the formula by up to"),
        (lambda n, d: _table(n, d).int(), "has dtype torch.int32"),
        (lambda n, d: _table(n, d)[:, : d // 2], "has shape (7, 3), expected (7, 6)"),
    ],
    "embed_with_positions": [
        (lambda i, t, p: _embed(i, t, p, scale=lambda d: 1.0), "the token vectors are not scaled"),
        (lambda i, t, p: _embed(i, t, p, scale=lambda d: d), "multiplied by d_model = 16"),
        (lambda i, t, p: _embed(i, t, p, scale=lambda d: d ** -0.5), "divided by √d_model = 4"),
        (lambda i, t, p: _embed(i, t, p, scale_positions=True), "the positions were scaled too"),
        (lambda i, t, p: _embed(i, t, p, rows_by_id=True), "you added pe[ids]"),
        (lambda i, t, p: _embed(i, t, p, in_place=True), "you changed token_table in place"),
        (lambda i, t, p: t[i] * 4 + p[:i.shape[-1]], "take d_model from token_table"),
    ],
    "offset_rotation_matrix": [
        (lambda k, d: _rotation(k, d, transpose=True), "turns the wrong way"),
        (lambda k, d: _rotation(k, d, by_offset=False), "multiply by the offset"),
        (lambda k, d: _rotation(k, d, exponent=1.0), "yours uses 10000^(−i/d_model)"),
        (lambda k, d: _rotation(k, d, at=lambda i: i if i < d // 2 - 1 else 2 * i), "M_5 is not a rotation"),
        (lambda k, d: _rotation(k, d).long(), "has dtype torch.int64"),
        (lambda k, d: _rotation(k, d)[::2], "has shape (4, 8), expected (8, 8)"),
    ],
    "add_learned_positions": [
        (lambda x, t: _learned(x, t, add=False), "you returned the position rows alone"),
        (lambda x, t: _learned(x, t, rows=lambda s: torch.zeros(s, dtype=torch.long)), "every token got row 0"),
        (lambda x, t: _learned(x, t, rows=lambda s: torch.arange(1, s + 1)), "shifted by one"),
        (lambda x, t: _learned(x, t, rows=lambda s: torch.arange(s).flip(0)), "the rows run backwards"),
        (lambda x, t: _learned(x, t, detach=True), "training could never change the rows"),
        (lambda x, t: _learned(x, t, check_len=">="), "6 tokens with a 6-row table raised ValueError"),
        (lambda x, t: _learned(x, t, check_len="none"), "7 tokens with a 6-row table raised IndexError"),
        (lambda x, t: x + t.weight[:x.shape[1]], "7 tokens with a 6-row table raised RuntimeError"),
        (lambda x, t: x + t.weight[torch.arange(x.shape[1]).clamp(max=t.num_embeddings - 1)],
         "7 tokens with a 6-row table came back without an error"),
    ],
    "rope_rotate": [
        (lambda x, p: _rope(x, p, scale_angle=False), "did you forget to multiply by the position?"),
        (lambda x, p: _rope(x, p, sign=-1.0), "turned by −m·θ_i, the wrong way"),
        (_rope_rotate_half, "Hugging Face's rotate_half layout"),
        (lambda x, p: _rope(x, p, exponent=1.0), "differs from RoPE by up to"),
        (lambda x, p: _rope(x, p, by_index=True), "turn token t by positions[t], not by its index t"),
        (_rope_typo, "a rotation keeps every vector's length"),
    ],
    "alibi_causal_scores": [
        (lambda s, m: _alibi(s, m, in_place=True), "you changed the scores passed in"),
        (lambda s, m: _alibi(s, m, fill=0.0), "the later keys got score 0, not −inf"),
        (lambda s, m: _alibi(s, m, causal=False), "a query sees a later key"),
        (lambda s, m: _alibi(s, m, diagonal=-1), "itself included"),
        (lambda s, m: _alibi(s, m, penalty=False), "the scores are only masked"),
        (lambda s, m: _alibi(s, m, sign=1.0), "the penalty has the wrong sign"),
        (lambda s, m: _alibi(s, m, slope_dims=(None, None, slice(None))), "slopes[h] must scale all of head h"),
        (lambda s, m: _alibi(s, m, slope_dims=(None, slice(None), None)), "slopes[h] must scale all of head h"),
        (_alibi_seq_from_first_dim, "with 2 heads and 6 positions your function raised RuntimeError"),
    ],
}
