"""A toy translation task: dates written in English words → ISO dates, generated from a seed.

    "the twenty third of march nineteen ninety four"   →   "1994-03-23"
    "march twenty three , two thousand and five"        →   "2005-03-23"

The source is a sequence of words (one token per word, so the attention explorer reads like the sentence); the
target is the ISO date one character per token ("1", "9", "9", "4", "-", ...). The day comes before or after the
month depending on the wording, and the year may come first or last, so the alignment between source words and
target characters is clear but not monotone: something a decoder's cross-attention has to learn.

Every date between 1900-01-01 and 2099-12-31 can be written. A dataset draws distinct dates from a seed and splits
them into train and held-out, so no held-out date is ever seen in training, in any wording. The vocabularies are
built from every word the generator can write, so any held-out sentence encodes.

Scoring: exact match (the whole date right) and BLEU (`bleu`, computed by sacrebleu) over the date's pieces: year,
"-", month, "-", day, e.g. "1994 - 03 - 23". A date with the wrong day still gets partial credit for its year and
month, so BLEU says more than exact match.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import sacrebleu
import torch
from torch import Tensor

from labkit.validate import require_positive_int

__all__ = ["PAD", "BOS", "EOS", "UNK", "PAD_ID", "BOS_ID", "EOS_ID", "UNK_ID", "WORDINGS", "FIRST_DAY", "LAST_DAY",
           "Vocab", "Pair", "Batch", "cardinal", "ordinal", "year_in_words", "date_in_words", "source_tokens",
           "target_tokens", "source_vocab", "target_vocab", "TranslationData", "make_date_translation",
           "collate", "date_pieces", "exact_match", "bleu"]

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
_SPECIALS = (PAD, BOS, EOS, UNK)
_SHOWN = 5  # how many offending tokens an error lists

FIRST_DAY, LAST_DAY = dt.date(1900, 1, 1), dt.date(2099, 12, 31)

# ----------------------------------------------------------------------------- numbers and dates in words

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = {2: "twenty", 3: "thirty", 4: "forty", 5: "fifty", 6: "sixty", 7: "seventy", 8: "eighty", 9: "ninety"}
_ORDINALS = ["zeroth", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
             "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth",
             "eighteenth", "nineteenth"]
_MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december"]

# How the day, month and year are put together: day-first, month-first and year-first orders.
WORDINGS = {
    "the D of M Y": "the {day_ordinal} of {month} {year}",
    "D M Y": "{day} {month} {year}",
    "M D Y": "{month} {day} {year}",
    "M the D , Y": "{month} the {day_ordinal} , {year}",
    "M D , Y": "{month} {day_ordinal} , {year}",
    "in Y on the D of M": "in {year} on the {day_ordinal} of {month}",
    "Y M D": "{year} {month} {day_ordinal}",
}


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} must be an int in {low}..{high}, got {value!r}")


def cardinal(n: int) -> str:
    """1..99 in words: 7 → "seven", 42 → "forty two"."""
    _check_range("n", n, 1, 99)
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")


def ordinal(n: int) -> str:
    """1..99 as an ordinal in words: 3 → "third", 23 → "twenty third", 30 → "thirtieth"."""
    _check_range("n", n, 1, 99)
    if n < 20:
        return _ORDINALS[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens][:-1] + "ieth" if not ones else f"{_TENS[tens]} {_ORDINALS[ones]}"


def year_in_words(year: int, rng: random.Random) -> str:
    """1900..2099 as people say it: "nineteen oh five", "nineteen hundred", "two thousand and seven",
    "twenty fifteen" or "two thousand fifteen" (`rng` picks among the ways a year can be said)."""
    _check_range("year", year, FIRST_DAY.year, LAST_DAY.year)
    century, rest = divmod(year, 100)
    if century == 19:
        return "nineteen " + ("hundred" if rest == 0 else f"oh {_ONES[rest]}" if rest < 10 else cardinal(rest))
    if rest == 0:
        return "two thousand"
    if rest >= 10 and rng.random() < 0.5:
        return f"twenty {cardinal(rest)}"
    return f"two thousand {'and ' if rng.random() < 0.5 else ''}{cardinal(rest)}"


def date_in_words(date: dt.date, rng: random.Random, wording: str | None = None) -> str:
    """`date` written in lower-case words, in `wording` (a key of WORDINGS; default: drawn by `rng`)."""
    if not isinstance(date, dt.date) or not FIRST_DAY <= date <= LAST_DAY:
        raise ValueError(f"date must be a datetime.date from {FIRST_DAY} to {LAST_DAY}, got {date!r}")
    if wording is None:
        wording = rng.choice(sorted(WORDINGS))
    elif wording not in WORDINGS:
        raise ValueError(f"wording must be one of {sorted(WORDINGS)}, got {wording!r}")
    day = ordinal(date.day) if rng.random() < 0.5 else cardinal(date.day)
    return WORDINGS[wording].format(day=day, day_ordinal=ordinal(date.day), month=_MONTHS[date.month - 1],
                                    year=year_in_words(date.year, rng))


def source_tokens(text: str) -> list[str]:
    """A source sentence's tokens: its words."""
    return text.split()


