"""labkit.corpus: the character tokenizer, the contiguous 90/10 split, random batches, and the real Tiny Shakespeare."""

import json

import pytest
import torch

import labkit.data as data
from labkit.corpus import CharCorpus, CharTokenizer, random_batch, train_val_split
from labkit.data import load_data

TEXT = "To be, or not to be:\nthat is the question.\n¿Qué? ✓"


# ---------------------------------------------------------------------------------------------- tokenizer


def test_vocabulary_is_the_sorted_distinct_characters():
    tok = CharTokenizer.from_text("hello")
    assert tok.chars == "ehlo" and tok.vocab_size == 4
    assert tok.encode("hello").tolist() == [1, 0, 2, 2, 3]


def test_round_trip():
    tok = CharTokenizer.from_text(TEXT)
    ids = tok.encode(TEXT)
    assert ids.dtype == torch.long and ids.shape == (len(TEXT),)
    assert int(ids.min()) == 0 and int(ids.max()) == tok.vocab_size - 1
    assert tok.decode(ids) == TEXT
    assert tok.decode(ids.tolist()) == TEXT
    assert tok.encode("").shape == (0,) and tok.decode([]) == ""


def test_to_dict_is_json_safe_and_round_trips():
    tok = CharTokenizer.from_text(TEXT)
    again = CharTokenizer.from_dict(json.loads(json.dumps(tok.to_dict())))
    assert again.chars == tok.chars and torch.equal(again.encode(TEXT), tok.encode(TEXT))
    assert CharTokenizer.from_dict({"chars": "ab"}).chars == "ab"


def test_unknown_characters_are_listed_with_positions():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"2 character\(s\) outside .* vocabulary of 3: "
                                         r"'X' at position 2, '\\n' at position 4$"):
        tok.encode("abXc\n")


def test_many_unknown_characters_are_cut_short():
    tok = CharTokenizer.from_text("a")
    with pytest.raises(ValueError, match=r"8 character\(s\) outside .* of 1: '2' at position 1, .*"
                                         r"'6' at position 5 and 3 more$") as err:
        tok.encode("a" + "23456789")
    assert "'7'" not in str(err.value)


@pytest.mark.parametrize("ids,match", [
    ([0, 3], r"ids must lie in 0\.\.2 \(vocab_size=3\), got 3 at position 1"),
    (torch.tensor([-1, 0]), r"got -1 at position 0"),
    (torch.zeros(2, 2, dtype=torch.long), r"ids must be 1-D \(n,\), got shape \(2, 2\)"),
])
def test_decode_rejects_bad_ids(ids, match):
    with pytest.raises(ValueError, match=match):
        CharTokenizer.from_text("abc").decode(ids)


@pytest.mark.parametrize("ids", [torch.tensor([0.0, 1.0]), [0, 1.5]])
def test_decode_rejects_non_integer_ids(ids):
    with pytest.raises(TypeError, match="ids must be"):
        CharTokenizer.from_text("abc").decode(ids)


def test_bad_tokenizer_inputs():
    with pytest.raises(ValueError, match="text is empty"):
        CharTokenizer.from_text("")
    with pytest.raises(TypeError, match="text must be a str, got bytes"):
        CharTokenizer.from_text(b"abc")
    with pytest.raises(TypeError, match="text must be a str, got list"):
        CharTokenizer.from_text("abc").encode(["a"])
    with pytest.raises(ValueError, match=r"each character once, but repeats \['a'\]"):
        CharTokenizer("aba")
    with pytest.raises(ValueError, match="chars is empty"):
        CharTokenizer("")
    for bad in ({"kind": "bpe", "chars": "ab"}, {"vocab": "ab"}, "ab"):
        with pytest.raises(ValueError, match="data must be a dict like"):
            CharTokenizer.from_dict(bad)


# ---------------------------------------------------------------------------------------------- split


def test_split_is_90_10_and_contiguous():
    ids = torch.arange(100)
    train, val = train_val_split(ids)
    assert torch.equal(train, torch.arange(90)) and torch.equal(val, torch.arange(90, 100))


@pytest.mark.parametrize("n,fraction,n_train", [
    (100, 0.3, 70), (90, 0.3, 63),  # 90 * 0.7 is 62.99999999999999 in floating point
    (20, 0.1, 18), (7, 0.5, 3), (1_115_394, 0.1, 1_003_854),
])
def test_split_sizes_floor_the_training_part(n, fraction, n_train):
    train, val = train_val_split(torch.arange(n), fraction)
    assert (len(train), len(val)) == (n_train, n - n_train)
    assert int(train[-1]) + 1 == int(val[0])


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, float("nan"), True, "0.1"])
def test_split_rejects_bad_fractions(fraction):
    with pytest.raises(ValueError, match=r"val_fraction must lie strictly between 0 and 1, got"):
        train_val_split(torch.arange(100), fraction)


