"""The date-translation task: reproducible, disjoint splits, lossless vocabularies, padded batches, and BLEU as
sacrebleu computes it."""

from __future__ import annotations

import datetime as dt
import math
import random

import pytest
import sacrebleu
import torch

from labkit.translation_data import (BOS_ID, EOS_ID, PAD_ID, UNK_ID, WORDINGS, Pair, Vocab, bleu, cardinal,
                                     collate, date_in_words, date_pieces, exact_match, make_date_translation,
                                     ordinal, source_tokens, source_vocab, target_tokens, target_vocab,
                                     year_in_words)


@pytest.fixture(scope="module")
def data():
    return make_date_translation(n_train=3000, n_heldout=300, seed=7)


def test_the_same_seed_gives_the_same_data_and_another_seed_other_data(data) -> None:
    again = make_date_translation(n_train=3000, n_heldout=300, seed=7)
    assert again.train == data.train and again.heldout == data.heldout
    other = make_date_translation(n_train=3000, n_heldout=300, seed=8)
    assert other.train != data.train


def test_the_splits_have_their_sizes_and_share_no_date(data) -> None:
    assert len(data.train) == 3000 and len(data.heldout) == 300
    train_dates = {p.target for p in data.train}
    assert len(train_dates) == 3000  # every pair is its own date
    assert not train_dates & {p.target for p in data.heldout}


def test_every_target_is_the_iso_form_of_a_date_in_range(data) -> None:
    for pair in data.train[:500]:
        date = dt.date.fromisoformat(pair.target)
        assert dt.date(1900, 1, 1) <= date <= dt.date(2099, 12, 31)
        assert date.strftime("%B").lower() in source_tokens(pair.source)  # the month is spelled out


def test_all_wordings_occur_and_order_day_and_month_both_ways(data) -> None:
    rng = random.Random(0)
    date = dt.date(1994, 3, 23)
    written = {name: date_in_words(date, rng, name) for name in WORDINGS}
    assert written["the D of M Y"] == "the twenty third of march nineteen ninety four"
    assert written["in Y on the D of M"] == "in nineteen ninety four on the twenty third of march"
    day_first = [name for name, text in written.items() if text.index("twenty") < text.index("march")]
    assert 0 < len(day_first) < len(WORDINGS)  # the day comes before the month in some wordings only
    starts = {source_tokens(p.source)[0] for p in data.train}
    assert {"the", "in", "nineteen", "march", "twenty"} <= starts  # wordings start with day, month or year


@pytest.mark.parametrize("n, words", [(1, "one"), (13, "thirteen"), (20, "twenty"), (42, "forty two")])
def test_cardinals(n: int, words: str) -> None:
    assert cardinal(n) == words


@pytest.mark.parametrize("n, words", [(1, "first"), (12, "twelfth"), (20, "twentieth"), (23, "twenty third"),
                                      (30, "thirtieth"), (31, "thirty first")])
def test_ordinals(n: int, words: str) -> None:
    assert ordinal(n) == words


def test_years_in_words() -> None:
    rng = random.Random(0)
    assert year_in_words(1900, rng) == "nineteen hundred"
    assert year_in_words(1905, rng) == "nineteen oh five"
    assert year_in_words(1994, rng) == "nineteen ninety four"
    assert year_in_words(2000, rng) == "two thousand"
    assert {year_in_words(2015, random.Random(s)) for s in range(20)} == {
        "twenty fifteen", "two thousand fifteen", "two thousand and fifteen"}
    with pytest.raises(ValueError, match="year must be an int in 1900..2099, got 1899"):
        year_in_words(1899, rng)
    with pytest.raises(ValueError, match="n must be an int in 1..99, got 0"):
        cardinal(0)


def test_decoding_an_encoding_gives_the_tokens_back(data) -> None:
    for pair in data.train[:300] + data.heldout:
        words, chars = source_tokens(pair.source), target_tokens(pair.target)
        assert data.source.decode(data.source.encode(words)) == words
        assert data.target.decode(data.target.encode(chars, bos=True, eos=True)) == chars
    assert target_tokens("1994-03-23") == ["1", "9", "9", "4", "-", "0", "3", "-", "2", "3"]


