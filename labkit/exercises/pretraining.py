"""Notebook 05's exercises, in the order it teaches them: BERT's masking recipe (checked statistically), next-sentence
pairs, the ids of one sentence pair, the segment ids of a padded batch, the MLM head tied to the token embeddings,
and the top-k guesses at a [MASK].

Each reference agrees with labkit's own rule (`mask_tokens`, `make_nsp_pairs`, `encode_pair`, `PretrainingData`'s
token_type_ids, `MaskedLMHead`, `fill_mask`); tests/test_exercises_pretraining.py proves it."""

from __future__ import annotations

import copy
import math
import random
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.exercises import Failed, expect, exercise
from labkit.exercises._compare import expect_tensor, max_difference, same, seeded
from labkit.modules import IGNORE_INDEX
from labkit.pretraining_data import make_nsp_pairs, mask_tokens

PAD, CLS, SEP, MASK = 0, 1, 2, 3  # the checker's special ids; ordinary tokens are 10..VOCAB-1
VOCAB = 1000
SIGMAS = 6  # a right answer strays this far from a share only about once in 500 million runs


# --- masking -----------------------------------------------------------------------------------------------------

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
    chosen = labels != IGNORE_INDEX
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


# --- next-sentence pairs ----------------------------------------------------------------------------------------

def reference_nsp_pairs(documents: Sequence[Sequence[str]], seed: int) -> list[tuple[str, str, int]]:
    return [(pair.a, pair.b, pair.nsp_label) for pair in make_nsp_pairs(documents, seed=seed)]


def _nsp_documents() -> list[list[str]]:
    """24 stories of 1 to 40 sentences ("story 3, line 7": every sentence tells where it comes from); stories 0
    and 5 hold one sentence each, so they give no pair."""
    rng = random.Random(0)
    lengths = [rng.randint(2, 40) for _ in range(24)]
    lengths[0] = lengths[5] = 1
    return [[f"story {d}, line {i}" for i in range(n)] for d, n in enumerate(lengths)]


def _nsp_rows(answer: Callable[..., Any], docs: list[list[str]], seed: int) -> list[tuple[str, str, int]]:
    given = copy.deepcopy(docs)
    result = answer(given, seed)
    what = f"nsp_pairs(documents, seed={seed})"
    expect(given == docs, f"{what} changed `documents`; read the sentences, leave the list as it is")
    expect(isinstance(result, (list, tuple)), f"{what} returned a {type(result).__name__}; return a list of "
                                              f"(a, b, label) triples")
    rows = []
    for row in result:
        expect(isinstance(row, (list, tuple)) and len(row) == 3,
               f"{what}: a pair is {row!r:.60}; each pair is a triple (a, b, label)")
        a, b, label = row
        expect(label in (0, 1) and not isinstance(label, str),
               f"{what}: a label is {label!r}; the label is 0 (IsNext: b follows a) or 1 (NotNext: b is random)")
        rows.append((a, b, int(label)))
    return rows


@exercise("nsp_pairs", "05",
          task="nsp_pairs(documents, seed) → [(a, b, label), ...]: one pair for every sentence that has a successor "
               "in its document, in the order of the text; a coin flip decides: label 0 (IsNext) with b the "
               "sentence that follows a, or label 1 (NotNext) with b a random sentence of another document. Draw "
               "from random.Random(seed)",
          hint="rng = random.Random(seed); for each document (index i) and each (a, following) in zip(doc, doc[1:]): "
               "if rng.random() < 0.5 → (a, following, 0), else pick a document other than i, then a sentence of it "
               "with rng.choice → (a, that, 1)",
          reference=reference_nsp_pairs)
