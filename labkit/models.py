"""Small transformer models built from labkit's blocks.

`TinyGPT` is a decoder-only language model in the GPT-2 mould: token embedding + learned positions, a stack of
pre-LN blocks with causal self-attention, a final LayerNorm and an output layer tied to the token embedding.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from labkit.blocks import EncoderBlock
from labkit.positional import LearnedPositionalEmbedding
from labkit.validate import check_positive_int

__all__ = ["GPTConfig", "TinyGPT"]


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

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "d_model"):
            check_positive_int(f"GPTConfig.{name}", getattr(self, name))
        if self.d_model % self.n_head:
            raise ValueError(f"GPTConfig.d_model={self.d_model} is not divisible by n_head={self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must lie in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class TinyGPT(nn.Module):
    """idx (batch, seq) token ids → logits (batch, seq, vocab) for the next token at every position."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = c = config
        self.token_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.pos_emb = LearnedPositionalEmbedding(c.block_size, c.d_model)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            EncoderBlock(c.d_model, c.n_head, 4 * c.d_model, c.dropout, activation="gelu", norm_first=True,
                         bias=c.bias)
            for _ in range(c.n_layer)
        )
        self.norm = nn.LayerNorm(c.d_model, bias=c.bias)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.lm_head.weight = self.token_emb.weight  # weight tying: one matrix reads and writes tokens
        self.apply(self._init_weights)
        # GPT-2: scale the layers that write into the residual stream by 1/√(2·n_layer).
        for block in self.blocks:
            for proj in (block.self_attn.out_proj, block.ff.linear2):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * c.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: Tensor) -> Tensor:
        if idx.dim() != 2 or idx.dtype != torch.long:
            raise ValueError(f"idx must be (batch, seq) token ids of dtype long, got shape {tuple(idx.shape)} "
                             f"and dtype {idx.dtype}")
        if idx.shape[1] > self.config.block_size:
            raise ValueError(f"sequence length {idx.shape[1]} exceeds the model's block_size="
                             f"{self.config.block_size}; crop the context to the last {self.config.block_size} tokens")
        x = self.drop(self.pos_emb(self.token_emb(idx)))  # (batch, seq, d_model)
        for block in self.blocks:
            x = block(x, is_causal=True)
        return self.lm_head(self.norm(x))  # (batch, seq, vocab)

    @torch.no_grad()
    def attention_maps(self, idx: Tensor) -> Tensor:
        """(layers, batch, heads, seq, seq): every layer's attention weights, from the naive path, in eval mode
        (no dropout, so every row sums to 1)."""
        attentions = [block.self_attn for block in self.blocks]
        was_training = self.training
        self.eval()
        for attn in attentions:
            attn.record_weights = True
        try:
            self(idx)
            return torch.stack([attn.last_weights for attn in attentions])
        finally:
            self.train(was_training)
            for attn in attentions:
                attn.record_weights = False

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
