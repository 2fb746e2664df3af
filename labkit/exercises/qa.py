"""Notebook 06's question-answering exercises (section 8): the best answer span from start and end logits, and
SQuAD's token F1 between a predicted and a true answer. The rules are labkit's (`labkit.qa`)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, Callable

import torch
from torch import Tensor

from labkit.exercises import Failed, expect, exercise
from labkit.exercises._compare import seeded_randn
from labkit.qa import best_span, normalize_answer, token_f1


# --- the best span ------------------------------------------------------------------------------------------------

def reference_best_span(start_logits: Tensor, end_logits: Tensor, passage_mask: Tensor,
                        max_answer_len: int) -> tuple[int, int]:
    return best_span(start_logits, end_logits, passage_mask, max_answer_len)


# Twelve tokens: [CLS] at 0, the question at 1-3, [SEP] at 4, the passage at 5-10, [SEP] at 11. Each case tempts one
# mistake: the question's tokens score highest; the best end lies before the best start; the best pair is longer
# than max_answer_len, or one token longer; or adding probabilities instead of logits picks another pair.
_PASSAGE = torch.tensor([False] * 5 + [True] * 6 + [False])
_SPAN_CASES = {
    "the question's tokens score highest":
        ([0.2, 0.1, 4.0, 0.3, -1, 1.0, 0.5, 0.2, -0.3, 0.4, 0.1, -2],
         [0.1, 0.3, 0.5, 3.5, -1, 0.2, 1.2, 0.1, 0.3, -0.2, 0.6, -2]),
    "the best end lies before the best start":
        ([-1, 0, 0, 0, -1, 0.1, 0.3, 0.2, 1.5, 0.4, 0.2, -1], [-1, 0, 0, 0, -1, 0.2, 1.4, 0.6, 0.1, 0.5, 0.3, -1]),
    "the best pair is far longer than the limit":
        ([-1, 0, 0, 0, -1, 2.0, 0.1, 0.2, 0.3, 0.4, 0.5, -1], [-1, 0, 0, 0, -1, 0.1, 0.2, 0.9, 0.1, 0.3, 2.2, -1]),
    "the best pair is one token longer than the limit":
        ([-1, 0, 0, 0, -1, 0.1, 2.0, 0.3, 0.4, 0.2, 0.1, -1], [-1, 0, 0, 0, -1, 0.2, 0.1, 0.3, 0.8, 1.9, 0.0, -1]),
}


def _as_int(value: Any) -> int | None:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_floating_point():
        return int(value)
    return None


def _span_of(result: Any, what: str) -> tuple[int, int]:
    pair = list(result) if isinstance(result, (tuple, list, Tensor)) else None
    expect(pair is not None and len(pair) == 2, f"{what} returned {result!r}; expected a pair (start, end)")
    start, end = _as_int(pair[0]), _as_int(pair[1])
    expect(start is not None and end is not None, f"{what} returned {result!r}; expected two ints (token positions)")
    return start, end


def _probability_span(start_logits: Tensor, end_logits: Tensor, passage: Tensor, max_len: int) -> tuple[int, int]:
    """The span a search adding probabilities (softmax) instead of logits would pick."""
    return best_span(start_logits.softmax(-1), end_logits.softmax(-1), passage, max_len)


@exercise("best_span", "06",
          task="best_span(start_logits, end_logits, passage_mask, max_answer_len) → (start, end): the pair of token "
               "positions with the highest start_logits[start] + end_logits[end], such that start ≤ end, the span "
               "holds at most max_answer_len tokens (end − start + 1), and both are passage tokens (passage_mask, "
               "bool (seq,), is True there); end is the answer's last token, inclusive",
          hint="scores = start_logits[:, None] + end_logits[None, :] (start, end); keep the pairs with end ≥ start, "
               "end − start + 1 ≤ max_answer_len and both in the passage (set the others to −inf), then divmod the "
               "flat argmax by seq; or two loops over start and end keeping the best",
          reference=reference_best_span)
def check_best_span(answer: Callable[..., Any]) -> None:
    max_len = 3
    cases = {name: (torch.tensor(s), torch.tensor(e), _PASSAGE, max_len) for name, (s, e) in _SPAN_CASES.items()}
    g = torch.Generator().manual_seed(11)
    passage = torch.rand(20, generator=g) < 0.7
    passage[:3] = False
    cases["random logits over 20 tokens"] = (seeded_randn(20, seed=12), seeded_randn(20, seed=13), passage, 4)
    for name, (start_logits, end_logits, mask, limit) in cases.items():
        what = f"best_span on '{name}' (max_answer_len={limit})"
        start, end = _span_of(answer(start_logits.clone(), end_logits.clone(), mask.clone(), limit), what)
        expected = reference_best_span(start_logits, end_logits, mask, limit)
        if (start, end) == expected:
            continue
        n = len(mask)
        expect(0 <= start < n and 0 <= end < n, f"{what} = ({start}, {end}): positions must lie in 0..{n - 1}")
        outside = [p for p in (start, end) if not mask[p]]
        expect(not outside, f"{what} = ({start}, {end}): token {outside[0] if outside else ''} is not in the passage "
                            f"(a question token or a special one); the answer's start and end must both have "
                            f"passage_mask True")
        expect(start <= end, f"{what} = ({start}, {end}): the end comes before the start; taking the best start and "
                             f"the best end separately can do that. Search the pairs with start ≤ end")
        length = end - start + 1
        expect(length != limit + 1, f"{what} = ({start}, {end}) holds {length} tokens, one more than max_answer_len "
                                    f"= {limit}: the span holds end − start + 1 tokens")
        expect(length <= limit, f"{what} = ({start}, {end}) holds {length} tokens, more than max_answer_len = {limit}")
        expect((start, end - 1) != expected, f"{what} = ({start}, {end}), expected {expected}: end is the answer's "
                                             f"last token (inclusive), not one past it")
        expect((start, end) != _probability_span(start_logits, end_logits, mask, limit),
               f"{what} = ({start}, {end}), expected {expected}: you added probabilities; add the logits (the "
               f"log-probabilities up to a constant, so the sum scores the pair)")
        score = float(start_logits[start] + end_logits[end])
        best = float(start_logits[expected[0]] + end_logits[expected[1]])
        raise Failed(f"{what} = ({start}, {end}) scores {score:.3f}; {expected} is allowed too and scores {best:.3f}")


# --- token F1 -----------------------------------------------------------------------------------------------------

def reference_token_f1(prediction: str, truth: str) -> float:
    return token_f1(prediction, truth)


# (prediction, truth), each testing one rule; the first two are the notebook's worked examples
_F1_CASES = (("the Eiffel Tower", "Eiffel tower"), ("in Paris, France", "Paris"), ("York York", "New York"),
             ("Werner Zwingmann", "Zwingmann"), ("", "Paris"))


def _f1_from(predicted: Sequence[str], true: Sequence[str], shared: int) -> float:
    if shared == 0:
        return 0.0
    precision, recall = shared / len(predicted), shared / len(true)
    return 2 * precision * recall / (precision + recall)


def _f1_mistakes(prediction: str, truth: str) -> dict[str, float]:
    """What each mistake computes on one pair."""
    predicted, true = normalize_answer(prediction).split(), normalize_answer(truth).split()
    shared = sum(1 for t in set(predicted) for _ in range(min(predicted.count(t), true.count(t))))
    raw_p, raw_t = prediction.split(), truth.split()
    low_p, low_t = prediction.lower().split(), truth.lower().split()
    return {
        "precision": shared / len(predicted) if predicted else 0.0,
        "recall": shared / len(true) if true else 0.0,
        "raw": _f1_from(raw_p, raw_t, sum(min(raw_p.count(t), raw_t.count(t)) for t in set(raw_p))),
        "lower": _f1_from(low_p, low_t, sum(min(low_p.count(t), low_t.count(t)) for t in set(low_p))),
        "membership": _f1_from(predicted, true, sum(1 for t in predicted if t in true)),
        "percent": 100 * token_f1(prediction, truth),
    }


_F1_MESSAGES = {
    "precision": "that is the precision (shared / predicted tokens); F1 combines it with the recall",
    "recall": "that is the recall (shared / true tokens); F1 combines it with the precision",
    "raw": "the answers were not normalised: compare normalize_answer(prediction) with normalize_answer(truth), "
           "which lower-cases and drops punctuation and the articles",
    "lower": "lower-casing is not all of SQuAD's normalisation: punctuation and a / an / the go too "
             "(normalize_answer does it all)",
    "membership": "a shared token counts at most as often as it appears in both answers (Counter(a) & Counter(b)), "
                  "not once for every predicted token found in the truth",
    "percent": "that is a percentage; return F1 as a fraction in [0, 1]",
}


@exercise("token_f1", "06",
          task="token_f1(prediction, truth) → SQuAD's F1 of two answer texts: normalise both with normalize_answer, "
               "split into tokens, count the shared tokens (each at most as often as it appears in both), then "
               "precision = shared / predicted tokens, recall = shared / true tokens, F1 = 2PR / (P + R); 0.0 when "
               "nothing is shared",
          hint="p, t = normalize_answer(prediction).split(), normalize_answer(truth).split(); shared = "
               "sum((Counter(p) & Counter(t)).values()); return 0.0 if shared == 0 (before dividing), else 2PR/(P+R)",
          reference=reference_token_f1)
def check_token_f1(answer: Callable[[str, str], Any]) -> None:
    for prediction, truth in _F1_CASES:
        what = f"token_f1({prediction!r}, {truth!r})"
        value = answer(prediction, truth)
        expect(isinstance(value, numbers.Real) and not isinstance(value, bool),
               f"{what} returned {value!r}; expected a number")
        expected = reference_token_f1(prediction, truth)
        if math.isclose(value, expected, abs_tol=1e-6):
            continue
        for mistake, wrong in _f1_mistakes(prediction, truth).items():
            expect(not math.isclose(value, wrong, abs_tol=1e-6), f"{what} = {value:.4f}: {_F1_MESSAGES[mistake]}")
        raise Failed(f"{what} = {value:.4f}, expected {expected:.4f}")
