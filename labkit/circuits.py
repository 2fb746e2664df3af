"""Measurements of what heads do, on labkit's own GPTs: what each part writes towards a prediction (direct logit
attribution), and induction on repeated random tokens.

Direct logit attribution: a TinyGPT's last residual stream is a sum, the embedding plus what every head and every
feed-forward network wrote; the final LayerNorm is linear once its scale (1 / std of the stream, per position) is
frozen at the value of this input, and so is the output layer. Each part's share of the logit of a token is then
its vector, centred, times that scale, the norm's weight and the token's output row; the shares and the norm's
bias add up to the logit.

An induction head completes a pattern seen earlier in the context: on "… A B … A" it attends from the second A to
the B that followed the first one, and so helps predict B. On a sequence of `length` random tokens repeated twice,
the token after the earlier occurrence of the token at position t (t ≥ length) sits at t - length + 1, and a
previous-token head attends from t to t - 1. The scores are the mean attention weight on those keys (the
definitions of Olsson et al. 2022, as ARENA computes them); the in-context loss shows what the heads buy: the
second copy is predictable, the first is not.

    tokens = repeated_tokens(vocab_size, length=30, batch=16, generator=torch.Generator().manual_seed(0))
    maps = model.attention_maps(tokens)                            # (layers, batch, heads, seq, seq)
    induction_scores(maps, 30), previous_token_scores(maps)        # (layers, heads) each
    copy_losses(model, tokens, 30)                                 # {"first": …, "second": …}
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.hooks import recording, recording_heads
from labkit.modules import eval_mode
from labkit.validate import require_positive_int

__all__ = ["direct_logit_attribution", "repeated_tokens", "induction_scores", "previous_token_scores",
           "copy_losses"]


@torch.no_grad()
def direct_logit_attribution(model: nn.Module, idx: Tensor, targets: Tensor) -> tuple[list[str], Tensor, Tensor]:
    """What each part of a TinyGPT writes towards the logit of `targets` (batch, seq) at every position of idx
    (batch, seq), in eval mode: (the parts' names: "embedding", "L0H0" … for heads, "L0 MLP" … for feed-forward
    networks; their shares (batch, seq, parts); the constant the norm's bias adds (batch, seq)). The shares plus the
    constant are the model's logits of `targets`."""
    if targets.shape != idx.shape:
        raise ValueError(f"targets must be shaped like idx {tuple(idx.shape)}, got {tuple(targets.shape)}")
    blocks = list(model.blocks)
    ff_names = [f"blocks.{i}.ff" for i, block in enumerate(blocks) if block.ff is not None]
    with eval_mode(model), recording(model, ["drop", f"blocks.{len(blocks) - 1}", *ff_names]) as seen, \
            recording_heads(model) as heads:
        model(idx)
    names, parts = ["embedding"], [seen["drop"]]
    for i, block in enumerate(blocks):
        attn = block.self_attn
        w_o = attn.out_proj.weight.view(attn.d_model, attn.n_heads, attn.d_head)  # (d_model, heads, d_head)
        per_head = torch.einsum("bhsk,dhk->bhsd", heads[i], w_o)  # (batch, heads, seq, d_model)
        names += [f"L{i}H{h}" for h in range(attn.n_heads)]
        parts += list(per_head.unbind(1))
        if attn.out_proj.bias is not None:
            names.append(f"L{i} attention bias")
            parts.append(attn.out_proj.bias.expand_as(seen["drop"]))
        if block.ff is not None:
            names.append(f"L{i} MLP")
            parts.append(seen[f"blocks.{i}.ff"])
    stream = seen[f"blocks.{len(blocks) - 1}"]  # (batch, seq, d_model): the sum of the parts
    norm = model.norm
    scale = (stream.var(-1, unbiased=False, keepdim=True) + norm.eps).rsqrt()  # frozen at this input
    rows = model.lm_head.weight[targets]  # (batch, seq, d_model): each target's output row
    shares = torch.stack([((p - p.mean(-1, keepdim=True)) * scale * norm.weight * rows).sum(-1) for p in parts], -1)
    constant = (norm.bias * rows).sum(-1) if norm.bias is not None else torch.zeros_like(shares[..., 0])
    return names, shares, constant


def repeated_tokens(vocab_size: int, length: int, batch: int, generator: torch.Generator | None = None) -> Tensor:
    """(batch, 2 · length) long: `length` tokens drawn uniformly from 0..vocab_size-1, then the same tokens again."""
    for name, value in (("vocab_size", vocab_size), ("length", length), ("batch", batch)):
        require_positive_int(name, value)
    first = torch.randint(0, vocab_size, (batch, length), generator=generator)
    return torch.cat([first, first], dim=1)


def _check_maps(maps: Tensor) -> None:
    if not isinstance(maps, Tensor) or maps.dim() != 5 or maps.shape[-1] != maps.shape[-2]:
        got = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise ValueError(f"maps must be attention weights (layers, batch, heads, seq, seq), got {got}")


def _diagonal_mean(maps: Tensor, offset: int, queries: slice) -> Tensor:
    """(layers, heads): the mean weight from query t to key t - offset, over the queries in `queries`."""
    seq = maps.shape[-1]
    t = torch.arange(seq)[queries]
    return maps[..., t, t - offset].mean(dim=(1, 3))  # mean over batch and queries


def induction_scores(maps: Tensor, length: int) -> Tensor:
    """(layers, heads): each head's mean attention from a token of the second copy (t = length .. 2·length-1) to
    the token after its earlier occurrence (t - length + 1). 1 for a perfect induction head, near 0 for others.

    maps: (layers, batch, heads, 2·length, 2·length), e.g. `TinyGPT.attention_maps(repeated_tokens(...))`."""
    _check_maps(maps)
    require_positive_int("length", length)
    if maps.shape[-1] != 2 * length:
        raise ValueError(f"maps cover {maps.shape[-1]} positions, but two copies of length={length} are "
                         f"{2 * length}: pass the length the tokens were repeated with")
    return _diagonal_mean(maps, length - 1, slice(length, 2 * length))


def previous_token_scores(maps: Tensor) -> Tensor:
    """(layers, heads): each head's mean attention from every token (but the first) to the one just before it."""
    _check_maps(maps)
    return _diagonal_mean(maps, 1, slice(1, None))


@torch.no_grad()
def copy_losses(model: nn.Module, tokens: Tensor, length: int) -> dict[str, float]:
    """The model's mean cross-entropy predicting the first copy's tokens 1..length-1 from what comes before, and the
    second copy's tokens (the repeats: a model that reads its context can predict them). In eval mode."""
    require_positive_int("length", length)
    if tokens.dim() != 2 or tokens.shape[1] != 2 * length:
        raise ValueError(f"tokens must be (batch, 2·length = {2 * length}) from repeated_tokens, got "
                         f"{tuple(tokens.shape)}")
    with eval_mode(model):
        logits = model(tokens[:, :-1]).float()  # (batch, 2·length - 1, vocab): position t predicts t + 1
    losses = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none")  # (batch, 2·length - 1)
    return {"first": losses[:, :length - 1].mean().item(), "second": losses[:, length:].mean().item()}
