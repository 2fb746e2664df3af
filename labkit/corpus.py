"""A character-level corpus for language modelling: tokenizer, train/validation split and random batches.

Tiny Shakespeare is one continuous text, so the split is not shuffled: the first 90% of the characters train
the model and the last 10% measure it. A batch is `batch_size` windows cut at random offsets:

    ids  ... F  i  r  s  t     C  i ...
    x        F  i  r  s  t          (batch, block_size)
    y           i  r  s  t     C    x shifted one to the left: the next character at every position
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from labkit.validate import require_positive_int

__all__ = ["CharTokenizer", "train_length", "train_val_split", "random_batch", "CharCorpus"]

_SHOWN = 5  # how many offending characters / ids an error message lists


class CharTokenizer:
    """One token per character: id i stands for `chars[i]`; `from_text` uses the text's sorted distinct characters."""

    def __init__(self, chars: str) -> None:
        if not isinstance(chars, str):
            raise TypeError(f"chars must be a str, got {type(chars).__name__}")
        if not chars:
            raise ValueError("chars is empty: a tokenizer needs at least one character")
        if len(set(chars)) != len(chars):
            repeated = sorted({c for c in chars if chars.count(c) > 1})
            raise ValueError(f"chars must list each character once, but repeats {repeated[:_SHOWN]}")
        self.chars = chars
        self._ids = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """The tokenizer whose vocabulary is the sorted distinct characters of `text`."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if not text:
            raise ValueError("text is empty: cannot build a vocabulary from no characters")
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def __repr__(self) -> str:
        more = "..." if self.vocab_size > 20 else ""
        return f"CharTokenizer(vocab_size={self.vocab_size}, chars={self.chars[:20]!r}{more})"

    def encode(self, text: str) -> Tensor:
        """text → (len(text),) long ids. Characters outside the vocabulary raise ValueError listing them."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        try:
            return torch.tensor([self._ids[c] for c in text], dtype=torch.long)
        except KeyError:
            unknown = [(i, c) for i, c in enumerate(text) if c not in self._ids]
            shown = ", ".join(f"{c!r} at position {i}" for i, c in unknown[:_SHOWN])
            more = f" and {len(unknown) - _SHOWN} more" if len(unknown) > _SHOWN else ""
            raise ValueError(f"text has {len(unknown)} character(s) outside this tokenizer's vocabulary of "
                             f"{self.vocab_size}: {shown}{more}") from None

    def decode(self, ids: Tensor | Sequence[int]) -> str:
        """(n,) ids (a tensor or a list of ints) → the text; ids outside 0..vocab_size-1 raise ValueError."""
        if isinstance(ids, Tensor):
            if ids.dim() != 1:
                raise ValueError(f"ids must be 1-D (n,), got shape {tuple(ids.shape)}")
            if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
                raise TypeError(f"ids must be an integer tensor, got dtype {ids.dtype}")
            values = ids.tolist()
        else:
            try:
                values = [operator.index(i) for i in ids]
            except TypeError:
                raise TypeError(f"ids must be a tensor or a sequence of ints, got {list(ids)[:_SHOWN]!r}") from None
        bad = [(p, i) for p, i in enumerate(values) if not 0 <= i < self.vocab_size]
        if bad:
            shown = ", ".join(f"{i} at position {p}" for p, i in bad[:_SHOWN])
            more = f" and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
            raise ValueError(f"ids must lie in 0..{self.vocab_size - 1} (vocab_size={self.vocab_size}), "
                             f"got {shown}{more}")
        return "".join(self.chars[i] for i in values)

    def to_dict(self) -> dict:
        """A JSON-safe description, e.g. for a checkpoint's metadata."""
        return {"kind": "char", "chars": self.chars}

    @classmethod
    def from_dict(cls, data: dict) -> CharTokenizer:
        """The tokenizer `to_dict` described ({"chars": ...}, optionally with "kind": "char")."""
        if not isinstance(data, dict) or not isinstance(data.get("chars"), str) or data.get("kind", "char") != "char":
            raise ValueError(f"data must be a dict like {{'kind': 'char', 'chars': '...'}}, got {data!r:.80}")
        return cls(data["chars"])


def _check_ids(ids: Tensor) -> None:
    if not isinstance(ids, Tensor):
        raise TypeError(f"ids must be a torch.Tensor, got {type(ids).__name__}")
    if ids.dim() != 1:
        raise ValueError(f"ids must be 1-D (n,) token ids, got shape {tuple(ids.shape)}")


def train_length(n: int, val_fraction: float = 0.1) -> int:
    """How many of n items go to training: floor(n·(1 - val_fraction)), the same cut for tokens and characters."""
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction!r}")
    # round before flooring so that float noise (100 * 0.7 = 69.999...) does not move an item across the cut
    return math.floor(round(n * (1.0 - val_fraction), 6))


def train_val_split(ids: Tensor, val_fraction: float = 0.1) -> tuple[Tensor, Tensor]:
    """ids (n,) → (train, val): the first `train_length(n, val_fraction)` tokens and the rest, in order (views)."""
    _check_ids(ids)
    n = len(ids)
    n_train = train_length(n, val_fraction)
    if n_train < 2 or n - n_train < 2:
        raise ValueError(f"ids has {n} tokens, too few to split with val_fraction={val_fraction}: each part needs "
                         f"at least 2 tokens (one input and its target), got {n_train} and {n - n_train}")
    return ids[:n_train], ids[n_train:]


def random_batch(ids: Tensor, batch_size: int, block_size: int, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """x, y: (batch_size, block_size) windows of `ids` (n,) at random offsets; y[:, t] is the token after x[:, t].

    The offsets come from `generator` (torch's global one when None), so a seeded generator repeats the batches.
    """
    _check_ids(ids)
    require_positive_int("batch_size", batch_size)
    require_positive_int("block_size", block_size)
    if len(ids) < block_size + 1:
        raise ValueError(f"ids has {len(ids)} tokens, but a window of block_size={block_size} needs "
                         f"block_size + 1 = {block_size + 1} (inputs plus the next token)")
    # highest start: len - block_size - 1, so the target window ends on the last token
    starts = torch.randint(len(ids) - block_size, (batch_size,), generator=generator,
                           device=generator.device if generator is not None else None).to(ids.device)
    windows = ids[starts[:, None] + torch.arange(block_size + 1, device=ids.device)]  # (batch, block_size + 1)
    x, y = windows[:, :-1], windows[:, 1:]
    if device is not None:
        x, y = x.to(device), y.to(device)
    return x, y


@dataclass
class CharCorpus:
    """A tokenizer and the train / val token ids (1-D long tensors) of one text."""

    tokenizer: CharTokenizer
    train: Tensor
    val: Tensor

    SPLITS = ("train", "val")

    @classmethod
    def from_text(cls, text: str, val_fraction: float = 0.1) -> CharCorpus:
        """Tokenize `text` with its own characters and split it, the first part for training."""
        tokenizer = CharTokenizer.from_text(text)
        train, val = train_val_split(tokenizer.encode(text), val_fraction)
        return cls(tokenizer, train, val)

    def batch(self, split: str, batch_size: int, block_size: int, generator: torch.Generator | None = None,
              device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        """`random_batch` from the "train" or "val" split: x, y (batch_size, block_size)."""
        if split not in self.SPLITS:
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        return random_batch(getattr(self, split), batch_size, block_size, generator, device)
