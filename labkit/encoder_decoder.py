"""An encoder–decoder transformer (the original 2017 shape) built from labkit's blocks, with its training and
decoding.

    source ids ─ embed + sinusoidal positions ─ EncoderBlock × N ─ norm ─→ memory (batch, src_len, d_model)
    <bos> y1 y2 … ─ embed + positions ─ DecoderBlock × N (causal self-attention, cross-attention to memory) ─ norm
                   ─ linear ─→ logits for y1 y2 … <eos>

* **teacher forcing**: in training the decoder reads the true target shifted one step right (<bos> first) and
  predicts every next token at once; the causal mask stops position t from seeing tokens after t;
* **source padding**: padded source tokens are hidden (as keys) from the encoder's self-attention and from the
  decoder's cross-attention (`source_mask`, True = may attend);
* **decoding**: `greedy_decode` takes the most likely token at each step; `beam_search` keeps the `beam_width` most
  likely partial outputs and ranks finished ones by length-normalised log-probability;
* `cross_attention` returns the decoder's (target × source) attention maps for `AttentionExplorer`.

Target padding needs no mask: pads come only after <eos>, the causal mask hides them from every earlier position,
and the loss ignores them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from labkit.attention import recording_attention
from labkit.blocks import DecoderBlock, EncoderBlock
from labkit.device import one_cpu_thread
from labkit.loop import History, batch_generator, fixed_batch_losses, run
from labkit.modules import eval_mode
from labkit.positional import SinusoidalPositionalEncoding
from labkit.presets import TrainConfig
from labkit.translation_data import (BOS_ID, EOS_ID, PAD_ID, Batch, Pair, TranslationData, Vocab, bleu, collate,
                                     exact_match, source_tokens)
from labkit.validate import require_positive_int

__all__ = ["EncoderDecoderConfig", "EncoderDecoder", "shift_right",
           "teacher_forcing_loss", "greedy_decode", "Hypothesis", "beam_search", "length_normalised",
           "sequence_log_prob", "cross_attention", "encode_source", "estimate_losses",
           "train_encoder_decoder", "Scores", "evaluate"]


@dataclass(frozen=True)
class EncoderDecoderConfig:
    """The shape of an EncoderDecoder. The defaults are the CPU preset's."""

    src_vocab_size: int
    tgt_vocab_size: int
    max_src_len: int = 16  # the longest source the model reads
    max_tgt_len: int = 12  # the longest decoder input: <bos> + the target (+ <eos> as the last label)
    n_encoder_layers: int = 2
    n_decoder_layers: int = 2
    n_head: int = 4
    d_model: int = 64
    d_ff: int = 256
    dropout: float = 0.0
    norm_first: bool = True  # pre-LN blocks (and a final LayerNorm after each stack)

    def __post_init__(self) -> None:
        for name in ("src_vocab_size", "tgt_vocab_size", "max_src_len", "max_tgt_len", "n_encoder_layers",
                     "n_decoder_layers", "n_head", "d_model", "d_ff"):
            require_positive_int(f"EncoderDecoderConfig.{name}", getattr(self, name))
        if self.d_model % self.n_head:
            raise ValueError(f"EncoderDecoderConfig.d_model={self.d_model} is not divisible by n_head={self.n_head}")
        if self.d_model % 2:
            raise ValueError(f"EncoderDecoderConfig.d_model={self.d_model} must be even: the sinusoidal encoding pairs "
                             f"sin/cos dims")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"EncoderDecoderConfig.dropout must lie in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def _check_ids(name: str, ids: Tensor, vocab_size: int, max_len: int, what: str) -> None:
    """ids must be (batch, seq) long token ids, 1 <= seq <= max_len, each in 0..vocab_size-1."""
    if not isinstance(ids, Tensor):
        raise TypeError(f"{name} must be a tensor of token ids, got {type(ids).__name__}")
    if ids.dtype != torch.long or ids.dim() != 2:
        raise ValueError(f"{name} must be (batch, {name}_len) token ids of dtype torch.long, got shape "
                         f"{tuple(ids.shape)} and dtype {ids.dtype}")
    if ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(ids.shape)}): {what} needs at least one token")
    if ids.shape[1] > max_len:
        raise ValueError(f"{name} has {ids.shape[1]} tokens, more than the {max_len} this model was built for "
                         f"(EncoderDecoderConfig.max_{name}_len)")
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(f"{name} holds ids from {low} to {high}, outside the vocabulary's 0..{vocab_size - 1}")


