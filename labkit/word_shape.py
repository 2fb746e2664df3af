"""Giving an uncased encoder back the case of each word, for tagging.

The packaged all-MiniLM-L6-v2 lower-cases its input before WordPiece: "Apple" (the company) and "apple" (the
fruit) become the same token, and the model never sees the capital letter that is one of the best hints that a
word names an entity. A cased model keeps it in its vocabulary; an uncased one can be given it beside the tokens:

- `word_shape` sorts a word into one of `SHAPES` ("lower", "Capitalized", "UPPER", ...);
- `shape_ids` puts the shape of its word on every word piece (0, "special", on [CLS], [SEP] and padding);
  `labkit.finetune_data.encode_tagged(..., with_shapes=True)` adds them to a data set as a `shape_ids` column;
- `ShapeAwareTagger` wraps a token classifier and adds one learned vector per shape to its input embeddings. The
  vectors start at zero, so training starts from exactly the plain model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["SHAPES", "word_shape", "shape_ids", "ShapeAwareTagger"]

SHAPES = ("special", "lower", "Capitalized", "UPPER", "mixed", "no letters")


def word_shape(word: str) -> int:
    """The index in SHAPES of a word's shape: "lower" (apple), "Capitalized" (Apple, McDonald), "UPPER" (EU, U.S.),
    "mixed" (iPhone, eBay), "no letters" (1996, --)."""
    if not isinstance(word, str) or not word:
        raise ValueError(f"word must be a non-empty str, got {word!r}")
    letters = [c for c in word if c.isalpha()]
    if not letters:
        return SHAPES.index("no letters")
    if all(c.islower() for c in letters):
        return SHAPES.index("lower")
    if all(c.isupper() for c in letters):
        return SHAPES.index("UPPER")
    if letters[0].isupper():
        return SHAPES.index("Capitalized")
    return SHAPES.index("mixed")


def shape_ids(word_ids: Sequence[int | None], words: Sequence[str]) -> list[int]:
    """One shape id per token: the shape of the token's word, 0 ("special") where word_ids is None.

    word_ids: (seq,) from a fast tokenizer's `word_ids()`; words: the words the tokenizer was given.
    """
    shapes = [word_shape(word) for word in words]
    for word in word_ids:
        if word is not None and not 0 <= word < len(shapes):
            raise ValueError(f"word id {word} has no word: {len(shapes)} words were given, expected one per word id")
    return [0 if word is None else shapes[word] for word in word_ids]


class ShapeAwareTagger(nn.Module):
    """A Hugging Face token classifier whose input embeddings also carry each token's word shape.

    tagger: e.g. `labkit.assets.load_model(task="token-classification", num_labels=...)`. forward takes what the
    tagger takes plus shape_ids (batch, seq) and returns the tagger's output (`.logits` (batch, seq, n_tags), and
    `.loss` when labels are given). Without shape_ids it is the plain tagger.
    """

    def __init__(self, tagger: nn.Module) -> None:
        super().__init__()
        hidden = getattr(getattr(tagger, "config", None), "hidden_size", None)
        if not isinstance(hidden, int) or not hasattr(tagger, "get_input_embeddings"):
            raise TypeError(f"tagger must be a Hugging Face model with config.hidden_size and input embeddings, got "
                            f"{type(tagger).__name__}")
        self.tagger = tagger
        self.config = tagger.config
        self.shape_embedding = nn.Embedding(len(SHAPES), hidden)
        nn.init.zeros_(self.shape_embedding.weight)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                shape_ids: Tensor | None = None, labels: Tensor | None = None) -> Any:
        """input_ids, attention_mask, token_type_ids, shape_ids: (batch, seq); labels: (batch, seq)."""
        embeddings = self.tagger.get_input_embeddings()(input_ids)  # (batch, seq, hidden)
        if shape_ids is not None:
            if shape_ids.shape != input_ids.shape:
                raise ValueError(f"shape_ids must be shaped like input_ids {tuple(input_ids.shape)}, got "
                                 f"{tuple(shape_ids.shape)}")
            embeddings = embeddings + self.shape_embedding(shape_ids)
        return self.tagger(inputs_embeds=embeddings, attention_mask=attention_mask, token_type_ids=token_type_ids,
                           labels=labels)

    @torch.no_grad()
    def shape_norms(self) -> dict[str, float]:
        """How far training has moved each shape's vector from zero: {shape: L2 norm}."""
        return dict(zip(SHAPES, self.shape_embedding.weight.norm(dim=-1).tolist()))
