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

Head ablation and activation patching are causal: change what a part computes, run the model again, and measure.
`head_ablation_effects` knocks out one head at a time; the patching sweeps run a corrupted input with one
activation taken from the clean run, and report how much of the clean answer each patch brings back:

    metric = lambda logits: logit_difference(logits, right, wrong)   # (batch,): the answer at the last position
    patch_residual_sweep(model, clean, corrupted, metric)           # (layers + 1, seq): 1 = fully restored
    patch_head_sweep(model, clean, corrupted, metric)               # (layers, heads)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.corpus import CharCorpus, CharTokenizer
from labkit.hooks import ablating_heads, attention_layers, patching, patching_heads, recording, recording_heads
from labkit.modules import eval_mode
from labkit.validate import require_positive_int

__all__ = ["direct_logit_attribution", "repeated_tokens", "RepeatMix", "induction_scores", "previous_token_scores",
           "copy_losses", "mean_head_outputs", "ablated_loss", "head_ablation_effects", "logit_difference",
           "patch_residual_sweep", "patch_head_sweep"]


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


@dataclass
class RepeatMix:
    """A CharCorpus whose batches hold, in a `share` of their rows, random tokens in which a stretch repeats: at a
    random place, of a random length (from `min_length` to half the window), the tokens before come again. Only a
    model that looks back at the first copy can predict the second. Stands in for the corpus in `train` and
    `estimate_loss`."""

    corpus: CharCorpus
    share: float = 0.9  # with 0.75 the induction preset's heads formed only near its last step; 0.9: near step 1400
    min_length: int = 4

    def __post_init__(self) -> None:
        if not 0 <= self.share <= 1:
            raise ValueError(f"share must be between 0 and 1, got {self.share}")
        require_positive_int("min_length", self.min_length)

    @property
    def tokenizer(self) -> CharTokenizer:
        return self.corpus.tokenizer

    def batch(self, split: str, batch_size: int, block_size: int, generator: torch.Generator | None = None,
              device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        """x, y (batch_size, block_size) as `CharCorpus.batch`, some rows holding a repeated random stretch."""
        x, y = self.corpus.batch(split, batch_size, block_size, generator)
        window = torch.cat([x, y[:, -1:]], dim=1)  # (batch, block_size + 1): x is window[:, :-1], y window[:, 1:]
        longest = (block_size + 1) // 2
        if longest < self.min_length:
            raise ValueError(f"block_size={block_size} cannot hold two copies of min_length={self.min_length} tokens")
        vocab = self.tokenizer.vocab_size
        for row in (torch.rand(batch_size, generator=generator) < self.share).nonzero()[:, 0].tolist():
            length = int(torch.randint(self.min_length, longest + 1, (), generator=generator))
            start = int(torch.randint(0, block_size + 2 - 2 * length, (), generator=generator))
            window[row] = torch.randint(0, vocab, (block_size + 1,), generator=generator)
            window[row, start + length:start + 2 * length] = window[row, start:start + length]
        x, y = window[:, :-1], window[:, 1:]
        return (x, y) if device is None else (x.to(device), y.to(device))


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


@torch.no_grad()
def mean_head_outputs(model: nn.Module, x: Tensor) -> dict[int, Tensor]:
    """layer → (heads, d_head): each head's output averaged over x's batch and positions, in eval mode; what
    `ablating_heads(..., means=)` writes in place of a head."""
    with eval_mode(model), recording_heads(model) as heads:
        model(x)
    return {i: h.mean(dim=(0, 2)) for i, h in heads.items()}


@torch.no_grad()
def ablated_loss(model: nn.Module, x: Tensor, y: Tensor, heads: Sequence[tuple[int, int]] = (),
                 means: dict[int, Tensor] | None = None) -> float:
    """The mean cross-entropy of predicting y from x (batch, seq) with `heads` ablated as `ablating_heads` does
    (zero, or their `means`), in eval mode."""
    with eval_mode(model), ablating_heads(model, heads, means):
        return F.cross_entropy(model(x).flatten(0, 1).float(), y.flatten()).item()


def head_ablation_effects(model: nn.Module, x: Tensor, y: Tensor, kind: str = "zero") -> Tensor:
    """(layers, heads): how much the loss of predicting y from x (batch, seq) rises when that one head is ablated,
    in eval mode. kind "zero": the head writes nothing; "mean": it writes its mean output over x's batch and
    positions (`mean_head_outputs`), which keeps what it always writes and removes only what depends on the input."""
    if kind not in ("zero", "mean"):
        raise ValueError(f"kind must be 'zero' or 'mean', got {kind!r}")
    layers = attention_layers(model)
    means = mean_head_outputs(model, x) if kind == "mean" else None
    clean = ablated_loss(model, x, y)
    effects = torch.zeros(len(layers), max(layer.n_heads for layer in layers))
    for i, layer in enumerate(layers):
        for h in range(layer.n_heads):
            effects[i, h] = ablated_loss(model, x, y, [(i, h)], means) - clean
    return effects


def logit_difference(logits: Tensor, right: Tensor | int, wrong: Tensor | int) -> Tensor:
    """(batch,): logit of `right` minus logit of `wrong` at the last position of logits (batch, seq, vocab); right
    and wrong are token ids, one for all rows or one per row."""
    last = logits[:, -1].float()  # (batch, vocab)
    rows = torch.arange(last.shape[0], device=last.device)
    right, wrong = torch.as_tensor(right, device=last.device), torch.as_tensor(wrong, device=last.device)
    return last[rows, right] - last[rows, wrong]


def _check_pair(clean: Tensor, corrupted: Tensor) -> None:
    for name, idx in (("clean", clean), ("corrupted", corrupted)):
        if idx.dim() != 2 or idx.shape[0] != 1:
            raise ValueError(f"{name} must be one sequence of token ids (1, seq), got shape {tuple(idx.shape)}")
    if clean.shape != corrupted.shape:
        raise ValueError(f"clean has {clean.shape[1]} tokens but corrupted has {corrupted.shape[1]}: activation "
                         f"patching needs inputs of the same length, differing in a few places")


def _restored(metric: Callable[[Tensor], Tensor], model: nn.Module, corrupted: Tensor, low: float,
              high: float) -> float:
    """How much of the way from the corrupted run's metric (low) to the clean run's (high) this run gets."""
    return (float(metric(model(corrupted))[0]) - low) / (high - low)


@torch.no_grad()
def _ends(model: nn.Module, clean: Tensor, corrupted: Tensor,
          metric: Callable[[Tensor], Tensor]) -> tuple[float, float]:
    """(the corrupted run's metric, the clean run's), refusing a pair the metric cannot tell apart."""
    _check_pair(clean, corrupted)
    high, low = float(metric(model(clean))[0]), float(metric(model(corrupted))[0])
    if abs(high - low) < 1e-6:
        raise ValueError(f"the metric is {high:.4g} on both inputs: the corruption changes nothing to restore")
    return low, high


@torch.no_grad()
def patch_residual_sweep(model: nn.Module, clean: Tensor, corrupted: Tensor,
                         metric: Callable[[Tensor], Tensor]) -> Tensor:
    """(layers + 1, seq): for the residual stream after the embedding and after each block of a TinyGPT, and each
    position, the share of the clean run's metric that patching that one activation from clean into the corrupted
    run restores: 0 = the corrupted run's value, 1 = the clean run's. clean, corrupted: (1, seq) token ids.
    metric: logits (batch, seq, vocab) → (batch,), e.g. a `logit_difference`. In eval mode."""
    names = ["drop", *(f"blocks.{i}" for i in range(len(model.blocks)))]
    with eval_mode(model):
        low, high = _ends(model, clean, corrupted, metric)
        with recording(model, names) as seen:
            model(clean)
        restored = torch.zeros(len(names), clean.shape[1])
        for row, name in enumerate(names):
            for position in range(clean.shape[1]):
                with patching(model, {name: seen[name]}, positions=[position]):
                    restored[row, position] = _restored(metric, model, corrupted, low, high)
    return restored


@torch.no_grad()
def patch_head_sweep(model: nn.Module, clean: Tensor, corrupted: Tensor, metric: Callable[[Tensor], Tensor]) -> Tensor:
    """(layers, heads): the share of the clean run's metric restored by patching one head's output (at every
    position) from the clean run into the corrupted one; as `patch_residual_sweep`."""
    layers = attention_layers(model)
    with eval_mode(model):
        low, high = _ends(model, clean, corrupted, metric)
        with recording_heads(model) as heads:
            model(clean)
        restored = torch.zeros(len(layers), max(layer.n_heads for layer in layers))
        for i, layer in enumerate(layers):
            for h in range(layer.n_heads):
                with patching_heads(model, {(i, h): heads[i][:, h]}):
                    restored[i, h] = _restored(metric, model, corrupted, low, high)
    return restored