def check_nsp_pairs(answer: Callable[..., Any]) -> None:
    docs = _nsp_documents()
    home = {s: d for d, doc in enumerate(docs) for s in doc}
    following = {a: b for doc in docs for a, b in zip(doc, doc[1:])}
    expected_a = [s for doc in docs for s in doc[:-1]]
    n_sentences = sum(len(doc) for doc in docs)
    by_seed: dict[int, list[tuple[str, str, int]]] = {}
    for seed in (0, 1, 2):
        rows = by_seed[seed] = _nsp_rows(answer, docs, seed)
        what = f"nsp_pairs(documents, seed={seed})"
        expect(len(rows) != n_sentences, f"{what} gave {len(rows)} pairs, one per sentence: the last sentence of a "
                                         f"document has no successor, so it is never an A ({len(expected_a)} pairs "
                                         f"from these {len(docs)} documents)")
        expect(len(rows) == len(expected_a), f"{what} gave {len(rows)} pairs; these {len(docs)} documents hold "
                                             f"{len(expected_a)} sentences that have a successor, one pair each")
        wrong = next((i for i, (a, _, _) in enumerate(rows) if a != expected_a[i]), None)
        if wrong is not None:
            raise Failed(f"{what}: pair {wrong} has a = {rows[wrong][0]!r} where {expected_a[wrong]!r} was expected; "
                         f"A goes through the text in order, document by document, sentence by sentence")
        random_rows = [(a, b) for a, b, label in rows if label == 1]
        expect(not random_rows or not all(b == following[a] for a, b in random_rows),
               f"{what}: every pair with label 1 has b = the sentence that follows a: the labels are swapped; "
               f"0 means IsNext (b follows a), 1 NotNext (b is random)")
        for a, b, label in rows:
            if label == 0:
                expect(b == following[a], f"{what}: ({a!r}, {b!r}) has label 0 (IsNext), but the sentence after "
                                          f"{a!r} is {following[a]!r}" + ("; b is a itself" if b == a else ""))
            else:
                expect(b in home, f"{what}: ({a!r}, {b!r}): b is not a sentence of any document")
                expect(home[b] != home[a], f"{what}: ({a!r}, {b!r}) is NotNext with b from A's own document; draw "
                                           f"b from another document, so that it cannot be the true continuation")
        expect(_nsp_rows(answer, docs, seed) == rows,
               f"two calls of {what} gave different pairs: draw every coin and choice from random.Random(seed), "
               f"not from the global random state")
    rows = [row for seed_rows in by_seed.values() for row in seed_rows]
    random_b = [(home[a], home[b], b) for a, b, label in rows if label == 1]
    expect(bool(random_b), f"all {len(rows):,} pairs are IsNext (label 0); flip a coin for each: half are NotNext")
    _share(len(random_b), len(rows), 0.5, "share of NotNext pairs")
    expect(by_seed[0] != by_seed[1], "seeds 0 and 1 gave the same pairs: the seed must decide the coin flips")
    expect(not all(d_b == (d_a + 1) % len(docs) for d_a, d_b, _ in random_b),
           "every NotNext b comes from the document right after A's; choose the other document at random")
    expect(not all(b == docs[d_b][0] for _, d_b, b in random_b),
           "every NotNext b is the first sentence of its document; choose a random sentence of the other document")
    sources = len({d_b for _, d_b, _ in random_b})
    expect(sources >= len(docs) // 2, f"the NotNext sentences come from only {sources} of the {len(docs)} "
                                      f"documents; choose the other document at random")


# --- one sentence pair ------------------------------------------------------------------------------------------

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


# --- the segment ids of a padded batch --------------------------------------------------------------------------

def reference_segment_ids(input_ids: Tensor, sep_id: int, pad_id: int) -> Tensor:
    is_sep = (input_ids == sep_id).long()
    after_first_sep = is_sep.cumsum(dim=1) - is_sep > 0  # a [SEP] stands before this position
    return (after_first_sep & (input_ids != pad_id)).long()


def _segment_batch() -> tuple[Tensor, list[str]]:
    """(4, 12) ids: a pair with padding, a pair with a one-token B, a lone sentence with padding, a full pair."""
    rows = [[CLS, 11, 12, SEP, 21, 22, 23, SEP],
            [CLS, 11, 12, 13, 14, 15, SEP, 21, SEP],
            [CLS, 11, 12, 13, SEP],
            [CLS, 11, 12, 13, 14, SEP, 21, 22, 23, 24, 25, SEP]]
    names = ["a pair with padding", "a pair whose B is one token", "a lone sentence (no B)", "a pair with no padding"]
    return torch.tensor([row + [PAD] * (12 - len(row)) for row in rows]), names


