"""A character-level corpus for language modelling: a tokenizer, the train/validation split and random batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["CharTokenizer", "train_val_split", "random_batch", "CharCorpus"]


class CharTokenizer:
    """One token per distinct character of the training text, ids in sorted-character order."""

    def __init__(self, chars: str) -> None:
        if not chars:
            raise ValueError("a tokenizer needs at least one character")
        if len(set(chars)) != len(chars):
            raise ValueError("the vocabulary has repeated characters")
        self.chars = chars
        self._ids = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        if not text:
            raise ValueError("cannot build a vocabulary from empty text")
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> Tensor:
        """(len(text),) long token ids; characters outside the vocabulary raise ValueError."""
        try:
            return torch.tensor([self._ids[c] for c in text], dtype=torch.long)
        except KeyError:
            unknown = [(i, c) for i, c in enumerate(text) if c not in self._ids]
            shown = ", ".join(f"{c!r} at {i}" for i, c in unknown[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise ValueError(f"{len(unknown)} character(s) are not in the vocabulary of {self.vocab_size}: "
                             f"{shown}{more}") from None

    def decode(self, ids: Tensor | Sequence[int]) -> str:
        ids = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"token ids {bad[:5]} are outside 0..{self.vocab_size - 1}")
        return "".join(self.chars[i] for i in ids)

    def to_dict(self) -> dict:
        """A JSON-safe description, stored in checkpoints."""
        return {"kind": "char", "chars": self.chars}

    @classmethod
    def from_dict(cls, data: dict) -> CharTokenizer:
        if data.get("kind") != "char" or not isinstance(data.get("chars"), str):
            raise ValueError(f"not a character tokenizer description: {data!r:.80}")
        return cls(data["chars"])


def train_val_split(ids: Tensor, val_fraction: float = 0.1) -> tuple[Tensor, Tensor]:
    """The first (1 - val_fraction) of one continuous text for training, the rest for validation."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction!r}")
    n_train = int(len(ids) * (1 - val_fraction))
    if n_train < 2 or len(ids) - n_train < 2:
        raise ValueError(f"{len(ids)} tokens are too few to split with val_fraction={val_fraction}")
    return ids[:n_train], ids[n_train:]


def random_batch(ids: Tensor, batch_size: int, block_size: int, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """x, y: (batch, block_size) windows at random offsets; y is x shifted one token to the left."""
    if len(ids) < block_size + 1:
        raise ValueError(f"the data has {len(ids)} tokens, fewer than block_size + 1 = {block_size + 1}")
    starts = torch.randint(len(ids) - block_size, (batch_size,), generator=generator)
    offsets = starts[:, None] + torch.arange(block_size + 1)  # (batch, block_size + 1)
    windows = ids[offsets]
    x, y = windows[:, :-1], windows[:, 1:]
    return (x.to(device), y.to(device)) if device is not None else (x, y)


@dataclass
class CharCorpus:
    """A text, its tokenizer and its train / validation token ids."""

    tokenizer: CharTokenizer
    train: Tensor
    val: Tensor

    @classmethod
    def from_text(cls, text: str, val_fraction: float = 0.1) -> CharCorpus:
        tokenizer = CharTokenizer.from_text(text)
        return cls(tokenizer, *train_val_split(tokenizer.encode(text), val_fraction))

    def batch(self, split: str, batch_size: int, block_size: int, generator: torch.Generator | None = None,
              device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        return random_batch(self.train if split == "train" else self.val, batch_size, block_size, generator, device)