class EncoderDecoder(nn.Module):
    """src (batch, src_len), tgt_in (batch, tgt_len) → logits (batch, tgt_len, tgt_vocab) for the next target
    token at every decoder position."""

    def __init__(self, config: EncoderDecoderConfig) -> None:
        super().__init__()
        self.config = c = config
        self.src_emb = nn.Embedding(c.src_vocab_size, c.d_model)
        self.tgt_emb = nn.Embedding(c.tgt_vocab_size, c.d_model)
        for emb in (self.src_emb, self.tgt_emb):  # × √d_model in forward: token vectors of unit scale, like the PE
            nn.init.normal_(emb.weight, std=c.d_model ** -0.5)
        self.pos = SinusoidalPositionalEncoding(c.d_model, max_len=max(c.max_src_len, c.max_tgt_len))
        self.drop = nn.Dropout(c.dropout)
        block = dict(d_model=c.d_model, n_heads=c.n_head, d_ff=c.d_ff, dropout=c.dropout, norm_first=c.norm_first)
        self.encoder = nn.ModuleList(EncoderBlock(**block) for _ in range(c.n_encoder_layers))
        self.decoder = nn.ModuleList(DecoderBlock(**block) for _ in range(c.n_decoder_layers))
        # pre-LN blocks leave the residual stream un-normalised: each stack ends in a LayerNorm
        self.encoder_norm = nn.LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self.decoder_norm = nn.LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self.lm_head = nn.Linear(c.d_model, c.tgt_vocab_size)

    def _embed(self, emb: nn.Embedding, ids: Tensor) -> Tensor:
        return self.drop(self.pos(emb(ids) * math.sqrt(self.config.d_model)))  # (batch, seq, d_model)

    def source_mask(self, src: Tensor) -> Tensor | None:
        """(batch, 1, 1, src_len) bool, True on real source tokens: hides padding as a key from every query.
        None when nothing is padded (the fused attention kernel's fastest path)."""
        keep = src != PAD_ID
        if not keep.any(1).all():
            empty = (~keep.any(1)).nonzero().flatten().tolist()
            raise ValueError(f"src rows {empty} are all padding: every source needs at least one real token")
        return None if keep.all() else keep[:, None, None, :]

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor | None]:
        """src (batch, src_len) → (memory (batch, src_len, d_model), source mask or None)."""
        c = self.config
        _check_ids("src", src, c.src_vocab_size, c.max_src_len, "a source")
        mask = self.source_mask(src)
        x = self._embed(self.src_emb, src)
        for block in self.encoder:
            x = block(x, mask)
        return self.encoder_norm(x), mask

    def decode(self, tgt_in: Tensor, memory: Tensor, mask: Tensor | None) -> Tensor:
        """tgt_in (batch, tgt_len) → logits (batch, tgt_len, tgt_vocab); causal self-attention, cross-attention to
        memory (batch, src_len, d_model) with the source `mask` from `encode`."""
        c = self.config
        _check_ids("tgt", tgt_in, c.tgt_vocab_size, c.max_tgt_len, "the decoder's input (at least <bos>)")
        x = self._embed(self.tgt_emb, tgt_in)
        for block in self.decoder:
            x = block(x, memory, memory_mask=mask, is_causal=True)
        return self.lm_head(self.decoder_norm(x))

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        memory, mask = self.encode(src)
        return self.decode(tgt_in, memory, mask)


