"""Scaled dot-product attention and multi-head attention.

Two paths compute the same thing:

* `naive_attention` writes the math out (scores → mask → softmax → weighted sum) and returns the weights,
  which is what the notebooks and the attention explorer need;
* `fast_attention` calls PyTorch's fused `F.scaled_dot_product_attention` (flash / memory-efficient kernels on
  a GPU, a fused kernel on the CPU) and returns no weights.

Shapes: q (batch, heads, seq_q, d_k), k (batch, heads, seq_k, d_k), v (batch, heads, seq_k, d_v);
any number of leading dims works as long as q, k and v agree on them.

`MultiHeadAttention` can also carry a position scheme that acts inside attention (`labkit.positional`): RoPE
rotates the queries and keys, ALiBi adds -slope·|i - j| to the scores. Both paths apply them the same way.

`KVCache` keeps one layer's keys and values while a decoder generates: each step feeds only the new token, whose
query attends to the cached keys and its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.masks import causal_mask, check_mask
from labkit.modules import eval_mode
from labkit.positional import RotaryEmbedding, alibi_bias
from labkit.validate import require_positive_int

__all__ = [
    "attention_scores",
    "naive_attention",
    "fast_attention",
    "split_heads",
    "merge_heads",
    "MultiHeadAttention",
    "KVCache",
    "recording_attention",
    "softmax_saturation",
]


def _check_qkv(q: Tensor, k: Tensor, v: Tensor) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.dtype.is_floating_point:
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
        if t.dim() < 2:
            raise ValueError(f"{name} must have at least 2 dims (..., seq, d), got shape {tuple(t.shape)}")
        if t.shape[-2] == 0:
            raise ValueError(f"{name} has an empty sequence: shape {tuple(t.shape)}")
    if not q.dim() == k.dim() == v.dim():
        raise ValueError(f"q, k, v must have the same number of dims, got shapes "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if q.dim() == 4 and not q.shape[1] == k.shape[1] == v.shape[1]:
        raise ValueError(f"q, k, v have different head counts: {q.shape[1]}, {k.shape[1]}, {v.shape[1]} "
                         f"(shapes are (batch, heads, seq, d_head))")
    if not q.shape[:-2] == k.shape[:-2] == v.shape[:-2]:
        raise ValueError(f"q, k, v must agree on their leading (batch, heads) dims, got shapes "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must have the same feature size d_k to be dotted, "
                         f"got {q.shape[-1]} and {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same sequence length (one value per key), "
                         f"got {k.shape[-2]} and {v.shape[-2]}")


def _check_dropout(dropout_p: float) -> None:
    if isinstance(dropout_p, bool) or not isinstance(dropout_p, (int, float)) or not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must lie in [0, 1), got {dropout_p!r}")


def _full_mask(mask: Tensor | None, is_causal: bool, q: Tensor, k: Tensor) -> Tensor | None:
    """The mask to apply, with the causal triangle folded in when asked for; float masks take q's dtype."""
    scores_shape = (*q.shape[:-1], k.shape[-2])
    if mask is not None:
        check_mask(mask, scores_shape)
        if mask.dtype != torch.bool:
            mask = mask.to(q.dtype)
    if not is_causal:
        return mask
    tri = causal_mask(q.shape[-2], k.shape[-2], device=q.device)
    if mask is None:
        return tri
    if mask.dtype == torch.bool:
        return mask & tri
    return mask.masked_fill(~tri, float("-inf"))


def attention_scores(q: Tensor, k: Tensor, scale: float | None = None) -> Tensor:
    """(..., seq_q, seq_k): every query dotted with every key, times `scale` (default 1/√d_k)."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    return (q @ k.transpose(-2, -1)) * scale


def naive_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    *,
    is_causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """softmax(q kᵀ · scale + mask) v, written out. Returns (output (..., seq_q, d_v), weights (..., seq_q, seq_k)).

    A query whose keys are all masked gets zero weights and a zero output, as in PyTorch's SDPA. NaN or inf in q, k
    or v is refused here (this is the path you read and debug); the fused path does not look.
    """
    _check_qkv(q, k, v)
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} holds {int((~torch.isfinite(t)).sum())} NaN or inf value(s): attention would "
                             f"spread them to every output that looks at them")
    _check_dropout(dropout_p)
    mask = _full_mask(mask, is_causal, q, k)
    scores = attention_scores(q, k, scale)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
        hidden = scores.isneginf().all(dim=-1, keepdim=True)
        weights = torch.softmax(scores.masked_fill(hidden, 0.0), dim=-1).masked_fill(hidden, 0.0)
    else:
        weights = torch.softmax(scores, dim=-1)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v, weights


def fast_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    *,
    is_causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
) -> Tensor:
    """The same as `naive_attention` through PyTorch's fused kernel; returns only the output (..., seq_q, d_v)."""
    _check_qkv(q, k, v)
    _check_dropout(dropout_p)
    if mask is not None:
        mask = _full_mask(mask, is_causal, q, k)
        is_causal = False
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                          is_causal=is_causal, scale=scale)


