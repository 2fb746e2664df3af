"""Notebook 06's question-answering checkers: right answers written by hand pass, each plausible mistake is refused
with its own message (WRONG_ANSWERS, run by tests/test_exercises.py), and the references are labkit.qa's."""

from __future__ import annotations

from collections import Counter

import torch

from labkit.exercises import check
from labkit.exercises.qa import _SPAN_CASES, reference_best_span, reference_token_f1
from labkit.qa import best_span, normalize_answer, token_f1

# --- wrong answers: the best span ---------------------------------------------------------------------------------


def _search(*, in_passage=True, ordered=True, limit_extra=0, limit=True, probabilities=False, exclusive=False,
            as_float=False):
    def best_span(start_logits, end_logits, passage_mask, max_answer_len):
        if probabilities:
            start_logits, end_logits = start_logits.softmax(-1), end_logits.softmax(-1)
        best, pair = None, None
        for i in range(len(start_logits)):
            for j in range(len(end_logits)):
                if in_passage and not (passage_mask[i] and passage_mask[j]):
                    continue
                if ordered and j < i:
                    continue
                if limit and j - i + 1 > max_answer_len + limit_extra:
                    continue
                score = start_logits[i] + end_logits[j]
                if best is None or score > best:
                    best, pair = score, (i, j)
        start, end = pair[0], pair[1] + int(exclusive)
        return (float(start), float(end)) if as_float else (start, end)
    return best_span


def _separately(start_logits, end_logits, passage_mask, max_answer_len):
    outside = ~passage_mask.bool()
    return (int(start_logits.masked_fill(outside, float("-inf")).argmax()),
            int(end_logits.masked_fill(outside, float("-inf")).argmax()))


# --- wrong answers: token F1 --------------------------------------------------------------------------------------


def _f1(*, normalise=normalize_answer, multiplicity=True, measure="f1", scale=1.0, guard=True, as_text=False):
    def token_f1(prediction, truth):
        predicted, true = normalise(prediction).split(), normalise(truth).split()
        if multiplicity:
            shared = sum((Counter(predicted) & Counter(true)).values())
        else:
            shared = sum(1 for token in predicted if token in true)
        if guard and shared == 0:
            return 0.0
        precision, recall = shared / len(predicted), shared / len(true)
        value = {"precision": precision, "recall": recall,
                 "f1": 2 * precision * recall / (precision + recall) if shared else 0.0}[measure]
        return f"{value * scale:.3f}" if as_text else value * scale
    return token_f1


WRONG_ANSWERS = {
    "best_span": [
        (_search(in_passage=False), "is not in the passage"),
        (_separately, "the end comes before the start"),
        (_search(ordered=False), "the end comes before the start"),
        (_search(limit=False), "more than max_answer_len = 3"),
        (_search(limit_extra=1), "one more than max_answer_len = 3"),
        (_search(exclusive=True), "not one past it"),
        (_search(probabilities=True), "you added probabilities"),
        (_search(as_float=True), "expected two ints"),
        (lambda s, e, m, n: {"start": 5, "end": 6}, "expected a pair (start, end)"),
    ],
    "token_f1": [
        (_f1(normalise=lambda text: text), "the answers were not normalised"),
        (_f1(normalise=str.lower), "lower-casing is not all of SQuAD's normalisation"),
        (_f1(measure="precision"), "that is the precision"),
        (_f1(measure="recall"), "that is the recall"),
        (_f1(multiplicity=False), "a shared token counts at most as often"),
        (_f1(scale=100.0), "that is a percentage"),
        (_f1(guard=False), "your function raised ZeroDivisionError"),
        (_f1(as_text=True), "expected a number"),
    ],
}


# --- right answers written by hand pass ---------------------------------------------------------------------------


def test_answers_written_by_hand_pass() -> None:
    def vectorised_best_span(start_logits, end_logits, passage_mask, max_answer_len):
        seq = len(start_logits)
        scores = start_logits[:, None] + end_logits[None, :]
        lengths = torch.arange(seq)[None, :] - torch.arange(seq)[:, None]
        allowed = (lengths >= 0) & (lengths < max_answer_len) & passage_mask[:, None] & passage_mask[None, :]
        start, end = divmod(int(scores.masked_fill(~allowed, float("-inf")).argmax()), seq)
        return start, end

    def token_f1_by_hand(prediction, truth):
        predicted, true = normalize_answer(prediction).split(), normalize_answer(truth).split()
        left, shared = list(true), 0
        for token in predicted:
            if token in left:
                left.remove(token)
                shared += 1
        return 0 if shared == 0 else 2 * shared / (len(predicted) + len(true))

    for name, answer in (("best_span", vectorised_best_span), ("best_span", _search()),
                         ("token_f1", token_f1_by_hand), ("token_f1", _f1())):
        result = check(name, answer, quiet=True)
        assert result, result.message


def test_the_references_are_labkits_and_each_case_tempts_its_mistake() -> None:
    passage = torch.tensor([False] * 5 + [True] * 6 + [False])
    for start, end in _SPAN_CASES.values():
        start, end = torch.tensor(start), torch.tensor(end)
        assert reference_best_span(start, end, passage, 3) == best_span(start, end, passage, 3) == \
            _search()(start, end, passage, 3)
    tempted = [_search(in_passage=False), _separately, _search(limit=False), _search(limit_extra=1)]
    for (start, end), mistake in zip(_SPAN_CASES.values(), tempted):  # case k catches mistake k
        start, end = torch.tensor(start), torch.tensor(end)
        assert mistake(start, end, passage, 3) != best_span(start, end, passage, 3)
    assert reference_token_f1("in Paris, France", "Paris") == token_f1("in Paris, France", "Paris") == 0.5
