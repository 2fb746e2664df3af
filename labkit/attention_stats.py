"""Numbers about attention maps: what the views of notebook 08 draw, computed once here.

Every function takes the attention of one example as a tensor `attn` (layers, heads, seq, seq): row q of
`attn[l, h]` is how query token q of layer l, head h spreads its attention over the key tokens (each row sums to 1).
`stack_attentions` makes that tensor from what a model returns (`outputs.attentions`: one (batch, heads, seq, seq)
tensor per layer) and answers bad input with one clear error.

Cross-attention (an encoder–decoder's decoder reading the encoder's output) gives rectangular maps (layers, heads,
tgt, src): target queries × source keys. `stack_attentions(..., key_tokens=...)` accepts them. Entropy, mean / max
over heads and the share on punctuation keys mean the same there (`CROSS_STATISTICS`, `CROSS_AGGREGATIONS`); the
mean distance and rollout compare or chain positions of one sequence, so they refuse cross-attention, and the
[CLS] / [SEP] shares are left out of its statistics (an encoder–decoder's source need not have either).

- per head: `head_entropy` (how spread out a head is), `mean_distance` (how far it looks), `attention_share` (how
  much it puts on given tokens, e.g. [CLS], [SEP] or punctuation);
- across heads: `aggregate_heads` (mean or max) and `attention_rollout` (Abnar & Zuidema, 2020: attention
  multiplied through the layers, with the residual stream counted as half of each layer);
- `head_statistics` gathers the per-head numbers in one table; `window` cuts a long sequence to what a view shows.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import torch
from torch import Tensor

from labkit.validate import require_positive_int

__all__ = ["AGGREGATIONS", "STATISTICS", "CROSS_AGGREGATIONS", "CROSS_STATISTICS", "stack_attentions", "check_index",
           "head_entropy", "mean_distance", "token_groups", "attention_share", "aggregate_heads", "attention_rollout",
           "head_statistics", "window"]

AGGREGATIONS = ("mean", "max", "rollout")
STATISTICS = ("entropy", "distance", "share on [CLS]", "share on [SEP]", "share on punctuation")
CROSS_AGGREGATIONS = ("mean", "max")
CROSS_STATISTICS = ("entropy", "share on punctuation")


def stack_attentions(attentions: Sequence[Tensor] | Tensor | None, tokens: Sequence[str] | None = None,
                     example: int = 0, *, key_tokens: Sequence[str] | None = None) -> Tensor:
    """One example's attention as a float tensor (layers, heads, seq, seq) on the CPU.

    attentions: a model's `outputs.attentions` (one (batch, heads, seq, seq) tensor per layer), or an already
    stacked (layers, heads, seq, seq) tensor. tokens: the example's tokens, checked against seq when given.
    key_tokens: for cross-attention, the tokens of the keys (the source); the maps may then be rectangular
    (layers, heads, tgt, src), and `tokens` are the queries' (the target's).
    """
    if attentions is None or (isinstance(attentions, (list, tuple)) and
                              (not attentions or any(a is None for a in attentions))):
        raise ValueError("the model returned no attentions: load it with attention weights, e.g. "
                         "labkit.assets.load_model(..., attentions=True), which uses eager attention (the SDPA "
                         "and flash kernels compute attention without returning its weights)")
    if isinstance(attentions, Tensor):
        attn = attentions
        if attn.dim() != 4:
            raise ValueError(f"a stacked attention tensor must be (layers, heads, seq, seq), got shape "
                             f"{tuple(attn.shape)}")
    else:
        shapes = {tuple(a.shape) for a in attentions}
        if len(shapes) != 1 or len(next(iter(shapes))) != 4:
            raise ValueError(f"attentions must be one (batch, heads, seq, seq) tensor per layer, all the same "
                             f"shape; got shapes {sorted(shapes)}")
        batch = attentions[0].shape[0]
        if not 0 <= example < batch:
            raise ValueError(f"example {example} is out of range: the batch holds {batch} example(s)")
        attn = torch.stack([a[example] for a in attentions])
    if key_tokens is None and attn.shape[-1] != attn.shape[-2]:
        raise ValueError(f"self-attention maps are square (seq, seq), got {tuple(attn.shape[-2:])}; for "
                         f"cross-attention (target × source) pass the source's tokens as key_tokens")
    for name, given, size in (("tokens", tokens, attn.shape[-2]), ("key tokens", key_tokens, attn.shape[-1])):
        if given is not None and len(given) != size:
            raise ValueError(f"{len(given)} {name} but the attention covers {size} positions: pass the tokens of "
                             "exactly the sequence the model saw (special tokens and padding included)")
    return attn.detach().float().cpu()


def check_index(name: str, value: int, size: int) -> int:
    """`value` if it is an int in 0..size-1, else an IndexError naming `name` and the valid range."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < size:
        raise IndexError(f"{name} {value!r} is out of range: this model has {size} {name}s, numbered 0..{size - 1}")
    return value