def target_tokens(iso: str) -> list[str]:
    """A target's tokens: its characters, "1994-03-23" → ["1", "9", "9", "4", "-", "0", "3", "-", "2", "3"]."""
    return list(iso)


# ----------------------------------------------------------------------------- vocabularies


class Vocab:
    """Tokens ↔ ids. Ids 0..3 are always <pad>, <bos>, <eos>, <unk>; then `tokens` in the order given.

    name: what the vocabulary is of ("source", "target"), for error messages.
    """

    def __init__(self, tokens: Iterable[str], name: str = "vocabulary") -> None:
        tokens = list(tokens)
        if not tokens:
            raise ValueError(f"the {name} vocabulary needs at least one token besides the special ones")
        clash = sorted({t for t in tokens if t in _SPECIALS or tokens.count(t) > 1})
        if clash:
            raise ValueError(f"the {name} vocabulary's tokens must be distinct and not special, but "
                             f"{clash[:_SHOWN]} repeat or are special")
        self.name = name
        self.tokens = [*_SPECIALS, *tokens]
        self._ids = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def __repr__(self) -> str:
        return f"Vocab({self.name}: {len(self)} tokens, {self.tokens[4:12]}...)"

    def encode(self, tokens: Sequence[str], *, bos: bool = False, eos: bool = False,
               allow_unknown: bool = False) -> list[int]:
        """Tokens → ids, with <bos> first / <eos> last when asked. An unknown token raises ValueError naming it,
        unless `allow_unknown`, which maps it to <unk>."""
        if isinstance(tokens, str):
            raise TypeError(f"encode takes a list of tokens, got the string {tokens!r}; split it first "
                            f"(source_tokens / target_tokens)")
        unknown = [t for t in tokens if t not in self._ids]
        if unknown and not allow_unknown:
            raise ValueError(f"unknown {self.name} token(s) {unknown[:_SHOWN]}: not among the {len(self)} tokens "
                             f"of the {self.name} vocabulary (e.g. {self.tokens[4:9]})")
        ids = [self._ids.get(t, UNK_ID) for t in tokens]
        return [BOS_ID] * bos + ids + [EOS_ID] * eos

    def decode(self, ids: Iterable[int] | Tensor) -> list[str]:
        """Ids → tokens, up to the first <eos>; <pad> and <bos> are left out."""
        ids = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        bad = [i for i in ids if not isinstance(i, int) or not 0 <= i < len(self)]
        if bad:
            raise ValueError(f"ids {bad[:_SHOWN]} are not in the {self.name} vocabulary (ids 0..{len(self) - 1})")
        out = []
        for i in ids:
            if i == EOS_ID:
                break
            if i not in (PAD_ID, BOS_ID):
                out.append(self.tokens[i])
        return out


def source_vocab() -> Vocab:
    """Every word a date can be written with (month names, numbers, ordinals, "the", "of", ...), sorted."""
    words = {*_ONES[1:], *_TENS.values(), *_ORDINALS[1:], *_MONTHS, "hundred", "thousand", "and", "oh",
             "twentieth", "thirtieth"}
    for template in WORDINGS.values():
        words.update(w for w in template.split() if not w.startswith("{"))
    return Vocab(sorted(words), name="source")


def target_vocab() -> Vocab:
    """The ten digits and "-"."""
    return Vocab([*"0123456789", "-"], name="target")


# ----------------------------------------------------------------------------- the dataset


