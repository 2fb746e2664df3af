"""Notebook 04b's exercises, in the order the notebook teaches them: counting adjacent pairs, merging one pair,
encoding a chunk with ranked merges, bits per character, and WordPiece's greedy longest match. The rules are
labkit's (`labkit.tokenization`)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Set as AbstractSet
from typing import Any, Callable

import torch
from torch import Tensor

from labkit.exercises import expect, exercise


def _ids(value: Any, what: str) -> list[int]:
    """`value` as a list of ints if it is a list or tuple of ints; else `Failed` naming `what`."""
    expect(isinstance(value, (list, tuple)),
           f"{what} returned a {type(value).__name__}; return a list of ints")
    expect(all(isinstance(i, int) and not isinstance(i, bool) for i in value),
           f"{what} returned {value!r}; return a list of ints (token ids)")
    return list(value)


# --- counting pairs --------------------------------------------------------------------------------------------

def reference_count_pairs(ids: list[int]) -> dict[tuple[int, int], int]:
    counts: dict[tuple[int, int], int] = {}
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


@exercise("count_pairs", "04b",
          task="count_pairs(ids) → {(a, b): count}: how often each adjacent pair of ids occurs, left token first, "
               "every position counted (overlaps included: [7, 7, 7] holds (7, 7) twice); pairs that never occur "
               "are left out",
          hint="for a, b in zip(ids, ids[1:]): counts[(a, b)] = counts.get((a, b), 0) + 1 "
               "(or collections.Counter(zip(ids, ids[1:])))",
          reference=reference_count_pairs)
def check_count_pairs(answer: Callable[..., Any]) -> None:
    for ids in ([104, 105, 32, 104, 105], [7, 7, 7], [1, 2, 1, 2, 1, 3, 3, 3, 3, 2], [5], []):
        what = f"count_pairs({ids})"
        got = answer(list(ids))
        expect(isinstance(got, Mapping), f"{what} returned a {type(got).__name__}; return a dict {{(a, b): count}}")
        got = {pair: n for pair, n in got.items() if n}
        right = reference_count_pairs(ids)
        if not right:
            expect(not got, f"{what} = {got}: a sequence of {len(ids)} id(s) has no adjacent pair, so return {{}}")
            continue
        flipped = {(b, a): n for (a, b), n in right.items()}
        expect(got == right or got != flipped,
               f"{what} = {got}: the pairs are written (right, left); write each as (ids[i], ids[i + 1])")
        wraps = (ids[-1], ids[0])
        expect(not (got.get(wraps, 0) > right.get(wraps, 0)),
               f"{what} counts {wraps} once more than it occurs: the last id and the first are not neighbours "
               f"(zip(ids, ids[1:]), not a wrap-around)")
        if (7, 7) in right:
            expect(got.get((7, 7)) != 1, f"{what} counts (7, 7) once, but it occurs at positions 0 and 1: "
                                         f"overlapping pairs each count, as BPE counts them (the merge then takes "
                                         f"the first)")
        expect(not (set(got) == set(right) and all(n == 1 for n in got.values())),
               f"{what} = {got}: each pair counted once; count every position where it occurs")
        missing = {pair: n for pair, n in right.items() if got.get(pair, 0) < n}
        expect(not missing, f"{what} = {got}: too few of {missing}; every adjacent pair counts, not only those "
                            f"starting at even positions")
        expect(got == right, f"{what} = {got}, expected {right}")


# --- merging a pair ------------------------------------------------------------------------------------------------

def reference_merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    merged, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged


_MERGE_CASES = [  # (what it shows, ids, pair, new_id)
    ("the pair occurs twice", [104, 105, 32, 104, 105, 33], (104, 105), 256),
    ("a run of three equal ids", [7, 7, 7], (7, 7), 300),
    ("a run of four equal ids", [7, 7, 7, 7, 8], (7, 7), 300),
    ("the pair at the very end", [1, 2, 3, 2, 3], (2, 3), 257),
    ("the pair does not occur", [3, 2, 1], (2, 3), 257),
]


@exercise("merge_pair", "04b",
          task="merge_pair(ids, pair, new_id) → a new list: ids with every occurrence of `pair` (two adjacent ids) "
               "replaced by the one id `new_id`, scanning left to right, so that [7, 7, 7] with pair (7, 7) becomes "
               "[new_id, 7]; leave `ids` itself unchanged",
          hint="walk i from 0: if ids[i], ids[i + 1] is the pair (and i + 1 exists), append new_id and skip two; "
               "else append ids[i] and step one",
          reference=reference_merge_pair)
def check_merge_pair(answer: Callable[..., Any]) -> None:
    for case, ids, pair, new_id in _MERGE_CASES:
        what = f"merge_pair({ids}, {pair}, {new_id})"
        given = list(ids)
        got = answer(given, pair, new_id)
        expect(given == ids, f"{what} changed ids in place (to {given}): the caller still needs the chunk as it was; "
                             f"build a new list")
        got = _ids(got, what)
        right = reference_merge_pair(ids, pair, new_id)
        expect(not (len(got) == len(ids) and new_id in got and right != ids),
               f"{what} = {got}: a merge makes one token of two, so the list gets shorter ({case}); append "
               f"new_id once and skip both ids of the pair")
        expect(not (len(got) == len(right) - 1 and got == right[:-1]),
               f"{what} = {got}: the last id is missing; an id with nothing after it is kept as it is")
        expect(not (got == list(reversed(reference_merge_pair(ids[::-1], pair[::-1], new_id))) and got != right),
               f"{what} = {got}: merged from the right; scan from the left, so the first two of a run merge "
               f"({case}): expected {right}")
        expect(not (got.count(new_id) == 1 and right.count(new_id) > 1),
               f"{what} = {got}: merged only the first occurrence; merge every one ({case}): expected {right}")
        expect(got == right, f"{what} = {got}, expected {right} ({case})")


# --- encoding a chunk with ranked merges -------------------------------------------------------------------------

def reference_encode_chunk(ids: list[int], ranks: dict[tuple[int, int], int]) -> list[int]:
    ids = list(ids)
    while len(ids) >= 2:
        pair = min(zip(ids, ids[1:]), key=lambda p: ranks.get(p, math.inf))
        if pair not in ranks:
            break
        ids = reference_merge_pair(ids, pair, ranks[pair])
    return ids


# merges learned on bytes: 256 = "e" + "r", 257 = "t" + "h", 258 = "th" + "e", 259 = "h" + "e", 260 = "the" + "r",
# 261 = " " + "the"; given in a shuffled order, as a dict may hold them
_RANKS = {(116, 104): 257, (104, 101): 259, (32, 258): 261, (101, 114): 256, (258, 114): 260, (257, 101): 258}
_ENCODE_CASES = [  # (what it shows, text)
    ("merges build on merges: 'th' (257), then 'the' (258)", "the"),
    ("' the' (261) needs 'the' (258) first, though the dict lists it earlier", " the"),
    ("'er' (256) was learned before 'th' (257), so 'other' ends up 'o', 'th', 'er' and never holds 'the'", "other"),
    ("no learned pair applies", "xyz"),
    ("one byte", "t"),
]


def _encode_wrong(ids: list[int], ranks: dict[tuple[int, int], int], how: str) -> list[int]:
    """The mistakes the checker names: "dict_order" applies each merge once in the dict's order, "leftmost" merges
    the leftmost learned pair first, "latest" the pair learned last, "once" stops after one merge."""
    ids = list(ids)
    if how == "dict_order":
        for pair, new_id in ranks.items():
            ids = reference_merge_pair(ids, pair, new_id)
        return ids
    while len(ids) >= 2:
        learned = [p for p in zip(ids, ids[1:]) if p in ranks]
        if not learned:
            break
        pair = {"leftmost": learned[0], "latest": max(learned, key=ranks.get)}.get(how) or min(learned, key=ranks.get)
        ids = reference_merge_pair(ids, pair, ranks[pair])
        if how == "once":
            break
    return ids


@exercise("encode_chunk", "04b",
          task="encode_chunk(ids, ranks) → list of token ids: `ids` are one chunk's bytes; `ranks` maps each learned "
               "pair to the id it became, and a smaller id was learned earlier. Repeatedly merge the learned pair "
               "with the smallest id among the chunk's adjacent pairs (every occurrence, as merge_pair does), until "
               "no adjacent pair is in `ranks`",
          hint="while len(ids) >= 2: pair = min(zip(ids, ids[1:]), key=lambda p: ranks.get(p, float('inf'))); if "
               "pair not in ranks: break; ids = merge_pair(ids, pair, ranks[pair])",
          reference=reference_encode_chunk)
def check_encode_chunk(answer: Callable[..., Any]) -> None:
    for case, text in _ENCODE_CASES:
        ids = list(text.encode("utf-8"))
        what = f"encode_chunk(bytes of {text!r}, ranks)"
        given, ranks = list(ids), dict(_RANKS)
        got = _ids(answer(given, ranks), what)
        expect(given == ids and ranks == _RANKS, f"{what} changed its arguments in place; work on a copy")
        right = reference_encode_chunk(ids, _RANKS)
        if got == right:
            continue
        wrong = {
            "dict_order": "applied each merge once in the order the dict holds them; the order is the ids': the "
                          "smallest id was learned first",
            "leftmost": "merged the leftmost learned pair first; merge the learned pair with the smallest id first, "
                        "wherever it is",
            "latest": "merged the pair learned last (largest id) first; the smallest id goes first",
            "once": "stopped after one merge; merged tokens can merge again: repeat until no pair is in ranks",
        }
        for how, message in wrong.items():
            expect(got != _encode_wrong(ids, _RANKS, how), f"{what} = {got}: {message} ({case}; expected {right})")
        expect(False, f"{what} = {got}, expected {right} ({case})")


# --- bits per character --------------------------------------------------------------------------------------------

def reference_bits_per_character(token_nats: Tensor, n_characters: int) -> float:
    return float(token_nats.sum()) / n_characters / math.log(2)


@exercise("bits_per_character", "04b",
          task="bits_per_character(token_nats, n_characters) → float: token_nats (n_tokens,) holds the model's "
               "cross-entropy in nats for each token of a text (as F.cross_entropy(..., reduction='none') gives), "
               "and the tokens spell n_characters characters. Return the total in bits divided by the characters",
          hint="sum the nats over the tokens, divide by the number of characters, and turn nats into bits by "
               "dividing by ln 2: float(token_nats.sum()) / n_characters / math.log(2)",
          reference=reference_bits_per_character)
def check_bits_per_character(answer: Callable[..., Any]) -> None:
    nats = torch.tensor([2.1, 0.4, 3.3, 1.2, 0.9, 2.6, 1.5, 0.7])  # 8 tokens spelling 21 characters
    n_characters = 21
    what = f"bits_per_character(token_nats of {len(nats)} tokens, n_characters={n_characters})"
    given = nats.clone()
    got = answer(given, n_characters)
    expect(torch.equal(given, nats), f"{what} changed token_nats in place; compute a new value")
    if isinstance(got, Tensor) and got.numel() == 1:
        got = float(got)
    expect(isinstance(got, numbers.Real) and not isinstance(got, bool),
           f"{what} returned a {type(got).__name__}; return one number (a float)")
    got, total = float(got), float(nats.sum())
    right = reference_bits_per_character(nats, n_characters)
    wrong = {
        total / len(nats) / math.log(2): "bits per token (the mean over tokens / ln 2): a token here spells "
                                         "about 2.6 characters, so divide the total by the characters instead",
        total / n_characters: "nats per character: divide by ln 2 to get bits (1 bit = ln 2 nats)",
        total / n_characters / math.log(10): "divided by ln 10, which gives digits (bans); a bit is ln 2 nats",
        total / math.log(2): "the total bits of the whole text; divide by the number of characters",
        total / n_characters * math.log(2): "multiplied by ln 2; bits = nats / ln 2",
        math.exp(total / len(nats)): "that is the perplexity per token, exp(mean nats)",
    }
    for value, message in wrong.items():
        expect(not math.isclose(got, value, rel_tol=1e-6), f"{what} = {got:.4f}: {message} (expected {right:.4f})")
    expect(math.isclose(got, right, rel_tol=1e-6), f"{what} = {got:.4f}, expected {right:.4f}")


# --- WordPiece's greedy longest match -----------------------------------------------------------------------------

def reference_wordpiece(word: str, vocab: set[str]) -> list[str]:
    pieces, start = [], 0
    while start < len(word):
        end = len(word)
        while end > start:
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
            end -= 1
        if end == start:  # no piece fits: the whole word is unknown
            return ["[UNK]"]
        pieces.append(piece)
        start = end
    return pieces


_WORDPIECE_VOCAB = frozenset({"[UNK]", "un", "u", "##n", "##a", "##aff", "##af", "##f", "##able", "##ab", "##le",
                              "##b", "##l", "aff", "able", "play", "p", "##lay", "##ing", "##s", "s", "##ay", "the",
                              "##e", "t", "##h"})
_WORDPIECE_CASES = [  # (what it shows, word)
    ("'unaffable' is un + ##aff + ##able", "unaffable"),
    ("'plays' is play + ##s", "plays"),
    ("a whole word in the vocabulary is one piece", "the"),
    ("no piece starts 'zeal'", "zeal"),
    ("no piece fits the 'z' of 'playz'", "playz"),
]


def _wordpiece_wrong(word: str, vocab: AbstractSet[str], how: str) -> list[str]:
    """The mistakes the checker names: "shortest" takes the shortest piece, "no_prefix" looks pieces up without
    ##, "partial" keeps the pieces found and adds [UNK] for the rest, "skip" writes [UNK] for the one character and
    goes on, "all_prefixed" puts ## on the first piece too."""
    pieces, start = [], 0
    while start < len(word):
        ends = range(start + 1, len(word) + 1) if how == "shortest" else range(len(word), start, -1)
        for end in ends:
            mark = "" if how == "no_prefix" or (start == 0 and how != "all_prefixed") else "##"
            if mark + word[start:end] in vocab:
                pieces.append(mark + word[start:end])
                start = end
                break
        else:
            if how == "partial":
                return pieces + ["[UNK]"]
            if how == "skip":
                pieces.append("[UNK]")
                start += 1
                continue
            return ["[UNK]"]
    return pieces


