"""Notebook 06's exercises: word labels aligned to word pieces, and entity-level F1 from IOB2 tags."""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Sequence

from labkit.exercises import expect, exercise
from labkit.finetune import IGNORE_INDEX, align_labels, entity_scores


def reference_align_word_labels(word_ids: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    return align_labels(word_ids, word_labels)


@exercise("align_word_labels", "06",
          task="align_word_labels(word_ids, word_labels) → one label per token: the first piece of each word gets "
               "the word's label; later pieces of the same word and special tokens (word id None) get −100",
          hint="walk through word_ids remembering the previous one: None or the same word as before → −100, "
               "otherwise word_labels[word]",
          reference=reference_align_word_labels)
def check_align_word_labels(answer: Callable[[Sequence[int | None], Sequence[int]], Any]) -> None:
    cases = (([None, 0, 1, 1, 1, 2, 3, 3, None], [3, 0, 1, 2]),  # [CLS] w0 w1 ##w1 ##w1 w2 w3 ##w3 [SEP]
             ([None, 0, 0, 1, None, None], [5, 6]))  # ... [SEP] [PAD]
    for word_ids, word_labels in cases:
        what = f"align_word_labels({word_ids}, {word_labels})"
        result = answer(list(word_ids), list(word_labels))
        expect(isinstance(result, (list, tuple)), f"{what} returned a {type(result).__name__}; expected a list")
        got = [int(label) for label in result]
        expected = reference_align_word_labels(word_ids, word_labels)
        expect(len(got) == len(word_ids), f"{what} gave {len(got)} labels for {len(word_ids)} tokens; "
                                          f"expected one per token")
        specials = [i for i, w in enumerate(word_ids) if w is None]
        expect(all(got[i] == IGNORE_INDEX for i in specials),
               f"{what} = {got}: the special tokens (word id None) must get −100, so the loss skips them")
        every_piece = [IGNORE_INDEX if w is None else word_labels[w] for w in word_ids]
        expect(got != every_piece, f"{what} = {got}: every piece of a word carries its label; only the first "
                                   f"piece does, the later ones get −100")
        expect(got == expected, f"{what} = {got}, expected {expected}: the tag goes on each word's first piece")


def _entities(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """The (type, first, last) entities of one IOB2 tag sequence, read as conlleval does: an entity starts at B-X,
    or at an I-X that does not continue an X entity, and runs while I-X follows."""
    found, current = set(), None
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, kind = tag.partition("-")
        continues = prefix == "I" and current is not None and current[0] == kind
        if current is not None and not continues:
            found.add((current[0], current[1], i - 1))
            current = None
        if prefix in ("B", "I") and not continues:
            current = (kind, i)
    return found


def _scores(true_tags: Sequence[Sequence[str]], predicted_tags: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level precision, recall and F1 of the sentences together, and F1 with the boundaries ignored."""
    true = {(n, *e) for n, tags in enumerate(true_tags) for e in _entities(tags)}
    predicted = {(n, *e) for n, tags in enumerate(predicted_tags) for e in _entities(tags)}
    right = len(true & predicted)
    precision, recall = right / len(predicted) if predicted else 0.0, right / len(true) if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if right else 0.0
    typed_true, typed_predicted = ({(n, kind) for n, kind, *_ in s} for s in (true, predicted))
    loose = 2 * len(typed_true & typed_predicted) / (len(typed_true) + len(typed_predicted))
    return {"precision": precision, "recall": recall, "f1": f1, "types only": loose}


def reference_entity_f1(true_tags: Sequence[Sequence[str]], predicted_tags: Sequence[Sequence[str]]) -> float:
    return entity_scores(true_tags, predicted_tags)["overall"]["f1"]


@exercise("entity_f1", "06",
          task="entity_f1(true_tags, predicted_tags) → entity-level F1 over all sentences (lists of IOB2 tags): an "
               "entity counts as found only when its type and both boundaries match. An entity starts at B-X, or "
               "at an I-X that does not continue an X entity, and runs while I-X follows. F1 is 0 when nothing "
               "is right",
          hint="collect (sentence, type, start, end) spans from both tag lists; precision = right / predicted, "
               "recall = right / true, F1 = 2·P·R / (P + R), and 0 when no span is right (no division by zero)",
          reference=reference_entity_f1)
def check_entity_f1(answer: Callable[[Sequence[Sequence[str]], Sequence[Sequence[str]]], Any]) -> None:
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "I-ORG", "I-ORG", "O"], ["B-MISC", "O"]]
    predicted = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "B-ORG", "I-ORG", "O", "O"], ["B-MISC", "B-PER"]]
    ill_formed_true = [["O", "I-LOC", "I-LOC", "O", "B-PER", "I-LOC"]]  # LOC 1–2, PER 4, LOC 5
    ill_formed_predicted = [["O", "B-LOC", "I-LOC", "O", "B-PER", "B-LOC"]]
    cases = {
        "the sentences": (true, predicted),
        "tags where an I- starts an entity": (ill_formed_true, ill_formed_predicted),
        "a prediction with no entities": (true, [["O"] * len(t) for t in true]),
    }
    for name, (t, p) in cases.items():
        value = answer([list(s) for s in t], [list(s) for s in p])
        expect(isinstance(value, numbers.Real), f"on {name}, entity_f1 returned {value!r}; expected a number")
        scores, expected = _scores(t, p), reference_entity_f1(t, p)
        wrong = {
            "precision": f"that is the precision ({scores['precision']:.4f}); F1 combines it with the recall",
            "recall": f"that is the recall ({scores['recall']:.4f}); F1 combines it with the precision",
            "types only": "an entity counted although its boundaries differ; it must match in type, start and end",
        }
        for key, message in wrong.items():
            expect(not (name == "the sentences" and math.isclose(value, scores[key], abs_tol=1e-6)),
                   f"entity_f1 = {value:.4f} on {name}: {message}")
        expect(math.isclose(value, expected, abs_tol=1e-6),
               f"entity_f1 = {value:.4f} on {name}, expected {expected:.4f}" +
               (": an I-X after O or after another type starts a new X entity" if name.startswith("tags") else ""))
