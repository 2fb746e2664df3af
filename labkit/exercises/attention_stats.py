"""Notebook 08's exercises, in the order the notebook teaches them: one layer's attention weights recomputed from its
own query and key projections; three numbers per head (entropy, mean attention distance, the share of attention on
given tokens); attention rollout through the layers; and what fine-tuning changed (after − before, and the head that
moved most). The rules are labkit's (`labkit.attention_stats`)."""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable

import torch
from torch import Tensor, nn

from labkit.attention_stats import attention_rollout, head_entropy
from labkit.exercises import expect, exercise
from labkit.exercises._compare import expect_tensor, max_difference, same, seeded
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


# --- where the weights come from --------------------------------------------------------------------------------

def reference_attention_from_projections(h: Tensor, query: nn.Module, key: nn.Module, n_heads: int) -> Tensor:
    seq = h.shape[0]
    q, k = query(h), key(h)  # (seq, heads · d_head)
    d_head = q.shape[-1] // n_heads
    q = q.view(seq, n_heads, d_head).transpose(0, 1)  # (heads, seq, d_head)
    k = k.view(seq, n_heads, d_head).transpose(0, 1)
    return (q @ k.transpose(-2, -1) / math.sqrt(d_head)).softmax(dim=-1)  # (heads, seq, seq)


def _projections(d_model: int) -> tuple[nn.Linear, nn.Linear]:
    """Two seeded nn.Linear(d_model, d_model) with biases, made without touching the caller's random state."""
    with seeded(8):
        query, key = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
    with torch.no_grad():  # larger biases, so that an answer that drops them is told apart
        query.bias.mul_(4)
        key.bias.mul_(4)
    return query, key


@exercise("attention_from_projections", "08",
          task="attention_from_projections(h, query, key, n_heads) → (heads, seq, seq): for the hidden states h "
               "(seq, d_model) a layer receives and its query and key projections (nn.Linear), split q = query(h) "
               "and k = key(h) into n_heads heads of d_head = d_model / n_heads features and return "
               "softmax(q·kᵀ/√d_head) over the keys, per head",
          hint="q = query(h).view(seq, n_heads, d_head).transpose(0, 1), the same for k; then "
               "(q @ k.transpose(-2, -1) / d_head ** 0.5).softmax(dim=-1)",
          reference=reference_attention_from_projections)
