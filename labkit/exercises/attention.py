"""Notebook 01's exercises: the causal mask, the scaled dot-product scores and splitting into heads."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor

from labkit.attention import split_heads
from labkit.exercises import expect, exercise
from labkit.exercises._compare import expect_tensor, max_difference, same


def reference_causal_mask(seq_len: int) -> Tensor:
    return torch.ones(seq_len, seq_len, dtype=torch.bool).tril()


@exercise("causal_mask", "01",
          task="causal_mask(seq_len) → a (seq_len, seq_len) bool tensor, True where query i may attend to key j",
          hint="query i may see keys 0..i: the lower triangle, diagonal included (torch.tril)",
          reference=reference_causal_mask)
def check_causal_mask(answer: Callable[[int], Any]) -> None:
    for n in (1, 2, 5):
        mask = answer(n)
        expect(isinstance(mask, Tensor), f"causal_mask({n}) returned a {type(mask).__name__}, not a tensor")
        expect(mask.shape == (n, n), f"causal_mask({n}) has shape {tuple(mask.shape)}, expected ({n}, {n})")
        expect(mask.dtype == torch.bool, f"causal_mask({n}) has dtype {mask.dtype}; use bool: True = may attend")
    mask = answer(5)
    expect(bool(mask.diagonal().all()), "the diagonal is False: a token must be able to attend to itself")
    expect(not mask.triu(1).any(), "a query may attend to a later key (True above the diagonal): "
                                   "that lets the model see the future")
    expect(bool(mask.tril().eq(reference_causal_mask(5)).all()), "a query cannot attend to an earlier key")


def reference_attention_scores(q: Tensor, k: Tensor) -> Tensor:
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])


@exercise("attention_scores", "01",
          task="attention_scores(q, k) → q·kᵀ / √d_k for q (…, seq_q, d_k) and k (…, seq_k, d_k)",
          hint="transpose the last two dims of k, then divide by the square root of d_k (the last dim), not d_k",
          reference=reference_attention_scores)
def check_attention_scores(answer: Callable[[Tensor, Tensor], Any]) -> None:
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 3, 4, 16, generator=gen), torch.randn(2, 3, 6, 16, generator=gen)
    scores = answer(q, k)
    expect(isinstance(scores, Tensor), f"returned a {type(scores).__name__}, not a tensor")
    expect(scores.shape == (2, 3, 4, 6), f"q (2, 3, 4, 16) and k (2, 3, 6, 16) gave shape {tuple(scores.shape)}, "
                                         f"expected (batch, heads, seq_q, seq_k) = (2, 3, 4, 6)")
    expected = reference_attention_scores(q, k)
    unscaled = q @ k.transpose(-2, -1)
    expect(not torch.allclose(scores, unscaled, atol=1e-5), "the scores are not scaled: divide by √d_k")
    expect(not torch.allclose(scores, unscaled / 16, atol=1e-5), "divided by d_k = 16; divide by √d_k = 4")
    worst = float((scores - expected).abs().max())
    expect(worst <= 1e-5, f"differs from q·kᵀ/√d_k by up to {worst:.3g}")


def reference_split_heads(x: Tensor, n_heads: int) -> Tensor:
    return split_heads(x, n_heads)


@exercise("split_heads", "01",
          task="split_heads(x, n_heads) → x (batch, seq, d_model) as (batch, heads, seq, d_head) with "
               "d_head = d_model / n_heads: head h holds features h·d_head … (h+1)·d_head − 1 of every token",
          hint="view(batch, seq, n_heads, d_head) cuts each token's features into heads, then transpose(1, 2) "
               "moves the heads in front of the sequence",
          reference=reference_split_heads)
def check_split_heads(answer: Callable[[Tensor, int], Any]) -> None:
    batch, seq, d_model = 2, 5, 12
    x = torch.arange(batch * seq * d_model, dtype=torch.float32).view(batch, seq, d_model)
    for n_heads in (3, 4):
        d_head = d_model // n_heads
        out = answer(x, n_heads)
        what = f"split_heads(x of shape {tuple(x.shape)}, n_heads={n_heads})"
        expect(isinstance(out, Tensor), f"{what} returned a {type(out).__name__}, not a tensor")
        expect(tuple(out.shape) != (batch, seq, n_heads, d_head),
               f"{what} has shape {tuple(out.shape)} = (batch, seq, heads, d_head): transpose(1, 2) to put the "
               f"heads before the sequence")
        out = expect_tensor(out, (batch, n_heads, seq, d_head), what)
        expect(not same(out, x.view(batch, n_heads, seq, d_head)),
               f"{what} has the right shape but mixes tokens: viewing straight as (batch, heads, seq, d_head) "
               f"gives head 0 the first tokens' whole vectors, not the first {d_head} features of every token")
        expect(not same(out, x.view(batch, seq, d_head, n_heads).permute(0, 3, 1, 2)),
               f"{what}: head 0 holds features 0, {n_heads}, {2 * n_heads}, …; each head takes a consecutive "
               f"slice of {d_head} features")
        worst = max_difference(out, reference_split_heads(x, n_heads))
        expect(worst == 0, f"{what}: out[b, h, t] should be x[b, t, h·d_head:(h+1)·d_head]; "
                           f"differs by up to {worst:g}")
