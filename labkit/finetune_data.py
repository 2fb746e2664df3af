"""Fine-tuning data: labelled text encoded for a model, one label per sentence or one tag per word.

- `encode_sentences` (SST-2 style: one label per text) and `encode_tagged` (CoNLL style: one tag per word) tokenize
  with a fast tokenizer and return a `datasets.Dataset` with input_ids, attention_mask (token_type_ids when the
  tokenizer makes them) and labels. It feeds Hugging Face `Trainer` as is, and a plain loop through
  `DataLoader(dataset, batch_size=..., collate_fn=data_collator(tokenizer, task))`.
- Word-level tags reach the word pieces through `align_labels`: the first piece of a word carries the word's tag,
  later pieces and special tokens carry IGNORE_INDEX (-100), the label `F.cross_entropy` leaves out.
  `encode_tagged(..., with_shapes=True)` also records each token's word shape, for `labkit.word_shape`'s tagger.

`task` is "sentence" or "token" (`TASKS`) throughout the fine-tuning modules.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from numbers import Integral
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from labkit.modules import IGNORE_INDEX
from labkit.validate import require_positive_int
from labkit.word_shape import shape_ids

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

__all__ = ["TASKS", "align_labels", "encode_sentences", "encode_tagged", "encode_words", "data_collator", "batches"]

TASKS = ("sentence", "token")  # one label per sentence, or one tag per word


# ---------------------------------------------------------------------------------------------- checks


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def _check_label_names(label_names: Sequence[str]) -> None:
    if isinstance(label_names, str) or len(label_names) == 0 or not all(isinstance(n, str) for n in label_names):
        raise ValueError(f"label_names must be a non-empty list of label names, got {label_names!r}")


def _check_label(where: str, label: Any, n_labels: int) -> None:
    if not _is_int(label) or not 0 <= label < n_labels:
        raise ValueError(f"{where} is {label!r}; expected an int in 0..{n_labels - 1} (label_names has "
                         f"{n_labels} names)")


def _check_text(where: str, text: Any) -> None:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where} is {text!r}; expected a non-empty, non-whitespace string")


def _check_same_length(name_a: str, a: Sequence, name_b: str, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"{name_a} has {len(a)} items but {name_b} has {len(b)}; expected one per example")


def _check_fast(tokenizer: PreTrainedTokenizerBase) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(f"tokenizer must be a fast (Rust-backed) tokenizer, which tracks word ids and truncation; "
                        f"got {type(tokenizer).__name__}. Load it with AutoTokenizer (use_fast=True, the default)")


def _check_max_len(tokenizer: PreTrainedTokenizerBase, max_len: int) -> None:
    require_positive_int("max_len", max_len)
    specials = tokenizer.num_special_tokens_to_add()
    if max_len <= specials:
        raise ValueError(f"max_len must leave room for text beside the tokenizer's {specials} special tokens, "
                         f"got {max_len}")


# ---------------------------------------------------------------------------------------------- encoding


def align_labels(word_ids: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    """One label per token: a word's first sub-token gets its label; later sub-tokens and specials get -100.

    word_ids: (seq,) from a fast tokenizer's `word_ids()`, None for special tokens; word_labels: (words,).
    """
    for i, label in enumerate(word_labels):
        if not _is_int(label) or label < 0:
            raise ValueError(f"word_labels[{i}] is {label!r}; expected an int >= 0 (a tag id)")
    labels, previous = [], None
    for word in word_ids:
        if word is None or word == previous:
            labels.append(IGNORE_INDEX)
        elif not 0 <= word < len(word_labels):
            raise ValueError(f"word id {word} has no label: word_labels has {len(word_labels)} labels, expected "
                             f"one per word")
        else:
            labels.append(int(word_labels[word]))
        previous = word
    return labels


def _warn_truncated(encoded: Any, max_len: int, what: str) -> None:
    """One warning for all the examples the tokenizer cut to max_len (a fast tokenizer keeps the cut-off part)."""
    cut = sum(1 for encoding in encoded.encodings if encoding.overflowing)
    if cut:
        warnings.warn(f"{cut} of {len(encoded.encodings)} examples were longer than max_len={max_len} tokens and "
                      f"were truncated; {what}", stacklevel=3)


def _to_dataset(encoded: Any, labels: list, label_feature: Any, extra: dict[str, list] | None = None) -> Dataset:
    from datasets import Dataset, Features, List, Value

    columns = {key: encoded[key] for key in ("input_ids", "token_type_ids", "attention_mask") if key in encoded}
    columns |= extra or {}
    features = Features({key: List(Value("int64")) for key in columns} | {"labels": label_feature})
    return Dataset.from_dict({**columns, "labels": labels}, features=features)


def encode_sentences(tokenizer: PreTrainedTokenizerBase, sentences: Sequence[str], labels: Sequence[int],
                     max_len: int, label_names: Sequence[str]) -> Dataset:
    """Tokenize one-label-per-text data (e.g. SST-2) into a Dataset: input_ids, attention_mask, labels.

    Texts longer than max_len tokens are truncated, with one warning counting them. labels (ClassLabel) are
    ints in 0..len(label_names)-1.
    """
    from datasets import ClassLabel

    if isinstance(sentences, str):
        raise ValueError(f"sentences must be a list of texts, got one str ({sentences[:40]!r}); wrap it in a list")
    sentences, labels = list(sentences), list(labels)
    _check_fast(tokenizer)
    _check_max_len(tokenizer, max_len)
    _check_label_names(label_names)
    _check_same_length("sentences", sentences, "labels", labels)
    for i, (text, label) in enumerate(zip(sentences, labels)):
        _check_text(f"sentences[{i}]", text)
        _check_label(f"labels[{i}]", label, len(label_names))
    encoded = tokenizer(sentences, truncation=True, max_length=max_len)
    _warn_truncated(encoded, max_len, "the model sees only their beginning")
    return _to_dataset(encoded, labels, ClassLabel(names=list(label_names)))


def encode_tagged(tokenizer: PreTrainedTokenizerBase, token_lists: Sequence[Sequence[str]],
                  tag_lists: Sequence[Sequence[int]], max_len: int, label_names: Sequence[str], *,
                  with_shapes: bool = False) -> Dataset:
    """Tokenize one-tag-per-word data (e.g. CoNLL-2003) into a Dataset: input_ids, attention_mask, labels.

    labels: (seq,) per example, aligned by `align_labels` (-100 on specials and on non-first sub-tokens).
    with_shapes: also a shape_ids column, each token's word shape (`labkit.word_shape`), for `ShapeAwareTagger`.
    Examples longer than max_len tokens are truncated, with one warning counting them; their cut words get no label.
    """
    from datasets import List, Value

    for i, words in enumerate(token_lists):
        if isinstance(words, str):
            raise ValueError(f"token_lists[{i}] is a str ({words[:40]!r}); expected a list of words per example")
    token_lists, tag_lists = [list(t) for t in token_lists], [list(t) for t in tag_lists]
    _check_fast(tokenizer)
    _check_max_len(tokenizer, max_len)
    _check_label_names(label_names)
    _check_same_length("token_lists", token_lists, "tag_lists", tag_lists)
    for i, (words, tags) in enumerate(zip(token_lists, tag_lists)):
        if not words:
            raise ValueError(f"token_lists[{i}] is empty; expected at least one word")
        if len(words) != len(tags):
            raise ValueError(f"token_lists[{i}] has {len(words)} words but tag_lists[{i}] has {len(tags)} tags; "
                             f"expected one tag per word")
        for j, (word, tag) in enumerate(zip(words, tags)):
            _check_text(f"token_lists[{i}][{j}]", word)
            _check_label(f"tag_lists[{i}][{j}]", tag, len(label_names))
    encoded = tokenizer(token_lists, is_split_into_words=True, truncation=True, max_length=max_len)
    _warn_truncated(encoded, max_len, "their words past the cut get no label")
    labels = [align_labels(encoded.word_ids(i), tags) for i, tags in enumerate(tag_lists)]
    extra = None
    if with_shapes:
        extra = {"shape_ids": [shape_ids(encoded.word_ids(i), words) for i, words in enumerate(token_lists)]}
    return _to_dataset(encoded, labels, List(Value("int64")), extra)


def encode_words(tokenizer: PreTrainedTokenizerBase,
                 words: Sequence[str]) -> tuple[dict[str, Tensor], list[int | None]]:
    """One sentence's words encoded as `encode_tagged(..., with_shapes=True)` encodes training data: (the model
    inputs (1, seq) each, shape_ids included, and the word id of every token, None for special tokens). A sentence
    longer than the tokenizer's limit raises: its last words would get no tag."""
    _check_fast(tokenizer)
    encoding = tokenizer(list(words), is_split_into_words=True, truncation=True, return_tensors="pt")
    if encoding.encodings[0].overflowing:
        raise ValueError(f"text is longer than the tokenizer's {tokenizer.model_max_length} tokens, so its last "
                         f"words would get no tag; expected a shorter text (split it into sentences)")
    word_ids = encoding.word_ids(0)
    return dict(encoding) | {"shape_ids": torch.tensor([shape_ids(word_ids, words)])}, word_ids


