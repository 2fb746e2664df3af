"""Notebook 02's exercises, in the order it teaches them: the sinusoidal table from its formula, token vectors
scaled by √d_model plus positions, the rotation M_k that moves the table by k positions, a learned table added to
the tokens (and its limit), RoPE's rotation of query/key pairs, and ALiBi's causal distance penalty on the scores."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor, nn

from labkit.exercises import Failed, expect, exercise
from labkit.exercises._compare import expect_tensor, max_difference, same, seeded
from labkit.positional import apply_rope, offset_rotation, sinusoidal_table

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


def reference_embed_with_positions(ids: Tensor, token_table: Tensor, pe: Tensor) -> Tensor:
    return token_table[ids] * math.sqrt(token_table.shape[-1]) + pe[: ids.shape[-1]]


@exercise("embed_with_positions", "02",
          task="embed_with_positions(ids, token_table, pe) → (batch, seq, d_model): the row of token_table "
               "(vocab, d_model) of every id in ids (batch, seq), times √d_model, plus row t of pe (max_len, d_model) "
               "for the token at position t",
          hint="token_table[ids] looks every id up at once, (batch, seq, d_model); multiply it by "
               "math.sqrt(d_model), then add pe[:seq], which broadcasts over the batch",
          reference=reference_embed_with_positions)
def check_embed_with_positions(answer: Callable[[Tensor, Tensor, Tensor], Any]) -> None:
    token_table = torch.randn(10, 16, generator=torch.Generator().manual_seed(0)) / 4  # std 1/√d_model
    pe = sinusoidal_table(12, 16)
    ids = torch.tensor([[3, 1, 4, 1, 5], [9, 2, 6, 5, 3]])
    table_before = token_table.clone()
    out = expect_tensor(answer(ids.clone(), token_table, pe.clone()), (2, 5, 16),
                        "embed_with_positions(ids (2, 5), token_table (10, 16), pe (12, 16))")
    expect(torch.equal(token_table, table_before), "you changed token_table in place (*= or mul_): it holds the "
                                                   "model's weights; multiply the looked-up rows into a new tensor")
    tokens, positions = token_table[ids], pe[:5]
    mistakes = {
        "the token vectors are not scaled: multiply them by √d_model = 4 before adding the positions":
            tokens + positions,
        "multiplied by d_model = 16; multiply by √d_model = 4": tokens * 16 + positions,
        "divided by √d_model = 4; multiply by it instead (the token vectors start small, std 1/√d_model)":
            tokens / 4 + positions,
        "the positions were scaled too: only the token vectors are multiplied by √d_model; pe is added as it is":
            (tokens + positions) * 4,
        "you added pe[ids], the rows of the token ids: the token at position t gets row t of pe, pe[:seq]":
            tokens * 4 + pe[ids],
    }
    for message, mistake in mistakes.items():
        expect(not same(out, mistake), message)
    worst = max_difference(out, tokens * 4 + positions)
    expect(worst <= 1e-5, f"differs from token_table[ids]·√d_model + pe[:seq] by up to {worst:.3g}")
    short, wide_table, wide_pe = torch.tensor([[0, 7, 7]]), token_table.repeat(1, 3)[:, :36], sinusoidal_table(12, 36)
    fixed = "take d_model from token_table and the sequence length from ids, nothing fixed (here √d_model = 6)"
    try:
        out = answer(short, wide_table, wide_pe)
    except Exception as err:  # noqa: BLE001 - the learner's error, reported with its type
        raise Failed(f"with ids (1, 3) and d_model = 36 your function raised {type(err).__name__} ({err}): "
                     f"{fixed}") from None
    out = expect_tensor(out, (1, 3, 36), "embed_with_positions(ids (1, 3), token_table (10, 36), pe (12, 36))")
    worst = max_difference(out, reference_embed_with_positions(short, wide_table, wide_pe))
    expect(worst <= 1e-5, f"with ids (1, 3) and d_model = 36 it differs by up to {worst:.3g}: {fixed}")


def reference_offset_rotation_matrix(offset: int, d_model: int) -> Tensor:
    return offset_rotation(offset, d_model, BASE)


def _block_rotations(angles: Tensor, transpose: bool = False) -> Tensor:
    """The block-diagonal matrix with [[cos a, sin a], [−sin a, cos a]] for each angle (or its transpose)."""
    c, s = angles.cos(), angles.sin()
    blocks = torch.stack([torch.stack([c, s], -1), torch.stack([-s, c], -1)], -2)  # (pairs, 2, 2)
    return torch.block_diag(*(blocks.transpose(-2, -1) if transpose else blocks))


@exercise("offset_rotation_matrix", "02",
          task="offset_rotation_matrix(offset, d_model) → M_k (d_model, d_model) with PE[p + k] = M_k @ PE[p] for "
               "every p (k = offset): on the diagonal, one 2×2 block [[cos kω_i, sin kω_i], [−sin kω_i, cos kω_i]] "
               "per pair i, zeros elsewhere",
          hint="angles = offset * 10000 ** (-torch.arange(0, d_model, 2) / d_model); fill "
               "M[2i:2i+2, 2i:2i+2] for each pair, or stack the 2×2 blocks and call torch.block_diag(*blocks)",
          reference=reference_offset_rotation_matrix)
def check_offset_rotation_matrix(answer: Callable[[int, int], Any]) -> None:
    for offset, d_model in ((3, 8), (5, 16)):
        m = expect_tensor(answer(offset, d_model), (d_model, d_model), f"offset_rotation_matrix({offset}, {d_model})")
        expect(m.dtype.is_floating_point, f"offset_rotation_matrix({offset}, {d_model}) has dtype {m.dtype}; cos "
                                          f"and sin need a floating-point tensor")
    m = m.double()
    omega = BASE ** (-torch.arange(0, 16, 2, dtype=torch.float64) / 16)
    expect(not same(m, _block_rotations(5 * omega, transpose=True), 1e-4),
           "your M_5 maps PE[p + 5] back to PE[p]: it turns the wrong way. Each pair is stored (sin, cos), not "
           "(cos, sin), so its block is [[cos kω, sin kω], [−sin kω, cos kω]], not the textbook [[cos, −sin], "
           "[sin, cos]]")
    expect(not same(m, _block_rotations(omega), 1e-4),
           "your M_5 turns pair i by ω_i, one position's step: M_k turns it by k·ω_i (multiply by the offset)")
    expect(not same(m, _block_rotations(5 * BASE ** (-torch.arange(8, dtype=torch.float64) / 16)), 1e-4),
           "pair i must turn by k·ω_i with ω_i = 10000^(−2i/d_model); yours uses 10000^(−i/d_model)")
    eye = torch.eye(16, dtype=torch.float64)
    worst = max_difference(m @ m.T, eye)
    expect(worst <= 1e-4, f"M_5 · M_5ᵀ differs from the identity by up to {worst:.3g}, so M_5 is not a rotation: "
                          f"each pair needs its own 2×2 rotation block at rows and columns 2i, 2i+1, zeros elsewhere")
    pe = sinusoidal_table(40, 16).double()
    worst = max_difference(pe[:-5] @ m.T, pe[5:])
    expect(worst <= 1e-4, f"M_5 @ PE[p] differs from PE[p + 5] by up to {worst:.3g}")
    worst = max_difference(m, reference_offset_rotation_matrix(5, 16).double())
    expect(worst <= 1e-4, f"offset_rotation_matrix(5, 16) differs from M_5 by up to {worst:.3g}")


def reference_add_learned_positions(tokens: Tensor, table: nn.Embedding) -> Tensor:
    seq = tokens.shape[-2]
    if seq > table.num_embeddings:
        raise ValueError(f"{seq} tokens, but the table has rows for positions 0..{table.num_embeddings - 1} only")
    return tokens + table(torch.arange(seq, device=tokens.device))


@exercise("add_learned_positions", "02",
          task="add_learned_positions(tokens, table) → tokens (batch, seq, d_model) plus row p of the nn.Embedding "
               "table (max_len, d_model) at position p; raise ValueError when seq > max_len, since later positions "
               "have no row",
          hint="table(torch.arange(seq)) gives rows 0..seq-1 as (seq, d_model), which broadcasts over the batch; "
               "before that, compare seq = tokens.shape[1] with table.num_embeddings",
          reference=reference_add_learned_positions)
def check_add_learned_positions(answer: Callable[[Tensor, nn.Embedding], Any]) -> None:
    with seeded(0):
        table = nn.Embedding(6, 4)
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randn(2, 5, 4, generator=gen)
    out = expect_tensor(answer(tokens.clone(), table), (2, 5, 4),
                        "add_learned_positions(tokens (2, 5, 4), a table of 6 rows)")
    rows = table.weight.detach()
    mistakes = {
        "you returned the position rows alone; add them to the tokens": rows[:5].expand(2, 5, 4),
        "every token got row 0: the token at position p gets row p (look up torch.arange(seq))": tokens + rows[0],
        "the rows are shifted by one: the token at position 0 gets row 0, not row 1": tokens + rows[1:6],
        "the rows run backwards: the token at position p gets row p, not row seq − 1 − p": tokens + rows[:5].flip(0),
    }
    for message, mistake in mistakes.items():
        expect(not same(out.detach(), mistake), message)
    worst = max_difference(out, tokens + rows[:5])
    expect(worst <= 1e-6, f"differs from tokens + table(torch.arange(seq)) by up to {worst:.3g}")
    expect(out.requires_grad, "the output does not depend on the table's weights (.detach(), .data or "
                              "torch.no_grad()?): training could never change the rows")
    try:
        full = answer(torch.randn(1, 6, 4, generator=gen), table)
    except Exception as err:  # noqa: BLE001 - any error here is the learner's, reported with its type
        raise Failed(f"6 tokens with a 6-row table raised {type(err).__name__} ({err}); positions 0..5 all have "
                     f"rows, so only a sequence longer than 6 is refused") from None
    expect_tensor(full, (1, 6, 4), "add_learned_positions(tokens (1, 6, 4), a table of 6 rows)")
    try:
        answer(torch.randn(1, 7, 4, generator=gen), table)
    except ValueError:
        return
    except Exception as err:  # noqa: BLE001
        raise Failed(f"7 tokens with a 6-row table raised {type(err).__name__} ({err}); compare the length with "
                     f"table.num_embeddings first and raise ValueError saying the sequence is too long") from None
    raise Failed("7 tokens with a 6-row table came back without an error, but position 6 has no row: raise "
                 "ValueError")


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


def reference_alibi_causal_scores(scores: Tensor, slopes: Tensor) -> Tensor:
    seq = scores.shape[-1]
    query, key = torch.arange(seq)[:, None], torch.arange(seq)
    penalty = slopes[:, None, None] * (query - key)  # (heads, seq, seq): slope_h · (i − j)
    return (scores - penalty).masked_fill(key > query, float("-inf"))


@exercise("alibi_causal_scores", "02",
          task="alibi_causal_scores(scores, slopes) → (heads, seq, seq): scores[h, i, j] − slopes[h]·(i − j) where "
               "key j is at or before query i, and −inf where j > i (a decoder's ALiBi)",
          hint="i = torch.arange(seq)[:, None], j = torch.arange(seq); subtract slopes[:, None, None] * (i - j), then "
               "masked_fill(j > i, float('-inf')); do not change the scores passed in",
          reference=reference_alibi_causal_scores)
def check_alibi_causal_scores(answer: Callable[[Tensor, Tensor], Any]) -> None:
    slopes = torch.tensor([0.5, 0.25, 0.125, 0.0625])
    scores = torch.randn(4, 4, 4, generator=torch.Generator().manual_seed(0))
    before = scores.clone()
    out = expect_tensor(answer(scores, slopes.clone()), (4, 4, 4), "alibi_causal_scores(scores (4, 4, 4), 4 slopes)")
    expect(torch.equal(scores, before), "you changed the scores passed in (masked_fill_ or -= in place); return "
                                        "a new tensor")
    query, key = torch.arange(4)[:, None], torch.arange(4)
    future = (key > query).expand(4, 4, 4)
    expect(not bool((out[future] == 0).all()), "the later keys got score 0, not −inf: softmax still gives them "
                                               "weight e^0; fill them with float('-inf')")
    expect(bool(out[future].isneginf().all()), "a query sees a later key: where j > i the score must be −inf, "
                                               "so that a decoder cannot look ahead")
    expect(not bool(out[~future].isinf().any()), "a key at or before the query got −inf: query i sees keys 0..i, "
                                                 "itself included")
    bias = (out - scores).masked_fill(future, 0.0)
    distance = (query - key).clamp(min=0).float()
    expect(not same(bias, torch.zeros(4, 4, 4)), "the scores are only masked: subtract slopes[h]·(i − j) as well")
    expect(not same(bias, slopes[:, None, None] * distance), "the penalty has the wrong sign: ALiBi subtracts "
                                                              "slope·(i − j), so farther keys score lower")
    per_key, per_query = (-(slopes[None, None, :] * distance).expand(4, 4, 4),
                          -(slopes[None, :, None] * distance).expand(4, 4, 4))
    expect(not same(bias, per_key) and not same(bias, per_query),
           "slopes[h] must scale all of head h (slopes[:, None, None]); yours changes along the queries or the keys")
    worst = max_difference(out, reference_alibi_causal_scores(scores, slopes))
    expect(worst <= 1e-5, f"differs from scores − slope_h·(i − j) by up to {worst:.3g} at or below the diagonal")
    scores = torch.randn(2, 6, 6, generator=torch.Generator().manual_seed(1))
    slopes = torch.tensor([0.5, 0.125])
    fixed = "take seq from scores.shape[-1] and the heads from slopes, nothing fixed"
    try:
        out = answer(scores.clone(), slopes)
    except Exception as err:  # noqa: BLE001 - the learner's error, reported with its type
        raise Failed(f"with 2 heads and 6 positions your function raised {type(err).__name__} ({err}): "
                     f"{fixed}") from None
    out = expect_tensor(out, (2, 6, 6), "alibi_causal_scores(scores (2, 6, 6), 2 slopes)")
    worst = max_difference(out, reference_alibi_causal_scores(scores, slopes))
    expect(worst <= 1e-5, f"with 2 heads and 6 positions it differs by up to {worst:.3g}: {fixed}")