def head_entropy(attn: Tensor) -> Tensor:
    """(layers, heads): each head's entropy in nats, averaged over its queries. 0 for a head that looks at one
    token; ln(seq) for one that spreads evenly."""
    return -(attn * attn.clamp_min(1e-12).log()).sum(-1).mean(-1)


def _check_self_attention(attn: Tensor, what: str) -> None:
    if attn.shape[-1] != attn.shape[-2]:
        raise ValueError(f"{what} is defined for self-attention only (square (seq, seq) maps), got "
                         f"{tuple(attn.shape[-2:])} maps: cross-attention's queries and keys belong to two "
                         f"different sequences")


def mean_distance(attn: Tensor) -> Tensor:
    """(layers, heads): how many positions away a head looks, Σ_k p(q, k)·|q − k| averaged over queries q.
    Self-attention only: in cross-attention |q − k| compares positions of two different sequences."""
    _check_self_attention(attn, "the mean attention distance")
    seq = attn.shape[-1]
    positions = torch.arange(seq, dtype=attn.dtype)
    distance = (positions[:, None] - positions[None, :]).abs()  # (seq, seq)
    return (attn * distance).sum(-1).mean(-1)


def token_groups(tokens: Sequence[str]) -> dict[str, list[int]]:
    """Positions of the tokens the statistics single out: "[CLS]", "[SEP]" and "punctuation" (a token made only of
    punctuation characters, word-piece marks ## ignored)."""
    groups: dict[str, list[int]] = {"[CLS]": [], "[SEP]": [], "punctuation": []}
    for i, token in enumerate(tokens):
        if token in ("[CLS]", "[SEP]"):
            groups[token].append(i)
            continue
        text = token.removeprefix("##")
        if text and all(unicodedata.category(c).startswith("P") for c in text):
            groups["punctuation"].append(i)
    return groups


def attention_share(attn: Tensor, positions: Sequence[int]) -> Tensor:
    """(layers, heads): the share of attention on the key `positions`, averaged over queries (0 if none)."""
    keys = list(positions)
    if not keys:
        return attn.new_zeros(attn.shape[:2])
    return attn[..., keys].sum(-1).mean(-1)


def aggregate_heads(attn: Tensor, how: str = "mean") -> Tensor:
    """(layers, seq_q, seq_k): the heads of each layer as one map. "mean" and "max" over heads; "rollout" is
    `attention_rollout` (attention through all layers up to each one; self-attention only)."""
    if how == "mean":
        return attn.mean(1)
    if how == "max":
        return attn.amax(1)
    if how == "rollout":
        return attention_rollout(attn)
    raise ValueError(f"how must be one of {list(AGGREGATIONS)}, got {how!r}")


def attention_rollout(attn: Tensor) -> Tensor:
    """(layers, seq, seq): attention rollout. Layer l's map is the head mean with the residual stream added,
    A_l = ½·mean_h(attn[l]) + ½·I (rows sum to 1), and row q of output[l] = A_l · A_(l-1) ⋯ A_0 says how much
    query q at layer l draws, through all paths, on each input token. Self-attention only (it chains maps of one
    sequence)."""
    _check_self_attention(attn, "attention rollout")
    seq = attn.shape[-1]
    layers = 0.5 * attn.mean(1) + 0.5 * torch.eye(seq, dtype=attn.dtype)
    rolled, out = torch.eye(seq, dtype=attn.dtype), []
    for layer in layers:
        rolled = layer @ rolled
        out.append(rolled)
    return torch.stack(out)


def head_statistics(attn: Tensor, tokens: Sequence[str], *, cross: bool = False) -> dict[str, Tensor]:
    """Every per-head statistic, each (layers, heads), named as in `STATISTICS`: "entropy", "distance", and the
    attention "share on [CLS]", "share on [SEP]" and "share on punctuation". With `cross=True` (cross-attention;
    `tokens` are then the keys', the source's) those of `CROSS_STATISTICS`: "entropy", "share on punctuation"."""
    if cross:
        punctuation = token_groups(tokens)["punctuation"]
        return {"entropy": head_entropy(attn), "share on punctuation": attention_share(attn, punctuation)}
    stats = {"entropy": head_entropy(attn), "distance": mean_distance(attn)}
    for group, positions in token_groups(tokens).items():
        stats[f"share on {group}"] = attention_share(attn, positions)
    return stats


def window(attn: Tensor, tokens: Sequence[str], start: int, length: int) -> tuple[Tensor, list[str]]:
    """Positions start..start+length-1 of a long sequence, as queries and keys: ((layers, heads, length', length'),
    their tokens); length' is shorter at the end. The rows are cut, so they no longer sum to 1."""
    require_positive_int("length", length)
    seq = attn.shape[-1]
    if not isinstance(start, int) or isinstance(start, bool) or not 0 <= start < seq:
        raise IndexError(f"window start {start!r} is out of range: the sequence has {seq} tokens, 0..{seq - 1}")
    end = min(seq, start + length)
    return attn[..., start:end, start:end], list(tokens[start:end])