def test_split_rejects_too_little_data():
    with pytest.raises(ValueError, match=r"ids has 3 tokens, too few to split with val_fraction=0\.1.*got 2 and 1"):
        train_val_split(torch.arange(3))
    with pytest.raises(ValueError, match=r"ids must be 1-D \(n,\) token ids, got shape \(2, 5\)"):
        train_val_split(torch.zeros(2, 5, dtype=torch.long))


# ---------------------------------------------------------------------------------------------- batches


def test_batch_shapes_and_shift():
    ids = torch.arange(50)  # a window of ids is a run of consecutive integers starting at its offset
    x, y = random_batch(ids, batch_size=8, block_size=10, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 10) and x.dtype == y.dtype == torch.long
    assert torch.equal(y, x + 1)
    assert torch.equal(x, x[:, :1] + torch.arange(10))
    assert 0 <= int(x[:, 0].min()) and int(y[:, -1].max()) <= 49


def test_batch_offsets_cover_exactly_the_valid_range():
    ids = torch.arange(13)  # block_size 10 → starts 0, 1, 2
    x, _ = random_batch(ids, batch_size=300, block_size=10, generator=torch.Generator().manual_seed(1))
    assert set(x[:, 0].tolist()) == {0, 1, 2}
    x, y = random_batch(torch.arange(11), batch_size=4, block_size=10)  # exactly one window fits
    assert torch.equal(x, torch.arange(10).expand(4, 10)) and torch.equal(y, x + 1)


def test_seeded_generator_repeats_batches():
    ids = torch.arange(1000)

    def draw(seed):
        gen = torch.Generator().manual_seed(seed)
        return [random_batch(ids, 4, 16, generator=gen) for _ in range(3)]

    first, again, other = draw(7), draw(7), draw(8)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not torch.equal(first[0][0], other[0][0])
    assert not torch.equal(first[0][0], first[1][0])  # the generator advances between batches


def test_batch_goes_to_the_device():
    x, y = random_batch(torch.arange(20), 2, 4, device="meta")
    assert x.device.type == y.device.type == "meta"


def test_batch_rejects_bad_inputs():
    with pytest.raises(ValueError, match=r"ids has 10 tokens, but .* block_size=10 needs block_size \+ 1 = 11"):
        random_batch(torch.arange(10), 2, 10)
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        random_batch(torch.arange(10), 0, 4)
    with pytest.raises(ValueError, match=r"block_size must be a positive int, got 2\.5"):
        random_batch(torch.arange(10), 2, 2.5)
    with pytest.raises(TypeError, match="ids must be a torch.Tensor, got list"):
        random_batch(list(range(10)), 2, 4)


# ---------------------------------------------------------------------------------------------- corpus


def test_corpus_batches_come_from_their_split():
    corpus = CharCorpus.from_text("a" * 90 + "b" * 10)
    assert corpus.tokenizer.chars == "ab" and (len(corpus.train), len(corpus.val)) == (90, 10)
    gen = torch.Generator().manual_seed(0)
    x, y = corpus.batch("train", 4, 8, generator=gen)
    assert x.shape == (4, 8) and bool((x == 0).all()) and bool((y == 0).all())
    x, y = corpus.batch("val", 4, 8, generator=gen)
    assert bool((x == 1).all()) and bool((y == 1).all())


def test_corpus_rejects_unknown_split():
    corpus = CharCorpus.from_text(TEXT)
    with pytest.raises(ValueError, match=r"split must be 'train' or 'val', got 'test'"):
        corpus.batch("test", 2, 4)


def test_corpus_passes_split_errors_on():
    with pytest.raises(ValueError, match="val_fraction"):
        CharCorpus.from_text(TEXT, val_fraction=0.0)
    with pytest.raises(ValueError, match="text is empty"):
        CharCorpus.from_text("")


# ---------------------------------------------------------------------------------------------- the real text


def test_tiny_shakespeare(data_dir, monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_DATA", str(data_dir))
    monkeypatch.setattr(data, "hub_check", lambda: False)
    text = load_data("tinyshakespeare")
    assert "from LABKIT_DATA" in capsys.readouterr().out  # the real file, not the offline stand-in
    corpus = CharCorpus.from_text(text)
    assert len(text) == 1_115_394 and corpus.tokenizer.vocab_size == 65
    assert (len(corpus.train), len(corpus.val)) == (1_003_854, 111_540)
    assert corpus.tokenizer.decode(corpus.train[:13]) == "First Citizen"
    assert corpus.tokenizer.decode(corpus.val) == text[1_003_854:]
    x, y = corpus.batch("val", 4, 64, generator=torch.Generator().manual_seed(0))
    assert x.shape == (4, 64) and torch.equal(x[:, 1:], y[:, :-1])