def check_attention_from_projections(answer: Callable[..., Any]) -> None:
    seq, d_model, n_heads = 5, 12, 3
    d_head = d_model // n_heads
    query, key = _projections(d_model)
    h = torch.randn(seq, d_model, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = answer(h.clone(), query, key, n_heads)
        what = f"attention_from_projections(h of shape ({seq}, {d_model}), query, key, n_heads={n_heads})"
        out = expect_tensor(out, (n_heads, seq, seq), what).detach().cpu().float()

        def split(x: Tensor) -> Tensor:
            return x.view(seq, n_heads, d_head).transpose(0, 1)

        q, k = split(query(h)), split(key(h))
        scores = q @ k.transpose(-2, -1)  # (heads, seq, seq), not scaled
        plain_q = split(h @ query.weight.T)
        plain_k = split(h @ key.weight.T)
        wrong = {
            "softmax over the queries (dim -2): each query's row, over the keys, must sum to 1":
                (scores / math.sqrt(d_head)).softmax(-2),
            f"the scores are not scaled: divide q·kᵀ by √d_head = {math.sqrt(d_head):g}": scores.softmax(-1),
            f"divided by d_head = {d_head}; divide by √d_head = {math.sqrt(d_head):g}": (scores / d_head).softmax(-1),
            f"divided by √d_model = √{d_model}; each head's scale is √d_head = √{d_head} = {math.sqrt(d_head):g}":
                (scores / math.sqrt(d_model)).softmax(-1),
            "split as view(n_heads, seq, d_head): that mixes tokens; view(seq, n_heads, d_head) then "
            "transpose(0, 1)": (query(h).reshape(n_heads, seq, d_head) @ key(h).reshape(n_heads, seq, d_head)
                                 .transpose(-2, -1) / math.sqrt(d_head)).softmax(-1),
            f"head 0 holds features 0, {n_heads}, {2 * n_heads}, …: a head's features are consecutive, "
            f"view(seq, n_heads, d_head)": (query(h).view(seq, d_head, n_heads).permute(2, 0, 1)
                                            @ key(h).view(seq, d_head, n_heads).permute(2, 1, 0)
                                            / math.sqrt(d_head)).softmax(-1),
            "the projections' biases are left out: call query(h) and key(h) (weight and bias), not h @ weight.T":
                (plain_q @ plain_k.transpose(-2, -1) / math.sqrt(d_head)).softmax(-1),
            "the queries and keys are swapped (k·qᵀ): the rows must be queries, scores = q @ k.transpose(-2, -1)":
                (k @ q.transpose(-2, -1) / math.sqrt(d_head)).softmax(-1),
            "q·qᵀ: the keys come from the key projection, key(h)": (q @ q.transpose(-2, -1) / math.sqrt(d_head))
                .softmax(-1),
        }
        for message, value in wrong.items():
            expect(not same(out, value, 1e-5), message)
        rows = out.sum(-1)
        expect(same(rows, torch.ones_like(rows), 1e-4),
               f"each query's row of weights must sum to 1, but the rows sum to {rows.min():.4g} … {rows.max():.4g}")
        worst = max_difference(out, reference_attention_from_projections(h, query, key, n_heads))
    expect(worst <= 1e-5, f"differs from softmax(q·kᵀ/√d_head) per head by up to {worst:.3g}")


# --- numbers for a head -----------------------------------------------------------------------------------------

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


def reference_mean_attention_distance(attn: Tensor) -> Tensor:
    seq = attn.shape[-1]
    positions = torch.arange(seq, dtype=attn.dtype)
    distance = (positions[:, None] - positions[None, :]).abs()  # (seq, seq): |q − k|
    return (attn * distance).sum(-1).mean(-1)


@exercise("mean_attention_distance", "08",
          task="mean_attention_distance(attn) → (layers, heads): for attn (layers, heads, seq, seq), how many "
               "positions away each head looks, Σ_k p(q, k)·|q − k| for every query q, averaged over the queries",
          hint="positions = torch.arange(seq); distance = (positions[:, None] - positions[None, :]).abs() is "
               "(seq, seq); then (attn * distance).sum(-1).mean(-1)",
          reference=reference_mean_attention_distance)
def check_mean_attention_distance(answer: Callable[[Tensor], Any]) -> None:
    attn = _attention(2)
    out = expect_tensor(answer(attn.clone()), (2, 3), "mean_attention_distance(attn of shape (2, 3, 6, 6))")
    positions = torch.arange(SEQ, dtype=attn.dtype)
    signed = positions[:, None] - positions[None, :]
    distance = signed.abs()
    right = (attn * distance).sum(-1).mean(-1)
    uniform, diagonal = float(out[0, 0]), float(out[0, 1])
    expect(not same(out, (attn * signed).sum(-1).mean(-1), 1e-5) and not same(out, (attn * -signed).sum(-1).mean(-1),
                                                                             1e-5),
           f"the uniform head looks {uniform:.4f} positions away on average: the distances are signed and cancel; "
           f"use |q − k|")
    expect(not same(out, (attn * distance ** 2).sum(-1).mean(-1), 1e-5),
           "the distances are squared, (q − k)²; use |q − k|")
    expect(not same(out, right * SEQ, 1e-5), f"{SEQ} times too large: you summed over the {SEQ} queries; average them")
    expect(not same(out, right / SEQ, 1e-5),
           f"{SEQ} times too small: you averaged p·|q − k| over the keys; the weights already sum to 1, so sum over "
           f"the keys (and average over the queries)")
    expect(not same(out, distance.mean().expand(2, 3), 1e-5),
           f"every head gets {float(distance.mean()):.4f}, the mean of |q − k| alone: weight each distance by the "
           f"head's attention p(q, k)")
    strongest = (positions - attn.argmax(-1).to(attn.dtype)).abs().mean(-1)
    expect(not same(out, strongest, 1e-5),
           "that is the distance to each query's strongest key; weight every key's distance by its p(q, k)")
    expect(abs(diagonal) < 1e-5, f"a head that looks only at the query itself has distance 0, got {diagonal:.4g}")
    spread = float(distance.mean())
    expect(math.isclose(uniform, spread, rel_tol=1e-4),
           f"a head spread evenly over {SEQ} keys has distance {spread:.4f} (the mean of |q − k|), got {uniform:.4f}")
    worst = max_difference(out, reference_mean_attention_distance(attn))
    expect(worst <= 1e-4, f"differs from Σ_k p·|q − k| averaged over queries by up to {worst:.3g}")


def reference_share_on_tokens(attn: Tensor, positions: list[int]) -> Tensor:
    if not positions:
        return attn.new_zeros(attn.shape[:2])
    return attn[..., list(positions)].sum(-1).mean(-1)


@exercise("share_on_tokens", "08",
          task="share_on_tokens(attn, positions) → (layers, heads): for attn (layers, heads, seq, seq) and a list "
               "of key positions (e.g. where [SEP] is), the attention each query puts on those keys, summed over "
               "them and averaged over the queries; zeros when the list is empty",
          hint="attn[..., positions] picks the key columns, (layers, heads, seq, len(positions)); .sum(-1) over "
               "them, .mean(-1) over the queries; for an empty list return attn.new_zeros(attn.shape[:2])",
          reference=reference_share_on_tokens)
def check_share_on_tokens(answer: Callable[..., Any]) -> None:
    attn, positions = _attention(2), [0, 5]
    what = f"share_on_tokens(attn of shape (2, 3, 6, 6), {positions})"
    out = expect_tensor(answer(attn.clone(), list(positions)), (2, 3), what)
    right = attn[..., positions].sum(-1).mean(-1)
    expect(not same(out, attn[..., positions, :].sum(-1).mean(-1), 1e-5),
           f"{what} is 1 for every head: you took the rows of queries {positions}, which always sum to 1; the "
           f"share goes to the keys, the columns attn[..., positions]")
    expect(not same(out, attn[..., positions, :].sum(-2).mean(-1), 1e-5),
           f"you took the rows of queries {positions}; the share goes to the keys, the columns attn[..., positions]")
    expect(not same(out, right * SEQ, 1e-5), f"{SEQ} times too large: you summed over the queries; average them")
    expect(not same(out, right / len(positions), 1e-5),
           f"half the share: you averaged over the {len(positions)} key positions; add their attention up")
    expect(not same(out, attn[..., 0, positions].sum(-1), 1e-5),
           "that is the share of query 0 ([CLS]) only; average the share over every query")
    expect(not same(out, attn[..., positions].amax(-1).mean(-1), 1e-5),
           "you took the largest of the positions' weights; add up the weights on every position")
    worst = max_difference(out, reference_share_on_tokens(attn, positions))
    expect(worst <= 1e-5, f"differs from attn[..., positions].sum(-1).mean(-1) by up to {worst:.3g}")
    none = answer(attn.clone(), [])
    expect(isinstance(none, Tensor), f"share_on_tokens(attn, []) returned {none!r} ({type(none).__name__}): with no "
                                     f"positions return zeros of shape (layers, heads), attn.new_zeros(attn.shape[:2])")
    expect(tuple(none.shape) == (2, 3) and bool((none == 0).all()),
           f"share_on_tokens(attn, []) should be zeros of shape (2, 3) (no key, no share), got shape "
           f"{tuple(none.shape)}")


# --- heads combined -----------------------------------------------------------------------------------------------

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


# --- what fine-tuning changed -------------------------------------------------------------------------------------

def reference_difference_map(before: Tensor, after: Tensor) -> tuple[Tensor, tuple[int, int]]:
    diff = after - before  # (layers, heads, seq, seq): red where a head attends more after, blue where less
    change = diff.abs().sum(-1).mean(-1)  # (layers, heads): how far each head's rows moved
    layer, head = divmod(int(change.argmax()), change.shape[1])
    return diff, (layer, head)


def _before_after() -> tuple[Tensor, Tensor]:
    """(before, after), each (3 layers, 4 heads, 5, 5) rows summing to 1. Every head moves a little; layer 2, head 1
    moves most in total (every row shifts); layer 0, head 3 has the largest single change (one row moves a lot)."""
    gen = torch.Generator().manual_seed(5)
    before = torch.randn(3, 4, 5, 5, generator=gen).softmax(-1)
    after = (0.95 * before + 0.05 * torch.randn(3, 4, 5, 5, generator=gen).softmax(-1))
    after[2, 1] = 0.5 * before[2, 1] + 0.5 * before[2, 1].roll(1, dims=-1)
    after[0, 3, 4] = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0]) if before[0, 3, 4, 4] < 0.5 else torch.eye(5)[0]
    return before, after


