"""Notebook 01's exercises, in the order it teaches them: the scaled dot-product scores, softmax with the max trick,
the weighted sum of the values, one head from its projections, the causal mask, masking the scores, splitting
into heads, and merging the heads back through the output projection W^O.

Every checker draws its inputs from a generator of its own, so the notebook's random state is left as it was.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor

from labkit.attention import split_heads
from labkit.exercises import Failed, expect, exercise
from labkit.exercises._compare import expect_tensor, max_difference, same, seeded_randn


def _unchanged(before: Tensor, after: Tensor, what: str) -> None:
    expect(torch.equal(before, after), f"{what} changed the tensor passed in (an in-place operation such as -=, "
                                       f"exp_ or masked_fill_): leave the input as it was and return a new tensor")


# --- scores ------------------------------------------------------------------------------------------------------

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


# --- softmax -----------------------------------------------------------------------------------------------------

def reference_stable_softmax(s: Tensor) -> Tensor:
    e = (s - s.max(dim=-1, keepdim=True).values).exp()
    return e / e.sum(dim=-1, keepdim=True)


@exercise("stable_softmax", "01",
          task="stable_softmax(s) → the softmax of s (…, n) over its last dim, same shape: subtract each row's "
               "maximum, exponentiate, divide by the row's sum, so every row is positive and sums to 1",
          hint="m = s.max(dim=-1, keepdim=True).values; e = (s - m).exp(); e / e.sum(dim=-1, keepdim=True) — "
               "keepdim=True keeps each row's max and sum in that row",
          reference=reference_stable_softmax)
def check_stable_softmax(answer: Callable[[Tensor], Any]) -> None:
    s = 2 * seeded_randn(4, 4, seed=1)
    given = s.clone()
    out = expect_tensor(answer(given), (4, 4), "stable_softmax(s of shape (4, 4))")
    _unchanged(s, given, "stable_softmax")
    expected = reference_stable_softmax(s)
    if not same(out, expected):
        e = (s - s.max(dim=-1, keepdim=True).values).exp()
        e_cols = (s - s.max(dim=-1).values).exp()  # row j's max taken from column j
        for wrong, message in (
                (s.softmax(dim=0), "each column sums to 1: normalise each row, over the last dim (dim=-1)"),
                (e, "the rows do not sum to 1: divide each row's exponentials by that row's sum"),
                (e / e.sum(dim=-1), "divided by the sums along the wrong axis: e.sum(dim=-1) has shape (4,) and "
                                    "broadcasts as a row, so column j is divided by row j's sum; keepdim=True"),
                (e_cols / e_cols.sum(dim=-1, keepdim=True),
                 "subtracted the maxima along the wrong axis: s.max(dim=-1).values has shape (4,) and broadcasts "
                 "as a row, so column j loses row j's max; keepdim=True keeps each row's own max"),
                (e_cols / e_cols.sum(dim=-1), "the max and the sum both broadcast along the wrong axis: without "
                                              "keepdim=True they have shape (4,) and act on columns; keep the dim")):
            expect(not same(out, wrong), message)
        raise Failed(f"differs from torch.softmax(s, dim=-1) by up to {max_difference(out, expected):.3g}")

    big = torch.tensor([[1000.0, 998.0, 990.0, 1000.0],  # exp overflows without the max trick
                        [-1000.0, -1001.0, -1003.0, -1010.0],  # every exp underflows if another row's max is used
                        [200.0, -200.0, 0.0, 0.0]])  # the mean or the min instead of the max overflows
    out = expect_tensor(answer(big.clone()), (3, 4), "stable_softmax(s of shape (3, 4))")
    finite = torch.isfinite(out).all(dim=-1)
    expect(bool(finite[0]), "scores near 1000 gave NaN or inf: exp(1000) overflows (float32 ends near exp(88.7)); "
                            "subtract each row's max first, so the largest exponential is exp(0) = 1")
    expect(bool(finite[1]), "a row of scores near −1000 gave NaN: subtracting one max for the whole tensor (1000) "
                            "leaves that row at −2000, every exp is 0, and 0/0 is NaN; subtract each row's own max")
    expect(bool(finite[2]), "the row [200, −200, 0, 0] gave NaN or inf: subtract the row's max (200), not its mean "
                            "or its min, so that no exponent is above 0")
    expected = reference_stable_softmax(big)
    expect(same(out, expected), f"scores near ±1000 give weights that differ from torch.softmax by up to "
                                f"{max_difference(out, expected):.3g}")

    s = seeded_randn(2, 3, 5, seed=2)
    s[:, 0, 3:] = float("-inf")  # masked keys
    out = expect_tensor(answer(s.clone()), (2, 3, 5), "stable_softmax(s of shape (2, 3, 5))")
    expect(not out.isnan().any(), "a score of −∞ (a masked key) gave NaN; it must give weight exactly 0")
    expected = reference_stable_softmax(s)
    expect(same(out, expected), f"on s of shape (2, 3, 5) with some scores −∞, differs from torch.softmax by up to "
                                f"{max_difference(out, expected):.3g}")


# --- the weighted sum ----------------------------------------------------------------------------------------------

def reference_weighted_sum(weights: Tensor, v: Tensor) -> Tensor:
    return weights @ v


@exercise("weighted_sum", "01",
          task="weighted_sum(weights, v) → (…, seq_q, d_v): for each query, the sum of the value vectors v "
               "(…, seq_k, d_v), value j times the query's weight for key j (weights: …, seq_q, seq_k)",
          hint="row i of the weights times the values is query i's output; for all rows at once: weights @ v",
          reference=reference_weighted_sum)
def check_weighted_sum(answer: Callable[[Tensor, Tensor], Any]) -> None:
    weights, v = (3 * seeded_randn(2, 5, 5, seed=3)).softmax(dim=-1), seeded_randn(2, 5, 3, seed=4)
    what = "weighted_sum(weights (2, 5, 5), v (2, 5, 3))"
    out = answer(weights.clone(), v.clone())
    if isinstance(out, Tensor) and tuple(out.shape) == (2, 5):
        raise Failed(f"{what} has shape (2, 5): the sum ran over the features too; each query's output is a "
                     f"vector of d_v = 3 features")
    out = expect_tensor(out, (2, 5, 3), what)
    expected = reference_weighted_sum(weights, v)
    if not same(out, expected):
        for wrong, message in (
                (weights.transpose(-2, -1) @ v, "query i got column i of the weights: row i holds query i's "
                                                "weights over the keys, so it is weights @ v, not weightsᵀ @ v"),
                (v.mean(dim=-2, keepdim=True).expand(2, 5, 3),
                 "every query got the plain average of the values: weight value j by the query's weight for key j"),
                (expected / 5, "divided by seq_k = 5: the weights already sum to 1, so the weighted sum needs no "
                               "division"),
                ((weights[..., None] * v[..., None, :, :]).sum(dim=-3),
                 "summed over the queries (dim -3 of weights[..., None] * v[..., None, :, :]); sum over the keys")):
            expect(not same(out, wrong), message)
        raise Failed(f"{what} differs from weights @ v by up to {max_difference(out, expected):.3g}")
    weights, v = seeded_randn(2, 3, 5, seed=5).softmax(dim=-1), seeded_randn(2, 5, 4, seed=6)
    what = "weighted_sum(weights (2, 3, 5), v (2, 5, 4))"
    out = expect_tensor(answer(weights, v), (2, 3, 4), what)
    expected = reference_weighted_sum(weights, v)
    expect(same(out, expected), f"{what} differs from weights @ v by up to {max_difference(out, expected):.3g}")


# --- one head --------------------------------------------------------------------------------------------------

def reference_attention_head(x: Tensor, w_q: Tensor, w_k: Tensor, w_v: Tensor) -> tuple[Tensor, Tensor]:
    q, k, v = x @ w_q, x @ w_k, x @ w_v
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    return weights @ v, weights


@exercise("attention_head", "01",
          task="attention_head(x, w_q, w_k, w_v) → (output, weights): q = x·w_q, k = x·w_k, v = x·w_v for x "
               "(…, seq, d), w_q and w_k (d, d_k), w_v (d, d_v); weights = softmax(q·kᵀ/√d_k) (…, seq, seq); "
               "output = weights·v (…, seq, d_v)",
          hint="project first (q = x @ w_q, …), then your attention_scores(q, k), stable_softmax and "
               "weighted_sum(weights, v); √d_k is the width of q and k, not of x",
          reference=reference_attention_head)
def check_attention_head(answer: Callable[[Tensor, Tensor, Tensor, Tensor], Any]) -> None:
    d, d_k, d_v = 12, 4, 3
    x = seeded_randn(2, 5, d, seed=7)
    w_q, w_k, w_v = (seeded_randn(d, n, seed=8 + i) / math.sqrt(d) for i, n in enumerate((d_k, d_k, d_v)))
    what = "attention_head(x (2, 5, 12), w_q (12, 4), w_k (12, 4), w_v (12, 3))"
    result = answer(x.clone(), w_q, w_k, w_v)
    expect(isinstance(result, tuple) and len(result) == 2,
           f"{what} returned a {type(result).__name__}; return two tensors, (output, weights), as naive_attention "
           f"does")
    out, weights = result
    expect(isinstance(out, Tensor) and isinstance(weights, Tensor),
           f"{what} returned ({type(out).__name__}, {type(weights).__name__}); both must be tensors")
    expect(tuple(out.shape) != (2, 5, d), f"{what}: the output has x's {d} features; weight the values v = x @ w_v "
                                          f"({d_v} features), not x")
    expect(tuple(out.shape) != (2, 5, d_k), f"{what}: the output has {d_k} features, the width of the queries and "
                                            f"keys; weight the values v = x @ w_v ({d_v} features)")
    out = expect_tensor(out, (2, 5, d_v), f"the output of {what}")
    weights = expect_tensor(weights, (2, 5, 5), f"the weights of {what}")
    q, k, v = x @ w_q, x @ w_k, x @ w_v
    raw = q @ k.transpose(-2, -1)
    expected_out, expected = reference_attention_head(x, w_q, w_k, w_v)
    if not same(weights, expected):
        for wrong, message in (
                (raw.softmax(-1), f"the scores are not scaled: divide q·kᵀ by √d_k = {math.sqrt(d_k):g}"),
                ((raw / math.sqrt(d)).softmax(-1),
                 f"scaled by √d = √{d}, the width of x; divide by √d_k = {math.sqrt(d_k):g}, the width of q and k"),
                ((raw / d_k).softmax(-1), f"divided by d_k = {d_k}; divide by √d_k = {math.sqrt(d_k):g}"),
                ((raw / math.sqrt(d_k)).softmax(-2),
                 "each key's column of weights sums to 1: softmax over the last dim, so that each query's row does"),
                ((raw.transpose(-2, -1) / math.sqrt(d_k)).softmax(-1),
                 "the scores are transposed: row i must hold query i against every key, q @ kᵀ (k @ qᵀ gives key i "
                 "against every query)"),
                (raw / math.sqrt(d_k), "the weights are the scaled scores: pass them through the softmax")):
            expect(not same(weights, wrong), f"{what}: {message}")
        raise Failed(f"{what}: the weights differ from softmax(q·kᵀ/√d_k) by up to "
                     f"{max_difference(weights, expected):.3g}")
    expect(not same(out, expected.transpose(-2, -1) @ v),
           f"{what}: the output used the weights transposed; query i's output is row i of the weights times v")
    expect(same(out, expected_out), f"{what}: the output differs from weights @ v by up to "
                                    f"{max_difference(out, expected_out):.3g}")
    try:
        one = answer(x[0].clone(), w_q, w_k, w_v)
    except Exception as err:  # e.g. transpose(1, 2) on a (seq, d_k) tensor
        raise Failed(f"works on x (batch, seq, d) but raises {type(err).__name__} on one sentence x (seq, d): "
                     f"transpose the last two dims, transpose(-2, -1), whatever comes before them") from err
    expect(isinstance(one, tuple) and len(one) == 2 and same(one[0], expected_out[0]),
           "works on x (batch, seq, d) but not on one sentence x (seq, d): transpose the last two dims, "
           "transpose(-2, -1), whatever comes before them")


# --- masks -----------------------------------------------------------------------------------------------------

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


def reference_apply_mask(scores: Tensor, mask: Tensor) -> Tensor:
    return scores.masked_fill(~mask, float("-inf"))


@exercise("apply_mask", "01",
          task="apply_mask(scores, mask) → scores (…, seq_q, seq_k) with −∞ wherever the bool mask is False "
               "(True = may attend); the mask broadcasts, e.g. (batch, 1, 1, seq_k) or (seq_q, seq_k)",
          hint="scores.masked_fill(~mask, float('-inf')) — a new tensor; the scores the mask allows stay as they are",
          reference=reference_apply_mask)
def check_apply_mask(answer: Callable[[Tensor, Tensor], Any]) -> None:
    scores = seeded_randn(2, 3, 4, 5, seed=11)
    keep = (torch.arange(5) < torch.tensor([5, 3])[:, None])[:, None, None, :]  # (batch, 1, 1, seq_k)
    mask = keep & torch.ones(4, 5, dtype=torch.bool).tril()  # (batch, 1, seq_q, seq_k): padding and causal
    what = "apply_mask(scores (2, 3, 4, 5), mask (2, 1, 4, 5))"
    given = scores.clone()
    out = answer(given, mask.clone())
    _unchanged(scores, given, "apply_mask")
    out = expect_tensor(out, (2, 3, 4, 5), what)
    expected = reference_apply_mask(scores, mask)
    if same(out, expected):
        return
    expect(not same(out, reference_apply_mask(scores, ~mask)),
           f"{what} filled the scores the mask allows: True = may attend, so fill where the mask is False (~mask)")
    allowed = mask.expand_as(scores)
    hidden = out[~allowed]
    expect(not bool((hidden == 0).all()), f"{what}: the masked scores are 0, not −∞; softmax turns 0 into "
                                          f"exp(0) = 1, so masked keys still get weight. Fill with float('-inf')")
    expect(not bool((torch.isfinite(hidden) & (hidden < -100)).all()),
           f"{what}: the masked scores are {float(hidden[0]):g}, not −∞. Use float('-inf'), as labkit and SDPA do: "
           f"with a finite fill, a query whose keys are all masked spreads its weight over them instead of none")
    expect(bool(hidden.isneginf().all()), f"{what}: {int((~hidden.isneginf()).sum())} of the {hidden.numel()} "
                                          f"scores the mask hides are not −∞")
    blocked = int(out[allowed].isneginf().sum())
    expect(blocked == 0, f"{what}: {blocked} scores the mask allows are −∞ too; fill only where the mask is False")
    raise Failed(f"{what}: the scores the mask allows changed (by up to "
                 f"{max_difference(out[allowed], scores[allowed]):.3g}); leave them as they are")


# --- heads -----------------------------------------------------------------------------------------------------

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


def reference_output_projection(heads: Tensor, w_o: Tensor, b_o: Tensor) -> Tensor:
    batch, n_heads, seq, d_head = heads.shape
    merged = heads.transpose(1, 2).reshape(batch, seq, n_heads * d_head)
    return merged @ w_o.T + b_o


@exercise("output_projection", "01",
          task="output_projection(heads, w_o, b_o) → (batch, seq, d_model): the heads (batch, heads, seq, d_head) "
               "side by side again (head h in features h·d_head … (h+1)·d_head − 1), then W^O as nn.Linear "
               "applies it: merged @ w_o.T + b_o, with w_o (d_model, d_model) stored as (out, in) and b_o (d_model,)",
          hint="heads.transpose(1, 2) gives (batch, seq, heads, d_head); .reshape(batch, seq, d_model) puts the "
               "heads side by side (view fails after a transpose); then @ w_o.T + b_o",
          reference=reference_output_projection)
def check_output_projection(answer: Callable[[Tensor, Tensor, Tensor], Any]) -> None:
    batch, n_heads, seq, d_head = 2, 3, 5, 4
    d_model = n_heads * d_head
    heads = seeded_randn(batch, n_heads, seq, d_head, seed=12)
    w_o, b_o = seeded_randn(d_model, d_model, seed=13) / math.sqrt(d_model), seeded_randn(d_model, seed=14)
    what = "output_projection(heads (2, 3, 5, 4), w_o (12, 12), b_o (12,))"
    given = heads.clone()
    try:
        out = answer(given, w_o, b_o)
    except RuntimeError as err:
        if "view" not in str(err):
            raise
        raise Failed(f"{what}: view cannot merge the heads after transpose(1, 2), because the numbers are no "
                     f"longer in order in memory; use reshape (it copies when it has to)") from err
    _unchanged(heads, given, "output_projection")
    out = expect_tensor(out, (batch, seq, d_model), what)
    expected = reference_output_projection(heads, w_o, b_o)
    if same(out, expected):
        return
    merged = heads.transpose(1, 2).reshape(batch, seq, d_model)
    for wrong, message in (
            (merged, "returned the merged heads as they are: finish with the output projection, merged @ w_o.T + b_o"),
            (merged @ w_o + b_o, "multiplied by w_o as stored; nn.Linear keeps its weight as (out, in) and computes "
                                 "merged @ w_o.T + b_o"),
            (merged @ w_o.T, "the bias b_o is missing: merged @ w_o.T + b_o"),
            (heads.reshape(batch, seq, d_model) @ w_o.T + b_o,
             "merged without moving the heads back: reshaping (batch, heads, seq, d_head) straight to (batch, seq, "
             "d_model) fills token t's row from other tokens; transpose(1, 2) first"),
            (heads.permute(0, 2, 3, 1).reshape(batch, seq, d_model) @ w_o.T + b_o,
             f"the heads' features are interleaved (feature f of head h went to f·{n_heads} + h): each head's "
             f"{d_head} features must sit side by side, head h at h·{d_head} … h·{d_head} + {d_head - 1}")):
        expect(not same(out, wrong), f"{what}: {message}")
    raise Failed(f"{what} differs from merge(heads) @ w_o.T + b_o by up to {max_difference(out, expected):.3g}")