@exercise("segment_ids", "05",
          task="segment_ids(input_ids, sep_id, pad_id) → token_type_ids (batch, seq) long, from the ids alone: 0 on "
               "[CLS], A and the first [SEP]; 1 on B and its [SEP]; 0 on [PAD] (a lone sentence is 0 throughout)",
          hint="is_sep = (input_ids == sep_id).long(); is_sep.cumsum(1) - is_sep counts the [SEP]s before each "
               "position: a position is in B where that count is ≥ 1 and it is not [PAD]",
          reference=reference_segment_ids)
def check_segment_ids(answer: Callable[..., Any]) -> None:
    ids, names = _segment_batch()
    given = ids.clone()
    got = expect_tensor(answer(given, SEP, PAD), tuple(ids.shape), "segment_ids(input_ids of shape (4, 12))")
    expect(torch.equal(given, ids), "input_ids was changed in place; build a new tensor")
    expect(got.dtype != torch.bool and not got.dtype.is_floating_point,
           f"segment_ids returned dtype {got.dtype}; segment ids index an embedding table, so return integers "
           f"(.long())")
    expected = reference_segment_ids(ids, SEP, PAD)
    values = sorted(set(got.flatten().tolist()))
    expect(set(values) <= {0, 1}, f"segment_ids holds the values {values}; a segment id is 0 (A) or 1 (B)"
                                  + (" — is that the count of [SEP]s before the padding?" if 2 in values else ""))
    seps = [(ids[r] == SEP).nonzero().flatten().tolist() for r in range(len(ids))]
    for r, name in enumerate(names):
        row, want = got[r].tolist(), expected[r].tolist()
        where = f"row {r} ({name}: {ids[r].tolist()})"
        expect(row[0] == 0, f"{where}: [CLS] has segment {row[0]}; it opens A, so it is segment 0")
        expect(row[seps[r][0]] == 0, f"{where}: the [SEP] after A has segment {row[seps[r][0]]}; it closes A, so it "
                                     f"is segment 0")
        if len(seps[r]) == 2:
            expect(row[seps[r][1]] == 1, f"{where}: the final [SEP] has segment {row[seps[r][1]]}; it closes B, so "
                                         f"it is segment 1")
        padded = (ids[r] == PAD).nonzero().flatten().tolist()
        expect(all(row[i] == 0 for i in padded), f"{where}: [PAD] positions have segment 1; labkit gives padding "
                                                 f"segment 0 (the attention mask hides it anyway)")
        expect(row == want, f"{where}: token_type_ids should be {want}, got {row}")


# --- the MLM head, tied to the token embeddings ----------------------------------------------------------------

def reference_tied_mlm_logits(hidden: Tensor, dense: nn.Linear, norm: nn.LayerNorm, embedding: Tensor,
                              bias: Tensor) -> Tensor:
    return norm(F.gelu(dense(hidden))) @ embedding.T + bias


def _mlm_head_parts(d_model: int = 8, vocab: int = 11) -> tuple[nn.Linear, nn.LayerNorm, Tensor, Tensor]:
    """A dense layer, a LayerNorm (BERT's eps 1e-12) with weights that are not 1 and 0, a token-embedding matrix
    (vocab, d_model) that wants gradients, and an output bias (vocab,), all drawn from seed 0."""
    with seeded(0):
        dense = nn.Linear(d_model, d_model)
        norm = nn.LayerNorm(d_model, eps=1e-12)
        with torch.no_grad():
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.normal_(0.0, 0.3)
        embedding = torch.randn(vocab, d_model, requires_grad=True)
        bias = torch.randn(vocab)
    return dense, norm, embedding, bias


