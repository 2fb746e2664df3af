"""Notebook 04b's exercises: each reference is labkit's rule (and WordPiece's is the packaged tokenizer's), answers
written differently but rightly pass, and plausible wrong answers are refused with their own messages (run by
test_exercises.py from WRONG_ANSWERS)."""

from __future__ import annotations

import math
import random
from collections import Counter

import torch

from labkit import tokenization
from labkit.exercises import check
from labkit.exercises.tokenization import (_WORDPIECE_VOCAB, _encode_wrong, _wordpiece_wrong,
                                          reference_bits_per_character, reference_count_pairs, reference_encode_chunk,
                                          reference_merge_pair, reference_wordpiece)


def _random_ids(rng: random.Random, n: int, high: int = 6) -> list[int]:
    return [rng.randrange(high) for _ in range(n)]


# --- count_pairs ---------------------------------------------------------------------------------------------------

def test_count_pairs_reference_is_labkits_and_a_counter_passes() -> None:
    rng = random.Random(0)
    for n in (0, 1, 2, 7, 40):
        ids = _random_ids(rng, n)
        assert reference_count_pairs(ids) == dict(tokenization.count_pairs(ids))
    assert check("count_pairs", lambda ids: Counter(zip(ids, ids[1:])), quiet=True)


def _non_overlapping(ids):
    """Counting with bytes.count, which skips overlapping matches: b"\\x07\\x07\\x07".count(b"\\x07\\x07") == 1."""
    return {(a, b): bytes(ids).count(bytes([a, b])) for a, b in zip(ids, ids[1:])}


# --- merge_pair ----------------------------------------------------------------------------------------------------

def test_merge_pair_reference_is_labkits() -> None:
    rng = random.Random(1)
    for n in (0, 1, 2, 9, 50):
        ids = _random_ids(rng, n, high=3)
        for pair in ((0, 0), (1, 2), (2, 1)):
            assert reference_merge_pair(ids, pair, 99) == tokenization.merge_pair(ids, pair, 99)


def test_merge_pair_written_with_a_for_loop_passes() -> None:
    def merge_pair(ids, pair, new_id):
        out, skip = [], False
        for i, token in enumerate(ids):
            if skip:
                skip = False
            elif i + 1 < len(ids) and (token, ids[i + 1]) == tuple(pair):
                out.append(new_id)
                skip = True
            else:
                out.append(token)
        return out

    assert check("merge_pair", merge_pair, quiet=True)


def _merge(ids, pair, new_id, how):
    """merge_pair, or one mistake in it: "right" scans from the right, "first" merges the first occurrence only,
    "drop_last" loses the last id, "same_length" writes new_id over both ids, "in_place" edits ids."""
    if how == "right":
        return list(reversed(reference_merge_pair(ids[::-1], pair[::-1], new_id)))
    if how == "first":
        for i in range(len(ids) - 1):
            if (ids[i], ids[i + 1]) == pair:
                return ids[:i] + [new_id] + ids[i + 2:]
        return list(ids)
    if how == "drop_last":
        out, i = [], 0
        while i < len(ids) - 1:
            if (ids[i], ids[i + 1]) == pair:
                out.append(new_id)
                i += 2
            else:
                out.append(ids[i])
                i += 1
        return out
    if how == "same_length":
        out = list(ids)
        for i in range(len(ids) - 1):
            if (ids[i], ids[i + 1]) == pair:
                out[i] = out[i + 1] = new_id
        return out
    i = 0
    while i < len(ids) - 1:  # "in_place"
        if (ids[i], ids[i + 1]) == pair:
            ids[i:i + 2] = [new_id]
        i += 1
    return ids


# --- encode_chunk --------------------------------------------------------------------------------------------------

def test_encode_chunk_reference_is_labkits_on_learned_merges() -> None:
    tokenizer = tokenization.train_bpe("the other thesis; their theatre: there, then, thence. " * 3, 280,
                                       progress=False)
    for word in ("the", " there", "thither", "other", "xyz", "t", ""):
        ids = list(word.encode())
        assert reference_encode_chunk(ids, tokenizer.ranks) == tokenization.encode_chunk(ids, tokenizer.ranks)


def test_encode_chunk_applying_every_merge_in_rank_order_passes() -> None:
    """Merging all occurrences of each learned pair in turn, smallest id first, gives the same tokens."""
    def encode_chunk(ids, ranks):
        for pair, new_id in sorted(ranks.items(), key=lambda item: item[1]):
            ids = reference_merge_pair(ids, pair, new_id)
        return ids

    assert check("encode_chunk", encode_chunk, quiet=True)


# --- bits_per_character --------------------------------------------------------------------------------------------

