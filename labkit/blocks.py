"""The transformer block's parts: the position-wise feed-forward network, and encoder / decoder blocks.

A block is attention followed by a feed-forward network, each wrapped in a residual connection with a
LayerNorm. Where the norm goes is the one design choice:

* post-LN (the original paper, `norm_first=False`):  x = norm(x + sublayer(x))
* pre-LN  (GPT-2 and most models since, `norm_first=True`):  x = x + sublayer(norm(x))

An `EncoderBlock` run with `is_causal=True` is exactly a GPT (decoder-only) block: decoder-only models have no
cross-attention, so "decoder" there only means "causal". `DecoderBlock` is the encoder–decoder kind, with
cross-attention to the encoder's output (`memory`).

Submodule names and dropout placement follow `nn.TransformerEncoderLayer` / `nn.TransformerDecoderLayer`, so
`from_torch` can copy their weights and the outputs agree. `EncoderBlock.from_bert_layer` copies a pretrained BERT
layer (Hugging Face's `BertLayer`, read by its parts' names, so this module never imports transformers).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from labkit.attention import KVCache, MultiHeadAttention
from labkit.positional import RotaryEmbedding
from labkit.validate import require_positive_int

__all__ = ["relu_squared", "FeedForward", "EncoderBlock", "DecoderBlock", "count_parameters", "BERT_LAYER_PARTS"]


def relu_squared(x: Tensor) -> Tensor:
    """ReLU(x)², elementwise: as cheap as ReLU. Found for language models by the Primer architecture search (So et al.
    2021) and used by the GPT-2 speedrun records; on the tiny GPT it pays only with the other switches (notebook
    12)."""
    return F.relu(x).square()


_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "relu2": relu_squared}


def _check_config(d_model: int, n_heads: int, d_ff: int, dropout: float, activation: str) -> None:
    for name, n in (("d_model", d_model), ("n_heads", n_heads), ("d_ff", d_ff)):
        require_positive_int(name, n)
    if d_model % n_heads:
        raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}: "
                         f"each head gets d_model / n_heads features")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")


def _check_input(name: str, t: Tensor, d_model: int) -> None:
    if not isinstance(t, Tensor) or t.dim() != 3 or t.shape[-1] != d_model:
        shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
        raise ValueError(f"{name} must have shape (batch, seq, d_model={d_model}), got {shape}")


def _torch_activation(layer: nn.Module) -> str:
    """'relu' or 'gelu' for a torch transformer layer's activation; raise for anything else."""
    act = layer.activation
    if act is F.relu or isinstance(act, nn.ReLU):
        return "relu"
    if act is F.gelu or (isinstance(act, nn.GELU) and act.approximate == "none"):
        return "gelu"
    raise ValueError(f"only relu and (exact) gelu activations can be copied, got {act!r}")


def _check_torch_layer(layer: nn.Module, kind: type) -> None:
    if not isinstance(layer, kind):
        raise TypeError(f"expected an nn.{kind.__name__}, got {type(layer).__name__}")
    if not layer.self_attn.batch_first:
        raise ValueError(f"the nn.{kind.__name__} must be built with batch_first=True "
                         f"(labkit's tensors are (batch, seq, d_model)), got batch_first=False")


def _copy_torch_layer(cls: type, layer: nn.Module, kind: type) -> nn.Module:
    """A labkit block (`cls`) with the weights, dropout, eps and mode of a torch encoder or decoder layer."""
    _check_torch_layer(layer, kind)
    ours = cls(layer.self_attn.embed_dim, layer.self_attn.num_heads, layer.linear1.out_features,
               dropout=layer.dropout.p, activation=_torch_activation(layer), norm_first=layer.norm_first,
               bias=layer.linear1.bias is not None, layer_norm_eps=layer.norm1.eps)
    ours.self_attn = MultiHeadAttention.from_torch(layer.self_attn)
    if kind is nn.TransformerDecoderLayer:
        ours.cross_attn = MultiHeadAttention.from_torch(layer.multihead_attn)
    ours.ff.linear1.load_state_dict(layer.linear1.state_dict())
    ours.ff.linear2.load_state_dict(layer.linear2.state_dict())
    for name in ("norm1", "norm2", "norm3"):
        if hasattr(layer, name):
            getattr(ours, name).load_state_dict(getattr(layer, name).state_dict())
    return ours.train(layer.training)


# A Hugging Face BertLayer's parts, by attribute path, and where each goes in an EncoderBlock.
BERT_LAYER_PARTS = {
    "attention.self.query": "self_attn.q_proj",
    "attention.self.key": "self_attn.k_proj",
    "attention.self.value": "self_attn.v_proj",
    "attention.output.dense": "self_attn.out_proj",
    "attention.output.LayerNorm": "norm1",
    "intermediate.dense": "ff.linear1",
    "output.dense": "ff.linear2",
    "output.LayerNorm": "norm2",
}


