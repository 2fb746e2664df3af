"""Positional encodings: how a transformer learns where each token sits.

Attention alone treats its input as a set, so order has to be put in by hand. Four ways to do it:

* **sinusoidal** (Vaswani et al., 2017): a fixed table of sines and cosines added to the token vectors;
* **learned**: a trainable table, one row per position, added the same way (BERT, GPT-2);
* **RoPE** (Su et al., RoFormer): rotate each pair of query/key dims by an angle proportional to the position,
  so q·k depends only on the distance between the two tokens (LLaMA, most recent LLMs);
* **ALiBi** (Press et al.): no encoding at all, a per-head penalty -slope·|i - j| added to the attention scores.

Pair i of the sinusoidal table and of RoPE turns at the frequency ω_i = base^(-2i/d): fast for the first dims,
slow for the last. Only the math lives here; `labkit.viz.positional_widgets` draws it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from labkit.validate import require_positive_int

__all__ = [
    "sinusoidal_table",
    "SinusoidalPositionalEncoding",
    "LearnedPositionalEmbedding",
    "offset_rotation",
    "rope_angles",
    "apply_rope",
    "RotaryEmbedding",
    "alibi_slopes",
    "alibi_bias",
]


# ----------------------------------------------------------------------------- argument checks


def _check_even(name: str, value: int, why: str) -> None:
    require_positive_int(name, value)
    if value % 2:
        raise ValueError(f"{why}, so {name} must be even, got {value}")


def _check_base(base: float) -> None:
    if isinstance(base, bool) or not isinstance(base, (int, float)) or not base > 1:
        raise ValueError(f"base must be a number > 1 (the wavelengths grow as base^(2i/d)), got {base!r}")


def _check_input(x: Tensor, d_model: int, max_len: int, what: str) -> None:
    """x must be (..., seq, d_model) with seq <= max_len."""
    if x.dim() < 2 or x.shape[-1] != d_model:
        raise ValueError(f"x must have shape (batch, seq, d_model={d_model}), got {tuple(x.shape)}")
    if x.shape[-2] > max_len:
        raise ValueError(f"sequence length {x.shape[-2]} is longer than max_len={max_len}; {what}")


def _frequencies(d: int, base: float) -> Tensor:
    """(d/2,) float64: ω_i = base^(-2i/d), the angle per position step of pair i."""
    return base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)


# ----------------------------------------------------------------------------- sinusoidal

def sinusoidal_table(max_len: int, d_model: int, base: float = 10000.0) -> Tensor:
    """(max_len, d_model): PE[pos, 2i] = sin(pos·ω_i), PE[pos, 2i+1] = cos(pos·ω_i), ω_i = base^(-2i/d_model)."""
    require_positive_int("max_len", max_len)
    _check_even("d_model", d_model, "sinusoidal encoding pairs sin/cos dims")
    _check_base(base)
    # float64 for the angles: pos·ω reaches thousands of radians, where float32 would lose the 4th decimal.
    angles = torch.arange(max_len, dtype=torch.float64)[:, None] * _frequencies(d_model, base)  # (max_len, d/2)
    table = torch.stack([angles.sin(), angles.cos()], dim=-1)  # (max_len, d/2, 2): sin, cos side by side
    return table.flatten(-2).to(torch.get_default_dtype())


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal table: x (batch, seq, d_model) → x + scale · PE[:seq]. Nothing to train.

    `scale` sizes the table against the token embeddings: its entries reach ±1, which drowns token vectors
    initialised with std 0.02 (GPT-2's); the original Transformer scaled the tokens up by √d_model instead.
    """

    def __init__(self, d_model: int, max_len: int = 2048, base: float = 10000.0, scale: float = 1.0) -> None:
        super().__init__()
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
            raise ValueError(f"scale must be a number > 0 (it multiplies the table), got {scale!r}")
        self.d_model, self.max_len, self.base, self.scale = d_model, max_len, base, scale
        # A buffer follows .to(device) but is not a parameter; not saved, since it is rebuilt from the formula.
        self.register_buffer("pe", scale * sinusoidal_table(max_len, d_model, base), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.d_model, self.max_len,
                     "build the encoding with a larger max_len (the formula works for any position)")
        return x + self.pe[: x.shape[-2]].to(x.dtype)