def _with_alibi(mask: Tensor | None, q: Tensor, k: Tensor) -> Tensor:
    """ALiBi's bias (heads, seq_q, seq_k) in q's dtype, with `mask` folded in: a bool mask turns the hidden
    scores to -inf, a float mask is added. With more keys than queries (a cache holds the earlier ones) the
    queries are the last seq_q positions."""
    bias = alibi_bias(q.shape[1], q.shape[-2], k.shape[-2], device=q.device).to(q.dtype)
    if k.shape[-2] > q.shape[-2]:  # |i - j| counted from the bottom-right corner: both axes read backwards
        bias = bias.flip((-2, -1))
    if mask is None:
        return bias
    check_mask(mask, (*q.shape[:-1], k.shape[-2]))
    if mask.dtype == torch.bool:
        return bias.masked_fill(~mask, float("-inf"))
    return bias + mask.to(q.dtype)


def _causal_from(start: int, q: Tensor) -> Tensor | None:
    """(seq_q, start + seq_q) bool, True = may attend: query i sits at position start + i and sees keys 0..start + i
    (the causal triangle aligned bottom-right). None for one query, which sees every key."""
    seq_q = q.shape[-2]
    return None if seq_q == 1 else torch.ones(seq_q, start + seq_q, dtype=torch.bool, device=q.device).tril(start)