def _bert_parts(layer: nn.Module) -> dict[str, nn.Module]:
    """`BERT_LAYER_PARTS`' modules in `layer`, checked to be a BERT encoder layer that an EncoderBlock reproduces."""
    what = f"layer (a {type(layer).__name__})"
    missing = [path for path in BERT_LAYER_PARTS
               if not isinstance(_get(layer, path), nn.LayerNorm if path.endswith("LayerNorm") else nn.Linear)]
    if missing:
        which = "all of them" if len(missing) == len(BERT_LAYER_PARTS) else ", ".join(missing)
        raise TypeError(f"{what} is not a BERT encoder layer: expected a Hugging Face BertLayer, with Linear / "
                        f"LayerNorm parts at {', '.join(BERT_LAYER_PARTS)}; missing or of another type: {which}")
    parts = {path: _get(layer, path) for path in BERT_LAYER_PARTS}
    if getattr(layer, "is_decoder", False) or hasattr(layer, "crossattention"):
        raise ValueError(f"{what} is a BERT decoder layer (is_decoder=True or cross-attention): expected an "
                         f"encoder layer, whose self-attention sees the whole sequence")
    kind = getattr(_get(layer, "attention.self"), "position_embedding_type", "absolute")
    if kind != "absolute":
        raise ValueError(f"{what} uses position_embedding_type={kind!r}, which adds a position term inside "
                         f"attention; expected 'absolute' (positions added to the embeddings)")
    act = getattr(layer.intermediate, "intermediate_act_fn", None)
    exact_gelu = (act is F.gelu or (isinstance(act, nn.GELU) and act.approximate == "none")
                  or getattr(act, "act", None) is F.gelu)  # HF's GELUActivation wraps F.gelu
    if not exact_gelu:
        raise ValueError(f"{what} has the activation {act!r}; expected BERT's exact GELU (hidden_act='gelu', "
                         f"F.gelu), the one an EncoderBlock(activation='gelu') computes")
    d, d_ff = parts["attention.self.query"].in_features, parts["intermediate.dense"].out_features
    shapes = {path: (d, d) for path in list(BERT_LAYER_PARTS)[:4]}
    shapes.update({"attention.output.LayerNorm": (d,), "intermediate.dense": (d_ff, d), "output.dense": (d, d_ff),
                   "output.LayerNorm": (d,)})
    got = {path: None if part.weight is None else tuple(part.weight.shape) for path, part in parts.items()}
    wrong = [f"{path} {got[path]}" for path, shape in shapes.items() if got[path] != shape]
    if wrong:
        raise ValueError(f"{what} has weights of unexpected shapes: {', '.join(wrong)}; expected hidden size "
                         f"{d} throughout and {d} → {d_ff} → {d} in the feed-forward")
    scaling = getattr(_get(layer, "attention.self"), "scaling", None)
    n_heads = getattr(_get(layer, "attention.self"), "num_attention_heads", None)
    if not isinstance(n_heads, int) or n_heads < 1 or d % n_heads:
        raise ValueError(f"{what}.attention.self.num_attention_heads must be a positive int dividing the hidden "
                         f"size {d}, got {n_heads!r}")
    if scaling is not None and abs(scaling - (d // n_heads) ** -0.5) > 1e-9:
        raise ValueError(f"{what} scales its attention scores by {scaling!r}; expected 1/√d_head = "
                         f"{(d // n_heads) ** -0.5:.6g}, as BERT does")
    no_bias = [path for path, part in parts.items() if part.bias is None]
    if no_bias:
        raise ValueError(f"{what} has no bias in {', '.join(no_bias)}; expected biases everywhere, as BERT has")
    eps = {parts["attention.output.LayerNorm"].eps, parts["output.LayerNorm"].eps}
    if len(eps) != 1:
        raise ValueError(f"{what}'s two LayerNorms have different eps {sorted(eps)}; expected one value")
    return parts


def _get(module: nn.Module, path: str) -> nn.Module | None:
    for name in path.split("."):
        module = getattr(module, name, None)
    return module


class FeedForward(nn.Module):
    """Position-wise feed-forward network: the same two-layer MLP applied to every token on its own.

    Linear(d_model → d_ff) → activation → dropout → Linear(d_ff → d_model) → dropout.
    Dropout sits where `nn.TransformerEncoderLayer` puts it: once on the hidden activations and once on the
    output (the "residual dropout" before the skip connection is added back).
    x: (batch, seq, d_model) → (batch, seq, d_model).
    """

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0, activation: str = "gelu",
                 *, bias: bool = True) -> None:
        super().__init__()
        _check_config(d_model, 1, d_ff, dropout, activation)
        self.activation = activation
        self.linear1 = nn.Linear(d_model, d_ff, bias=bias)
        self.linear2 = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)  # on the hidden activations
        self.dropout_out = nn.Dropout(dropout)  # on the output, before the residual add

    def forward(self, x: Tensor) -> Tensor:
        h = self.dropout(_ACTIVATIONS[self.activation](self.linear1(x)))  # (batch, seq, d_ff)
        return self.dropout_out(self.linear2(h))  # (batch, seq, d_model)