def test_the_vocabularies_start_with_the_special_tokens() -> None:
    for vocab in (source_vocab(), target_vocab()):
        assert vocab.tokens[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
        assert (PAD_ID, BOS_ID, EOS_ID, UNK_ID) == (0, 1, 2, 3)
    assert len(target_vocab()) == 4 + 11


def test_decode_stops_at_eos_and_leaves_out_pad_and_bos() -> None:
    vocab = target_vocab()
    one, two = vocab.encode(["1", "2"])
    assert vocab.decode([BOS_ID, one, PAD_ID, two, EOS_ID, one]) == ["1", "2"]
    assert vocab.decode(torch.tensor([one, EOS_ID])) == ["1"]
    with pytest.raises(ValueError, match=r"ids \[99\] are not in the target vocabulary \(ids 0..14\)"):
        vocab.decode([one, 99])


def test_an_unknown_word_is_a_clear_error() -> None:
    vocab = source_vocab()
    with pytest.raises(ValueError, match=r"unknown source token\(s\) \['marhc'\]: not among the 73 tokens"):
        vocab.encode(source_tokens("the third of marhc nineteen ninety"))
    assert vocab.encode(["marhc", "march"], allow_unknown=True)[0] == UNK_ID
    with pytest.raises(TypeError, match="encode takes a list of tokens, got the string 'march'"):
        vocab.encode("march")


def test_a_vocabulary_refuses_repeated_or_special_tokens() -> None:
    with pytest.raises(ValueError, match=r"\['a'\] repeat or are special"):
        Vocab(["a", "b", "a"])
    with pytest.raises(ValueError, match=r"\['<eos>'\] repeat or are special"):
        Vocab(["<eos>"])


def test_a_batch_is_padded_and_wrapped_in_bos_and_eos() -> None:
    pairs = [Pair("march first nineteen ninety", "1990-03-01"), Pair("the fifth of may two thousand", "2000-05-05")]
    batch = collate(pairs, source_vocab(), target_vocab())
    assert batch.src.shape == (2, 6) and batch.src.dtype == torch.long
    assert batch.src[0, 4:].tolist() == [PAD_ID, PAD_ID] and (batch.src[1] != PAD_ID).all()
    assert batch.tgt.shape == (2, 12)
    assert (batch.tgt[:, 0] == BOS_ID).all() and (batch.tgt[:, -1] == EOS_ID).all()
    with pytest.raises(ValueError, match="pairs is empty"):
        collate([], source_vocab(), target_vocab())


def test_random_batches_repeat_for_the_same_generator(data) -> None:
    a = data.batch("train", 8, torch.Generator().manual_seed(3))
    b = data.batch("train", 8, torch.Generator().manual_seed(3))
    assert torch.equal(a.src, b.src) and torch.equal(a.tgt, b.tgt)
    with pytest.raises(ValueError, match="split must be 'train' or 'heldout', got 'val'"):
        data.batch("val", 8)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_train=0), "n_train must be a positive int, got 0"),
    (dict(n_heldout=-1), "n_heldout must be a positive int, got -1"),
    (dict(n_train=80000), "n_train \\+ n_heldout = 80500 is more than the 73049 dates"),
    (dict(seed=-1), "seed must be a non-negative int, got -1"),
])
def test_bad_dataset_sizes_are_clear_errors(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        make_date_translation(**kwargs)


def test_date_pieces_are_year_month_day_and_dashes() -> None:
    assert date_pieces("1994-03-23") == "1994 - 03 - 23"
    assert date_pieces("1994-0323") == "1994 - 0323"
    assert date_pieces("19--4") == "19 - - 4"


def test_bleu_by_hand_for_one_wrong_day() -> None:
    # pieces 1994 - 03 - 24 against 1994 - 03 - 23: 1-grams 4/5, 2-grams 3/4, 3-grams 2/3, 4-grams 1/2, same length
    expected = 100 * (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25
    assert bleu(["1994-03-24"], ["1994-03-23"]) == pytest.approx(expected)
    assert bleu(["1994-03-23"], ["1994-03-23"]) == pytest.approx(100)
    # pieces 1994 - 03 - : every n-gram matches, but 4 pieces for 5 pay the brevity penalty exp(1 - 5/4)
    assert bleu(["1994-03-"], ["1994-03-23"]) == pytest.approx(100 * math.exp(1 - 5 / 4))
    assert bleu(["1994-03"], ["1994-03-23"]) == 0  # three pieces hold no 4-gram


def test_bleu_equals_sacrebleus_standard_tokenisation_on_iso_dates() -> None:
    hypotheses = ["1994-03-24", "2001-01-02", "1999-12-31", "2050-06-15", "1900-01-1"]
    references = ["1994-03-23", "2001-01-02", "1999-11-30", "2050-06-15", "1900-01-01"]
    ours = bleu(hypotheses, references)
    assert ours == pytest.approx(sacrebleu.corpus_bleu(hypotheses, [references]).score)  # 13a splits "-" too
    assert 0 < ours < 100
    assert exact_match(hypotheses, references) == pytest.approx(2 / 5)


def test_scores_need_matching_lists() -> None:
    with pytest.raises(ValueError, match="need as many hypotheses as references, at least one: got 1 and 2"):
        bleu(["1994-03-23"], ["1994-03-23", "1994-03-24"])
    with pytest.raises(TypeError, match="lists of strings"):
        exact_match("1994-03-23", "1994-03-23")