def split_heads(x: Tensor, n_heads: int) -> Tensor:
    """(batch, seq, d_model) → (batch, heads, seq, d_head), with d_head = d_model / heads."""
    if x.dim() != 3:
        raise ValueError(f"expected (batch, seq, d_model), got shape {tuple(x.shape)}")
    require_positive_int("n_heads", n_heads)
    batch, seq, d_model = x.shape
    if d_model % n_heads:
        raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
    return x.view(batch, seq, n_heads, d_model // n_heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(batch, heads, seq, d_head) → (batch, seq, heads · d_head): the heads side by side again."""
    if x.dim() != 4:
        raise ValueError(f"expected (batch, heads, seq, d_head), got shape {tuple(x.shape)}")
    batch, heads, seq, d_head = x.shape
    return x.transpose(1, 2).reshape(batch, seq, heads * d_head)


class MultiHeadAttention(nn.Module):
    """Multi-head attention: project to Q, K, V, split into heads, attend, concatenate, project with W^O.

    Self-attention by default; pass `context` (the encoder's output) for cross-attention.
    Set `record_weights = True` to take the naive path and keep the last weights in `last_weights`
    (batch, heads, seq_q, seq_k); otherwise the fused fast path runs and `last_weights` is None.

    Positions inside attention, for self-attention only: `rotary` (a `RotaryEmbedding` over d_head, which may be
    shared by every layer) rotates q and k by their positions 0..seq-1; `alibi=True` adds
    `alibi_bias(n_heads, seq, seq)` to the scores, before any mask.

    `qk_norm=True` (QK-norm) scales every head's query and key vectors to RMS 1 (`F.rms_norm` over d_head, before
    RoPE), so no score can exceed √d_head: a large learning rate cannot blow the logits up and saturate the softmax.

    `cache` (a `KVCache`, causal self-attention): x holds only the tokens after those cached, at positions
    cache.length onwards; RoPE turns them by those positions, their keys and values join the cache, and ALiBi and
    the causal mask measure distances to every cached key.
    """

    def __init__(self, d_model: int, n_heads: int, *, bias: bool = True, dropout: float = 0.0,
                 rotary: RotaryEmbedding | None = None, alibi: bool = False, qk_norm: bool = False) -> None:
        super().__init__()
        if not isinstance(d_model, int) or not isinstance(n_heads, int) or d_model < 1 or n_heads < 1:
            raise ValueError(f"d_model and n_heads must be positive ints, got {d_model!r} and {n_heads!r}")
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}: "
                             f"each head gets d_model / n_heads features")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        self.d_model, self.n_heads, self.d_head, self.dropout = d_model, n_heads, d_model // n_heads, dropout
        if rotary is not None and (not isinstance(rotary, RotaryEmbedding) or rotary.d_head != self.d_head):
            got = f"d_head={rotary.d_head}" if isinstance(rotary, RotaryEmbedding) else type(rotary).__name__
            raise ValueError(f"rotary must be a RotaryEmbedding over d_head = d_model / n_heads = {self.d_head}, "
                             f"got {got}")
        for name, flag in (("alibi", alibi), ("qk_norm", qk_norm)):
            if not isinstance(flag, bool):
                raise ValueError(f"{name} must be True or False, got {flag!r}")
        self.rotary, self.alibi, self.qk_norm = rotary, alibi, qk_norm
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        self.record_weights = False
        self.last_weights: Tensor | None = None

    def _check_input(self, name: str, t: Tensor) -> None:
        if t.dim() != 3 or t.shape[-1] != self.d_model:
            raise ValueError(f"{name} must have shape (batch, seq, d_model={self.d_model}), got {tuple(t.shape)}")

    def queries_keys_values(self, x: Tensor, context: Tensor | None = None,
                            *, start: int = 0) -> tuple[Tensor, Tensor, Tensor]:
        """q (batch, heads, seq_q, d_head), k and v (batch, heads, seq_k, d_head): projected, split into heads,
        q and k normalised when the layer has `qk_norm`, then rotated when it has `rotary` (the tokens of x sit at
        positions start..). What the scores are computed from."""
        self._check_input("x", x)
        if context is not None and (self.rotary is not None or self.alibi):
            raise ValueError("context was given, but this layer's RoPE / ALiBi encode positions within one "
                             "sequence: use them for self-attention only (context=None)")
        context = x if context is None else context
        self._check_input("context", context)
        if context.shape[0] != x.shape[0]:
            raise ValueError(f"x and context have different batch sizes: {x.shape[0]} and {context.shape[0]}")
        q = split_heads(self.q_proj(x), self.n_heads)
        k = split_heads(self.k_proj(context), self.n_heads)
        v = split_heads(self.v_proj(context), self.n_heads)
        if self.qk_norm:
            q, k = F.rms_norm(q, (self.d_head,)), F.rms_norm(k, (self.d_head,))
        if self.rotary is not None:
            q, k = self.rotary(q, k, start)
        return q, k, v

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None,
                *, is_causal: bool = False, cache: KVCache | None = None) -> Tensor:
        """x: (batch, seq_q, d_model); context: (batch, seq_k, d_model), default x → (batch, seq_q, d_model)."""
        start = 0 if cache is None else cache.length
        q, k, v = self.queries_keys_values(x, context, start=start)
        if cache is not None:
            if context is not None or mask is not None:
                raise ValueError("cache is for self-attention without a mask: pass context=None and mask=None")
            k, v = cache.append(k, v)  # (batch, heads, start + seq_q, d_head): the cached keys, then the new ones
            if is_causal and start:
                mask, is_causal = _causal_from(start, q), False
        if self.alibi:
            mask = _with_alibi(mask, q, k)
        dropout_p = self.dropout if self.training else 0.0
        if self.record_weights:
            out, weights = naive_attention(q, k, v, mask, is_causal=is_causal, dropout_p=dropout_p)
            self.last_weights = weights.detach()
        else:
            out = fast_attention(q, k, v, mask, is_causal=is_causal, dropout_p=dropout_p)
            self.last_weights = None
        return self.out_proj(merge_heads(out))

    @classmethod
    def from_torch(cls, mha: nn.MultiheadAttention) -> MultiHeadAttention:
        """A copy of a `nn.MultiheadAttention` (same weights, so the same outputs)."""
        if not mha._qkv_same_embed_dim or mha.bias_k is not None or mha.add_zero_attn:
            raise ValueError("only nn.MultiheadAttention with kdim = vdim = embed_dim, no bias_k/bias_v "
                             "and add_zero_attn=False can be copied")
        if not mha.batch_first:
            raise ValueError("nn.MultiheadAttention must have batch_first=True: labkit's layers take "
                             "(batch, seq, d_model), and a sequence-first copy would silently mix the two")
        has_bias = mha.in_proj_bias is not None
        ours = cls(mha.embed_dim, mha.num_heads, bias=has_bias, dropout=mha.dropout)
        with torch.no_grad():
            for proj, w in zip((ours.q_proj, ours.k_proj, ours.v_proj), mha.in_proj_weight.chunk(3)):
                proj.weight.copy_(w)
            ours.out_proj.weight.copy_(mha.out_proj.weight)
            if has_bias:
                for proj, b in zip((ours.q_proj, ours.k_proj, ours.v_proj), mha.in_proj_bias.chunk(3)):
                    proj.bias.copy_(b)
                ours.out_proj.bias.copy_(mha.out_proj.bias)
        return ours


