"""Small transformer models built from labkit's blocks.

`TinyGPT` is a decoder-only language model in the GPT-2 mould: token embedding + learned positions, a stack of
pre-LN blocks with causal self-attention, a final LayerNorm and an output layer tied to the token embedding
(`GPTConfig.tie_head=False` gives it a matrix of its own).
The recipe switches `activation`, `qk_norm`, `zero_init_proj` and `tie_head` are those of the GPT-2 speedrun
records; `benchmarks/tiny_lm.py` measures what each buys at this scale.
`GPTConfig.position` swaps the learned positions for another scheme of `labkit.positional`: none, sinusoidal
(added to the tokens), RoPE or ALiBi (inside every attention layer). All but the learned table run on sequences
longer than the training context. `TinyGPT.new_cache` gives it a `KVCache` per layer for generation, which then
feeds each token once (`labkit.generation.generate`).

`TinyBERT` is an encoder in the BERT mould: token + position + segment embeddings, a stack of post-LN blocks with
bidirectional self-attention (padding hidden), and two pretraining heads: `MaskedLMHead` (predict the masked
tokens, its decoder tied to the token embedding) and `NSPHead` (does sentence B follow sentence A?).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.attention import KVCache, recording_attention
from labkit.blocks import EncoderBlock
from labkit.modules import init_weights
from labkit.positional import LearnedPositionalEmbedding, RotaryEmbedding, SinusoidalPositionalEncoding
from labkit.validate import require_positive_int

__all__ = ["POSITIONS", "ACTIVATIONS", "check_position", "FORMULA_LENGTH_FACTOR", "SINUSOIDAL_SCALE", "GPTConfig",
           "TinyGPT", "BertConfig", "TinyBERT", "MaskedLMHead", "NSPHead"]

# Where a TinyGPT gets its sense of order: nothing, a vector added to each token (sinusoidal, learned), or inside
# every attention layer (rope: rotated queries and keys; alibi: a penalty on distance added to the scores).
POSITIONS = ("none", "sinusoidal", "learned", "rope", "alibi")
# The feed-forward nonlinearities a TinyGPT can use (GPTConfig.activation).
ACTIVATIONS = ("gelu", "relu", "relu2")
# The sinusoidal and RoPE tables are computed from their formula up to this many times block_size positions.
FORMULA_LENGTH_FACTOR = 16
# The sinusoidal table's entries reach ±1 (RMS 1/√2); this scale gives them RMS 0.02, the size of the learned
# table and the token embeddings at initialisation, so that positions do not drown the tokens.
SINUSOIDAL_SCALE = 0.02 * math.sqrt(2)


def check_position(name: str, position: object) -> None:
    """Raise ValueError naming `name` unless `position` is one of POSITIONS."""
    if position not in POSITIONS:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, POSITIONS))}, got {position!r}")


@dataclass(frozen=True)
class GPTConfig:
    """The shape of a TinyGPT. The defaults train on a laptop CPU in minutes."""

    vocab_size: int
    block_size: int = 128  # the longest context the model sees
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 128
    dropout: float = 0.0
    bias: bool = False
    position: str = "learned"  # one of POSITIONS; configs saved without it are learned
    tie_head: bool = True  # the output layer shares the token embedding's matrix (GPT-2); False gives it its own
    attention_only: bool = False  # blocks without their feed-forward network: only heads write to the stream
    # The recipe switches of the GPT-2 speedrun records, each off (GPT-2's choice) unless a preset turns it on:
    activation: str = "gelu"  # the feed-forward's nonlinearity; "relu2" is ReLU(x)², as cheap as ReLU
    qk_norm: bool = False  # RMS-normalise each head's queries and keys: the scores stay bounded at any learning rate
    zero_init_proj: bool = False  # the layers that write into the residual stream start at zero: every block
    # begins as the identity and the model as a bigram table, which lets a larger learning rate start safely

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "d_model"):
            require_positive_int(f"GPTConfig.{name}", getattr(self, name))
        if self.d_model % self.n_head:
            raise ValueError(f"GPTConfig.d_model={self.d_model} is not divisible by n_head={self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must lie in [0, 1), got {self.dropout!r}")
        check_position("GPTConfig.position", self.position)
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"GPTConfig.activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        for name in ("tie_head", "attention_only", "qk_norm", "zero_init_proj"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"GPTConfig.{name} must be True or False, got {getattr(self, name)!r}")
        if self.position == "sinusoidal" and self.d_model % 2:
            raise ValueError(f"GPTConfig.position='sinusoidal' pairs sin/cos dims, so d_model must be even, "
                             f"got {self.d_model}")
        if self.position == "rope" and (self.d_model // self.n_head) % 2:
            raise ValueError(f"GPTConfig.position='rope' rotates dims in pairs, so d_head = d_model / n_head must "
                             f"be even, got {self.d_model} / {self.n_head} = {self.d_model // self.n_head}")

    def to_dict(self) -> dict:
        return asdict(self)


class TinyGPT(nn.Module):
    """idx (batch, seq) token ids → logits (batch, seq, vocab) for the next token at every position.

    `config.position` decides where positions enter: `pos_emb` adds them to the tokens (learned, sinusoidal; an
    identity for the others), `rotary` (rope, shared by every layer) or ALiBi act inside each attention layer.
    Sequences may be as long as `max_len`: block_size for learned, FORMULA_LENGTH_FACTOR × block_size for
    sinusoidal and rope, None (no limit) for none and alibi. Training crops to block_size; evaluation may go past it.

    With `cache` (from `new_cache`), idx holds only the tokens after those cached: they sit at positions
    cache[0].length onwards, every layer's attention adds their keys and values to its cache, and the logits are
    those the whole sequence would give at these positions (to float rounding).
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = c = config
        formula_len = FORMULA_LENGTH_FACTOR * c.block_size
        self.max_len = {"learned": c.block_size, "sinusoidal": formula_len, "rope": formula_len}.get(c.position)
        self.token_emb = nn.Embedding(c.vocab_size, c.d_model)
        if c.position == "learned":
            self.pos_emb = LearnedPositionalEmbedding(c.block_size, c.d_model)
        elif c.position == "sinusoidal":
            self.pos_emb = SinusoidalPositionalEncoding(c.d_model, max_len=formula_len, scale=SINUSOIDAL_SCALE)
        else:
            self.pos_emb = nn.Identity()
        self.rotary = RotaryEmbedding(c.d_model // c.n_head, max_len=formula_len) if c.position == "rope" else None
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            EncoderBlock(c.d_model, c.n_head, 4 * c.d_model, c.dropout, activation=c.activation, norm_first=True,
                         bias=c.bias, rotary=self.rotary, alibi=c.position == "alibi",
                         feed_forward=not c.attention_only, qk_norm=c.qk_norm)
            for _ in range(c.n_layer)
        )
        self.norm = nn.LayerNorm(c.d_model, bias=c.bias)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        if c.tie_head:
            self.lm_head.weight = self.token_emb.weight  # weight tying: one matrix reads and writes tokens
        self.apply(init_weights)
        # GPT-2: scale the layers that write into the residual stream by 1/√(2·n_layer) (or start them at zero).
        for block in self.blocks:
            writers = [block.self_attn.out_proj] + ([block.ff.linear2] if block.ff is not None else [])
            for proj in writers:
                if c.zero_init_proj:
                    nn.init.zeros_(proj.weight)
                else:
                    nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * c.n_layer))

    def forward(self, idx: Tensor, cache: list[KVCache] | None = None) -> Tensor:
        if idx.dim() != 2 or idx.dtype != torch.long:
            raise ValueError(f"idx must be (batch, seq) token ids of dtype long, got shape {tuple(idx.shape)} "
                             f"and dtype {idx.dtype}")
        start = 0 if cache is None else self._cache_start(cache, idx)
        self.check_length(start + idx.shape[1])
        if not self.training and not torch.compiler.is_compiling():  # training batches are checked where they start
            self.check_ids(idx)
        x = self.token_emb(idx)  # (batch, seq, d_model)
        x = self.drop(self.pos_emb(x) if start == 0 else x + self._positions_from(start, idx.shape[1]))
        for block, layer_cache in zip(self.blocks, cache or [None] * len(self.blocks)):
            x = block(x, is_causal=True, cache=layer_cache)
        return self.lm_head(self.norm(x))  # (batch, seq, vocab)

    def _positions_from(self, start: int, seq: int) -> Tensor | float:
        """(seq, d_model): what the learned or sinusoidal table adds at positions start..start+seq-1 (what pos_emb
        adds from 0); 0 for the schemes that add nothing to the tokens."""
        if isinstance(self.pos_emb, LearnedPositionalEmbedding):
            return self.pos_emb.table.weight[start:start + seq]
        if isinstance(self.pos_emb, SinusoidalPositionalEncoding):
            return self.pos_emb.pe[start:start + seq]
        return 0.0

    def new_cache(self, batch: int, max_len: int) -> list[KVCache]:
        """An empty `KVCache` per layer for `batch` sequences of up to `max_len` positions, on the model's device
        and in its dtype: 2 · n_layer · batch · n_head · max_len · d_head numbers in all.

        ValueError past the model's own max_len: a learned table has no rows past block_size, so a longer text must
        be cropped and its window recomputed, which is what `labkit.generation.generate` does.
        """
        require_positive_int("batch", batch)
        require_positive_int("max_len", max_len)
        if self.max_len is not None and max_len > self.max_len:
            raise ValueError(f"max_len={max_len} is longer than this {self.config.position!r} model runs: "
                             f"{self.max_len} positions; a cache past them has no positions to encode")
        c, weight = self.config, self.token_emb.weight
        return [KVCache(batch, c.n_head, max_len, c.d_model // c.n_head, device=weight.device, dtype=weight.dtype)
                for _ in self.blocks]

    def _cache_start(self, cache: list[KVCache], idx: Tensor) -> int:
        """The position of idx's first token after `cache`; ValueError unless cache is one KVCache per layer, all
        as long, made for idx's batch."""
        if not (isinstance(cache, list) and len(cache) == len(self.blocks)
                and all(isinstance(layer, KVCache) for layer in cache)):
            got = [type(layer).__name__ for layer in cache] if isinstance(cache, list) else type(cache).__name__
            raise ValueError(f"cache must be a list of {len(self.blocks)} KVCache, one per layer (model.new_cache), "
                             f"got {got}")
        lengths = {layer.length for layer in cache}
        if len(lengths) != 1:
            raise ValueError(f"the cache's layers hold different numbers of positions {sorted(lengths)}: a forward "
                             f"with it failed half-way; start a new cache")
        if cache[0].keys.shape[0] != idx.shape[0]:
            raise ValueError(f"the cache was made for batch {cache[0].keys.shape[0]}, but idx has batch "
                             f"{idx.shape[0]}: one cache row per sequence")
        return cache[0].length

    def check_ids(self, idx: Tensor) -> None:
        """Raise ValueError if `idx` holds an id outside the vocabulary. It reads the ids' range back from the
        device, so the forward pass calls it in eval mode only (not on every training step)."""
        if not idx.numel():
            return
        low, high = (int(v) for v in torch.aminmax(idx))
        if low < 0 or high >= self.config.vocab_size:
            raise ValueError(f"idx holds token ids from {low} to {high}, outside the vocabulary "
                             f"0..{self.config.vocab_size - 1} (encoded with another tokenizer?)")

    def check_length(self, seq: int) -> None:
        """Raise ValueError, saying why and what to do, if the model cannot run on `seq` tokens (past max_len)."""
        if self.max_len is None or seq <= self.max_len:
            return
        c = self.config
        if c.position == "learned":
            others = ", ".join(repr(p) for p in POSITIONS if p != "learned")
            raise ValueError(f"sequence length {seq} exceeds the model's block_size={c.block_size}; crop the context "
                             f"to the last {c.block_size} tokens (a learned position table has no rows past "
                             f"block_size; GPTConfig.position {others} run on longer sequences)")
        raise ValueError(f"sequence length {seq} exceeds the {c.position!r} model's max_len={self.max_len} "
                         f"({FORMULA_LENGTH_FACTOR} × block_size, as far as its tables are computed); "
                         f"crop the context to the last {self.max_len} tokens")

    @torch.no_grad()
    def attention_maps(self, idx: Tensor) -> Tensor:
        """(layers, batch, heads, seq, seq): every layer's attention weights, from the naive path, in eval mode
        (no dropout, so every row sums to 1)."""
        attentions = [block.self_attn for block in self.blocks]
        with recording_attention(self, attentions):
            self(idx)
            return torch.stack([attn.last_weights for attn in attentions])


@dataclass(frozen=True)
class BertConfig:
    """The shape of a TinyBERT. d_ff defaults to 4 · d_model. norm_first=False is BERT's post-LN."""

    vocab_size: int
    max_len: int = 128  # the longest input, [CLS] and [SEP]s included
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 256
    d_ff: int | None = None  # None → 4 · d_model
    type_vocab_size: int = 2  # segments: sentence A and sentence B
    dropout: float = 0.1
    norm_first: bool = False
    layer_norm_eps: float = 1e-12  # BERT's

    def __post_init__(self) -> None:
        if self.d_ff is None:
            object.__setattr__(self, "d_ff", 4 * self.d_model if isinstance(self.d_model, int) else self.d_model)
        for name in ("vocab_size", "max_len", "n_layer", "n_head", "d_model", "d_ff", "type_vocab_size"):
            require_positive_int(f"BertConfig.{name}", getattr(self, name))
        if self.d_model % self.n_head:
            raise ValueError(f"BertConfig.d_model={self.d_model} is not divisible by n_head={self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"BertConfig.dropout must lie in [0, 1), got {self.dropout!r}")
        if not self.layer_norm_eps > 0:
            raise ValueError(f"BertConfig.layer_norm_eps must be > 0, got {self.layer_norm_eps!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class MaskedLMHead(nn.Module):
    """hidden (n, d_model) → logits (n, vocab): dense → GELU → LayerNorm → decoder tied to the word embeddings.

    The decoder's weight IS `embedding.weight` (the same Parameter: a step on the MLM loss moves the embedding, and
    freezing the embedding freezes the decoder's matrix); only its bias (vocab,) is the head's own. Feed it the
    masked positions only: logits for every position would be batch × seq × vocab floats. Works on any
    `nn.Embedding` of shape (vocab, d_model), a Hugging Face encoder's `embeddings.word_embeddings` included; the
    embedding's weights are left as they are.
    """

    def __init__(self, d_model: int, vocab_size: int, embedding: nn.Embedding, *,
                 layer_norm_eps: float = 1e-12) -> None:
        super().__init__()
        require_positive_int("d_model", d_model)
        require_positive_int("vocab_size", vocab_size)
        if not isinstance(embedding, nn.Embedding) or tuple(embedding.weight.shape) != (vocab_size, d_model):
            got = tuple(embedding.weight.shape) if isinstance(embedding, nn.Embedding) else type(embedding).__name__
            raise ValueError(f"embedding must be an nn.Embedding of shape (vocab_size={vocab_size}, "
                             f"d_model={d_model}), got {got}")
        self.dense = nn.Linear(d_model, d_model)
        self.norm = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.decoder = nn.Linear(d_model, vocab_size)
        self.decoder.weight = embedding.weight  # tied: one matrix reads tokens in and scores them out
        init_weights(self.dense)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, hidden: Tensor) -> Tensor:
        h = self.norm(F.gelu(self.dense(hidden)))  # (n, d_model)
        return self.decoder(h)  # (n, vocab)


class NSPHead(nn.Module):
    """hidden (batch, seq, d_model) → logits (batch, 2): BERT's pooler (dense + tanh on the [CLS] vector at position
    0), then a linear classifier. Class 0 = B follows A (IsNext), 1 = B is a random sentence (NotNext)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        require_positive_int("d_model", d_model)
        self.pooler = nn.Linear(d_model, d_model)
        self.classifier = nn.Linear(d_model, 2)
        self.apply(init_weights)

    def forward(self, hidden: Tensor) -> Tensor:
        if hidden.dim() != 3:
            raise ValueError(f"hidden must have shape (batch, seq, d_model), got {tuple(hidden.shape)}")
        pooled = torch.tanh(self.pooler(hidden[:, 0]))  # (batch, d_model): the [CLS] token's summary
        return self.classifier(pooled)  # (batch, 2)


def _check_ids(name: str, ids: Tensor, shape: tuple[int, ...] | None = None) -> None:
    if not isinstance(ids, Tensor) or ids.dim() != 2 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
        got = f"shape {tuple(ids.shape)} and dtype {ids.dtype}" if isinstance(ids, Tensor) else type(ids).__name__
        raise ValueError(f"{name} must be (batch, seq) integer ids, got {got}")
    if shape is not None and tuple(ids.shape) != shape:
        raise ValueError(f"{name} has shape {tuple(ids.shape)} but input_ids has {shape}")


class TinyBERT(nn.Module):
    """A BERT encoder. forward(input_ids, token_type_ids, attention_mask) → hidden (batch, seq, d_model).

    input_ids, token_type_ids: (batch, seq) long; attention_mask: (batch, seq), True / 1 = real token, False / 0 =
    padding, which no token may attend to. Post-LN blocks with GELU, as in BERT (`norm_first=True` gives pre-LN
    blocks and a final LayerNorm). The heads are `mlm_head` (call it on the masked positions' hidden vectors only)
    and `nsp_head` (call it on the whole hidden sequence; it reads [CLS]).
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = c = config
        self.token_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.pos_emb = LearnedPositionalEmbedding(c.max_len, c.d_model)
        self.segment_emb = nn.Embedding(c.type_vocab_size, c.d_model)
        self.emb_norm = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            EncoderBlock(c.d_model, c.n_head, c.d_ff, c.dropout, activation="gelu", norm_first=c.norm_first,
                         layer_norm_eps=c.layer_norm_eps)
            for _ in range(c.n_layer)
        )
        # Pre-LN blocks leave the residual stream un-normalised, so they need a last LayerNorm; post-LN ends in one.
        self.norm = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps) if c.norm_first else nn.Identity()
        self.mlm_head = MaskedLMHead(c.d_model, c.vocab_size, self.token_emb, layer_norm_eps=c.layer_norm_eps)
        self.nsp_head = NSPHead(c.d_model)
        self.apply(init_weights)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None,
                attention_mask: Tensor | None = None) -> Tensor:
        _check_ids("input_ids", input_ids)
        batch, seq = input_ids.shape
        if seq > self.config.max_len:
            raise ValueError(f"sequence length {seq} exceeds the model's max_len={self.config.max_len}; "
                             f"truncate the input to {self.config.max_len} tokens")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        _check_ids("token_type_ids", token_type_ids, (batch, seq))
        x = self.pos_emb(self.token_emb(input_ids)) + self.segment_emb(token_type_ids)  # (batch, seq, d_model)
        x = self.drop(self.emb_norm(x))
        mask = None
        if attention_mask is not None:
            if tuple(attention_mask.shape) != (batch, seq):
                raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)} but input_ids has "
                                 f"{(batch, seq)}")
            keep = attention_mask.bool()
            if not keep.all():  # no padding: leave the mask out and take the fused kernel's fastest path
                mask = keep[:, None, None, :]  # (batch, 1, 1, seq): hide padded keys from every query
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)  # (batch, seq, d_model)
