"""Notebook 13's exercises, in the order the notebook teaches them: GPT-2's fused `c_attn` weight from a TinyGPT
layer's query, key and value projections; what a text-classification pipeline does with the logits; the two
functions `datasets.map` runs to tokenize SST-2 and CoNLL-2003 (labels kept, and aligned to word pieces); and a
`compute_metrics` for `Trainer`. The rules are `labkit.export`'s and `labkit.finetune_data`'s.

The tokenizing exercises run on a small WordPiece tokenizer the checker builds itself (a few dozen pieces, BERT's
special tokens and template), so a check needs neither the network nor a download.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from labkit.exercises import Failed, expect, exercise
from labkit.exercises._compare import expect_tensor, max_difference, same, seeded_randn
from labkit.modules import IGNORE_INDEX

# --- GPT-2's fused c_attn ----------------------------------------------------------------------------------------


def reference_fused_qkv_weight(q_weight: Tensor, k_weight: Tensor, v_weight: Tensor) -> Tensor:
    stacked = torch.cat([q_weight, k_weight, v_weight], dim=0)  # (3·d, d): (out, in), as nn.Linear keeps them
    return stacked.T  # (d, 3·d): Conv1D's (in, out)


@exercise("fused_qkv_weight", "13",
          task="fused_qkv_weight(q_weight, k_weight, v_weight) → (d_model, 3·d_model): GPT-2's `c_attn.weight` for one "
               "attention layer, from a TinyGPT layer's three nn.Linear weights, each (out, in) = (d_model, d_model). "
               "GPT-2's Conv1D stores its weight (in, out) and computes x @ weight, and c_attn's output is q, k and v "
               "side by side, in that order",
          hint="stack the three (out, in) matrices along the out axis, torch.cat([q_weight, k_weight, v_weight]) → "
               "(3·d, d), then transpose to Conv1D's (in, out): .T → (d, 3·d)",
          reference=reference_fused_qkv_weight)
def check_fused_qkv_weight(answer: Callable[..., Any]) -> None:
    d = 6
    q, k, v = (seeded_randn(d, d, seed=1300 + i) for i in range(3))
    given = [w.clone() for w in (q, k, v)]
    what = f"fused_qkv_weight(three ({d}, {d}) weights)"
    out = answer(*given)
    expect(all(torch.equal(a, b) for a, b in zip(given, (q, k, v))),
           f"{what} changed its inputs in place: they are the TinyGPT's own weights; build a new tensor")
    expect(not (isinstance(out, Tensor) and tuple(out.shape) == (3 * d, d)),
           f"{what} has shape ({3 * d}, {d}): that is nn.Linear's (out, in) layout; Conv1D keeps its weight (in, out), "
           f"so transpose the stack: torch.cat([q_weight, k_weight, v_weight]).T has shape ({d}, {3 * d})")
    out = expect_tensor(out, (d, 3 * d), what).detach()
    names = {"q": q, "k": k, "v": v}
    expect(not same(out, torch.cat([q, k, v], dim=1)),
           "the three blocks are nn.Linear's (out, in) matrices, laid side by side but not transposed: Conv1D "
           "computes x @ weight, so each block must be the transpose, weight[:, :d] = q_weight.T")
    for order in itertools.permutations("qkv"):
        if order != ("q", "k", "v"):
            expect(not same(out, torch.cat([names[n] for n in order]).T),
                   f"the blocks are in the order {', '.join(order)}: GPT-2 splits c_attn's output into q, k, v, in "
                   f"that order (weight[:, :d] is the query's, then the key's, then the value's)")
    x = seeded_randn(4, d, seed=1303)
    worst = max_difference(x @ out, torch.cat([x @ q.T, x @ k.T, x @ v.T], dim=-1))
    expect(worst <= 1e-5, f"x @ weight differs from [q(x), k(x), v(x)] by up to {worst:.3g}")


# --- what a text-classification pipeline does with the logits ------------------------------------------------------


def reference_classification_scores(logits: Tensor, id2label: Mapping[int, str]) -> list[dict[str, Any]]:
    probabilities = logits.float().softmax(dim=-1)  # (n, n_labels): each sentence's labels share 1
    best = probabilities.max(dim=-1)
    return [{"label": id2label[int(i)], "score": float(p)} for p, i in zip(best.values, best.indices)]


_ID2LABEL = {0: "negative", 1: "neutral", 2: "positive"}
_SCORE_LOGITS = torch.tensor([[2.0, 0.5, -1.0], [-0.3, 0.1, 1.7], [0.2, 2.4, 0.6], [1.1, 0.0, 1.0]])


def _scores(probabilities: Tensor, by: Tensor | None = None) -> list[dict[str, Any]]:
    """Label and score of each row's highest entry of `by` (default: of `probabilities`)."""
    chosen = (probabilities if by is None else by).argmax(dim=-1)
    return [{"label": _ID2LABEL[int(i)], "score": float(row[i])} for row, i in zip(probabilities, chosen)]