class LearnedPositionalEmbedding(nn.Module):
    """Adds a trainable table, one row per position: x (batch, seq, d_model) → x + E[:seq]."""

    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__()
        require_positive_int("max_len", max_len)
        require_positive_int("d_model", d_model)
        self.max_len, self.d_model = max_len, d_model
        self.table = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.table.weight, std=0.02)  # small, as GPT-2 does, so it does not swamp the tokens

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.d_model, self.max_len,
                     "a learned table has no rows past max_len, so it cannot encode later positions")
        positions = torch.arange(x.shape[-2], device=x.device)
        return x + self.table(positions).to(x.dtype)


def offset_rotation(offset: int, d_model: int, base: float = 10000.0) -> Tensor:
    """(d_model, d_model): the matrix M_k with PE[pos + k] = M_k @ PE[pos] for every pos (k = `offset`).

    Block-diagonal: pair i is turned by the angle k·ω_i, whatever pos is, since
    sin((p+k)ω) = sin(pω)cos(kω) + cos(pω)sin(kω) and cos((p+k)ω) = cos(pω)cos(kω) - sin(pω)sin(kω).
    """
    if not isinstance(offset, int) or isinstance(offset, bool):
        raise ValueError(f"offset must be an int (a number of positions), got {offset!r}")
    _check_even("d_model", d_model, "sinusoidal encoding pairs sin/cos dims")
    _check_base(base)
    angles = offset * _frequencies(d_model, base)
    c, s = angles.cos(), angles.sin()
    blocks = torch.stack([torch.stack([c, s], -1), torch.stack([-s, c], -1)], -2)  # (d/2, 2, 2)
    return torch.block_diag(*blocks).to(torch.get_default_dtype())


# ----------------------------------------------------------------------------- RoPE

