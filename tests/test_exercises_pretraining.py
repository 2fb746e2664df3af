"""Notebook 05's checkers: a right answer written by hand passes (the masking and pairing checks are statistical,
so they are tried under many seeds), each plausible mistake is refused with its own message (WRONG_ANSWERS, run by
tests/test_exercises.py), and every reference agrees with labkit's own rule."""

from __future__ import annotations

import random
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labkit.exercises import check, exercises
from labkit.exercises.pretraining import (_mlm_head_parts, reference_fill_mask_top_k, reference_nsp_pairs,
                                          reference_segment_ids, reference_sentence_pair, reference_tied_mlm_logits)
from labkit.models import BertConfig, MaskedLMHead, TinyBERT
from labkit.pretraining import fill_mask
from labkit.pretraining_data import _encode_examples, encode_pair, make_nsp_pairs


# --- bert_mask --------------------------------------------------------------------------------------------------

def _bert_mask(ids, special, mask_id, vocab_size, generator, *, chosen_share=0.15, to_mask=0.8, to_random=0.1,
               skip_special=True, labels_from_inputs=False, in_place=False, own_random=False):
    draw = (lambda shape: torch.rand(shape)) if own_random else (lambda shape: torch.rand(shape, generator=generator))
    chosen = draw(ids.shape) < chosen_share
    if skip_special:
        chosen &= ~special
    action = draw(ids.shape)
    random_ids = torch.randint(4, vocab_size, ids.shape, generator=generator)
    inputs = ids if in_place else ids.clone()
    inputs[chosen & (action < to_mask)] = mask_id
    replace = chosen & (action >= to_mask) & (action < to_mask + to_random)
    inputs[replace] = random_ids[replace]
    labels = torch.where(chosen, inputs if labels_from_inputs else ids, -100)
    return inputs, labels


def _labels_everywhere(ids, special, mask_id, vocab_size, generator):
    inputs, _ = _bert_mask(ids, special, mask_id, vocab_size, generator)
    return inputs, ids.clone()


# --- nsp_pairs --------------------------------------------------------------------------------------------------

def _nsp_pairs(documents, seed, *, last_too=False, own_document=False, swap=False, p_random=0.5, global_rng=False,
               next_document=False, first_line=False, b_is_a=False):
    rng = random if global_rng else random.Random(seed)
    pairs = []
    for index, doc in enumerate(documents):
        for i, a in enumerate(doc if last_too else doc[:-1]):
            following = doc[i + 1] if i + 1 < len(doc) else doc[0]
            if rng.random() >= p_random:
                pairs.append((a, a if b_is_a else following, 1 if swap else 0))
                continue
            if own_document:
                other = rng.randrange(len(documents))
            elif next_document:
                other = (index + 1) % len(documents)
            else:
                other = rng.randrange(len(documents) - 1)
                other += other >= index
            b = documents[other][0] if first_line else rng.choice(documents[other])
            pairs.append((a, b, 0 if swap else 1))
    return pairs


# --- segment_ids ------------------------------------------------------------------------------------------------

def _segments(ids, sep, pad, *, first_sep_in_b=False, last_sep_in_a=False, pad_in_b=False, count=False):
    is_sep = (ids == sep).long()
    before = is_sep.cumsum(1) - is_sep
    if count:
        return before
    if first_sep_in_b:
        b = is_sep.cumsum(1) > 0
    elif last_sep_in_a:
        b = (before > 0) & (is_sep == 0)
    else:
        b = before > 0
    return (b if pad_in_b else b & (ids != pad)).long()


# --- tied_mlm_logits --------------------------------------------------------------------------------------------

def _tied(hidden, dense, norm, embedding, bias, *, act=F.gelu, order="gelu-norm", use_bias=True, detach=False):
    h = dense(hidden)
    h = norm(act(h)) if order == "gelu-norm" else act(norm(h)) if order == "norm-gelu" else act(h)
    matrix = embedding.detach() if detach else embedding
    return h @ matrix.T + (bias if use_bias else 0)


# --- fill_mask_top_k --------------------------------------------------------------------------------------------

