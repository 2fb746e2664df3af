"""Attention masks. Convention (the same as `F.scaled_dot_product_attention`):

* a **bool** mask is True where a query **may attend** to a key and False where it may not;
* a **float** mask is **added** to the scores (0 keeps a key, -inf removes it).

Masks broadcast against scores of shape (batch, heads, seq_q, seq_k).
Note that `nn.MultiheadAttention`'s `key_padding_mask` uses the opposite convention (True = ignore).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from labkit.validate import require_positive_int

__all__ = ["causal_mask", "padding_mask", "check_mask", "additive_mask"]


def causal_mask(seq_q: int, seq_k: int | None = None, device: torch.device | str | None = None) -> Tensor:
    """(seq_q, seq_k) bool: query i may attend to keys 0..i (lower triangle, diagonal included).

    Aligned top-left, as `scaled_dot_product_attention(is_causal=True)` does.
    """
    seq_k = seq_q if seq_k is None else seq_k
    for name, n in (("seq_q", seq_q), ("seq_k", seq_k)):
        require_positive_int(name, n)
    return torch.ones(seq_q, seq_k, dtype=torch.bool, device=device).tril()


def padding_mask(lengths: Sequence[int] | Tensor, seq_len: int) -> Tensor:
    """(batch, 1, 1, seq_len) bool: True on each sequence's first `lengths[b]` (real) tokens.

    Broadcasts over heads and queries, so padded keys are hidden from every query.
    """
    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1 or lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise ValueError(f"lengths must be a 1-D sequence of ints, got shape {tuple(lengths.shape)} "
                         f"and dtype {lengths.dtype}")
    require_positive_int("seq_len", seq_len)
    if (lengths < 1).any() or (lengths > seq_len).any():
        raise ValueError(f"every length must lie in 1..seq_len={seq_len}, got {lengths.tolist()}")
    keep = torch.arange(seq_len, device=lengths.device) < lengths[:, None]
    return keep[:, None, None, :]


def check_mask(mask: Tensor, scores_shape: Sequence[int]) -> None:
    """Raise a clear error unless `mask` is bool or float and broadcasts to `scores_shape`."""
    if not isinstance(mask, Tensor):
        raise TypeError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool and not mask.dtype.is_floating_point:
        raise TypeError(f"mask must be bool (True = may attend) or float (added to the scores), "
                        f"got dtype {mask.dtype}; for 0/1 masks use mask.bool()")
    expected = tuple(scores_shape)
    fits = mask.dim() <= len(expected) and all(
        m in (1, s) for m, s in zip(reversed(mask.shape), reversed(expected))
    )
    if not fits:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to the attention scores' "
                         f"shape {expected} = (batch, heads, seq_q, seq_k)")


def additive_mask(mask: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """A float mask to add to the scores: 0 where `mask` keeps a key, -inf where it hides one."""
    if not isinstance(mask, Tensor) or not (mask.dtype == torch.bool or mask.dtype.is_floating_point):
        got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise TypeError(f"mask must be bool (True = may attend) or float (added to the scores), got {got}; "
                        f"for 0/1 masks use mask.bool()")
    if mask.dtype != torch.bool:
        return mask.to(dtype)
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, float("-inf"))
