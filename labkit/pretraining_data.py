"""BERT's pretraining data: masked tokens (MLM) and sentence pairs (NSP), from the lab's real text.

An example is one sentence pair or one lone sentence, encoded with a WordPiece tokenizer:

    [CLS] the cat sat [SEP] on the mat [SEP] [PAD]     input_ids
      0    0   0   0    0    1   1   1    1     0       token_type_ids (segment A, then B)
                                                        nsp_label: 0 = B follows A (IsNext), 1 = B is random (NotNext)
    [CLS] a lone sentence [SEP]                         token type 0 throughout, nsp_label -100: no NSP loss

`mask_tokens` then picks 15% of the ordinary tokens for the model to predict: 80% of those become [MASK], 10% a
random token, 10% stay as they are. `PretrainingData` holds the encoded examples of Tiny Shakespeare, CoNLL-2003 and
SST-2 and serves padded, freshly masked batches; its held-out batches keep one fixed set of masks.
"""

from __future__ import annotations

import math
import random
import re
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from labkit.data import load_data
from labkit.modules import IGNORE_INDEX
from labkit.validate import require_positive_int

__all__ = ["MASK_PROB", "SOURCES", "SPLITS", "mask_tokens", "ordinary_token_ids", "documents",
           "SentencePair", "make_nsp_pairs", "encode_pair", "encode_single", "EncodedExamples", "PretrainingData",
           "show_example"]

MASK_PROB = 0.15  # share of the ordinary tokens chosen for prediction
TO_MASK, TO_RANDOM = 0.8, 0.1  # of the chosen: 80% → [MASK], 10% → a random token, the other 10% kept
SOURCES = ("tinyshakespeare", "conll2003", "sst2")
SPLITS = ("train", "heldout")
LENGTH_GROUPS = 8  # a batch is one of this many runs of similar length (see PretrainingData.batch)
HELDOUT_FRACTION = 0.1  # Tiny Shakespeare: the last 10% of the speeches are held out
_SHOWN = 40  # characters of a sentence quoted in a warning


# ---------------------------------------------------------------------------------------------- masking