def _same_scores(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> bool:
    return all(g["label"] == e["label"] and math.isclose(float(g["score"]), e["score"], abs_tol=1e-5)
               for g, e in zip(got, expected))


@exercise("classification_scores", "13",
          task="classification_scores(logits, id2label) → what pipeline('text-classification') answers: logits "
               "(n, n_labels), the model's scores for n sentences; id2label, label id → name (model.config.id2label). "
               "Return one dict per sentence, {'label': the name of its likeliest label, 'score': that label's "
               "probability as a float}, the probabilities a softmax over the labels",
          hint="probabilities = logits.softmax(dim=-1); for each row take max → (p, i) and answer "
               "{'label': id2label[int(i)], 'score': float(p)}",
          reference=reference_classification_scores)
def check_classification_scores(answer: Callable[..., Any]) -> None:
    logits = _SCORE_LOGITS.clone()
    what = "classification_scores(logits of 4 sentences × 3 labels, id2label)"
    out = answer(logits, dict(_ID2LABEL))
    expect(torch.equal(logits, _SCORE_LOGITS), f"{what} changed the logits in place; compute new tensors")
    expect(isinstance(out, (list, tuple)), f"{what} returned a {type(out).__name__}; return a list, one dict per "
                                           f"sentence")
    expect(len(out) == len(logits), f"{what} returned {len(out)} answers for {len(logits)} sentences: one per row")
    for i, item in enumerate(out):
        expect(isinstance(item, Mapping) and {"label", "score"} <= set(item),
               f"answer {i} is {item!r}; each is a dict with 'label' and 'score', as the pipeline's")
        label, score = item["label"], item["score"]
        expect(not isinstance(label, (numbers.Integral, Tensor)),
               f"answer {i}'s label is {label!r}, an id: answer with its name, id2label[id] (here "
               f"{_ID2LABEL[int(logits[i].argmax())]!r})")
        expect(not isinstance(score, Tensor), f"answer {i}'s score is a tensor; give a Python float (float(p) or "
                                              f"p.item()), as the pipeline does")
        expect(isinstance(score, numbers.Real), f"answer {i}'s score is {score!r}; give a float")
    mistakes = (
        (_scores(logits), "the scores are the raw logits: the pipeline reports a probability, the softmax of the "
                          "logits over the labels"),
        (_scores(logits.sigmoid()), "the scores are each logit's sigmoid, taken alone: with one label per sentence "
                                    "the labels share their probability, softmax(dim=-1)"),
        (_scores(logits.softmax(dim=0)), "the softmax ran over the sentences (dim 0): each sentence's probabilities "
                                         "run over its labels, softmax(dim=-1)"),
        (_scores(logits.softmax(dim=-1), by=-logits), "you picked the least likely label (argmin): the pipeline "
                                                      "answers with the likeliest, argmax"),
    )
    for expected, message in mistakes:
        expect(not _same_scores(out, expected), message)
    right = reference_classification_scores(logits, _ID2LABEL)
    for i, (got, expected) in enumerate(zip(out, right)):
        expect(got["label"] == expected["label"], f"sentence {i}: label {got['label']!r}, expected "
                                                  f"{expected['label']!r}, the likeliest")
        expect(math.isclose(float(got["score"]), expected["score"], abs_tol=1e-5),
               f"sentence {i}: score {float(got['score']):.4f}, expected {expected['score']:.4f}, the softmax "
               f"probability of {expected['label']!r}")


# --- tokenizing for datasets.map -----------------------------------------------------------------------------------

_PIECES = ["the", "film", "is", "a", "gorgeous", "witty", "dull", "mess", "movie", "not", "bad", "and", "but", "it",
           "was", "un", "##believ", "##able", "long", ".", ",", "!", "angela", "merk", "##el", "met", "micro", "##soft",
           "people", "in", "sea", "##ttle", "on", "tuesday", "paris", "visited", "john", "smith"]


@lru_cache(maxsize=1)
def checker_tokenizer() -> Any:
    """A small fast WordPiece tokenizer laid out as BERT's: [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4, lower-cased,
    `[CLS] A [SEP]` around every text; word ids work, so `is_split_into_words=True` does too."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    backend = Tokenizer(models.WordPiece({t: i for i, t in enumerate(specials + _PIECES)}, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                           special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=512)


_MAX_LEN = 12
_SENTENCES = {"sentence": ["a gorgeous, witty movie.", "not bad",
                           "it was long and dull, but the film is not a mess, it is unbelievable!", "dull"],
              "label": [1, 1, 0, 0], "idx": [0, 1, 2, 3]}


def _rows(value: Any, what: str) -> list[list[int]]:
    """`value` (a column: a list of rows) as lists of ints."""
    expect(not isinstance(value, (Tensor, np.ndarray)),
           f"{what} is a {type(value).__name__}: leave return_tensors out and return lists; the dataset stores rows "
           f"of different lengths, and the collator makes the tensors, batch by batch")
    expect(isinstance(value, (list, tuple)), f"{what} is a {type(value).__name__}; expected a list of rows")
    return [[int(i) for i in row] for row in value]


def _check_encoded(out: Any, reference: Mapping[str, Any], rows: int, what: str, text: str) -> list[list[int]]:
    """The checks the two tokenizing exercises share: a mapping of columns, one row per example, no padding, cut to
    _MAX_LEN, special tokens kept, and the tokenizer's own ids. Returns the input_ids rows."""
    expect(isinstance(out, Mapping), f"{what} returned a {type(out).__name__}; return a dict of columns (what the "
                                     f"tokenizer returns, plus 'labels')")
    expect("input_ids" in out, f"{what} has no 'input_ids' column; return the tokenizer's output (with labels added)")
    column = out["input_ids"]
    expect(not (isinstance(column, (list, tuple)) and column and isinstance(column[0], numbers.Integral)),
           f"{what}['input_ids'] is a single row of ids, {list(column)[:6]}...: map(batched=True) hands you whole "
           f"columns, so tokenize the whole list {text} at once, one row per example")
    ids = _rows(column, f"{what}['input_ids']")
    expect(len(ids) == rows, f"{what} returned {len(ids)} rows of input_ids for a batch of {rows} examples: "
                             f"map(batched=True) hands you whole columns, so tokenize the whole list {text} at once")
    right = _rows(reference["input_ids"], "the reference")
    pad = checker_tokenizer().pad_token_id
    padded = [i for i, (row, ok) in enumerate(zip(ids, right)) if len(row) > len(ok) and row[-1] == pad]
    if padded:
        raise Failed(f"row {padded[0]} is padded with [PAD] to {len(ids[padded[0]])} tokens: leave padding out here; "
                     f"the collator (DataCollatorWithPadding / DataCollatorForTokenClassification) pads each training "
                     f"batch to its own longest row, so a batch of short sentences carries no extra padding")
    longest = max(range(rows), key=lambda i: len(ids[i]))
    expect(len(ids[longest]) <= _MAX_LEN,
           f"row {longest} has {len(ids[longest])} tokens, more than max_len={_MAX_LEN}: tokenize with "
           f"truncation=True, max_length=max_len (without max_length the tokenizer cuts at its own, much longer, "
           f"limit)")
    cls, sep = checker_tokenizer().cls_token_id, checker_tokenizer().sep_token_id
    expect(all(row[:1] == [cls] and row[-1:] == [sep] for row in ids),
           "a row does not start with [CLS] and end with [SEP]: keep add_special_tokens (the default); the encoder "
           "was trained with them, and the sentence head reads [CLS]")
    for i, (row, ok) in enumerate(zip(ids, right)):
        expect(row == ok, f"row {i}'s ids {row} differ from the tokenizer's own {ok}")
    expect("attention_mask" in out, f"{what} has no 'attention_mask' column; keep what the tokenizer returns")
    return ids


def reference_tokenize_batch(batch: Mapping[str, list], tokenizer: Any, max_len: int) -> dict[str, list]:
    encoded = tokenizer(batch["sentence"], truncation=True, max_length=max_len)  # no padding: the collator pads
    return {**encoded, "labels": list(batch["label"])}


@exercise("tokenize_batch", "13",
          task="tokenize_batch(batch, tokenizer, max_len) → the columns for SST-2, what dataset.map(tokenize_batch, "
               "batched=True, fn_kwargs=...) adds: batch is a dict of lists ('sentence', 'label', 'idx'). Return "
               "the tokenizer's columns for every sentence (input_ids, attention_mask, ...), cut to max_len tokens "
               "and not padded, plus 'labels': the batch's labels",
          hint="encoded = tokenizer(batch['sentence'], truncation=True, max_length=max_len); return {**encoded, "
               "'labels': batch['label']}",
          reference=reference_tokenize_batch)
def check_tokenize_batch(answer: Callable[..., Any]) -> None:
    tokenizer = checker_tokenizer()
    batch = {key: list(values) for key, values in _SENTENCES.items()}
    what = f"tokenize_batch(a batch of {len(batch['sentence'])} SST-2 rows, tokenizer, max_len={_MAX_LEN})"
    out = answer(batch, tokenizer, _MAX_LEN)
    expect(batch == _SENTENCES, f"{what} changed the batch it was given; return new columns instead")
    reference = reference_tokenize_batch(batch, tokenizer, _MAX_LEN)
    _check_encoded(out, reference, len(batch["sentence"]), what, "batch['sentence']")
    expect("labels" in out, f"{what} has no 'labels' column"
                            + (": it is named 'label'; the models' forward takes labels=..., so name the column "
                               "'labels'" if "label" in out else ": add the batch's labels, 'labels': batch['label']"))
    labels = out["labels"]
    expect(isinstance(labels, (list, tuple)) and [int(x) for x in labels] == batch["label"],
           f"{what}['labels'] is {labels!r}, not the batch's labels {batch['label']}")


# Row 0 has the fewest words, so that labels read off row 0's word ids fit every row's tags (and show as wrong).
_TAGGED = {"tokens": [["John", "Smith", "visited", "Paris", "."],
                      ["Angela", "Merkel", "met", "Microsoft", "people", "in", "Seattle", "on", "Tuesday", "."],
                      ["the", "film", "is", "unbelievable", "!"]],
           "ner_tags": [[1, 2, 0, 5, 0], [1, 2, 0, 3, 0, 0, 5, 0, 0, 0], [0, 0, 0, 0, 0]]}


def _aligned(word_ids: list[int | None], tags: list[int], *, every_piece: bool = False,
             special: int = IGNORE_INDEX) -> list[int]:
    """One label per token from its word's tag: `special` on special tokens, -100 on a word's later pieces (or its
    tag again, every_piece=True)."""
    labels, previous = [], None
    for word in word_ids:
        if word is None:
            labels.append(special)
        elif word == previous and not every_piece:
            labels.append(IGNORE_INDEX)
        else:
            labels.append(tags[word])
        previous = word
    return labels


def reference_tokenize_and_align(batch: Mapping[str, list], tokenizer: Any, max_len: int) -> dict[str, list]:
    encoded = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_len)
    labels = []
    for i, tags in enumerate(batch["ner_tags"]):
        row, previous = [], None
        for word in encoded.word_ids(i):  # row i's word ids: None on [CLS] and [SEP]
            row.append(IGNORE_INDEX if word is None or word == previous else tags[word])
            previous = word
        labels.append(row)
    return {**encoded, "labels": labels}