class EncoderBlock(nn.Module):
    """Self-attention then feed-forward, each inside a residual connection with a LayerNorm.

    With `is_causal=True` in forward this is a GPT block (pre-LN GPT-2 when `norm_first=True`).
    `rotary` / `alibi` go to the self-attention (`MultiHeadAttention`): RoPE or ALiBi positions inside attention.
    `feed_forward=False` leaves out the feed-forward sublayer and its norm: an attention-only block, the simplest
    place to find circuits. `qk_norm=True` normalises each head's queries and keys (`MultiHeadAttention`).
    x: (batch, seq, d_model) → (batch, seq, d_model). `cache` (a `KVCache`) goes to the self-attention: x then holds
    only the tokens after those cached.
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0, activation: str = "relu",
                 norm_first: bool = False, bias: bool = True, *, layer_norm_eps: float = 1e-5,
                 rotary: RotaryEmbedding | None = None, alibi: bool = False, feed_forward: bool = True,
                 qk_norm: bool = False) -> None:
        super().__init__()
        _check_config(d_model, n_heads, d_ff, dropout, activation)
        self.d_model, self.norm_first = d_model, norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, bias=bias, dropout=dropout, rotary=rotary, alibi=alibi,
                                            qk_norm=qk_norm)
        self.ff = FeedForward(d_model, d_ff, dropout, activation, bias=bias) if feed_forward else None
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias) if feed_forward else None
        self.dropout1 = nn.Dropout(dropout)  # residual dropout on the attention's output

    def _attend(self, x: Tensor, mask: Tensor | None, is_causal: bool, cache: KVCache | None) -> Tensor:
        return self.dropout1(self.self_attn(x, mask=mask, is_causal=is_causal, cache=cache))

    def forward(self, x: Tensor, mask: Tensor | None = None, *, is_causal: bool = False,
                cache: KVCache | None = None) -> Tensor:
        """x: (batch, seq, d_model); mask: bool, True = may attend, broadcast to (batch, heads, seq, seq)."""
        _check_input("x", x, self.d_model)
        if self.norm_first:  # pre-LN: x = x + sublayer(norm(x))
            x = x + self._attend(self.norm1(x), mask, is_causal, cache)
            if self.ff is not None:
                x = x + self.ff(self.norm2(x))
        else:  # post-LN: x = norm(x + sublayer(x))
            x = self.norm1(x + self._attend(x, mask, is_causal, cache))
            if self.ff is not None:
                x = self.norm2(x + self.ff(x))
        return x

    @classmethod
    def from_torch(cls, layer: nn.TransformerEncoderLayer) -> EncoderBlock:
        """A copy of an `nn.TransformerEncoderLayer(..., batch_first=True)`: same weights, same outputs."""
        return _copy_torch_layer(cls, layer, nn.TransformerEncoderLayer)

    @classmethod
    def from_bert_layer(cls, layer: nn.Module) -> EncoderBlock:
        """A copy of one pretrained BERT layer (a Hugging Face `BertLayer`, e.g. `model.encoder.layer[0]`).

        The result is post-LN with exact GELU and BERT's LayerNorm eps; same weights, same outputs. Dropout as in
        BERT: attention probabilities, and each sublayer's output before the residual add; none on the
        feed-forward's hidden activations. Pass the padding mask as labkit's bool mask, True = may attend:
        `attention_mask.bool()[:, None, None, :]` for Hugging Face's (batch, seq) attention_mask.
        Raises TypeError for a module without BERT's parts, ValueError for a variant an EncoderBlock cannot
        reproduce (another activation, relative positions, a decoder layer, missing biases).
        """
        parts = _bert_parts(layer)
        query, ff_in = parts["attention.self.query"], parts["intermediate.dense"]
        n_heads = layer.attention.self.num_attention_heads
        hidden_p = layer.output.dropout.p if isinstance(getattr(layer.output, "dropout", None), nn.Dropout) else 0.0
        ours = cls(query.in_features, n_heads, ff_in.out_features, dropout=hidden_p, activation="gelu",
                   norm_first=False, layer_norm_eps=parts["output.LayerNorm"].eps)
        attn_dropout = getattr(layer.attention.self, "dropout", None)
        ours.self_attn.dropout = attn_dropout.p if isinstance(attn_dropout, nn.Dropout) else 0.0
        ours.ff.dropout = nn.Dropout(0.0)  # BERT has no dropout between the feed-forward's two linears
        for path, target in BERT_LAYER_PARTS.items():
            _get(ours, target).load_state_dict(parts[path].state_dict())
        return ours.train(layer.training)


class DecoderBlock(nn.Module):
    """Causal self-attention, cross-attention to the encoder's output, feed-forward; residual + LayerNorm each.

    x: (batch, seq_tgt, d_model), memory: (batch, seq_src, d_model) → (batch, seq_tgt, d_model).
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0, activation: str = "relu",
                 norm_first: bool = False, bias: bool = True, *, layer_norm_eps: float = 1e-5) -> None:
        super().__init__()
        _check_config(d_model, n_heads, d_ff, dropout, activation)
        self.d_model, self.norm_first = d_model, norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, bias=bias, dropout=dropout)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, bias=bias, dropout=dropout)
        self.ff = FeedForward(d_model, d_ff, dropout, activation, bias=bias)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm3 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def _self(self, x: Tensor, mask: Tensor | None, is_causal: bool) -> Tensor:
        return self.dropout1(self.self_attn(x, mask=mask, is_causal=is_causal))

    def _cross(self, x: Tensor, memory: Tensor, mask: Tensor | None) -> Tensor:
        return self.dropout2(self.cross_attn(x, memory, mask=mask))

    def forward(self, x: Tensor, memory: Tensor, self_mask: Tensor | None = None,
                memory_mask: Tensor | None = None, *, is_causal: bool = True) -> Tensor:
        """self_mask: broadcast to (batch, heads, seq_tgt, seq_tgt), combined with the causal triangle;
        memory_mask: broadcast to (batch, heads, seq_tgt, seq_src). Both bool, True = may attend."""
        _check_input("x", x, self.d_model)
        _check_input("memory", memory, self.d_model)
        if memory.shape[0] != x.shape[0]:
            raise ValueError(f"memory has batch size {memory.shape[0]} but x has {x.shape[0]}: "
                             f"each target sequence needs its own encoder output")
        if self.norm_first:
            x = x + self._self(self.norm1(x), self_mask, is_causal)
            x = x + self._cross(self.norm2(x), memory, memory_mask)
            x = x + self.ff(self.norm3(x))
        else:
            x = self.norm1(x + self._self(x, self_mask, is_causal))
            x = self.norm2(x + self._cross(x, memory, memory_mask))
            x = self.norm3(x + self.ff(x))
        return x

    @classmethod
    def from_torch(cls, layer: nn.TransformerDecoderLayer) -> DecoderBlock:
        """A copy of an `nn.TransformerDecoderLayer(..., batch_first=True)`: same weights, same outputs."""
        return _copy_torch_layer(cls, layer, nn.TransformerDecoderLayer)