@exercise("tied_mlm_logits", "05",
          task="tied_mlm_logits(hidden, dense, norm, embedding, bias): hidden (n, d_model) → logits (n, vocab): "
               "dense, then GELU, then LayerNorm, then scores against every token's embedding vector "
               "(embedding: (vocab, d_model), the token-embedding matrix itself) plus bias (vocab,)",
          hint="h = norm(F.gelu(dense(hidden))); return h @ embedding.T + bias (the decoder IS the embedding matrix, "
               "transposed: one vector per token reads it in and scores it out)",
          reference=reference_tied_mlm_logits)
def check_tied_mlm_logits(answer: Callable[..., Any]) -> None:
    n, d_model, vocab = 5, 8, 11
    dense, norm, embedding, bias = _mlm_head_parts(d_model, vocab)
    hidden = 2 * torch.randn(n, d_model, generator=torch.Generator().manual_seed(1))
    given = hidden.clone()
    what = "tied_mlm_logits(hidden of shape (5, 8), ..., embedding of shape (11, 8), ...)"
    got = answer(given, dense, norm, embedding, bias)
    expect(torch.equal(given, hidden), "hidden was changed in place; compute new tensors")
    expect(not (isinstance(got, Tensor) and tuple(got.shape) == (vocab, n)),
           f"{what} has shape {(vocab, n)} = (vocab, n); the logits are (n, vocab): h @ embedding.T")
    got = expect_tensor(got, (n, vocab), what)
    with torch.no_grad():
        pre = dense(hidden)
        right = reference_tied_mlm_logits(hidden, dense, norm, embedding, bias)
        mistakes = [
            (right.softmax(-1), "returned probabilities (each row sums to 1); return the logits, before softmax: "
                                "cross_entropy applies the softmax itself"),
            (norm(F.relu(pre)) @ embedding.T + bias, "used ReLU; BERT's head uses GELU (F.gelu)"),
            (norm(F.gelu(pre, approximate="tanh")) @ embedding.T + bias,
             "used GELU's tanh approximation; BERT's head (and labkit's) uses the exact GELU: F.gelu(x)"),
            (norm(pre) @ embedding.T + bias, "left out the GELU between dense and LayerNorm"),
            (F.gelu(norm(pre)) @ embedding.T + bias, "applied LayerNorm before GELU; the order is dense → GELU → "
                                                     "LayerNorm"),
            (F.gelu(pre) @ embedding.T + bias, "left out the LayerNorm after GELU"),
            (norm(F.gelu(hidden)) @ embedding.T + bias, "left out the dense layer: dense → GELU → LayerNorm"),
            (norm(F.gelu(hidden @ dense.weight + dense.bias)) @ embedding.T + bias,
             "multiplied by dense.weight without transposing it (nn.Linear stores (out, in)); call dense(hidden)"),
            (norm(F.gelu(pre)) @ embedding.T, "left out the output bias: the decoder has its own bias (vocab,)"),
        ]
    for wrong, message in mistakes:
        expect(not same(got, wrong, atol=1e-6) or same(got, right, atol=1e-6), f"{what} {message}")
    expect(same(got, right, atol=1e-5), f"{what} differs from LayerNorm(GELU(dense(hidden))) @ embedding.T + bias "
                                        f"by up to {max_difference(got, right):.3g}")
    expect(got.requires_grad, "no gradient can flow back to the embedding through your logits (.detach(), .data or "
                              "torch.no_grad()?); tied weights mean the MLM loss trains the token embeddings too")
    got.sum().backward()
    expect(embedding.grad is not None and bool(embedding.grad.abs().sum() > 0),
           "no gradient reached `embedding`: score against the embedding matrix itself, not a detached copy; "
           "tied weights mean the MLM loss trains the token embeddings too")


# --- fill-mask: the top k at the [MASK] -------------------------------------------------------------------------

def reference_fill_mask_top_k(logits: Tensor, input_ids: Tensor, mask_id: int, k: int) -> tuple[Tensor, Tensor]:
    position = int((input_ids == mask_id).nonzero()[0, 0])
    best = logits[position].softmax(dim=-1).topk(k)
    return best.indices, best.values