def test_bits_per_character_reference_is_labkits() -> None:
    nats = torch.rand(50, generator=torch.Generator().manual_seed(0)) * 4
    assert math.isclose(reference_bits_per_character(nats, 123), tokenization.bits_per_character(nats, 123))
    assert check("bits_per_character", lambda nats, n: nats.sum().item() / (n * math.log(2)), quiet=True)


# --- wordpiece -----------------------------------------------------------------------------------------------------

def test_wordpiece_reference_is_labkits_on_the_toy_vocabulary() -> None:
    for word in ("unaffable", "plays", "the", "playz", "zeal", "playing", "", "a"):
        assert reference_wordpiece(word, _WORDPIECE_VOCAB) == tokenization.wordpiece_word(word, _WORDPIECE_VOCAB)
    assert check("wordpiece", tokenization.wordpiece_word, quiet=True)


def test_wordpiece_is_the_packaged_tokenizers_on_shakespeares_words() -> None:
    from labkit.assets import load_tokenizer

    tokenizer = load_tokenizer()
    vocab = tokenizer.get_vocab()
    words = sorted(set("wherefore art thou romeo deny thy father and refuse thy name unsubstantial "
                       "honorificabilitudinitatibus 🙂 x".split()))
    for word in words:
        assert reference_wordpiece(word, vocab) == tokenizer.tokenize(word), word


# exercise name → plausible wrong answers and a piece of the message each must get (run by test_exercises.py)
WRONG_ANSWERS = {
    "count_pairs": [
        (lambda ids: Counter(zip(ids[1:], ids)), "the pairs are written (right, left)"),
        (lambda ids: Counter(zip(ids, ids[1:] + ids[:1])), "the last id and the first are not neighbours"),
        (_non_overlapping, "overlapping pairs each count"),
        (lambda ids: {pair: 1 for pair in zip(ids, ids[1:])}, "each pair counted once"),
        (lambda ids: Counter(zip(ids[::2], ids[1::2])), "not only those starting at even positions"),
        (lambda ids: list(zip(ids, ids[1:])), "returned a list; return a dict"),
    ],
    "merge_pair": [
        (lambda ids, pair, new_id: _merge(ids, pair, new_id, "right"), "merged from the right"),
        (lambda ids, pair, new_id: _merge(ids, pair, new_id, "first"), "merged only the first occurrence"),
        (lambda ids, pair, new_id: _merge(ids, pair, new_id, "drop_last"), "the last id is missing"),
        (lambda ids, pair, new_id: _merge(ids, pair, new_id, "same_length"), "a merge makes one token of two"),
        (lambda ids, pair, new_id: _merge(ids, pair, new_id, "in_place"), "changed ids in place"),
    ],
    "encode_chunk": [
        (lambda ids, ranks: _encode_wrong(ids, ranks, "dict_order"), "in the order the dict holds them"),
        (lambda ids, ranks: _encode_wrong(ids, ranks, "leftmost"), "merged the leftmost learned pair first"),
        (lambda ids, ranks: _encode_wrong(ids, ranks, "latest"), "merged the pair learned last"),
        (lambda ids, ranks: _encode_wrong(ids, ranks, "once"), "stopped after one merge"),
    ],
    "bits_per_character": [
        (lambda nats, n: nats.mean().item() / math.log(2), "bits per token"),
        (lambda nats, n: nats.sum().item() / n, "nats per character"),
        (lambda nats, n: nats.sum().item() / n / math.log(10), "divided by ln 10"),
        (lambda nats, n: nats.sum().item() / math.log(2), "the total bits of the whole text"),
        (lambda nats, n: nats.sum().item() / n * math.log(2), "multiplied by ln 2"),
        (lambda nats, n: math.exp(nats.mean().item()), "the perplexity per token"),
        (lambda nats, n: nats / n / math.log(2), "return one number"),
    ],
    "wordpiece": [
        (lambda word, vocab: _wordpiece_wrong(word, vocab, "shortest"), "took the shortest piece"),
        (lambda word, vocab: _wordpiece_wrong(word, vocab, "no_prefix"), "looked the later pieces up without '##'"),
        (lambda word, vocab: _wordpiece_wrong(word, vocab, "all_prefixed"), "put '##' on the first piece too"),
        (lambda word, vocab: _wordpiece_wrong(word, vocab, "partial"), "kept the pieces found before the gap"),
        (lambda word, vocab: _wordpiece_wrong(word, vocab, "skip"), "wrote [UNK] for the character that did not fit"),
        (lambda word, vocab: "[UNK]" if word == "zeal" else tokenization.wordpiece_word(word, vocab),
         "return a list of strings"),
    ],
}