_COMPONENTS = (
    ((MultiHeadAttention, nn.MultiheadAttention), "attention"),
    ((FeedForward,), "feed-forward"),
    ((nn.LayerNorm,), "norms"),
    ((nn.Embedding,), "embeddings"),
)


def count_parameters(module: nn.Module, by: str | None = None, *, trainable_only: bool = False) -> int | dict[str, int]:
    """How many numbers `module` learns, each parameter counted once (tied weights too): the total (by=None), or
    by="child": per named child (`self_attn`, `ff`, `norm1`, ...; "(own)" for parameters set on `module` itself);
    by="component": per kind of part: attention, feed-forward, norms, embeddings, other.
    The values always sum to the total. trainable_only: only the parameters with requires_grad.
    """
    if by is None:
        return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
    if by not in ("child", "component"):
        raise ValueError(f"by must be None (the total), 'child' or 'component', got {by!r}")
    kind_of: dict[str, str] = {}  # module name → component, inherited from the nearest known ancestor
    for name, sub in module.named_modules():
        parent = name.rpartition(".")[0] if name else None
        kind = next((k for types, k in _COMPONENTS if isinstance(sub, types)), None)
        kind_of[name] = kind or (kind_of.get(parent, "other") if parent is not None else "other")
    counts: dict[str, int] = {}
    for pname, p in module.named_parameters():  # deduplicated: a shared tensor appears once
        if trainable_only and not p.requires_grad:
            continue
        owner = pname.rpartition(".")[0]
        key = (pname.partition(".")[0] if owner else "(own)") if by == "child" else kind_of[owner]
        counts[key] = counts.get(key, 0) + p.numel()
    return counts