def mask_tokens(input_ids: Tensor, special_tokens_mask: Tensor, *, mask_id: int, vocab_size: int,
                mask_prob: float = MASK_PROB, generator: torch.Generator | None = None,
                random_ids: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """BERT's masking → (inputs, labels), both (batch, seq) long.

    input_ids: (batch, seq) long; special_tokens_mask: (batch, seq) bool, True on [CLS], [SEP] and [PAD], which are
    never chosen. Every other token is chosen with probability `mask_prob`; a sequence whose draw chose none gets one
    chosen at random, so every example trains the MLM head (on short sequences the rate is therefore a little above
    `mask_prob`). Of the chosen tokens 80% become `mask_id`, 10% a random id from `random_ids` (1-D; default: every
    id below `vocab_size` except `mask_id` and the ids at special positions of `input_ids`), 10% stay. labels: the
    original id where chosen, -100 elsewhere. All draws come from `generator` on the CPU, so a seeded generator
    repeats the masks.
    """
    _check_ids("input_ids", input_ids, 2)
    if not isinstance(special_tokens_mask, Tensor) or special_tokens_mask.dtype != torch.bool:
        raise TypeError(f"special_tokens_mask must be a bool tensor, got "
                        f"{getattr(special_tokens_mask, 'dtype', type(special_tokens_mask).__name__)}")
    if special_tokens_mask.shape != input_ids.shape:
        raise ValueError(f"special_tokens_mask must have input_ids' shape {tuple(input_ids.shape)}, "
                         f"got {tuple(special_tokens_mask.shape)}")
    require_positive_int("vocab_size", vocab_size)
    if not isinstance(mask_id, int) or not 0 <= mask_id < vocab_size:
        raise ValueError(f"mask_id must be an int in 0..{vocab_size - 1} (vocab_size={vocab_size}), got {mask_id!r}")
    if isinstance(mask_prob, bool) or not isinstance(mask_prob, (int, float)) or not 0 < mask_prob < 1:
        raise ValueError(f"mask_prob must lie strictly between 0 and 1, got {mask_prob!r}")
    if input_ids.numel() and not 0 <= int(input_ids.min()) <= int(input_ids.max()) < vocab_size:
        raise ValueError(f"input_ids must lie in 0..{vocab_size - 1} (vocab_size={vocab_size}), got values from "
                         f"{int(input_ids.min())} to {int(input_ids.max())}")
    maskable = ~special_tokens_mask
    counts = maskable.sum(dim=1)
    if (counts < 2).any():
        row = int((counts < 2).nonzero()[0, 0])
        raise ValueError(f"text too short to mask: row {row} of input_ids has {int(counts[row])} maskable token(s) "
                         f"(not [CLS], [SEP] or [PAD]), need at least 2 so that some context stays visible")
    if random_ids is None:
        candidates = torch.arange(vocab_size)
        excluded = torch.cat([input_ids[special_tokens_mask].unique().cpu(), torch.tensor([mask_id])])
        random_ids = candidates[~torch.isin(candidates, excluded)]
    else:
        _check_ids("random_ids", random_ids, 1)
        if not random_ids.numel() or int(random_ids.min()) < 0 or int(random_ids.max()) >= vocab_size:
            raise ValueError(f"random_ids must be a non-empty 1-D tensor of ids in 0..{vocab_size - 1}, got "
                             f"{random_ids.numel()} ids")

    shape, device = input_ids.shape, input_ids.device

    def uniform() -> Tensor:  # (batch, seq) uniform draws in [0, 1)
        return torch.rand(shape, generator=generator).to(device)

    chosen = (uniform() < mask_prob) & maskable
    # at least one chosen token per sequence: where the draw chose none, take the maskable token scoring highest
    score = uniform().masked_fill(~maskable, -1.0)
    rows = (~chosen.any(dim=1)).nonzero().squeeze(1)
    chosen[rows, score[rows].argmax(dim=1)] = True
    action = uniform()
    replacements = random_ids.cpu()[torch.randint(len(random_ids), shape, generator=generator)].to(device)
    inputs = torch.where(chosen & (action < TO_MASK), mask_id, input_ids)
    inputs = torch.where(chosen & (action >= TO_MASK) & (action < TO_MASK + TO_RANDOM), replacements, inputs)
    labels = torch.where(chosen, input_ids, IGNORE_INDEX)
    return inputs, labels


def _check_ids(name: str, ids: Any, dims: int) -> None:
    if not isinstance(ids, Tensor) or ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got {getattr(ids, 'dtype', type(ids).__name__)}")
    if ids.dim() != dims:
        raise ValueError(f"{name} must be {dims}-D, got shape {tuple(ids.shape)}")


def ordinary_token_ids(tokenizer: Any) -> Tensor:
    """(n,) the ids a random replacement may take: the vocabulary less the special tokens and the bracketed
    placeholders ("[unused0]" ...) that text never produces."""
    special = set(tokenizer.all_special_ids)
    ids = [i for token, i in tokenizer.get_vocab().items()
           if i not in special and not (token.startswith("[") and token.endswith("]"))]
    return torch.tensor(sorted(ids))


# ---------------------------------------------------------------------------------------------- documents

# A Reuters dateline, "LONDON 1996-08-22": a short sentence ending in a date, the second line of nearly every story.
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATELINE_MAX_TOKENS = 6


def _speeches(text: str) -> list[list[str]]:
    """Tiny Shakespeare's speeches (blank-line-separated blocks), each a list of its lines, the speaker's name line
    (a first line ending in ':') dropped."""
    speeches = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.split("\n")
        if lines[0].rstrip().endswith(":"):
            lines = lines[1:]
        lines = [line.strip() for line in lines if line.strip()]
        if lines:
            speeches.append(lines)
    return speeches


def _articles(token_lists: Sequence[Sequence[str]]) -> list[list[str]]:
    """CoNLL-2003's sentences (tokens joined by spaces) cut into news stories.

    The data layer skips the -DOCSTART- lines, so story boundaries are not marked in this copy; a story is taken to
    start at the headline just before each dateline ("LONDON 1996-08-22"), which finds 919 of the 946 training
    stories (the rest stay joined to the story before them).
    """
    sentences = [tokens for tokens in token_lists if tokens]
    starts = {0} | {i - 1 for i, tokens in enumerate(sentences)
                    if i > 0 and len(tokens) <= _DATELINE_MAX_TOKENS and _DATE.fullmatch(tokens[-1])}
    bounds = sorted(starts) + [len(sentences)]
    return [[" ".join(tokens) for tokens in sentences[start:end]] for start, end in zip(bounds, bounds[1:])]


def _check_source(name: Any) -> str:
    if name not in SOURCES:
        raise ValueError(f"name must be one of {list(SOURCES)}, got {name!r}")
    return name


def _split_documents(name: str) -> dict[str, list[list[str]]]:
    """{"train": documents, "heldout": documents} of one source (loaded once)."""
    data = load_data(_check_source(name))
    if name == "tinyshakespeare":
        speeches = _speeches(data)
        cut = math.floor(len(speeches) * (1 - HELDOUT_FRACTION))
        return {"train": speeches[:cut], "heldout": speeches[cut:]}
    if name == "conll2003":
        return {"train": _articles(data["train"]["tokens"]), "heldout": _articles(data["validation"]["tokens"])}
    return {"train": [[s] for s in data["train"]["sentence"]], "heldout": [[s] for s in data["validation"]["sentence"]]}


def documents(name: str, split: str = "train") -> list[list[str]]:
    """The documents of a source, each a list of sentences (str), in the order of the text.

    "tinyshakespeare": speeches, the speaker's name dropped, one sentence per line; train = the first 90% of the
    speeches, heldout = the last 10%. "conll2003": news stories, sentences joined from their tokens; article
    boundaries are not marked in this copy and are recovered from the datelines (see `_articles`); train = the
    train split, heldout = validation. "sst2": independent sentences, each its own one-sentence document (MLM only,
    no NSP); train = train, heldout = validation.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    return _split_documents(name)[split]


# ---------------------------------------------------------------------------------------------- sentence pairs


class SentencePair(NamedTuple):
    """Sentence a, then b: the sentence that follows a (is_random False: IsNext) or one from another document
    (is_random True: NotNext)."""

    a: str
    b: str
    is_random: bool

    @property
    def nsp_label(self) -> int:
        """0 = IsNext, 1 = NotNext (the Hugging Face convention)."""
        return int(self.is_random)


def make_nsp_pairs(documents: Sequence[Sequence[str]], *, seed: int) -> list[SentencePair]:
    """One pair for every sentence that has a successor in its document: half the time (a coin flip from
    `random.Random(seed)`) b is that successor, otherwise a random sentence of a random other document.

    documents: a list of documents, each a non-empty list of sentences. One-sentence documents give no pair (they
    can still supply a NotNext sentence).
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    for index, doc in enumerate(documents):
        if isinstance(doc, str) or not doc or not all(isinstance(s, str) for s in doc):
            raise ValueError(f"documents[{index}] must be a non-empty list of sentences (str), got {doc!r:.80}")
    if not documents:
        raise ValueError("documents is empty: next-sentence pairs need documents of sentences")
    if len(documents) < 2 and any(len(doc) > 1 for doc in documents):
        raise ValueError(f"documents must hold at least 2 documents, so that NotNext sentences can come from another "
                         f"one, got {len(documents)}")
    rng = random.Random(seed)
    pairs = []
    for index, doc in enumerate(documents):
        for a, successor in zip(doc, doc[1:]):
            if rng.random() < 0.5:
                pairs.append(SentencePair(a, successor, False))
            else:
                other = rng.randrange(len(documents) - 1)
                other += other >= index  # any document but this one
                pairs.append(SentencePair(a, rng.choice(documents[other]), True))
    return pairs


# ---------------------------------------------------------------------------------------------- encoding


def _special_ids(tokenizer: Any) -> tuple[int, int]:
    """The tokenizer's ([CLS], [SEP]) ids; a tokenizer without them (or without [MASK], [PAD]) raises ValueError."""
    for name in ("cls_token_id", "sep_token_id", "mask_token_id", "pad_token_id"):
        if getattr(tokenizer, name, None) is None:
            raise ValueError(f"tokenizer must have a BERT-style {name} ([CLS], [SEP], [MASK], [PAD]), "
                             f"got {type(tokenizer).__name__} with {name}=None")
    return tokenizer.cls_token_id, tokenizer.sep_token_id


def _check_max_len(max_len: int, least: int) -> None:
    require_positive_int("max_len", max_len)
    if max_len < least:
        raise ValueError(f"max_len must be at least {least} (the special tokens and two text tokens), got {max_len}")


def _truncate_longest_first(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """The lengths left when tokens are cut one at a time from the longer side until len_a + len_b <= budget: the
    shorter side keeps min(its length, budget // 2), the longer one the rest (a counts as the shorter on a tie, as
    in the tokenizers library)."""
    if len_a + len_b <= budget:
        return len_a, len_b
    short = min(len_a, len_b, budget // 2)
    return (budget - short, short) if len_a > len_b else (short, budget - short)


def _layout(ids_a: list[int], ids_b: list[int] | None, max_len: int, cls: int, sep: int) -> tuple[list[int], int, int]:
    """[CLS] a [SEP] (b [SEP]) cut to max_len → (ids, length of segment A with its [CLS] and [SEP], tokens cut)."""
    if ids_b is None:
        len_a, len_b = min(len(ids_a), max_len - 2), 0
        ids = [cls, *ids_a[:len_a], sep]
    else:
        len_a, len_b = _truncate_longest_first(len(ids_a), len(ids_b), max_len - 3)
        ids = [cls, *ids_a[:len_a], sep, *ids_b[:len_b], sep]
    cut = len(ids_a) + (len(ids_b) if ids_b is not None else 0) - len_a - len_b
    return ids, len_a + 2, cut


def _tensors(ids: list[int], a_length: int) -> dict[str, Tensor]:
    input_ids = torch.tensor(ids)
    positions = torch.arange(len(ids))
    special = (positions == 0) | (positions == a_length - 1) | (positions == len(ids) - 1)
    return {"input_ids": input_ids, "token_type_ids": (positions >= a_length).long(), "special_tokens_mask": special}


def _quote(text: str) -> str:
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "...")


def encode_pair(tokenizer: Any, a: str, b: str, max_len: int) -> dict[str, Tensor]:
    """[CLS] a [SEP] b [SEP] → input_ids, token_type_ids (0 on [CLS] a [SEP], 1 on b [SEP]) (seq,) long and
    special_tokens_mask (seq,) bool, seq <= max_len. Too long: tokens are cut from the longer side first
    ("longest_first"), with a warning that names the pair and the number cut."""
    cls, sep = _special_ids(tokenizer)
    _check_max_len(max_len, 5)
    ids_a, ids_b = tokenizer([a, b], add_special_tokens=False)["input_ids"]
    for name, text, ids in (("a", a, ids_a), ("b", b, ids_b)):
        if not ids:
            raise ValueError(f"{name} must hold some text, but {text!r} gives no tokens")
    ids, a_length, cut = _layout(ids_a, ids_b, max_len, cls, sep)
    if cut:
        warnings.warn(f"the pair ({_quote(a)}, {_quote(b)}) needs {len(ids) + cut} tokens, more than "
                      f"max_len={max_len}: cut {cut} token(s), longest side first", stacklevel=2)
    return _tensors(ids, a_length)


def encode_single(tokenizer: Any, text: str, max_len: int) -> dict[str, Tensor]:
    """[CLS] text [SEP] → input_ids, token_type_ids (all 0) (seq,) long and special_tokens_mask (seq,) bool, for an
    MLM-only example (its NSP label is -100). Too long: cut at the end, with a warning."""
    cls, sep = _special_ids(tokenizer)
    _check_max_len(max_len, 4)
    ids_text = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids_text:
        raise ValueError(f"text must hold some text, but {text!r} gives no tokens")
    ids, a_length, cut = _layout(ids_text, None, max_len, cls, sep)
    if cut:
        warnings.warn(f"the sentence {_quote(text)} needs {len(ids) + cut} tokens, more than max_len={max_len}: "
                      f"cut its last {cut} token(s)", stacklevel=2)
    return _tensors(ids, a_length)


# ---------------------------------------------------------------------------------------------- the data set


@dataclass(frozen=True)
class EncodedExamples:
    """n encoded examples, each padded with [PAD] to max_len."""

    input_ids: Tensor  # (n, max_len) int32
    token_type_ids: Tensor  # (n, max_len) uint8: 0 on [CLS] a [SEP] and padding, 1 on b [SEP]
    special_tokens_mask: Tensor  # (n, max_len) bool: True on [CLS], [SEP], [PAD]
    lengths: Tensor  # (n,) long: real tokens
    nsp_labels: Tensor  # (n,) long: 0 IsNext, 1 NotNext, -100 a lone sentence
    sources: Tensor  # (n,) long: index into PretrainingData.sources

    def __len__(self) -> int:
        return len(self.lengths)

    @staticmethod
    def concat(parts: Sequence[EncodedExamples]) -> EncodedExamples:
        return EncodedExamples(*(torch.cat([getattr(p, f.name) for p in parts]) for f in fields(EncodedExamples)))

    def take(self, rows: Tensor) -> EncodedExamples:
        """The examples at `rows` (k,) long."""
        return EncodedExamples(*(getattr(self, f.name)[rows] for f in fields(EncodedExamples)))


def _encode_examples(tokenizer: Any, examples: list[tuple[str, str | None, int]], max_len: int, source: int,
                     what: str) -> tuple[EncodedExamples, int]:
    """(a, b or None, nsp label) triples → (EncodedExamples, how many were dropped). One batch call of the fast
    tokenizer does all the sentences; examples with an empty side or fewer than 2 text tokens are dropped; one
    warning sums up the truncations."""
    cls, sep = _special_ids(tokenizer)
    texts = list(dict.fromkeys(t for a, b, _ in examples for t in (a, b) if t is not None))
    tokens = dict(zip(texts, tokenizer(texts, add_special_tokens=False)["input_ids"])) if texts else {}
    input_ids = np.full((len(examples), max_len), tokenizer.pad_token_id, dtype=np.int32)
    lengths, a_lengths, labels, cuts = [], [], [], []
    for a, b, label in examples:
        ids_a, ids_b = tokens[a], None if b is None else tokens[b]
        if not ids_a or ids_b == [] or len(ids_a) + len(ids_b or []) < 2:
            continue
        ids, a_length, cut = _layout(ids_a, ids_b, max_len, cls, sep)
        input_ids[len(lengths), :len(ids)] = ids
        lengths.append(len(ids))
        a_lengths.append(a_length)
        labels.append(label)
        cuts.append(cut)
    kept = len(lengths)
    truncated = [c for c in cuts if c]
    if truncated:
        warnings.warn(f"{what}: {len(truncated)} of {kept} examples were longer than max_len={max_len} and lost "
                      f"{sum(truncated)} tokens in all (at most {max(truncated)} from one), cut longest side first",
                      stacklevel=3)
    length = torch.tensor(lengths, dtype=torch.long)[:, None]
    a_length = torch.tensor(a_lengths, dtype=torch.long)[:, None]
    positions = torch.arange(max_len)
    padding = positions >= length
    encoded = EncodedExamples(
        input_ids=torch.from_numpy(input_ids[:kept]),
        token_type_ids=((positions >= a_length) & ~padding).to(torch.uint8),
        special_tokens_mask=(positions == 0) | (positions == a_length - 1) | (positions == length - 1) | padding,
        lengths=length.squeeze(1),
        nsp_labels=torch.tensor(labels, dtype=torch.long),
        sources=torch.full((kept,), source, dtype=torch.long))
    return encoded, len(examples) - kept


@dataclass(frozen=True)
class PretrainingData:
    """Encoded train and held-out examples of several sources, served as padded MLM + NSP batches.

    Build it with `PretrainingData.build(tokenizer, ...)`. A batch (`batch`, `heldout_batches`) is a dict of
    (batch, seq) tensors, seq = the longest example in the batch: input_ids, token_type_ids (long), attention_mask
    (bool, True = real token), mlm_labels (long, -100 = not masked), and nsp_labels (batch,) long (0 IsNext,
    1 NotNext, -100 a lone sentence). Train batches are masked afresh at every draw; held-out examples carry one
    fixed set of masks, drawn at build time from `seed`, so every evaluation scores the same tokens.
    """

    sources: tuple[str, ...]
    max_len: int
    seed: int
    mask_id: int
    vocab_size: int
    counts: dict[str, dict[str, dict[str, int]]]  # source → split → {"pairs", "single", "dropped"}
    build_s: float
    train: EncodedExamples = field(repr=False)
    heldout: EncodedExamples = field(repr=False)  # in a fixed shuffled order, so that any first few batches mix sources
    heldout_inputs: Tensor = field(repr=False)  # (n_heldout, max_len) long: the held-out input_ids, masked once
    heldout_labels: Tensor = field(repr=False)  # (n_heldout, max_len) long: their MLM labels
    random_ids: Tensor = field(repr=False)  # (n,) the ids a random replacement takes: `ordinary_token_ids`

    @classmethod
    def build(cls, tokenizer: Any, sources: Sequence[str] = SOURCES, max_len: int = 64, seed: int = 0,
              limit: int | None = None) -> PretrainingData:
        """Read `sources` through `labkit.data`, pair their sentences (`make_nsp_pairs`; one-sentence documents
        become lone-sentence examples) and encode them with `tokenizer` (a fast BERT-style tokenizer), cut to
        `max_len` tokens. `limit`: at most this many examples per source and split (a random sample), for tests
        and quick runs. Examples with fewer than 2 text tokens are dropped (`counts` says how many)."""
        start = time.perf_counter()
        _special_ids(tokenizer)
        _check_max_len(max_len, 5)
        if limit is not None:
            require_positive_int("limit", limit)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError(f"seed must be an int, got {seed!r}")
        if isinstance(sources, str) or not sources or len(set(sources)) != len(sources):
            raise ValueError(f"sources must be a non-empty sequence of distinct names from {list(SOURCES)}, "
                             f"got {sources!r}")
        sources = tuple(_check_source(name) for name in sources)
        parts: dict[str, list[EncodedExamples]] = {split: [] for split in SPLITS}
        counts: dict[str, dict[str, dict[str, int]]] = {name: {} for name in sources}
        split_docs = {name: _split_documents(name) for name in sources}
        for split in SPLITS:
            # One corpus per split: a NotNext sentence may come from any source, as BERT drew it from its whole corpus.
            docs = {name: split_docs[name][split] for name in sources}
            pairs = make_nsp_pairs([doc for name in sources for doc in docs[name]], seed=seed)
            for index, name in enumerate(sources):
                n_pairs = sum(len(doc) - 1 for doc in docs[name])  # make_nsp_pairs goes document by document
                examples = [(p.a, p.b, p.nsp_label) for p in pairs[:n_pairs]]
                pairs = pairs[n_pairs:]
                examples += [(doc[0], None, IGNORE_INDEX) for doc in docs[name] if len(doc) == 1]
                if limit is not None and len(examples) > limit:
                    examples = random.Random(f"{seed}:{name}:{split}").sample(examples, limit)
                encoded, dropped = _encode_examples(tokenizer, examples, max_len, index, f"{name} {split}")
                parts[split].append(encoded)
                counts[name][split] = {"pairs": int((encoded.nsp_labels != IGNORE_INDEX).sum()),
                                       "single": int((encoded.nsp_labels == IGNORE_INDEX).sum()), "dropped": dropped}
        train = EncodedExamples.concat(parts["train"])
        heldout = EncodedExamples.concat(parts["heldout"])
        generator = torch.Generator().manual_seed(seed)
        heldout = heldout.take(torch.randperm(len(heldout), generator=generator))
        random_ids = ordinary_token_ids(tokenizer)
        inputs, labels = mask_tokens(heldout.input_ids.long(), heldout.special_tokens_mask,
                                     mask_id=tokenizer.mask_token_id, vocab_size=len(tokenizer),
                                     generator=generator, random_ids=random_ids)
        return cls(sources, max_len, seed, tokenizer.mask_token_id, len(tokenizer), counts,
                   time.perf_counter() - start, train, heldout, inputs, labels, random_ids)

    def _examples(self, split: str) -> EncodedExamples:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
        return self.train if split == "train" else self.heldout

    def _batch(self, split: str, rows: Tensor, generator: torch.Generator | None) -> dict[str, Tensor]:
        """The examples at `rows` (batch,), padded to the longest; train rows masked now, held-out rows as fixed."""
        examples = self._examples(split)
        length = int(examples.lengths[rows].max())
        input_ids = examples.input_ids[rows, :length].long()
        special = examples.special_tokens_mask[rows, :length]
        if split == "train":
            input_ids, mlm_labels = mask_tokens(input_ids, special, mask_id=self.mask_id, vocab_size=self.vocab_size,
                                                generator=generator, random_ids=self.random_ids)
        else:
            input_ids, mlm_labels = self.heldout_inputs[rows, :length], self.heldout_labels[rows, :length]
        return {"input_ids": input_ids,
                "token_type_ids": examples.token_type_ids[rows, :length].long(),
                "attention_mask": torch.arange(length) < examples.lengths[rows, None],
                "mlm_labels": mlm_labels,
                "nsp_labels": examples.nsp_labels[rows]}

    def batch(self, split: str, batch_size: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """`batch_size` examples of "train" or "heldout" drawn at random (with replacement) from `generator`,
        which also draws the train masks. See the class docstring for the tensors.

        Examples of similar length go together, so that little of the batch is padding: `LENGTH_GROUPS` ×
        batch_size examples are drawn, sorted by length, and one of the `LENGTH_GROUPS` runs of batch_size is kept,
        chosen at random. Every example is still as likely as any other to be drawn.
        """
        require_positive_int("batch_size", batch_size)
        examples = self._examples(split)
        drawn = torch.randint(len(examples), (LENGTH_GROUPS * batch_size,), generator=generator)
        drawn = drawn[examples.lengths[drawn].argsort(stable=True)]
        group = int(torch.randint(LENGTH_GROUPS, (1,), generator=generator))
        return self._batch(split, drawn[group * batch_size:(group + 1) * batch_size], generator)

    def heldout_batches(self, batch_size: int) -> Iterator[dict[str, Tensor]]:
        """All held-out examples, `batch_size` at a time (the last batch may be smaller), always in the same order
        and with the same masks."""
        require_positive_int("batch_size", batch_size)
        for start in range(0, len(self.heldout), batch_size):
            yield self._batch("heldout", torch.arange(start, min(start + batch_size, len(self.heldout))), None)

    def token_counts(self) -> Tensor:
        """(vocab_size,) long: how often each token id occurs in the train split's text ([CLS], [SEP], [PAD] not
        counted), e.g. for `labkit.pretraining.unigram_baseline`."""
        ids = self.train.input_ids[~self.train.special_tokens_mask].long()
        return torch.bincount(ids, minlength=self.vocab_size)


# ---------------------------------------------------------------------------------------------- display


def show_example(tokenizer: Any, example: Mapping[str, Any]) -> list[tuple[str, int, str, int]]:
    """One example as rows (token, segment, masked_as, label), padding left out.

    example: 1-D input_ids and token_type_ids, optionally attention_mask and mlm_labels: what `encode_pair` returns,
    or one row of a batch, `{k: v[i] for k, v in batch.items()}`. token: the original token; segment: 0 (A) or
    1 (B); masked_as: what the model sees in a chosen position ([MASK], a random token or the token itself), "" in
    the others; label: the id to predict, or -100.
    """
    ids = torch.as_tensor(example["input_ids"])
    if ids.dim() != 1:
        raise ValueError(f"example['input_ids'] must be 1-D (seq,), got shape {tuple(ids.shape)}; pass one row of a "
                         f"batch: {{k: v[i] for k, v in batch.items()}}")
    segments = torch.as_tensor(example["token_type_ids"]).tolist()
    labels = torch.as_tensor(example.get("mlm_labels", torch.full_like(ids, IGNORE_INDEX))).tolist()
    real = torch.as_tensor(example.get("attention_mask", torch.ones_like(ids, dtype=torch.bool))).tolist()
    rows = []
    for seen, segment, label, keep in zip(tokenizer.convert_ids_to_tokens(ids.tolist()), segments, labels, real):
        if keep:
            if label == IGNORE_INDEX:
                rows.append((seen, segment, "", IGNORE_INDEX))
            else:
                rows.append((tokenizer.convert_ids_to_tokens(label), segment, seen, label))
    return rows