@exercise("fill_mask_top_k", "05",
          task="fill_mask_top_k(logits, input_ids, mask_id, k): logits (seq, vocab) from the MLM head at every "
               "position, input_ids (seq,) with one [MASK] → (token_ids (k,) long, probs (k,)): the k likeliest "
               "tokens at the [MASK] and their probabilities (softmax over the whole vocabulary), likeliest first",
          hint="position = (input_ids == mask_id).nonzero()[0, 0]; best = logits[position].softmax(-1).topk(k); "
               "return best.indices, best.values",
          reference=reference_fill_mask_top_k)
def check_fill_mask_top_k(answer: Callable[..., Any]) -> None:
    gen = torch.Generator().manual_seed(0)
    for seq, vocab, position, k in ((7, 20, 4, 3), (9, 30, 2, 5)):
        ids = torch.randint(10, vocab, (seq,), generator=gen)
        ids[0], ids[-1], ids[position] = CLS, SEP, MASK
        logits = 3 * torch.randn(seq, vocab, generator=gen)
        given_logits, given_ids = logits.clone(), ids.clone()
        what = f"fill_mask_top_k(logits of shape {(seq, vocab)}, [MASK] at position {position}, k={k})"
        result = answer(given_logits, given_ids, MASK, k)
        expect(torch.equal(given_logits, logits) and torch.equal(given_ids, ids),
               f"{what} changed its inputs in place")
        expect(isinstance(result, tuple) and len(result) == 2,
               f"{what} returned {type(result).__name__}; return a pair (token_ids, probs)")
        token_ids, probs = result
        expect(not (isinstance(token_ids, Tensor) and token_ids.dtype.is_floating_point
                    and isinstance(probs, Tensor) and not probs.dtype.is_floating_point),
               f"{what}: the pair is (probs, token_ids); return (token_ids, probs)")
        token_ids = expect_tensor(token_ids, (k,), f"the token ids of {what}")
        probs = expect_tensor(probs, (k,), f"the probabilities of {what}")
        expect(not token_ids.dtype.is_floating_point, f"{what}: the token ids have dtype {token_ids.dtype}; ids "
                                                      f"are integers (topk's .indices)")
        right_ids, right_probs = reference_fill_mask_top_k(logits, ids, MASK, k)
        got_ids = token_ids.tolist()
        for other in range(seq):
            if other != position:
                expect(got_ids != logits[other].topk(k).indices.tolist(),
                       f"{what}: these are the guesses for position {other}"
                       + (" ([CLS])" if other == 0 else " ([SEP])" if other == seq - 1 else "")
                       + "; find the [MASK] in input_ids (input_ids == mask_id) and read that row")
        expect(got_ids != logits[position].topk(k, largest=False).indices.tolist(),
               f"{what}: these are the {k} least likely tokens; topk keeps the largest")
        expect(got_ids != logits.softmax(0)[position].topk(k).indices.tolist() or got_ids == right_ids.tolist(),
               f"{what}: softmax ran over the positions (dim 0); softmax over the vocabulary (dim -1)")
        expect(got_ids == right_ids.tolist(), f"{what}: the {k} likeliest tokens at the [MASK] are "
                                              f"{right_ids.tolist()} (likeliest first), got {got_ids}")
        expect(not same(probs, logits[position, right_ids], atol=1e-6),
               f"{what}: these are the raw scores (logits); softmax them over the vocabulary into probabilities")
        expect(not same(probs, right_probs / right_probs.sum(), atol=1e-6),
               f"{what}: the {k} probabilities sum to 1, so the softmax ran over the top {k} only; softmax over the "
               f"whole vocabulary first, then take the top {k}")
        expect(not same(probs, logits.softmax(0)[position, right_ids], atol=1e-6),
               f"{what}: softmax ran over the positions (dim 0); softmax over the vocabulary (dim -1)")
        expect(same(probs, right_probs, atol=1e-6), f"{what}: the probabilities should be "
                                                    f"{[round(p, 4) for p in right_probs.tolist()]}, got "
                                                    f"{[round(p, 4) for p in probs.tolist()]}")