@exercise("difference_map", "08",
          task="difference_map(before, after) → (diff, (layer, head)): for two attentions (layers, heads, seq, "
               "seq) of the same model on the same tokens, diff = after − before (same shape), and the (layer, head) "
               "whose map moved most, measured as Σ_k |after − before| of each query's row, averaged over queries",
          hint="diff = after - before; change = diff.abs().sum(-1).mean(-1) is (layers, heads); the flat index "
               "i = int(change.argmax()) is (layer, head) = divmod(i, number of heads)",
          reference=reference_difference_map)
def check_difference_map(answer: Callable[..., Any]) -> None:
    before, after = _before_after()
    what = "difference_map(before, after of shape (3, 4, 5, 5))"
    out = answer(before.clone(), after.clone())
    expect(isinstance(out, (tuple, list)) and len(out) == 2,
           f"{what} returned {type(out).__name__}; return two things, (diff, (layer, head))")
    diff, most = out
    diff = expect_tensor(diff, tuple(before.shape), f"the diff of {what}")
    right = after - before
    expect(not same(diff, -right, 1e-6), "that is before − after: red and blue swapped; the map is after − before")
    expect(not same(diff, right.abs(), 1e-6), "the map lost its sign (|after − before|): keep after − before, so "
                                              "that red is more attention after fine-tuning and blue less")
    worst = max_difference(diff, right)
    expect(worst <= 1e-6, f"the map differs from after − before by up to {worst:.3g}")
    change = right.abs().sum(-1).mean(-1)
    layers, heads = change.shape
    flat = int(change.argmax())
    right_pair = divmod(flat, heads)
    if isinstance(most, numbers.Integral) or (isinstance(most, Tensor) and most.numel() == 1):
        expect(False, f"the head that moved most came back as {int(most)}, a flat index into (layers, heads) = "
                      f"({layers}, {heads}); give (layer, head) = divmod(index, {heads})")
    expect(isinstance(most, (tuple, list, Tensor)) and len(most) == 2,
           f"the head that moved most must be a pair (layer, head), got {most!r}")
    got = tuple(int(x) for x in most)
    expect(got != divmod(flat, layers),
           f"{got} is flat index {flat} divided by the {layers} layers: divide by the number of heads, {heads}")
    expect(got != right_pair[::-1], f"{got} is (head, layer); give (layer, head) = {right_pair}")
    largest = divmod(int(right.abs().amax(dim=(-2, -1)).argmax()), heads)
    expect(got != largest, f"{got} holds the largest change of a single weight; measure a head by Σ_k |after − "
                           f"before| of each row, averaged over the queries")
    signed = divmod(int(right.sum(-1).mean(-1).argmax()), heads)
    expect(got != signed, f"{got} has the largest signed change, but every row of after − before sums to 0 (both "
                          f"rows sum to 1); add up |after − before|")
    expect(got == right_pair, f"the head whose rows moved most (Σ_k |after − before|, averaged over queries) is "
                              f"(layer, head) = {right_pair}, got {got}")