# ----------------------------------------------------------------------------- teacher forcing


def shift_right(tgt: Tensor) -> tuple[Tensor, Tensor]:
    """tgt (batch, len) = <bos> y1 … yn <eos> <pad>… → (decoder input (batch, len-1) = <bos> y1 … yn …,
    labels (batch, len-1) = y1 … yn <eos> …): at position t the decoder reads token t and must predict t+1."""
    if not isinstance(tgt, Tensor) or tgt.dim() != 2 or tgt.shape[1] < 2:
        got = tuple(tgt.shape) if isinstance(tgt, Tensor) else type(tgt).__name__
        raise ValueError(f"tgt must be (batch, len >= 2) ids starting with <bos>, got {got}")
    return tgt[:, :-1], tgt[:, 1:]


def teacher_forcing_loss(model: EncoderDecoder, src: Tensor, tgt: Tensor) -> Tensor:
    """Mean cross-entropy of every next target token given the true earlier ones; <pad> labels are left out.
    src (batch, src_len), tgt (batch, tgt_len) as in `labkit.translation_data.Batch`."""
    tgt_in, labels = shift_right(tgt)
    logits = model(src, tgt_in)  # (batch, tgt_len - 1, vocab)
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=PAD_ID)


# ----------------------------------------------------------------------------- decoding


def _max_steps(model: EncoderDecoder, max_len: int | None) -> int:
    """How many tokens a decoder may write: the decoder reads <bos> + all but the last of them."""
    limit = model.config.max_tgt_len
    if max_len is None:
        return limit
    require_positive_int("max_len", max_len)
    if max_len > limit:
        raise ValueError(f"max_len={max_len} is more than the {limit} tokens this decoder can write "
                         f"(EncoderDecoderConfig.max_tgt_len)")
    return max_len


@torch.no_grad()
def greedy_decode(model: EncoderDecoder, src: Tensor, max_len: int | None = None) -> Tensor:
    """src (batch, src_len) → (batch, steps) the most likely token at each step, <eos> included, <pad> after it.
    Stops when every row has written <eos>, or after `max_len` tokens (default: as many as the decoder can)."""
    steps = _max_steps(model, max_len)
    memory, mask = model.encode(src)
    ys = torch.full((src.shape[0], 1), BOS_ID, dtype=torch.long, device=src.device)
    done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    for _ in range(steps):
        next_id = model.decode(ys, memory, mask)[:, -1].argmax(-1)  # (batch,)
        next_id = next_id.masked_fill(done, PAD_ID)
        ys = torch.cat([ys, next_id[:, None]], dim=1)
        done |= next_id == EOS_ID
        if done.all():
            break
    return ys[:, 1:]


class Hypothesis(NamedTuple):
    """A decoded output: its tokens (<eos> last if it finished), Σ log p of them, and its ranking score."""

    tokens: list[int]
    log_prob: float
    score: float


def length_normalised(log_prob: float, length: int, alpha: float) -> float:
    """log_prob / length^alpha: alpha = 0 ranks by log-probability (which favours short outputs, since every
    token costs), alpha = 1 by log-probability per token."""
    return log_prob / length ** alpha