@exercise("tokenize_and_align", "13",
          task="tokenize_and_align(batch, tokenizer, max_len) → the columns for CoNLL-2003, what dataset.map("
               "tokenize_and_align, batched=True, fn_kwargs=...) adds: batch['tokens'] is a list of sentences, each "
               "a list of words, batch['ner_tags'] one tag id per word. Return the tokenizer's columns (the words "
               "tokenized as already split, cut to max_len tokens, not padded) plus 'labels': one per token, the "
               "word's tag on its first piece, −100 on its later pieces and on the special tokens",
          hint="encoded = tokenizer(batch['tokens'], is_split_into_words=True, truncation=True, max_length=max_len); "
               "for each row i walk encoded.word_ids(i) (None on specials) remembering the previous word: None or "
               "the same word → −100, else tags[word]",
          reference=reference_tokenize_and_align)
def check_tokenize_and_align(answer: Callable[..., Any]) -> None:
    tokenizer = checker_tokenizer()
    batch = {key: [list(row) for row in rows] for key, rows in _TAGGED.items()}
    what = f"tokenize_and_align(a batch of {len(batch['tokens'])} CoNLL-2003 sentences, tokenizer, max_len={_MAX_LEN})"
    out = answer(batch, tokenizer, _MAX_LEN)
    expect(batch == _TAGGED, f"{what} changed the batch it was given; return new columns instead")
    reference = reference_tokenize_and_align(batch, tokenizer, _MAX_LEN)
    encoded = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=_MAX_LEN)
    ids = _check_encoded(out, reference, len(batch["tokens"]), what, "batch['tokens'] (is_split_into_words=True)")
    expect("labels" in out, f"{what} has no 'labels' column: add one label per token")
    labels = _rows(out["labels"], f"{what}['labels']")
    expect(len(labels) == len(ids), f"{what}['labels'] has {len(labels)} rows for {len(ids)} sentences")
    tags = batch["ner_tags"]
    mistakes = (
        ([_aligned(encoded.word_ids(i), t, special=0) for i, t in enumerate(tags)],
         "[CLS] and [SEP] got label 0, which is the tag 'O': special tokens get −100 (their word id is None), so the "
         "loss leaves them out"),
        ([_aligned(encoded.word_ids(i), t, every_piece=True) for i, t in enumerate(tags)],
         "every piece of a word carries the word's tag (unbelievable → un ##believ ##able, each tagged): only the "
         "first piece gets it, the later pieces −100, as notebook 06 trained the tagger"),
        ([_aligned(encoded.word_ids(0), t) for t in tags],
         "every row's labels follow row 0's word ids: encoded.word_ids() with no argument reads row 0; in a batched "
         "map, take row i's from encoded.word_ids(i)"),
    )
    for expected, message in mistakes:
        expect(labels != expected, message)
    for i, (row, tokens) in enumerate(zip(labels, ids)):
        expect(len(row) == len(tokens), f"row {i} has {len(row)} labels for {len(tokens)} tokens: one label per "
                                        f"token, [CLS] and [SEP] included (with −100)")
    for i, (got, right) in enumerate(zip(labels, reference["labels"])):
        expect(got == right, f"row {i}'s labels are {got}, expected {right} (tokens "
                             f"{tokenizer.convert_ids_to_tokens(ids[i])})")