def _mask_position(ids, mask_id):
    return int((ids == mask_id).nonzero()[0, 0])


def _top_k(logits, ids, mask_id, k, *, position=None, dim=-1, largest=True, renormalise=False, raw=False):
    at = _mask_position(ids, mask_id) if position is None else position
    probs = logits if raw else logits.softmax(dim)
    best = probs[at].topk(k, largest=largest)
    values = best.values / best.values.sum() if renormalise else best.values
    return best.indices, values


WRONG_ANSWERS = {
    "bert_mask": [
        (lambda *args: _bert_mask(*args, skip_special=False), "special tokens ([CLS], [SEP], [PAD]) were chosen"),
        (lambda *args: _bert_mask(*args, to_mask=1.0), "every chosen token became [MASK]; only 80% should"),
        (lambda *args: _bert_mask(*args, labels_from_inputs=True),
         "take the labels from input_ids before replacing anything"),
        (lambda *args: _bert_mask(*args, chosen_share=0.2), "share of the ordinary tokens chosen: 19.8%"),
        (lambda *args: _bert_mask(*args, to_mask=0.1, to_random=0.1), "chosen tokens that became [MASK]: 9.9%"),
        (lambda *args: _bert_mask(*args, to_mask=0.8, to_random=0.2), "chosen tokens left unchanged: 0.0%"),
        (lambda *args: _bert_mask(*args, in_place=True), "input_ids was changed in place"),
        (lambda *args: _bert_mask(*args, own_random=True), "draw every random number from `generator`"),
        (_labels_everywhere, "special tokens ([CLS], [SEP], [PAD]) were chosen"),
    ],
    "nsp_pairs": [
        (lambda d, s: _nsp_pairs(d, s, last_too=True), "the last sentence of a document has no successor"),
        (lambda d, s: _nsp_pairs(d, s, own_document=True), "is NotNext with b from A's own document"),
        (lambda d, s: _nsp_pairs(d, s, swap=True), "the labels are swapped; 0 means IsNext"),
        (lambda d, s: _nsp_pairs(d, s, p_random=0.0), "all 1,326 pairs are IsNext (label 0)"),
        (lambda d, s: _nsp_pairs(d, s, p_random=0.25), "share of NotNext pairs: 2"),
        (lambda d, s: _nsp_pairs(d, s, global_rng=True), "not from the global random state"),
        (lambda d, s: _nsp_pairs(d, 0), "seeds 0 and 1 gave the same pairs"),
        (lambda d, s: _nsp_pairs(d, s, next_document=True), "comes from the document right after A's"),
        (lambda d, s: _nsp_pairs(d, s, first_line=True), "every NotNext b is the first sentence of its document"),
        (lambda d, s: _nsp_pairs(d, s, b_is_a=True), "; b is a itself"),
        (lambda d, s: [(a, b, str(label)) for a, b, label in _nsp_pairs(d, s)], "a label is '0'"),
        (lambda d, s: [(a, b) for a, b, _ in _nsp_pairs(d, s)], "each pair is a triple (a, b, label)"),
        (lambda d, s: _nsp_pairs(d, s)[::-1], "A goes through the text in order"),
    ],
    "sentence_pair": [
        (lambda a, b, c, s: (torch.tensor([c, *a, s, *b]), torch.tensor([0] * (len(a) + 2) + [1] * len(b))),
         "end without [SEP]"),
        (lambda a, b, c, s: (torch.tensor([c, *a, s, *b, s]), torch.tensor([0] * (len(a) + 2) + [1] * len(b) + [0])),
         "the final [SEP] has segment 0"),
        (lambda a, b, c, s: (torch.tensor([c, *a, s, *b, s]), torch.tensor([0] * (len(a) + 1) + [1] * (len(b) + 2))),
         "the [SEP] after A has segment 1"),
        (lambda a, b, c, s: (torch.tensor([c, *a, s, *b, s]),
                             torch.tensor([1] + [0] * (len(a) + 1) + [1] * (len(b) + 1))),
         "token_type_ids should be [0, 0, 0, 0, 0, 1, 1, 1]"),
        (lambda a, b, c, s: (torch.tensor([c, *b, s, *a, s]), torch.tensor([0] * (len(b) + 2) + [1] * (len(a) + 1))),
         "input_ids should be [CLS] A [SEP] B [SEP] = [1, 11, 12, 13, 2, 21, 22, 2]"),
        (lambda a, b, c, s: (torch.tensor([c, *a, s, *b, s]),
                             torch.tensor([0.0] * (len(a) + 2) + [1.0] * (len(b) + 1))),
         "segment ids index an embedding"),
    ],
    "segment_ids": [
        (lambda ids, sep, pad: _segments(ids, sep, pad, first_sep_in_b=True), "the [SEP] after A has segment 1"),
        (lambda ids, sep, pad: _segments(ids, sep, pad, last_sep_in_a=True), "the final [SEP] has segment 0"),
        (lambda ids, sep, pad: _segments(ids, sep, pad, pad_in_b=True), "[PAD] positions have segment 1"),
        (lambda ids, sep, pad: _segments(ids, sep, pad, count=True), "the count of [SEP]s before the padding?"),
        (lambda ids, sep, pad: _segments(ids, sep, pad).bool(), "returned dtype torch.bool"),
        (lambda ids, sep, pad: _segments(ids, sep, pad).float(), "returned dtype torch.float32"),
        (lambda ids, sep, pad: _segments(ids, sep, pad)[..., None], "has shape (4, 12, 1), expected (4, 12)"),
        (lambda ids, sep, pad: (torch.arange(ids.shape[1]) >= ids.shape[1] // 2).long().expand_as(ids),
         "row 0 (a pair with padding"),
    ],
    "tied_mlm_logits": [
        (lambda *args: _tied(*args, act=F.relu), "used ReLU; BERT's head uses GELU"),
        (lambda *args: _tied(*args, act=lambda x: F.gelu(x, approximate="tanh")), "GELU's tanh approximation"),
        (lambda *args: _tied(*args, order="norm-gelu"), "applied LayerNorm before GELU"),
        (lambda *args: _tied(*args, order="no-norm"), "left out the LayerNorm after GELU"),
        (lambda *args: _tied(*args, act=lambda x: x), "left out the GELU between dense and LayerNorm"),
        (lambda *args: _tied(*args, use_bias=False), "left out the output bias"),
        (lambda *args: _tied(*args).softmax(-1), "returned probabilities"),
        (lambda *args: _tied(*args, detach=True), "no gradient reached `embedding`"),
        (lambda *args: _tied(*args).detach(), "no gradient can flow back to the embedding"),
        (lambda h, dense, norm, e, b: e @ norm(F.gelu(dense(h))).T + b[:, None], "= (vocab, n)"),
        (lambda h, dense, norm, e, b: norm(F.gelu(h @ dense.weight + dense.bias)) @ e.T + b,
         "multiplied by dense.weight without transposing it"),
        (lambda h, dense, norm, e, b: norm(F.gelu(h)) @ e.T + b, "left out the dense layer"),
    ],
    "fill_mask_top_k": [
        (lambda lg, ids, m, k: _top_k(lg, ids, m, k, position=0), "these are the guesses for position 0 ([CLS])"),
        (lambda lg, ids, m, k: _top_k(lg, ids, m, k, raw=True), "these are the raw scores (logits)"),
        (lambda lg, ids, m, k: _top_k(lg, ids, m, k, dim=0), "softmax ran over the positions (dim 0)"),
        (lambda lg, ids, m, k: _top_k(lg, ids, m, k, largest=False), "these are the 3 least likely tokens"),
        (lambda lg, ids, m, k: _top_k(lg, ids, m, k, renormalise=True), "the softmax ran over the top 3 only"),
        (lambda lg, ids, m, k: _top_k(lg, ids, m, k)[::-1], "the pair is (probs, token_ids)"),
        (lambda lg, ids, m, k: _top_k(lg, ids, m, k + 1), "has shape (4,), expected (3,)"),
        (lambda lg, ids, m, k: tuple(t.flip(0) for t in _top_k(lg, ids, m, k)), "(likeliest first)"),
        (lambda lg, ids, m, k: _top_k(lg, ids, m, k)[0], "returned Tensor; return a pair"),
        (lambda lg, ids, m, k: (lambda i, p: (i.float(), p))(*_top_k(lg, ids, m, k)), "the token ids have dtype"),
    ],
}


def test_notebook_05_has_its_seven_exercises() -> None:
    assert sorted(exercises("05")) == sorted(["bert_mask", "nsp_pairs", "sentence_pair", "segment_ids",
                                              "tied_mlm_logits", "fill_mask_top_k", "mask_pronoun_gap"])


# --- answers written other ways pass ----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(10))
def test_bert_mask_written_by_hand_passes_whatever_its_draws(seed: int) -> None:
    def bert_mask(ids, special, mask_id, vocab_size, generator):
        generator.manual_seed(generator.initial_seed() + seed)  # other draws than the reference's
        return _bert_mask(ids, special, mask_id, vocab_size, generator)

    assert check("bert_mask", bert_mask, quiet=True)


@pytest.mark.parametrize("offset", range(10))
def test_nsp_pairs_written_other_ways_pass_whatever_their_draws(offset: int) -> None:
    def nsp_pairs(documents, seed):  # torch's generator, and a NotNext sentence drawn over all other sentences
        gen = torch.Generator().manual_seed(seed + 1000 * offset)
        pairs = []
        for index, doc in enumerate(documents):
            others = [s for j, d in enumerate(documents) if j != index for s in d]
            for a, following in zip(doc, doc[1:]):
                if torch.rand(1, generator=gen).item() < 0.5:
                    pairs.append([a, following, 0])
                else:
                    pairs.append([a, others[int(torch.randint(len(others), (1,), generator=gen))], 1])
        return pairs

    assert check("nsp_pairs", nsp_pairs, quiet=True), check("nsp_pairs", nsp_pairs, quiet=True).message
    assert check("nsp_pairs", lambda d, s: _nsp_pairs(d, s + offset), quiet=True)


def test_sentence_pair_written_by_hand_passes() -> None:
    def sentence_pair(ids_a, ids_b, cls_id, sep_id):
        ids = [cls_id] + ids_a + [sep_id] + ids_b + [sep_id]
        types = [0] * (len(ids_a) + 2) + [1] * (len(ids_b) + 1)
        return ids, types

    assert check("sentence_pair", sentence_pair, quiet=True)


def test_segment_ids_written_as_a_loop_passes() -> None:
    def segment_ids(input_ids, sep_id, pad_id):
        out = torch.zeros_like(input_ids)
        for r, row in enumerate(input_ids.tolist()):
            segment = 0
            for i, token in enumerate(row):
                out[r, i] = 0 if token == pad_id else segment
                if token == sep_id:
                    segment = 1
        return out

    assert check("segment_ids", segment_ids, quiet=True)


def test_tied_mlm_logits_written_with_functional_calls_passes() -> None:
    def tied_mlm_logits(hidden, dense, norm, embedding, bias):
        h = F.gelu(F.linear(hidden, dense.weight, dense.bias))
        h = F.layer_norm(h, h.shape[-1:], norm.weight, norm.bias, eps=norm.eps)
        return F.linear(h, embedding, bias)

    assert check("tied_mlm_logits", tied_mlm_logits, quiet=True)


def test_fill_mask_top_k_written_other_ways_passes() -> None:
    def fill_mask_top_k(logits, input_ids, mask_id, k):
        position = input_ids.tolist().index(mask_id)
        probs = F.softmax(logits[position], dim=0)
        order = probs.argsort(descending=True)[:k]
        return order, probs[order]

    assert check("fill_mask_top_k", fill_mask_top_k, quiet=True)


# --- the references agree with labkit ---------------------------------------------------------------------------

def test_the_nsp_reference_is_make_nsp_pairs() -> None:
    docs = [["a1", "a2", "a3"], ["b1"], ["c1", "c2"]]
    assert reference_nsp_pairs(docs, 4) == [(p.a, p.b, p.nsp_label) for p in make_nsp_pairs(docs, seed=4)]


class _StubTokenizer:
    """Just enough of a BERT tokenizer for encode_pair, _encode_examples and fill_mask: each word of a text is its
    own id ("[MASK]" is 103)."""

    cls_token_id, sep_token_id, mask_token_id, pad_token_id = 101, 102, 103, 0
    mask_token = "[MASK]"

    def _ids(self, text):
        return [self.mask_token_id if w == self.mask_token else int(w) for w in text.split()]

    def __call__(self, texts, add_special_tokens=True, return_tensors=None):
        if isinstance(texts, str):
            ids = self._ids(texts)
            ids = [self.cls_token_id, *ids, self.sep_token_id] if add_special_tokens else ids
            if return_tensors == "pt":
                ids = torch.tensor([ids])
                return {"input_ids": ids, "token_type_ids": torch.zeros_like(ids),
                        "attention_mask": torch.ones_like(ids)}
            return {"input_ids": ids}
        return {"input_ids": [self._ids(text) for text in texts]}

    def convert_ids_to_tokens(self, ids):
        return [str(i) for i in ids]


def test_the_pair_reference_matches_labkits_encode_pair() -> None:
    a, b = [11, 12, 13], [21, 22]
    ours = reference_sentence_pair(a, b, 101, 102)
    theirs = encode_pair(_StubTokenizer(), "11 12 13", "21 22", max_len=16)
    assert torch.equal(ours[0], theirs["input_ids"]) and torch.equal(ours[1], theirs["token_type_ids"])


def test_the_segment_reference_matches_the_pretraining_datas_token_type_ids() -> None:
    tokenizer = _StubTokenizer()
    examples = [("11 12 13", "21 22", 0), ("31 32", None, -100), ("41", "51 52 53 54 55", 1), ("61 62", "71", 1)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing here is long enough to be cut
        encoded, dropped = _encode_examples(tokenizer, examples, max_len=10, source=0, what="test")
    assert dropped == 0
    ids = encoded.input_ids.long()
    assert torch.equal(reference_segment_ids(ids, tokenizer.sep_token_id, tokenizer.pad_token_id),
                       encoded.token_type_ids.long())
    pair = encode_pair(tokenizer, "11 12 13", "21 22", max_len=16)
    assert torch.equal(reference_segment_ids(pair["input_ids"][None], 102, 0)[0], pair["token_type_ids"])


def test_the_tied_reference_is_labkits_masked_lm_head() -> None:
    dense, norm, embedding, bias = _mlm_head_parts(8, 11)
    table = nn.Embedding(11, 8)
    with torch.no_grad():
        table.weight.copy_(embedding)
    head = MaskedLMHead(8, 11, table)
    head.dense.load_state_dict(dense.state_dict())
    head.norm.load_state_dict(norm.state_dict())
    with torch.no_grad():
        head.decoder.bias.copy_(bias)
    hidden = torch.randn(6, 8, generator=torch.Generator().manual_seed(2))
    ours = reference_tied_mlm_logits(hidden, head.dense, head.norm, table.weight, head.decoder.bias)
    torch.testing.assert_close(ours, head(hidden), rtol=0, atol=1e-6)


def test_the_fill_mask_reference_gives_labkits_fill_mask() -> None:
    tokenizer = _StubTokenizer()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = TinyBERT(BertConfig(vocab_size=120, max_len=16, n_layer=1, n_head=2, d_model=16)).eval()
    text = "11 12 [MASK] 14 15"
    enc = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        logits = model.mlm_head(model(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"])[0])
    ids, probs = reference_fill_mask_top_k(logits, enc["input_ids"][0], tokenizer.mask_token_id, 5)
    theirs = fill_mask(model, tokenizer, text, top_k=5)
    assert [str(i) for i in ids.tolist()] == [token for token, _ in theirs]
    torch.testing.assert_close(probs, torch.tensor([p for _, p in theirs]), rtol=0, atol=1e-6)