def data_collator(tokenizer: PreTrainedTokenizerBase, task: str) -> Callable[[list[dict]], dict[str, Tensor]]:
    """The Hugging Face collator that pads a list of encoded rows into a batch of tensors (batch, seq).

    task "sentence": `DataCollatorWithPadding`; task "token": `DataCollatorForTokenClassification` (pads labels
    with -100), and shape_ids, where the rows have them, with 0 ("special").
    """
    from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding

    _check_task(task)
    if task == "sentence":
        return DataCollatorWithPadding(tokenizer)
    pad_tokens = DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE_INDEX)

    def collate(rows: list[dict]) -> dict[str, Tensor]:
        if not rows or "shape_ids" not in rows[0]:
            return pad_tokens(rows)
        shapes = [torch.as_tensor(row["shape_ids"]) for row in rows]
        batch = pad_tokens([{k: v for k, v in row.items() if k != "shape_ids"} for row in rows])
        padded = torch.zeros_like(batch["input_ids"])
        for i, row_shapes in enumerate(shapes):  # padding on the tokenizer's side, as for the tokens
            if tokenizer.padding_side == "left":
                padded[i, padded.shape[1] - len(row_shapes):] = row_shapes
            else:
                padded[i, :len(row_shapes)] = row_shapes
        return batch | {"shape_ids": padded}

    return collate


def batches(dataset: Dataset, tokenizer: PreTrainedTokenizerBase, task: str, batch_size: int,
            shuffle_seed: int | None = None) -> Any:
    """A DataLoader over an encoded data set, collated by `data_collator`; shuffled when `shuffle_seed` is given."""
    from torch.utils.data import DataLoader

    generator = None if shuffle_seed is None else torch.Generator().manual_seed(shuffle_seed)
    return DataLoader(dataset.with_format("torch"), batch_size=batch_size, shuffle=shuffle_seed is not None,
                      generator=generator, collate_fn=data_collator(tokenizer, task))
