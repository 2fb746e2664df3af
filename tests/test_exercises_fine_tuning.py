"""Notebook 06's checkers: a right answer written by hand passes, each plausible mistake gets its own message, and
the span reading used to recognise mistakes agrees with seqeval."""

from __future__ import annotations

import pytest

from labkit.exercises import check
from labkit.exercises.fine_tuning import _scores
from labkit.finetune import entity_scores


def test_align_word_labels_written_by_hand_passes() -> None:
    def align_word_labels(word_ids, word_labels):
        seen, labels = set(), []
        for word in word_ids:
            labels.append(-100 if word is None or word in seen else word_labels[word])
            if word is not None:
                seen.add(word)
        return labels

    assert check("align_word_labels", align_word_labels, quiet=True)


def _align(word_ids, word_labels, special=-100, continuation=-100, last_piece=False):
    labels = []
    for i, word in enumerate(word_ids):
        if word is None:
            labels.append(special)
            continue
        neighbour = word_ids[i + 1] if last_piece else word_ids[i - 1]
        labels.append(continuation if neighbour == word else word_labels[word])
    return labels


@pytest.mark.parametrize("wrong, message", [
    (lambda w, l: _align(w, l, special=0), "the special tokens (word id None) must get −100"),
    (lambda w, l: [-100 if word is None else l[word] for word in w], "every piece of a word carries its label"),
    (lambda w, l: _align(w, l, last_piece=True), "the tag goes on each word's first piece"),
    (lambda w, l: _align(w, l)[:-1], "gave 8 labels for 9 tokens"),
    (lambda w, l: {"labels": _align(w, l)}, "returned a dict; expected a list"),
])
def test_align_word_labels_checker_fails_plausible_mistakes(wrong, message: str) -> None:
    result = check("align_word_labels", wrong, quiet=True)
    assert not result and message in result.message, result.message


@pytest.mark.parametrize("true, predicted", [
    ([["B-PER", "I-PER", "O", "B-LOC"], ["B-MISC", "O"]], [["B-PER", "I-PER", "O", "B-ORG"], ["B-MISC", "B-PER"]]),
    ([["O", "I-LOC", "I-LOC", "B-PER", "I-LOC", "I-PER"]], [["B-LOC", "I-LOC", "O", "I-PER", "I-PER", "B-PER"]]),
    ([["B-ORG", "I-ORG", "B-ORG", "O"]], [["B-ORG", "I-ORG", "I-ORG", "O"]]),
])
def test_the_span_reading_agrees_with_seqeval(true, predicted) -> None:
    ours, theirs = _scores(true, predicted), entity_scores(true, predicted)["overall"]
    assert ours["precision"] == pytest.approx(theirs["precision"]) and ours["recall"] == pytest.approx(theirs["recall"])
    assert ours["f1"] == pytest.approx(theirs["f1"])


def _spans(tags, strict=False):
    spans, current = set(), None
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, kind = tag.partition("-")
        if current and (prefix != "I" or kind != current[0]):
            spans.add((current[0], current[1], i - 1))
            current = None
        if prefix == "B" or (prefix == "I" and current is None and not strict):
            current = (kind, i)
    return spans


def _f1(true_tags, predicted_tags, strict=False, measure="f1", boundaries=True):
    def collect(tag_lists):
        return {(n, *(s if boundaries else s[:1])) for n, tags in enumerate(tag_lists) for s in _spans(tags, strict)}

    true, predicted = collect(true_tags), collect(predicted_tags)
    right = len(true & predicted)
    precision, recall = right / len(predicted), right / len(true)  # no guard: the last test wants the error
    if measure == "precision":
        return precision
    if measure == "recall":
        return recall
    return 2 * precision * recall / (precision + recall)


def test_entity_f1_written_by_hand_passes() -> None:
    def entity_f1(true_tags, predicted_tags):
        true, predicted = ({(n, *s) for n, tags in enumerate(t) for s in _spans(tags)}
                           for t in (true_tags, predicted_tags))
        right = len(true & predicted)
        return 0.0 if right == 0 else 2 * right / (len(true) + len(predicted))

    assert check("entity_f1", entity_f1, quiet=True)


@pytest.mark.parametrize("wrong, message", [
    (lambda t, p: _f1(t, p, measure="precision"), "that is the precision (0.4000)"),
    (lambda t, p: _f1(t, p, measure="recall"), "that is the recall (0.5000)"),
    (lambda t, p: _f1(t, p, boundaries=False), "it must match in type, start and end"),
    (lambda t, p: _f1(t, p, strict=True), "an I-X after O or after another type starts a new X entity"),
    (lambda t, p: _f1(t, p) if any(x != "O" for s in p for x in s) else 1.0, "expected 0.0000"),
    (lambda t, p: f"{_f1(t, p):.2f}", "expected a number"),
])
def test_entity_f1_checker_fails_plausible_mistakes(wrong, message: str) -> None:
    result = check("entity_f1", wrong, quiet=True)
    assert not result and message in result.message, result.message


def test_entity_f1_that_divides_by_zero_is_reported() -> None:
    result = check("entity_f1", _f1, quiet=True)
    assert not result and "your function raised ZeroDivisionError" in result.message
