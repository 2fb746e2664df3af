"""Notebook 05's checkers: a right answer written by hand passes (the masking check is statistical, so it is tried
under many seeds), each plausible mistake gets its own message, and the pair reference agrees with labkit."""

from __future__ import annotations

import pytest
import torch

from labkit.exercises import check
from labkit.exercises.pretraining import reference_sentence_pair
from labkit.pretraining_data import encode_pair


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


@pytest.mark.parametrize("seed", range(10))
def test_bert_mask_written_by_hand_passes_whatever_its_draws(seed: int) -> None:
    def bert_mask(ids, special, mask_id, vocab_size, generator):
        generator.manual_seed(generator.initial_seed() + seed)  # other draws than the reference's
        return _bert_mask(ids, special, mask_id, vocab_size, generator)

    assert check("bert_mask", bert_mask, quiet=True)


@pytest.mark.parametrize("mistake, message", [
    (dict(skip_special=False), "special tokens ([CLS], [SEP], [PAD]) were chosen"),
    (dict(to_mask=1.0), "every chosen token became [MASK]; only 80% should"),
    (dict(labels_from_inputs=True), "take the labels from input_ids before replacing anything"),
    (dict(chosen_share=0.2), "share of the ordinary tokens chosen: 19.8%"),
    (dict(to_mask=0.1, to_random=0.1), "chosen tokens that became [MASK]: 9.9%"),
    (dict(to_mask=0.8, to_random=0.2), "chosen tokens left unchanged: 0.0%"),
    (dict(in_place=True), "input_ids was changed in place"),
    (dict(own_random=True), "draw every random number from `generator`"),
])
def test_bert_mask_checker_fails_plausible_mistakes(mistake, message: str) -> None:
    result = check("bert_mask", lambda *args: _bert_mask(*args, **mistake), quiet=True)
    assert not result and message in result.message, result.message


def test_bert_mask_checker_fails_labels_everywhere() -> None:
    def labels_everywhere(ids, special, mask_id, vocab_size, generator):
        inputs, _ = _bert_mask(ids, special, mask_id, vocab_size, generator)
        return inputs, ids.clone()

    result = check("bert_mask", labels_everywhere, quiet=True)
    assert not result and "special tokens ([CLS], [SEP], [PAD]) were chosen" in result.message


class _StubTokenizer:
    """Just enough of a BERT tokenizer for encode_pair: each word of a text is its own id."""

    cls_token_id, sep_token_id, mask_token_id, pad_token_id = 101, 102, 103, 0

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [[int(w) for w in text.split()] for text in texts]}


def test_the_pair_reference_matches_labkits_encode_pair() -> None:
    a, b = [11, 12, 13], [21, 22]
    ours = reference_sentence_pair(a, b, 101, 102)
    theirs = encode_pair(_StubTokenizer(), "11 12 13", "21 22", max_len=16)
    assert torch.equal(ours[0], theirs["input_ids"]) and torch.equal(ours[1], theirs["token_type_ids"])


def test_sentence_pair_written_by_hand_passes() -> None:
    def sentence_pair(ids_a, ids_b, cls_id, sep_id):
        ids = [cls_id] + ids_a + [sep_id] + ids_b + [sep_id]
        types = [0] * (len(ids_a) + 2) + [1] * (len(ids_b) + 1)
        return ids, types

    assert check("sentence_pair", sentence_pair, quiet=True)


@pytest.mark.parametrize("wrong, message", [
    (lambda a, b, c, s: (torch.tensor([c, *a, s, *b]), torch.tensor([0] * (len(a) + 2) + [1] * len(b))),
     "end without [SEP]"),
    (lambda a, b, c, s: (torch.tensor([c, *a, s, *b, s]), torch.tensor([0] * (len(a) + 2) + [1] * len(b) + [0])),
     "the final [SEP] has segment 0"),
    (lambda a, b, c, s: (torch.tensor([c, *a, s, *b, s]), torch.tensor([0] * (len(a) + 1) + [1] * (len(b) + 2))),
     "the [SEP] after A has segment 1"),
    (lambda a, b, c, s: (torch.tensor([c, *a, s, *b, s]), torch.tensor([1] + [0] * (len(a) + 1) + [1] * (len(b) + 1))),
     "token_type_ids should be [0, 0, 0, 0, 0, 1, 1, 1]"),
    (lambda a, b, c, s: (torch.tensor([c, *b, s, *a, s]), torch.tensor([0] * (len(b) + 2) + [1] * (len(a) + 1))),
     "input_ids should be [CLS] A [SEP] B [SEP] = [1, 11, 12, 13, 2, 21, 22, 2]"),
    (lambda a, b, c, s: (torch.tensor([c, *a, s, *b, s]), torch.tensor([0.0] * (len(a) + 2) + [1.0] * (len(b) + 1))),
     "segment ids index an embedding"),
])
def test_sentence_pair_checker_fails_plausible_mistakes(wrong, message: str) -> None:
    result = check("sentence_pair", wrong, quiet=True)
    assert not result and message in result.message, result.message
