"""Notebook 05's exercises: BERT's masking recipe (checked statistically) and the ids of a sentence pair."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from labkit.exercises import expect, exercise
from labkit.exercises._compare import expect_tensor
from labkit.pretraining_data import IGNORE, mask_tokens

PAD, CLS, SEP, MASK = 0, 1, 2, 3  # the checker's special ids; ordinary tokens are 10..VOCAB-1
VOCAB = 1000
SIGMAS = 6  # a right answer strays this far from a share only about once in 500 million runs


def reference_bert_mask(input_ids: Tensor, special_tokens_mask: Tensor, mask_id: int, vocab_size: int,
                        generator: torch.Generator) -> tuple[Tensor, Tensor]:
    return mask_tokens(input_ids, special_tokens_mask, mask_id=mask_id, vocab_size=vocab_size, generator=generator)


def _masking_batch() -> tuple[Tensor, Tensor]:
    """input_ids (300, 160): [CLS] ordinary tokens [SEP] then [PAD], of random lengths; special_tokens_mask."""
    gen = torch.Generator().manual_seed(0)
    rows, width = 300, 160
    ids = torch.randint(10, VOCAB, (rows, width), generator=gen)
    lengths = torch.randint(40, width + 1, (rows,), generator=gen)
    positions = torch.arange(width)
    ids[:, 0] = CLS
    ids[torch.arange(rows), lengths - 1] = SEP
    ids[positions >= lengths[:, None]] = PAD
    return ids, (ids == CLS) | (ids == SEP) | (ids == PAD)


def _share(part: int, whole: int, target: float, what: str) -> None:
    """`Failed` unless part / whole is within SIGMAS binomial standard errors of `target`."""
    share, tolerance = part / whole, SIGMAS * math.sqrt(target * (1 - target) / whole)
    expect(abs(share - target) <= tolerance, f"{what}: {share:.1%} ({part:,} of {whole:,}), expected "
                                             f"{target:.0%} ± {tolerance:.1%}")


@exercise("bert_mask", "05",
          task="bert_mask(input_ids, special_tokens_mask, mask_id, vocab_size, generator) → (inputs, labels): choose "
               "15% of the ordinary tokens (never a special one); of those 80% become mask_id, 10% a random id, 10% "
               "stay; labels hold the original id where chosen and −100 elsewhere. Draw every random number from "
               "`generator`",
          hint="chosen = (torch.rand(shape, generator=generator) < 0.15) & ~special_tokens_mask; one more uniform "
               "draw per token decides: < 0.8 → [MASK], 0.8–0.9 → random id, else unchanged; torch.where builds "
               "new tensors",
          reference=reference_bert_mask)
def check_bert_mask(answer: Callable[..., Any]) -> None:
    ids, special = _masking_batch()
    given_ids, given_special = ids.clone(), special.clone()
    result = answer(given_ids, given_special, MASK, VOCAB, torch.Generator().manual_seed(0))
    expect(torch.equal(given_ids, ids), "input_ids was changed in place; build new tensors (torch.where, or a "
                                        ".clone() first), since the caller still needs the original ids")
    expect(isinstance(result, tuple) and len(result) == 2,
           f"bert_mask returned {type(result).__name__}; expected a pair (inputs, labels)")
    inputs = expect_tensor(result[0], tuple(ids.shape), "inputs")
    labels = expect_tensor(result[1], tuple(ids.shape), "labels")
    chosen = labels != IGNORE
    expect(bool(chosen.any()), "every label is −100: no token was chosen for the model to predict")
    expect(not (chosen & special).any(), f"{int((chosen & special).sum())} special tokens ([CLS], [SEP], [PAD]) "
                                         f"were chosen; only ordinary tokens may be")
    expect(bool((labels[chosen] == ids[chosen]).all()),
           "a chosen position's label is not its original token (a [MASK] or the random replacement?): take the "
           "labels from input_ids before replacing anything")
    expect(bool((inputs[~chosen] == ids[~chosen]).all()),
           "a token that was not chosen (label −100) changed: only chosen tokens are replaced")
    n_ordinary, n_chosen = int((~special).sum()), int(chosen.sum())
    _share(n_chosen, n_ordinary, 0.15, "share of the ordinary tokens chosen")
    became_mask = int((inputs[chosen] == MASK).sum())
    unchanged = int((inputs[chosen] == ids[chosen]).sum())
    expect(became_mask < n_chosen, "every chosen token became [MASK]; only 80% should: 10% become a random token "
                                   "and 10% stay as they are")
    _share(became_mask, n_chosen, 0.8, "chosen tokens that became [MASK]")
    _share(unchanged, n_chosen, 0.1, "chosen tokens left unchanged")
    _share(n_chosen - became_mask - unchanged, n_chosen, 0.1, "chosen tokens replaced by a random id")
    expect(int(inputs.min()) >= 0 and int(inputs.max()) < VOCAB,
           f"inputs hold ids from {int(inputs.min())} to {int(inputs.max())}; a random id must lie in 0..{VOCAB - 1}")
    again = answer(ids.clone(), special.clone(), MASK, VOCAB, torch.Generator().manual_seed(0))
    expect(torch.equal(again[0], inputs) and torch.equal(again[1], labels),
           "two calls with generators seeded alike gave different masks: draw every random number from `generator` "
           "(torch.rand(..., generator=generator), torch.randint(..., generator=generator))")


def reference_sentence_pair(ids_a: Sequence[int], ids_b: Sequence[int], cls_id: int,
                            sep_id: int) -> tuple[Tensor, Tensor]:
    input_ids = torch.tensor([cls_id, *ids_a, sep_id, *ids_b, sep_id])
    segment_a = len(ids_a) + 2  # [CLS] a [SEP]
    return input_ids, (torch.arange(len(input_ids)) >= segment_a).long()


@exercise("sentence_pair", "05",
          task="sentence_pair(ids_a, ids_b, cls_id, sep_id) → (input_ids, token_type_ids), both (seq,) long: "
               "[CLS] A [SEP] B [SEP], with segment 0 on [CLS], A and its [SEP] and segment 1 on B and its [SEP]",
          hint="torch.tensor([cls_id, *ids_a, sep_id, *ids_b, sep_id]); the segment ids are len(ids_a) + 2 zeros "
               "followed by len(ids_b) + 1 ones",
          reference=reference_sentence_pair)
def check_sentence_pair(answer: Callable[..., Any]) -> None:
    for ids_a, ids_b in (([11, 12, 13], [21, 22]), ([31], [41, 42, 43, 44])):
        what = f"sentence_pair({ids_a}, {ids_b}, cls_id={CLS}, sep_id={SEP})"
        result = answer(list(ids_a), list(ids_b), CLS, SEP)
        expect(isinstance(result, tuple) and len(result) == 2,
               f"{what} returned {type(result).__name__}; expected a pair (input_ids, token_type_ids)")
        expected_ids, expected_types = reference_sentence_pair(ids_a, ids_b, CLS, SEP)
        got_ids, got_types = (torch.as_tensor(r) if isinstance(r, (list, tuple)) else r for r in result)
        expect(not (isinstance(got_ids, Tensor) and got_ids.tolist() == expected_ids.tolist()[:-1]),
               f"{what}: input_ids end without [SEP] ({SEP}); sentence B is closed by a [SEP] too")
        got_ids = expect_tensor(got_ids, tuple(expected_ids.shape), f"input_ids of {what}")
        expect(got_ids.tolist() == expected_ids.tolist(),
               f"{what}: input_ids should be [CLS] A [SEP] B [SEP] = {expected_ids.tolist()}, got {got_ids.tolist()}")
        got_types = expect_tensor(got_types, tuple(expected_types.shape), f"token_type_ids of {what}")
        expect(not got_types.dtype.is_floating_point, f"token_type_ids has dtype {got_types.dtype}; segment ids "
                                                      f"index an embedding, so they must be integers (long)")
        types, expected = got_types.tolist(), expected_types.tolist()
        expect(types[-1] == 1, f"{what}: the final [SEP] has segment {types[-1]}; it closes B, so it is segment 1")
        expect(types[len(ids_a) + 1] == 0, f"{what}: the [SEP] after A has segment {types[len(ids_a) + 1]}; it "
                                           f"closes A, so it is segment 0")
        expect(types == expected, f"{what}: token_type_ids should be {expected}, got {types}")
