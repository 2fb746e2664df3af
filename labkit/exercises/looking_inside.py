"""Notebook 08's exercises: the entropy of every head, and attention rollout through the layers."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor

from labkit.attention_stats import attention_rollout, head_entropy
from labkit.exercises import expect, exercise
from labkit.exercises._compare import expect_tensor, max_difference, same
from labkit.masks import causal_mask

SEQ = 6


def _attention(layers: int) -> Tensor:
    """(layers, 3, SEQ, SEQ) rows summing to 1: head 0 of layer 0 uniform, head 1 on the diagonal only, head 2
    causal (exact zeros above the diagonal); every other head random."""
    gen = torch.Generator().manual_seed(0)
    attn = torch.randn(layers, 3, SEQ, SEQ, generator=gen).mul(2).softmax(-1)
    attn[0, 0] = 1 / SEQ
    attn[0, 1] = torch.eye(SEQ)
    attn[0, 2] = torch.randn(SEQ, SEQ, generator=gen).masked_fill(~causal_mask(SEQ), float("-inf")).softmax(-1)
    return attn


def reference_head_entropies(attn: Tensor) -> Tensor:
    return head_entropy(attn)


@exercise("head_entropies", "08",
          task="head_entropies(attn) → (layers, heads): for attn (layers, heads, seq, seq), each head's entropy "
               "−Σ_k p ln p of every query's row, averaged over the queries, with 0·ln 0 counted as 0",
          hint="-(attn * attn.clamp_min(1e-12).log()).sum(-1) is each row's entropy in nats; then .mean(-1) over "
               "the queries",
          reference=reference_head_entropies)
def check_head_entropies(answer: Callable[[Tensor], Any]) -> None:
    attn = _attention(2)
    out = expect_tensor(answer(attn.clone()), (2, 3), "head_entropies(attn of shape (2, 3, 6, 6))")
    expect(bool(out.isfinite().all()), f"NaN for the heads with zero weights ({out[0].tolist()} in layer 0): "
                                       f"0·ln 0 must count as 0; clamp p before the log, p.clamp_min(1e-12).log()")
    uniform = float(out[0, 0])
    expect(uniform >= 0, f"the uniform head's entropy is {uniform:.4f} < 0: entropy is −Σ p ln p (the minus sign)")
    expect(not math.isclose(uniform, math.log2(SEQ), rel_tol=1e-4),
           f"the uniform head gives log2({SEQ}) = {uniform:.4f} bits; use the natural log, ln")
    expect(not math.isclose(uniform, SEQ * math.log(SEQ), rel_tol=1e-4),
           f"the uniform head gives {uniform:.4f} = {SEQ}·ln {SEQ}: you summed over the queries; average them")
    expect(math.isclose(uniform, math.log(SEQ), rel_tol=1e-4),
           f"a head spread evenly over {SEQ} keys has entropy ln {SEQ} = {math.log(SEQ):.4f}, got {uniform:.4f}")
    expect(abs(float(out[0, 1])) < 1e-4, f"a head looking at one key only has entropy 0, got {float(out[0, 1]):.4g}")
    worst = max_difference(out, reference_head_entropies(attn))
    expect(worst <= 1e-4, f"differs from −Σ_k p ln p averaged over queries by up to {worst:.3g}")


def reference_rollout_maps(attn: Tensor) -> Tensor:
    return attention_rollout(attn)


@exercise("rollout_maps", "08",
          task="rollout_maps(attn) → (layers, seq, seq): attention rollout for attn (layers, heads, seq, seq). "
               "A_l = ½·mean over heads of attn[l] + ½·I, and map l is A_l · A_(l−1) ⋯ A_0",
          hint="eye = torch.eye(seq); start with rolled = eye and, layer by layer, rolled = A_l @ rolled (the new "
               "layer on the left), keeping each rolled map",
          reference=reference_rollout_maps)
def check_rollout_maps(answer: Callable[[Tensor], Any]) -> None:
    attn = _attention(3)
    out = answer(attn.clone())
    what = "rollout_maps(attn of shape (3, 3, 6, 6))"
    expect(not (isinstance(out, Tensor) and tuple(out.shape) == (SEQ, SEQ)),
           f"{what} returned one (seq, seq) map; return one per layer, (layers, seq, seq)")
    out = expect_tensor(out, (3, SEQ, SEQ), what)
    eye, mean = torch.eye(SEQ), attn[0].mean(0)
    wrong = {
        "layer 0 is mean + I, whose rows sum to 2: the residual counts as half of a layer, ½·mean + ½·I": mean + eye,
        "layer 0 is the plain mean of its heads: add the residual stream, A_0 = ½·mean + ½·I": mean,
        "combine the heads by their mean, not their max": 0.5 * attn[0].amax(0) + 0.5 * eye,
    }
    for message, value in wrong.items():
        expect(not same(out[0], value, 1e-5), message)
    rows = out.sum(-1)
    expect(same(rows, torch.ones_like(rows), 1e-4), f"every row of a rollout map sums to 1, but the rows sum to "
                                                    f"{rows.min():.4g} … {rows.max():.4g}")
    expect(same(out[0], 0.5 * mean + 0.5 * eye, 1e-5), "layer 0's map should be A_0 = ½·mean_h(attn[0]) + ½·I")
    layers = 0.5 * attn.mean(1) + 0.5 * eye
    expect(not same(out[2], layers[0] @ layers[1] @ layers[2], 1e-5),
           "the layers are multiplied in the wrong order: the later layer goes on the left, A_2 · A_1 · A_0")
    worst = max_difference(out, reference_rollout_maps(attn))
    expect(worst <= 1e-5, f"differs from the rollout A_l ⋯ A_0 by up to {worst:.3g}")
