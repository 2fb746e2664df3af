"""Notebook 01's checkers: each plausible mistake is refused with its own message, answers written other ways pass,
and the checks leave the notebook's random state alone."""

from __future__ import annotations

import math

import torch

from labkit.exercises import check
from labkit.exercises.attention import (reference_apply_mask, reference_attention_head, reference_output_projection,
                                        reference_stable_softmax)


def _softmax(subtract: str = "row max", keepdim: bool = True, dim: int = -1, normalise: bool = True):
    def softmax(s):
        if subtract == "row max":
            shift = s.max(dim=dim, keepdim=keepdim).values
        elif subtract == "global max":
            shift = s.max()
        elif subtract == "mean":
            shift = s.mean(dim=dim, keepdim=True)
        else:
            shift = 0.0
        e = (s - shift).exp()
        return e / e.sum(dim=dim, keepdim=True) if normalise else e
    return softmax


def _in_place_softmax(s):
    s -= s.max(dim=-1, keepdim=True).values
    s.exp_()
    return s / s.sum(dim=-1, keepdim=True)


def _head(scale: str = "d_k", softmax_dim: int = -1, values: str = "v", transposed: bool = False,
          only_output: bool = False, last_two: bool = True):
    def attention_head(x, w_q, w_k, w_v):
        q, k, v = x @ w_q, x @ w_k, x @ w_v
        kt = k.transpose(-2, -1) if last_two else k.transpose(1, 2)
        scores = (k @ q.transpose(-2, -1)) if transposed else q @ kt
        scores = scores / {"d_k": math.sqrt(q.shape[-1]), "d": math.sqrt(x.shape[-1]), "none": 1.0}[scale]
        weights = scores.softmax(softmax_dim)
        out = weights @ {"v": v, "x": x, "k": k}[values]
        return out if only_output else (out, weights)
    return attention_head


def _head_without_softmax(x, w_q, w_k, w_v):
    q, k, v = x @ w_q, x @ w_k, x @ w_v
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return scores @ v, scores


def _merge(how: str):
    def output_projection(heads, w_o, b_o):
        batch, n_heads, seq, d_head = heads.shape
        if how == "no transpose":
            merged = heads.reshape(batch, seq, n_heads * d_head)
        elif how == "view":
            merged = heads.transpose(1, 2).view(batch, seq, n_heads * d_head)
        elif how == "interleaved":
            merged = heads.permute(0, 2, 3, 1).reshape(batch, seq, n_heads * d_head)
        else:
            merged = heads.transpose(1, 2).reshape(batch, seq, n_heads * d_head)
        if how == "no projection":
            return merged
        if how == "untransposed weight":
            return merged @ w_o + b_o
        if how == "no bias":
            return merged @ w_o.T
        return merged @ w_o.T + b_o
    return output_projection


def _inf(x):
    return torch.full_like(x, float("-inf"))