class Pair(NamedTuple):
    """One example: the date in words, and its ISO form."""

    source: str
    target: str


class Batch(NamedTuple):
    """src: (batch, src_len) long, <pad>-padded; tgt: (batch, tgt_len) long, <bos> target <eos>, <pad>-padded."""

    src: Tensor
    tgt: Tensor


def collate(pairs: Sequence[Pair], source: Vocab, target: Vocab) -> Batch:
    """Encode `pairs` and pad them into one Batch (each row padded to the batch's longest)."""
    if not pairs:
        raise ValueError("pairs is empty: a batch needs at least one pair")
    src = [source.encode(source_tokens(p.source)) for p in pairs]
    tgt = [target.encode(target_tokens(p.target), bos=True, eos=True) for p in pairs]

    def pad(rows: list[list[int]]) -> Tensor:
        width = max(len(r) for r in rows)
        return torch.tensor([r + [PAD_ID] * (width - len(r)) for r in rows], dtype=torch.long)

    return Batch(pad(src), pad(tgt))


@dataclass(frozen=True)
class TranslationData:
    """Train and held-out pairs (disjoint dates) and the two vocabularies."""

    train: list[Pair]
    heldout: list[Pair]
    source: Vocab
    target: Vocab
    seed: int

    def split(self, name: str) -> list[Pair]:
        if name not in ("train", "heldout"):
            raise ValueError(f"split must be 'train' or 'heldout', got {name!r}")
        return self.train if name == "train" else self.heldout

    def batch(self, split: str, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        """`batch_size` pairs of a split drawn at random (with replacement), collated."""
        require_positive_int("batch_size", batch_size)
        pairs = self.split(split)
        rows = torch.randint(len(pairs), (batch_size,), generator=generator).tolist()
        return collate([pairs[i] for i in rows], self.source, self.target)

    def max_source_len(self) -> int:
        return max(len(source_tokens(p.source)) for p in self.train + self.heldout)


def make_date_translation(n_train: int = 20000, n_heldout: int = 500, seed: int = 0) -> TranslationData:
    """`n_train + n_heldout` distinct dates drawn with `seed`, each written in a wording drawn with `seed`; the
    first `n_heldout` are held out. The same seed gives the same pairs."""
    require_positive_int("n_train", n_train)
    require_positive_int("n_heldout", n_heldout)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    days = (LAST_DAY - FIRST_DAY).days + 1
    if n_train + n_heldout > days:
        raise ValueError(f"n_train + n_heldout = {n_train + n_heldout} is more than the {days} dates from "
                         f"{FIRST_DAY} to {LAST_DAY}")
    rng = random.Random(seed)
    offsets = rng.sample(range(days), n_train + n_heldout)
    pairs = []
    for offset in offsets:
        date = FIRST_DAY + dt.timedelta(days=offset)
        pairs.append(Pair(date_in_words(date, rng), date.isoformat()))
    return TranslationData(train=pairs[n_heldout:], heldout=pairs[:n_heldout], source=source_vocab(),
                           target=target_vocab(), seed=seed)


# ----------------------------------------------------------------------------- scores


def date_pieces(iso: str) -> str:
    """The pieces BLEU counts: "1994-03-23" → "1994 - 03 - 23" (every "-" its own token)."""
    return " ".join(re.sub("-", " - ", iso).split())


def _check_scored(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise TypeError("hypotheses and references must be lists of strings, one per example, not one string")
    if len(hypotheses) != len(references) or not references:
        raise ValueError(f"need as many hypotheses as references, at least one: got {len(hypotheses)} and "
                         f"{len(references)}")


def exact_match(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """The share of hypotheses equal to their reference, 0..1."""
    _check_scored(hypotheses, references)
    return sum(h == r for h, r in zip(hypotheses, references)) / len(references)


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (0..100; sacrebleu's defaults: up to 4-grams, brevity penalty, exponential smoothing) over
    `date_pieces`, with sacrebleu's own tokenisation switched off (tokenize="none"). On ISO dates this equals
    sacrebleu's standard "13a" tokenisation, which also splits a "-" after a digit."""
    _check_scored(hypotheses, references)
    return sacrebleu.corpus_bleu([date_pieces(h) for h in hypotheses], [[date_pieces(r) for r in references]],
                                 tokenize="none").score
