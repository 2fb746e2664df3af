"""Fine-tuning metrics: accuracy and the confusion matrix; entity-level precision / recall / F1 with seqeval (after
`token_predictions_to_tags` turns token predictions back into word-level tag lists); `trainer_metrics` for Hugging
Face `Trainer`; and `entity_spans`, the entities a tag list marks."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from labkit.finetune_data import _check_label_names, _check_same_length, _check_task
from labkit.modules import IGNORE_INDEX
from labkit.validate import require_positive_int

__all__ = ["accuracy", "confusion_matrix", "token_predictions_to_tags", "entity_scores", "trainer_metrics",
           "entity_spans"]


def _ids_and_labels(predictions: Any, labels: Any) -> tuple[Tensor, Tensor]:
    """Predicted ids and labels, flattened, without the -100 positions; predictions may be ids or logits (..., C)."""
    predictions, labels = torch.as_tensor(predictions), torch.as_tensor(labels)
    if predictions.dim() == labels.dim() + 1:
        predictions = predictions.argmax(-1)
    if predictions.shape != labels.shape:
        raise ValueError(f"predictions must be ids shaped like labels {tuple(labels.shape)} or logits with one more "
                         f"dim, got shape {tuple(predictions.shape)}")
    keep = labels != IGNORE_INDEX
    if not keep.any():
        raise ValueError("labels holds no scored position (all are -100 or it is empty)")
    return predictions[keep].long(), labels[keep].long()


def accuracy(predictions: Any, labels: Any) -> float:
    """Fraction of predictions equal to labels, -100 labels left out. predictions: ids (...) or logits (..., C)."""
    predicted, true = _ids_and_labels(predictions, labels)
    return (predicted == true).float().mean().item()


def confusion_matrix(predictions: Any, labels: Any, n_classes: int) -> Tensor:
    """Counts (n_classes, n_classes), rows = true class, columns = predicted; -100 labels left out."""
    require_positive_int("n_classes", n_classes)
    predicted, true = _ids_and_labels(predictions, labels)
    for name, ids in (("predictions", predicted), ("labels", true)):
        outside = ids[(ids < 0) | (ids >= n_classes)]
        if len(outside):
            raise ValueError(f"{name} holds class {int(outside[0])}; expected ids in 0..{n_classes - 1} "
                             f"(n_classes={n_classes})")
    counts = torch.bincount(true * n_classes + predicted, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes)


def token_predictions_to_tags(predictions: Any, labels: Any,
                              label_names: Sequence[str]) -> tuple[list[list[str]], list[list[str]]]:
    """(true tag lists, predicted tag lists), one tag per word: positions labelled -100 are dropped.

    predictions: ids (batch, seq) or logits (batch, seq, n_tags); labels: (batch, seq), as from `encode_tagged`.
    """
    _check_label_names(label_names)
    predictions, labels = torch.as_tensor(predictions), torch.as_tensor(labels)
    if predictions.dim() == 3:
        predictions = predictions.argmax(-1)
    if labels.dim() != 2 or predictions.shape != labels.shape:
        raise ValueError(f"predictions must be ids (batch, seq) or logits (batch, seq, n_tags) matching labels "
                         f"(batch, seq); got shapes {tuple(predictions.shape)} and {tuple(labels.shape)}")
    n = len(label_names)
    true_tags, predicted_tags = [], []
    for row_predictions, row_labels in zip(predictions.tolist(), labels.tolist()):
        kept = [(p, t) for p, t in zip(row_predictions, row_labels) if t != IGNORE_INDEX]
        outside = [i for pair in kept for i in pair if not 0 <= i < n]
        if outside:
            raise ValueError(f"tag id {outside[0]} is outside label_names; expected ids in 0..{n - 1}")
        true_tags.append([label_names[t] for _, t in kept])
        predicted_tags.append([label_names[p] for p, _ in kept])
    return true_tags, predicted_tags


def entity_scores(true_tag_lists: Sequence[Sequence[str]],
                  predicted_tag_lists: Sequence[Sequence[str]]) -> dict[str, dict[str, float]]:
    """Entity-level precision, recall, f1 and support per type and "overall" (micro average), with seqeval.

    An entity counts as right only when its type and both boundaries match (seqeval's default mode, the CoNLL
    conlleval convention for IOB tags). A type never predicted has precision 0; never true, recall 0.
    """
    from seqeval.metrics import classification_report

    true_tags, predicted_tags = [list(t) for t in true_tag_lists], [list(t) for t in predicted_tag_lists]
    _check_same_length("true_tag_lists", true_tags, "predicted_tag_lists", predicted_tags)
    for i, (true, predicted) in enumerate(zip(true_tags, predicted_tags)):
        if len(true) != len(predicted):
            raise ValueError(f"true_tag_lists[{i}] has {len(true)} tags but predicted_tag_lists[{i}] has "
                             f"{len(predicted)}; expected one tag per word in both")
        for name, tags in (("true_tag_lists", true), ("predicted_tag_lists", predicted)):
            bad = next((t for t in tags if not isinstance(t, str) or not (t == "O" or t[:2] in ("B-", "I-"))), None)
            if bad is not None:
                raise ValueError(f"{name}[{i}] holds the tag {bad!r}; IOB2 tags are 'O', 'B-<type>' or 'I-<type>'")
    with warnings.catch_warnings():  # the macro average of zero entity types warns; it is not used here
        warnings.simplefilter("ignore", RuntimeWarning)
        report = classification_report(true_tags, predicted_tags, output_dict=True, zero_division=0)
    return {"overall" if name == "micro avg" else name: {"precision": float(row["precision"]),
                                                         "recall": float(row["recall"]),
                                                         "f1": float(row["f1-score"]),
                                                         "support": int(row["support"])}
            for name, row in report.items() if name not in ("macro avg", "weighted avg")}


def trainer_metrics(task: str, label_names: Sequence[str] | None = None) -> Callable[[Any], dict[str, float]]:
    """A `compute_metrics` for Hugging Face `Trainer`: accuracy ("sentence"), or entity scores ("token").

    The returned function takes `(logits, labels)` (an `EvalPrediction`); "token" needs label_names to name tags.
    """
    _check_task(task)
    if task == "token":
        if label_names is None:
            raise ValueError("task='token' needs label_names (the tag names, e.g. labkit.data.NER_TAGS), got None")
        _check_label_names(label_names)

    def compute(eval_prediction: Any) -> dict[str, float]:
        logits, labels = eval_prediction[0], eval_prediction[1]
        if task == "sentence":
            return {"accuracy": accuracy(logits, labels)}
        overall = entity_scores(*token_predictions_to_tags(logits, labels, label_names))["overall"]
        return {"precision": overall["precision"], "recall": overall["recall"], "f1": overall["f1"],
                "accuracy": accuracy(logits, labels)}

    return compute


def entity_spans(tagged: Sequence[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    """(word, IOB2 tag) pairs → (text, entity type or None) spans: B-X starts an X entity, I-X continues one of the
    same type (an I-X after anything else starts one, as seqeval reads it), O and None are plain text."""
    spans: list[tuple[str, str | None]] = []
    inside = None
    for word, tag in tagged:
        if not isinstance(word, str) or not (tag is None or isinstance(tag, str)):
            raise TypeError(f"tagged must hold (word, tag) pairs of strings (tag None for plain text), got "
                            f"{(word, tag)!r}")
        kind = tag[2:] if tag and tag[:2] in ("B-", "I-") else None
        if kind is not None and tag.startswith("I-") and kind == inside:
            spans[-1] = (f"{spans[-1][0]} {word}", kind)
        else:
            spans.append((word, kind))
        inside = kind
    return spans