class KVCache:
    """One attention layer's keys and values so far, so that a decoder feeds each token through it once.

    keys, values: (batch, heads, max_len, d_head), allocated up front; positions 0..length-1 hold the tokens seen.
    Allocated rather than grown by torch.cat, which copies every cached key at every step: greedy generation of 1024
    tokens with notebook 04's model (4 layers, 4 heads, d_head 32) took 1.21 s on a 2-core CPU, 1.37 s with cat.
    """

    def __init__(self, batch: int, heads: int, max_len: int, d_head: int, *, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        for name, n in (("batch", batch), ("heads", heads), ("max_len", max_len), ("d_head", d_head)):
            require_positive_int(name, n)
        self.keys = torch.zeros(batch, heads, max_len, d_head, device=device, dtype=dtype)
        self.values = torch.zeros_like(self.keys)
        self.length = 0

    @property
    def max_len(self) -> int:
        return self.keys.shape[2]

    @property
    def nbytes(self) -> int:
        """Bytes held, filled or not: 2 · batch · heads · max_len · d_head · bytes per element."""
        return self.keys.nbytes + self.values.nbytes

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """k, v: (batch, heads, seq, d_head) of the next positions → the keys and values of every position so far,
        (batch, heads, length, d_head) (views of the buffers)."""
        batch, heads, _, d_head = self.keys.shape
        for name, t in (("k", k), ("v", v)):
            if t.dim() != 4 or (t.shape[0], t.shape[1], t.shape[3]) != (batch, heads, d_head) or t.shape != k.shape:
                raise ValueError(f"{name} has shape {tuple(t.shape)}; this cache takes (batch={batch}, heads={heads}, "
                                 f"seq, d_head={d_head}), k and v alike")
        end = self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"the cache holds max_len={self.max_len} positions and {self.length} are filled: "
                             f"{k.shape[2]} more do not fit; start a longer cache (or crop the text and start again)")
        self.keys[:, :, self.length:end] = k
        self.values[:, :, self.length:end] = v
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]


@contextmanager
def recording_attention(model: nn.Module, layers: Iterable[MultiHeadAttention]) -> Iterator[None]:
    """Inside the block: `model` in eval mode (no dropout, so every row sums to 1) and `layers` on the naive path,
    each keeping its weights in `last_weights`. On exit, also after an exception, both are switched back."""
    layers = list(layers)
    for attn in layers:
        attn.record_weights = True
    try:
        with eval_mode(model):
            yield
    finally:
        for attn in layers:
            attn.record_weights = False


def softmax_saturation(d_k: int, n_keys: int = 8, seed: int = 0) -> dict[str, Tensor]:
    """Softmax of one query's scores against `n_keys` random keys, with and without the 1/√d_k scale.

    q and the keys have unit-variance entries, so the raw dot products have standard deviation √d_k.
    Returns the raw scores and both rows of weights, each of shape (n_keys,).
    """
    require_positive_int("d_k", d_k)
    require_positive_int("n_keys", n_keys)
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(d_k, generator=gen)
    keys = torch.randn(n_keys, d_k, generator=gen)
    raw = keys @ q
    return {"scores": raw, "unscaled": torch.softmax(raw, dim=0), "scaled": torch.softmax(raw / math.sqrt(d_k), dim=0)}