# --- compute_metrics for Trainer ----------------------------------------------------------------------------------


def reference_compute_metrics(eval_pred: Any) -> dict[str, float]:
    logits, labels = eval_pred.predictions, eval_pred.label_ids  # numpy: (..., n_labels) and (...)
    predictions = logits.argmax(axis=-1)
    scored = labels != IGNORE_INDEX  # -100: a special token, a later word piece, padding
    return {"accuracy": float((predictions[scored] == labels[scored]).mean())}


def _metric_cases() -> list[tuple[str, Any]]:
    """(what, EvalPrediction): sentences (8 × 2 labels) and tagged sentences (3 × 6 tokens × 4 tags, -100 on their
    special tokens, later pieces and padding, and a different number of labelled tokens per sentence)."""
    from transformers import EvalPrediction

    sentence_logits = np.array([[2.0, -1.0], [0.3, 0.9], [1.5, 1.4], [-0.2, 0.4], [0.8, -0.8], [0.1, 0.2],
                                [1.0, 3.0], [0.5, -0.5]], dtype=np.float32)
    sentence_labels = np.array([0, 1, 1, 1, 0, 0, 0, 1])
    token_logits = np.asarray(seeded_randn(3, 6, 4, seed=1313), dtype=np.float32)
    token_labels = token_logits.argmax(-1)
    token_labels[0, 1] = (token_labels[0, 1] + 1) % 4  # a few wrong predictions among the labelled tokens
    token_labels[2, 2] = (token_labels[2, 2] + 1) % 4
    token_labels[:, 0] = IGNORE_INDEX  # [CLS]
    token_labels[0, 5] = token_labels[1, 3:] = token_labels[2, 4:] = IGNORE_INDEX  # [SEP], padding, later pieces
    return [("8 sentences, 2 labels", EvalPrediction(predictions=sentence_logits, label_ids=sentence_labels)),
            ("3 tagged sentences of 6 tokens, 4 tags, −100 on specials, later pieces and padding",
             EvalPrediction(predictions=token_logits, label_ids=token_labels))]