@exercise("wordpiece", "04b",
          task="wordpiece(word, vocab) → list of pieces: BERT's WordPiece for one lower-case word. From the start of "
               "the word take the longest piece in `vocab` (a set of strings); a piece that does not start the "
               "word is looked up with '##' in front ('##able'). Go on from where it ended. If at some point no "
               "piece fits, the whole word is ['[UNK]']",
          hint="start = 0; while start < len(word): try end = len(word), len(word) − 1, … down to start + 1, with "
               "piece = word[start:end], prefixed by '##' when start > 0; take the first in vocab; if none, "
               "return ['[UNK]']",
          reference=reference_wordpiece)
def check_wordpiece(answer: Callable[..., Any]) -> None:
    wrong = {
        "shortest": "took the shortest piece that fits; WordPiece takes the longest",
        "no_prefix": "looked the later pieces up without '##'; a piece that continues a word is stored as "
                     "'##piece'",
        "all_prefixed": "put '##' on the first piece too; only pieces after the first carry it",
        "partial": "kept the pieces found before the gap; when no piece fits, the whole word becomes ['[UNK]']",
        "skip": "wrote [UNK] for the character that did not fit and went on; the whole word becomes ['[UNK]']",
    }
    for case, word in _WORDPIECE_CASES:
        what = f"wordpiece({word!r}, vocab)"
        got = answer(word, set(_WORDPIECE_VOCAB))
        expect(isinstance(got, (list, tuple)) and all(isinstance(p, str) for p in got),
               f"{what} returned {got!r}; return a list of strings")
        got = list(got)
        right = reference_wordpiece(word, _WORDPIECE_VOCAB)
        if got == right:
            continue
        for how, message in wrong.items():
            expect(got != _wordpiece_wrong(word, _WORDPIECE_VOCAB, how),
                   f"{what} = {got}: {message} ({case}; expected {right})")
        expect(False, f"{what} = {got}, expected {right} ({case})")