# exercise name → plausible wrong answers and a piece of the message each must get (run by test_exercises.py)
WRONG_ANSWERS = {
    "attention_scores": [
        (lambda q, k: q @ k.transpose(-2, -1), "not scaled"),
        (lambda q, k: q @ k.transpose(-2, -1) / q.shape[-1], "divided by d_k = 16"),
        (lambda q, k: k @ q.transpose(-2, -1) / 4, "gave shape (2, 3, 6, 4)"),
        (lambda q, k: q @ k.transpose(-2, -1) / 4 + 0.01, "differs from q·kᵀ/√d_k"),
    ],
    "stable_softmax": [
        (_softmax(subtract="none"), "exp(1000) overflows"),
        (_softmax(subtract="global max"), "subtract each row's own max"),
        (_softmax(subtract="mean"), "not its mean or its min"),
        (_softmax(dim=0), "each column sums to 1"),
        (_softmax(normalise=False), "the rows do not sum to 1"),
        (_softmax(keepdim=False), "subtracted the maxima along the wrong axis"),
        (lambda s: (lambda e: e / e.sum(dim=-1))((s - s.max(dim=-1).values).exp()),
         "the max and the sum both broadcast along the wrong axis"),
        (lambda s: (lambda e: e / e.sum(dim=-1))((s - s.max(dim=-1, keepdim=True).values).exp()),
         "divided by the sums along the wrong axis"),
        (_in_place_softmax, "changed the tensor passed in"),
    ],
    "weighted_sum": [
        (lambda w, v: w.transpose(-2, -1) @ v, "query i got column i of the weights"),
        (lambda w, v: v.mean(dim=-2, keepdim=True).expand(*w.shape[:-1], v.shape[-1]),
         "the plain average of the values"),
        (lambda w, v: w @ v / w.shape[-1], "divided by seq_k = 5"),
        (lambda w, v: (w[..., None] * v[..., None, :, :]).sum(dim=-3), "summed over the queries"),
        (lambda w, v: (w @ v).sum(dim=-1), "the sum ran over the features too"),
    ],
    "attention_head": [
        (_head(scale="none"), "the scores are not scaled"),
        (_head(scale="d"), "scaled by √d = √12, the width of x"),
        (_head(softmax_dim=-2), "each key's column of weights sums to 1"),
        (_head(transposed=True), "the scores are transposed"),
        (_head(values="x"), "the output has x's 12 features"),
        (_head(values="k"), "the output has 4 features, the width of the queries and keys"),
        (_head(only_output=True), "return two tensors, (output, weights)"),
        (_head(last_two=False), "raises IndexError on one sentence x (seq, d)"),
        (_head_without_softmax, "the weights are the scaled scores: pass them through the softmax"),
    ],
    "causal_mask": [
        (lambda n: torch.ones(n, n).tril(), "dtype torch.float32"),
        (lambda n: torch.ones(n, n, dtype=torch.bool).tril(-1), "the diagonal is False"),
        (lambda n: torch.ones(n, n, dtype=torch.bool), "may attend to a later key"),
        (lambda n: torch.ones(n, n, dtype=torch.bool).tril().tolist(), "returned a list"),
        (lambda n: torch.eye(n, dtype=torch.bool), "cannot attend to an earlier key"),
    ],
    "apply_mask": [
        (lambda s, m: s.masked_fill(m, float("-inf")), "True = may attend, so fill where the mask is False"),
        (lambda s, m: s * m, "the masked scores are 0, not −∞"),
        (lambda s, m: s.masked_fill(~m, -1e9), "the masked scores are -1e+09, not −∞"),
        (lambda s, m: s.masked_fill_(~m, float("-inf")), "changed the tensor passed in"),
        (lambda s, m: torch.where(m, s, _inf(s)) + 0.1, "the scores the mask allows changed"),
        (lambda s, m: torch.where(m & (s > -1), s, _inf(s)), "scores the mask allows are −∞ too"),
        (lambda s, m: torch.where(m, s, s - 50), "scores the mask hides are not −∞"),
    ],
    "split_heads": [
        (lambda x, h: x.view(x.shape[0], x.shape[1], h, -1), "= (batch, seq, heads, d_head): transpose(1, 2)"),
        (lambda x, h: x.view(x.shape[0], h, x.shape[1], -1), "the right shape but mixes tokens"),
        (lambda x, h: x.view(x.shape[0], x.shape[1], -1, h).permute(0, 3, 1, 2), "head 0 holds features 0, 3, 6"),
        (lambda x, h: x.view(2, 5, 3, 4).transpose(1, 2), "n_heads=4) has shape (2, 3, 5, 4), expected (2, 4, 5, 3)"),
        (lambda x, h: x.view(x.shape[0], x.shape[1], h, -1).transpose(1, 2).flip(1), "differs by up to"),
    ],
    "output_projection": [
        (_merge("no transpose"), "merged without moving the heads back"),
        (_merge("view"), "view cannot merge the heads after transpose(1, 2)"),
        (_merge("interleaved"), "the heads' features are interleaved"),
        (_merge("no projection"), "returned the merged heads as they are"),
        (_merge("untransposed weight"), "multiplied by w_o as stored"),
        (_merge("no bias"), "the bias b_o is missing"),
    ],
}


def test_answers_written_other_ways_pass() -> None:
    def softmax_with_amax(s):
        e = torch.exp(s - torch.amax(s, dim=-1, keepdim=True))
        return e / torch.sum(e, dim=-1, keepdim=True)

    def head_from_parts(x, w_q, w_k, w_v):
        q, k, v = x @ w_q, x @ w_k, x @ w_v
        weights = reference_stable_softmax(torch.einsum("...qd,...kd->...qk", q, k) / q.shape[-1] ** 0.5)
        return torch.einsum("...qk,...kd->...qd", weights, v), weights

    def mask_with_where(scores, mask):
        return torch.where(mask, scores, torch.tensor(float("-inf")))

    def project_with_linear(heads, w_o, b_o):
        return torch.nn.functional.linear(torch.cat(heads.unbind(1), dim=-1), w_o, b_o)

    assert check("stable_softmax", softmax_with_amax, quiet=True)
    assert check("weighted_sum", lambda w, v: torch.einsum("...qk,...kd->...qd", w, v), quiet=True)
    assert check("attention_head", head_from_parts, quiet=True)
    assert check("apply_mask", mask_with_where, quiet=True)
    assert check("output_projection", project_with_linear, quiet=True)


def test_the_references_agree_with_labkit_and_pytorch() -> None:
    from labkit.attention import merge_heads, naive_attention

    gen = torch.Generator().manual_seed(0)
    x, w_q, w_k, w_v = (torch.randn(*shape, generator=gen) for shape in ((6, 8), (8, 4), (8, 4), (8, 3)))
    out, weights = reference_attention_head(x, w_q, w_k, w_v)
    expected_out, expected_weights = naive_attention(x @ w_q, x @ w_k, x @ w_v)
    assert torch.allclose(out, expected_out, atol=1e-6) and torch.allclose(weights, expected_weights, atol=1e-6)
    scores, mask = torch.randn(3, 5, generator=gen), torch.ones(3, 5, dtype=torch.bool).tril()
    assert torch.allclose(reference_stable_softmax(reference_apply_mask(scores, mask)),
                          torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1))
    heads, w_o, b_o = torch.randn(2, 3, 5, 4, generator=gen), torch.randn(12, 12, generator=gen), torch.randn(12)
    assert torch.allclose(reference_output_projection(heads, w_o, b_o),
                          torch.nn.functional.linear(merge_heads(heads), w_o, b_o), atol=1e-5)


def test_checks_leave_the_callers_random_state_alone() -> None:
    from labkit.exercises import exercises

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    for name, ex in exercises("01").items():
        assert check(name, ex.reference, quiet=True), name
    assert torch.equal(torch.rand(3), expected)