@torch.no_grad()
def beam_search(model: EncoderDecoder, src: Tensor, beam_width: int = 4, max_len: int | None = None,
                alpha: float = 1.0) -> list[Hypothesis]:
    """Beam search for one source, src (src_len,) or (1, src_len). Returns the finished hypotheses, best first.

    Each step extends every live hypothesis by every token and keeps the `beam_width` candidates with the highest
    log-probability. Those ending in <eos> are finished and leave the beam, which goes on with the others (so it
    narrows as hypotheses finish; width 1 is greedy decoding). After `max_len` tokens every candidate is finished,
    with or without <eos>. Finished hypotheses are ranked by `length_normalised(log_prob, len(tokens), alpha)`.
    The search stops early once no live hypothesis can reach the best finished score: a log-probability only falls
    as tokens are added, so lp / max_len^alpha bounds what a live one can still score.
    """
    if isinstance(beam_width, bool) or not isinstance(beam_width, int) or beam_width < 1:
        raise ValueError(f"beam_width must be a positive int (1 is greedy decoding), got {beam_width!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha < 0:
        raise ValueError(f"alpha (the length-normalisation exponent) must be a number >= 0, got {alpha!r}")
    if isinstance(src, Tensor) and src.dim() == 1:
        src = src[None]
    if isinstance(src, Tensor) and src.dim() == 2 and src.shape[0] != 1:
        raise ValueError(f"beam_search decodes one source at a time: src must be (src_len,) or (1, src_len), "
                         f"got shape {tuple(src.shape)}")
    steps = _max_steps(model, max_len)
    memory, mask = model.encode(src)
    live: list[tuple[list[int], float]] = [([], 0.0)]  # (tokens written so far, their Σ log p)
    finished: list[Hypothesis] = []
    for step in range(steps):
        ys = torch.tensor([[BOS_ID, *tokens] for tokens, _ in live], device=src.device)  # (beams, step + 1)
        log_p = model.decode(ys, memory.expand(len(live), -1, -1), mask).float()[:, -1].log_softmax(-1)
        total = torch.tensor([lp for _, lp in live], device=log_p.device)[:, None] + log_p  # (beams, vocab)
        values, flat = total.flatten().topk(min(beam_width, total.numel()))
        extended = []
        for value, index in zip(values.tolist(), flat.tolist()):
            beam, token = divmod(index, total.shape[1])
            tokens = [*live[beam][0], token]
            if token == EOS_ID or step == steps - 1:
                finished.append(Hypothesis(tokens, value, length_normalised(value, len(tokens), alpha)))
            else:
                extended.append((tokens, value))
        live = extended
        best = max((h.score for h in finished), default=-math.inf)
        if not live or best >= max(lp for _, lp in live) / steps ** alpha:
            break
    return sorted(finished, key=lambda h: h.score, reverse=True)


@torch.no_grad()
def sequence_log_prob(model: EncoderDecoder, src: Tensor, tokens: Sequence[int]) -> float:
    """Σ log p of writing `tokens` (the output, <eos> included) for one source src (src_len,) or (1, src_len)."""
    src = src[None] if src.dim() == 1 else src
    tokens = list(tokens)
    ys = torch.tensor([[BOS_ID, *tokens[:-1]]], device=src.device)
    log_p = model(src, ys).float().log_softmax(-1)[0]  # (len, vocab)
    return float(log_p[torch.arange(len(tokens)), torch.tensor(tokens)].sum())


@torch.no_grad()
def cross_attention(model: EncoderDecoder, src: Tensor, tokens: Sequence[int]) -> Tensor:
    """(layers, heads, len(tokens), src_len): the decoder's cross-attention while it writes `tokens` for one
    source src (src_len,) or (1, src_len). Row i is the query at the position that writes tokens[i] (it reads
    <bos> and tokens[:i]). From the naive attention path, in eval mode: every row sums to 1."""
    src = src[None] if src.dim() == 1 else src
    tokens = list(tokens)
    if not tokens:
        raise ValueError("tokens is empty: pass the decoded output (e.g. from greedy_decode), <eos> included")
    ys = torch.tensor([[BOS_ID, *tokens[:-1]]], device=src.device)
    layers = [block.cross_attn for block in model.decoder]
    with recording_attention(model, layers):
        model(src, ys)
        return torch.stack([attn.last_weights[0] for attn in layers]).cpu()


def encode_source(text: str, source: Vocab, device: torch.device | str | None = None) -> Tensor:
    """A sentence → (1, words) source ids (unknown words raise, naming them)."""
    return torch.tensor([source.encode(source_tokens(text))], dtype=torch.long, device=device)


# ----------------------------------------------------------------------------- training


@torch.no_grad()
def estimate_losses(model: EncoderDecoder, data: TranslationData, batch_size: int, batches: int, seed: int = 0,
                    device: torch.device | None = None) -> dict[str, float]:
    """Mean teacher-forcing loss over `batches` random batches of each split (the same batches for a seed), in eval
    mode: {"train": …, "val": …} (val: the held-out split)."""
    device = device or next(model.parameters()).device

    def loss(split: str, generator: torch.Generator) -> Tensor:
        return teacher_forcing_loss(model, *(t.to(device) for t in data.batch(split, batch_size, generator)))

    return fixed_batch_losses(model, loss, {"train": "train", "val": "heldout"}, batches, seed)


def train_encoder_decoder(model: EncoderDecoder, data: TranslationData, config: TrainConfig, *,
                          device: torch.device | None = None, on_eval: Callable[[History], None] | None = None,
                          checkpoint: str | os.PathLike | None = None, resume: bool = False,
                          progress: bool = True) -> History:
    """Train with teacher forcing through `labkit.loop.run` (AdamW, warm-up + cosine decay, clipping, checkpoints)
    and return the History; evals "train" and "val" (the held-out split) are `estimate_losses`. on_eval gets the
    History after every evaluation (e.g. `LossPlot().update`). KeyboardInterrupt stops cleanly and returns the
    History with `interrupted=True`. Runs on one CPU thread on the CPU (`one_cpu_thread`: the model is small)."""
    device = device or next(model.parameters()).device

    def batch(step: int) -> Batch:
        return data.batch("train", config.batch_size, batch_generator(config.seed, step))

    def evaluate() -> dict[str, float]:
        return estimate_losses(model, data, config.batch_size, config.eval_batches, config.seed, device)

    with one_cpu_thread(device):
        history = run(model, config, batch=batch, loss=lambda net, b: teacher_forcing_loss(net, b.src, b.tgt),
                      tokens=lambda b: int((b.tgt[:, 1:] != PAD_ID).sum()), evaluate=evaluate, device=device,
                      checkpoint=checkpoint, resume=resume, model_config=model.config, on_eval=on_eval,
                      progress=progress)
    model.eval()
    return history


# ----------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Scores:
    """Exact match (0..1) and BLEU (0..100) of `predictions` against the pairs' targets."""

    exact_match: float
    bleu: float
    predictions: list[str]


@torch.no_grad()
def evaluate(model: EncoderDecoder, pairs: Sequence[Pair], source: Vocab, target: Vocab, *,
             beam_width: int | None = None, alpha: float = 1.0, batch_size: int = 256,
             progress: bool = False) -> Scores:
    """Decode every pair's source (greedy, batched; or beam search with `beam_width`, one at a time) and score the
    outputs against the targets: exact match and `labkit.translation_data.bleu`."""
    if not pairs:
        raise ValueError("pairs is empty: nothing to evaluate")
    require_positive_int("batch_size", batch_size)
    device = next(model.parameters()).device
    predictions: list[str] = []
    with one_cpu_thread(device), eval_mode(model):
        if beam_width is None:
            for start in tqdm(range(0, len(pairs), batch_size), desc="greedy", disable=not progress):
                src = collate(pairs[start:start + batch_size], source, target).src.to(device)
                predictions += ["".join(target.decode(row)) for row in greedy_decode(model, src)]
        else:
            for pair in tqdm(pairs, desc=f"beam {beam_width}", disable=not progress):
                best = beam_search(model, encode_source(pair.source, source, device), beam_width, alpha=alpha)[0]
                predictions.append("".join(target.decode(best.tokens)))
    references = [p.target for p in pairs]
    return Scores(exact_match(predictions, references), bleu(predictions, references), predictions)