@exercise("compute_metrics", "13",
          task="compute_metrics(eval_pred) → {'accuracy': float}, what Trainer calls after evaluating: "
               "eval_pred.predictions are the logits (numpy, (n, n_labels) for sentences or (n, seq, n_labels) for "
               "tags) and eval_pred.label_ids the labels ((n,) or (n, seq)), −100 where nothing is scored. Return the "
               "share of scored positions whose highest-scoring label is the true one, pooled over all of them",
          hint="predictions = eval_pred.predictions.argmax(axis=-1); scored = eval_pred.label_ids != -100; return "
               "{'accuracy': float((predictions[scored] == eval_pred.label_ids[scored]).mean())}",
          reference=reference_compute_metrics)
def check_compute_metrics(answer: Callable[[Any], Any]) -> None:
    for case, eval_pred in _metric_cases():
        logits, labels = eval_pred.predictions.copy(), eval_pred.label_ids.copy()
        what = f"compute_metrics on {case}"
        out = answer(eval_pred)
        expect(np.array_equal(eval_pred.predictions, logits) and np.array_equal(eval_pred.label_ids, labels),
               f"{what} changed eval_pred's arrays in place; Trainer may read them again")
        expect(not isinstance(out, (numbers.Real, np.ndarray, Tensor)),
               f"{what} returned {out!r}, a bare number: Trainer logs a dict of metric names to numbers, "
               f"return {{'accuracy': ...}}")
        expect(isinstance(out, Mapping), f"{what} returned a {type(out).__name__}; return a dict, "
                                         f"{{'accuracy': ...}}")
        expect("accuracy" in out, f"{what} returned the keys {sorted(out)}; name the metric 'accuracy' (Trainer "
                                  f"logs it as eval_accuracy)")
        value = out["accuracy"]
        expect(isinstance(value, numbers.Real) and not isinstance(value, bool),
               f"{what}: accuracy is a {type(value).__name__}; give a float (float(...))")
        value = float(value)
        expect(value <= 1, f"{what}: accuracy {value:g} is above 1, a percentage; return the share, between 0 and 1")
        predictions = logits.argmax(-1)
        scored = labels != IGNORE_INDEX
        right = float((predictions[scored] == labels[scored]).mean())
        everywhere = float((predictions == labels).mean())
        expect(math.isclose(right, everywhere) or not math.isclose(value, everywhere, abs_tol=1e-6),
               f"{what}: accuracy {value:.4f} counts the −100 positions too (special tokens, later word pieces, "
               f"padding), which no prediction ever matches; leave them out: {right:.4f}")
        if labels.ndim == 2:
            per_row = [float((p[s] == t[s]).mean()) for p, t, s in zip(predictions, labels, scored)]
            expect(not math.isclose(value, float(np.mean(per_row)), abs_tol=1e-6),
                   f"{what}: accuracy {value:.4f} averages each sentence's accuracy, so a short sentence weighs as "
                   f"much as a long one; pool every scored token instead: {right:.4f}")
        expect(math.isclose(value, right, abs_tol=1e-6), f"{what}: accuracy {value:.4f}, expected {right:.4f}")