def rope_angles(seq_len: int, d_head: int, base: float = 10000.0,
                positions: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """cos and sin of the angles pos·ω_i, each (seq_len, d_head/2), or (..., seq_len, d_head/2) for
    `positions` of shape (..., seq_len) (default 0..seq_len-1)."""
    require_positive_int("seq_len", seq_len)
    _check_even("d_head", d_head, "RoPE rotates dims in pairs")
    _check_base(base)
    if positions is None:
        positions = torch.arange(seq_len)
    elif not isinstance(positions, Tensor) or positions.dim() < 1 or positions.shape[-1] != seq_len:
        shape = tuple(positions.shape) if isinstance(positions, Tensor) else type(positions).__name__
        raise ValueError(f"positions must be a tensor of shape (..., seq_len={seq_len}), got {shape}")
    # The angles in float64 on the CPU (MPS has no float64), then back to the positions' device.
    angles = positions.detach().to("cpu", torch.float64)[..., None] * _frequencies(d_head, base)
    dtype = torch.get_default_dtype()
    return angles.cos().to(dtype).to(positions.device), angles.sin().to(dtype).to(positions.device)


def _rotate_pairs(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Turn each pair (x[2i], x[2i+1]) of x (..., seq, d) by the angle whose cos/sin are (..., seq, d/2)."""
    even, odd = x[..., 0::2], x[..., 1::2]
    cos, sin = cos.to(x), sin.to(x)
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)


def apply_rope(x: Tensor, positions: Tensor | None = None, base: float = 10000.0) -> Tensor:
    """Rotary position embedding of x (..., seq, d_head): pair (2i, 2i+1) of the token at position m is turned
    by the angle m·base^(-2i/d_head). Then (R_m q)·(R_n k) depends on m - n only.

    This is RoFormer's interleaved layout. Hugging Face's `rotate_half` pairs dim i with dim i + d_head/2
    instead; the two are the same rotation up to a permutation of the dims (which learned projections absorb).
    `positions`: (seq,), or any (..., seq) that broadcasts against x's leading dims; default 0..seq-1.
    """
    if not isinstance(x, Tensor) or x.dim() < 2:
        raise ValueError(f"x must be a tensor of shape (..., seq, d_head), got "
                         f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    cos, sin = rope_angles(x.shape[-2], x.shape[-1], base, positions)
    return _rotate_pairs(x, cos, sin)


class RotaryEmbedding(nn.Module):
    """RoPE with cos/sin cached up to `max_len`: forward(q, k) with q, k (..., seq, d_head) → rotated (q, k).

    Positions run start..start+seq-1 for q and for k alike: start=0 for self-attention over a whole sequence, the
    number of cached tokens when a KV cache holds the earlier ones.
    """

    def __init__(self, d_head: int, max_len: int = 2048, base: float = 10000.0) -> None:
        super().__init__()
        self.d_head, self.max_len, self.base = d_head, max_len, base
        cos, sin = rope_angles(max_len, d_head, base)  # checks all three arguments
        self.register_buffer("cos", cos, persistent=False)  # (max_len, d_head/2)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, q: Tensor, k: Tensor, start: int = 0) -> tuple[Tensor, Tensor]:
        for name, t in (("q", q), ("k", k)):
            if t.dim() < 2 or t.shape[-1] != self.d_head:
                raise ValueError(f"{name} must have shape (..., seq, d_head={self.d_head}), got {tuple(t.shape)}")
            if start + t.shape[-2] > self.max_len:
                raise ValueError(f"{name} has positions up to {start + t.shape[-2] - 1}, past the max_len="
                                 f"{self.max_len} cached by RotaryEmbedding; build it with a larger max_len")
        rotate = lambda t: _rotate_pairs(t, self.cos[start:start + t.shape[-2]],  # noqa: E731
                                         self.sin[start:start + t.shape[-2]])
        return rotate(q), rotate(k)


# ----------------------------------------------------------------------------- ALiBi

def alibi_slopes(n_heads: int) -> Tensor:
    """(heads,): ALiBi's per-head slopes, a geometric sequence.

    For n heads, n a power of two: 2^(-8/n), 2^(-16/n), ..., 2^(-8). Otherwise, with p the largest power of two
    below n: the p slopes for p heads, then the first n - p of the slopes for 2p heads that fall between them
    (2^(-4/p), 2^(-12/p), ...), as in the paper's code.
    """
    require_positive_int("n_heads", n_heads)
    p = 1 << (n_heads.bit_length() - 1)  # the largest power of two <= n_heads
    slopes = [2.0 ** (-8.0 * i / p) for i in range(1, p + 1)]
    slopes += [2.0 ** (-8.0 * i / (2 * p)) for i in range(1, 2 * (n_heads - p), 2)]  # odd steps of 2p heads
    return torch.tensor(slopes)


def alibi_bias(n_heads: int, seq_q: int, seq_k: int | None = None,
               device: torch.device | str | None = None) -> Tensor:
    """(heads, seq_q, seq_k) float: -slope_h · |i - j|, to add to the attention scores.

    Use it as the float `mask` of `labkit.attention.naive_attention` / `fast_attention` (it broadcasts over the
    batch); add `is_causal=True` for a decoder. Query i and key j are aligned top-left, as in `causal_mask`.
    """
    seq_k = seq_q if seq_k is None else seq_k
    require_positive_int("seq_q", seq_q)
    require_positive_int("seq_k", seq_k)
    distance = (torch.arange(seq_q, device=device)[:, None] - torch.arange(seq_k, device=device)).abs()
    return alibi_slopes(n_heads).to(device)[:, None, None] * -distance  # -distance keeps the diagonal +0.0
