"""labkit.tokenization: byte-level BPE by hand, checked by hand-worked examples, against Hugging Face's `tokenizers`
(the same merges in the same order, the same encodings), by an exact round trip over the whole of Tiny Shakespeare,
and in use: a tiny GPT trained on its tokens, scored in bits per character."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from tokenizers import pre_tokenizers
from torch import nn
from transformers.convert_slow_tokenizer import bytes_to_unicode

from labkit.assets import load_tokenizer
from labkit.corpus import CharCorpus
from labkit.data import load_data
from labkit.models import GPTConfig, TinyGPT
from labkit.presets import get_preset
from labkit.tokenization import (BYTE_ORDER, GPT2_SPLIT_PATTERN, BytePairTokenizer, bits_per_character,
                                 byte_to_unicode, count_pairs, encode_chunk, library_bpe, library_ids, library_merges,
                                 merge_pair, score_text, split_chunks, split_text, text_cross_entropy, token_corpus,
                                 train_bpe, visible_text, vocab_size_sweep, wordpiece_word)
from labkit.train import train
from labkit.viz.tokenization import tokens_html, vocab_size_figure

UNICODE = "naïve café — 🙂 日本語\t\ttabs,  two  spaces\r\nand 3.14 or 42's\n"  # bytes no merge was learned on


@pytest.fixture(scope="module")
def shakespeare() -> str:
    return load_data("tinyshakespeare")


@pytest.fixture(scope="module")
def small(shakespeare: str) -> BytePairTokenizer:
    """400 tokens learned on the first 20,000 characters."""
    return train_bpe(shakespeare[:20_000], 400, progress=False)


# --- the pieces, by hand -------------------------------------------------------------------------------------------

def test_the_byte_table_is_gpt2s() -> None:
    table = byte_to_unicode()
    assert table == bytes_to_unicode()
    assert set(table.values()) == set(pre_tokenizers.ByteLevel.alphabet())
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("a")] == "a"
    assert list(BYTE_ORDER) == sorted(range(256), key=lambda b: table[b])  # bytes in their stand-ins' order


def test_pairs_and_merges_by_hand() -> None:
    assert count_pairs([1, 1, 1, 2, 1, 1]) == {(1, 1): 3, (1, 2): 1, (2, 1): 1}
    assert count_pairs([5]) == {} and count_pairs([]) == {}
    assert merge_pair([1, 1, 1, 2, 1, 1], (1, 1), 9) == [9, 1, 2, 9]
    assert merge_pair([1, 2], (2, 1), 9) == [1, 2]
    ranks = {(104, 105): 256, (256, 33): 257, (105, 33): 258}  # "hi", "hi" + "!", "i!"
    assert encode_chunk(list(b"hi!"), ranks) == [257]
    assert encode_chunk(list(b"xi!"), ranks) == [120, 258]
    assert encode_chunk([], ranks) == []


def test_chunks_follow_gpt2s_pattern() -> None:
    # a run of whitespace leaves its last space to the word after it
    assert split_chunks("Hello world, it's 2024!\n\n  Bye") == ["Hello", " world", ",", " it", "'s", " 2024", "!",
                                                                 "\n\n ", " Bye"]
    assert "".join(split_chunks(UNICODE)) == UNICODE
    assert split_chunks("ab cd", None) == ["ab cd"] and split_chunks("", None) == []


def test_training_by_hand_with_ties_broken_as_the_library_does() -> None:
    # "ab", " cd": every pair occurs once. By byte value " " (32) would come first; in the byte-level alphabet the
    # space comes after the letters, so (a, b) is merged first, then (c, d), then (" ", "cd").
    tokenizer = train_bpe("ab cd", 300, progress=False)
    assert tokenizer.merges == [(97, 98), (99, 100), (32, 257)]
    assert tokenizer.vocab_size == 259  # stopped early: no pair left to merge
    assert [(a, b) for a, b in library_merges(library_bpe("ab cd", 300))] == [(b"a", b"b"), (b"c", b"d"),
                                                                               (b" ", b"cd")]
    # the most frequent pair wins; overlapping pairs count ("aaaa" holds (a, a) three times)
    tokenizer = train_bpe("aaaa aaaa bb", 258, progress=False)
    assert tokenizer.merges == [(97, 97), (256, 256)]
    assert tokenizer.encode_ids("aaaaa") == [257, 97]


def test_min_frequency_stops_training() -> None:
    text = "low lower lowest newer wider"
    tokenizer = train_bpe(text, 1000, min_frequency=2, progress=False)
    counts = [text.count(tokenizer.decode([256 + k])) for k in range(len(tokenizer.merges))]
    assert tokenizer.merges and min(counts) >= 2
    assert library_merges(library_bpe(text, 1000, min_frequency=2)) == [(tokenizer.vocab[a], tokenizer.vocab[b])
                                                                        for a, b in tokenizer.merges]


# --- against Hugging Face's tokenizers -----------------------------------------------------------------------------

def test_same_merges_in_the_same_order_as_tokenizers(shakespeare: str, small: BytePairTokenizer) -> None:
    library = library_bpe(shakespeare[:20_000], 400)
    assert small.repeated_tokens == []  # the condition under which the two agree (see the module's docstring)
    ours = [(small.vocab[a], small.vocab[b]) for a, b in small.merges]
    assert len(ours) == 144
    assert ours == library_merges(library)


def test_same_encodings_as_tokenizers_on_held_out_text(shakespeare: str, small: BytePairTokenizer) -> None:
    library = library_bpe(shakespeare[:20_000], 400)
    to_library = library_ids(small, library)
    held_out = shakespeare[20_000:30_000] + UNICODE
    ours = [to_library[i] for i in small.encode_ids(held_out)]
    assert ours == library.encode(held_out).ids
    assert library.decode(ours) == held_out


def test_round_trip_is_exact_on_the_whole_corpus(shakespeare: str, small: BytePairTokenizer) -> None:
    ids = small.encode(shakespeare)
    assert ids.dtype == torch.long and len(ids) < 0.7 * len(shakespeare)
    assert small.decode(ids) == shakespeare
    assert small.decode(small.encode(UNICODE)) == UNICODE
    assert small.decode(small.encode("🙂")[:2]) == "�"  # half a character is not UTF-8


def test_a_smaller_vocabulary_is_a_prefix_of_a_larger_one(shakespeare: str, small: BytePairTokenizer) -> None:
    assert small.with_vocab_size(300).merges == train_bpe(shakespeare[:20_000], 300, progress=False).merges
    assert small.with_vocab_size(256).encode_ids("hi") == list(b"hi")


def test_to_dict_round_trip_and_repeated_tokens(small: BytePairTokenizer) -> None:
    again = BytePairTokenizer.from_dict(small.to_dict())
    assert again.merges == small.merges and again.pattern == GPT2_SPLIT_PATTERN
    # "abc" twice: a ("ab", "c") merge and an ("a", "bc") merge spell the same bytes
    twice = BytePairTokenizer([(97, 98), (256, 99), (98, 99), (97, 258)])
    assert twice.repeated_tokens == [b"abc"]


# --- the vocabulary size against the sequence length -------------------------------------------------------------

def test_vocab_size_sweep(shakespeare: str, small: BytePairTokenizer) -> None:
    text = shakespeare[20_000:25_000]
    rows = vocab_size_sweep(small, text, [256, 300, 400], d_model=64)
    assert rows[0].tokens == len(text.encode()) and rows[0].tokens_per_character == 1.0  # ASCII: a byte a character
    assert rows[0].tokens > rows[1].tokens > rows[2].tokens
    assert rows[2].tokens == len(small.encode(text))
    assert rows[2].embedding_parameters == 400 * 64 * 2
    assert vocab_size_sweep(small, text, [400], d_model=64, tie_head=True)[0].embedding_parameters == 400 * 64
    assert math.isclose(rows[1].characters_per_token * rows[1].tokens_per_character, 1.0)


def test_views_draw_the_tokens_and_the_sweep(small: BytePairTokenizer) -> None:
    assert visible_text(" the\n\t") == "␣the⏎⇥"
    page = tokens_html(["Hi", " there", "\n", "<b>"])
    assert page.count("<span") == 4 and "␣there" in page and "⏎</span><br>" in page and "&lt;b&gt;" in page
    rows = vocab_size_sweep(small, "some text, some more text", [256, 400], d_model=64)
    figure = vocab_size_figure(rows, d_model=64)
    assert list(figure.data[0].x) == [256, 400]
    assert list(figure.data[0].y) == [row.characters_per_token for row in rows]
    assert list(figure.data[1].y) == [256 * 128, 400 * 128]


# --- a language model on BPE tokens, scored fairly -----------------------------------------------------------------

class _Uniform(nn.Module):
    """A model that gives every token the same score: its cross-entropy is ln(vocab_size) per token."""

    def __init__(self, vocab_size: int, block_size: int) -> None:
        super().__init__()
        self.config = GPTConfig(vocab_size=vocab_size, block_size=block_size)
        self.scale = nn.Parameter(torch.zeros(()))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.ones(*idx.shape, self.config.vocab_size)


def test_bits_per_character_of_a_uniform_model(small: BytePairTokenizer) -> None:
    text = "First Citizen:\nBefore we proceed any further, hear me speak."
    score = score_text(_Uniform(small.vocab_size, 4), small, text)
    ids = small.encode(text)
    first = small.decode(ids[:1])
    assert score.tokens == len(ids) - 1 and score.characters == len(text) - len(first)
    assert math.isclose(score.loss_per_token, math.log(400), rel_tol=1e-6)
    assert math.isclose(score.bits_per_character, (len(ids) - 1) * math.log2(400) / score.characters, rel_tol=1e-6)
    assert math.isclose(bits_per_character(torch.tensor([math.log(2)] * 3, dtype=torch.float64), 3), 1.0)


def test_text_cross_entropy_predicts_every_token_once_from_its_window() -> None:
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(vocab_size=11, block_size=4, n_layer=1, n_head=1, d_model=8)).eval()
    ids = torch.randint(11, (15,))
    nats = text_cross_entropy(model, ids, 4, batch_size=2)
    assert nats.shape == (14,)
    with torch.no_grad():  # windows [0:5], [4:9], [8:13], then the shorter [12:15]
        expected = torch.cat([F.cross_entropy(model(ids[s:e - 1][None])[0], ids[s + 1:e], reduction="none")
                              for s, e in ((0, 5), (4, 9), (8, 13), (12, 15))])
    torch.testing.assert_close(nats, expected)


def test_a_tiny_gpt_trains_on_bpe_tokens(shakespeare: str, small: BytePairTokenizer) -> None:
    train_text, val_text = split_text(shakespeare[:30_000])
    assert val_text == shakespeare[:30_000][len(CharCorpus.from_text(shakespeare[:30_000]).train):]
    corpus = token_corpus(small, train_text, val_text)
    preset = get_preset("tiny_gpt", "smoke")
    config = replace(preset.train, steps=30, eval_every=30, eval_batches=2, warmup_steps=3)
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(vocab_size=small.vocab_size, **preset.shape))
    before = score_text(model, small, val_text[:3000])
    history = train(model, corpus, config, device=torch.device("cpu"), progress=False)
    after = score_text(model, small, val_text[:3000])
    assert history.step == 30 and after.bits_per_character < before.bits_per_character


# --- WordPiece ------------------------------------------------------------------------------------------------------

def test_wordpiece_is_the_packaged_tokenizers_greedy_longest_match(shakespeare: str) -> None:
    tokenizer = load_tokenizer()
    vocab = tokenizer.get_vocab()
    words = sorted(set(re.findall(r"[a-z]+", shakespeare[:30_000].lower())))
    assert len(words) > 1000
    assert [wordpiece_word(w, vocab) for w in words] == [tokenizer.tokenize(w) for w in words]
    assert wordpiece_word("a" * 101, vocab) == ["[UNK]"] == tokenizer.tokenize("a" * 101)


# --- bad inputs -----------------------------------------------------------------------------------------------------

def test_bad_inputs_are_clear_errors(small: BytePairTokenizer) -> None:
    with pytest.raises(ValueError, match="vocab_size must be at least 256"):
        train_bpe("some text", 200)
    with pytest.raises(ValueError, match="text must be a non-empty str"):
        train_bpe("", 300)
    with pytest.raises(ValueError, match="min_frequency must be an int >= 0, got -1"):
        train_bpe("some text", 300, min_frequency=-1)
    with pytest.raises(ValueError, match=r"merge 1 must be a pair of ids below 257, got \(97, 257\)"):
        BytePairTokenizer([(97, 98), (97, 257)])
    with pytest.raises(ValueError, match=r"ids must lie in 0..399 \(vocab_size=400\), got 400 at position 1"):
        small.decode([5, 400])
    with pytest.raises(ValueError, match="vocab_size must lie in 256..400"):
        small.with_vocab_size(500)
    with pytest.raises(ValueError, match="val_fraction must lie strictly between 0 and 1"):
        split_text("some text", 1.5)
    with pytest.raises(ValueError, match="ids must be a 1-D tensor of at least 2 token ids"):
        text_cross_entropy(_Uniform(400, 4), torch.tensor([3]), 4)
    with pytest.raises(ValueError, match="data must be a dict like"):
        BytePairTokenizer.from_dict({"kind": "char", "chars": "ab"})
