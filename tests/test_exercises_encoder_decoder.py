"""Notebook 09's exercise checkers: each passes its reference and fails plausible mistakes with a message that
says what is wrong."""

from __future__ import annotations

import pytest
import torch

from labkit.exercises import check, exercises
from labkit.translation_data import EOS_ID, PAD_ID


def test_notebook_09_has_its_three_exercises() -> None:
    assert sorted(exercises("09")) == ["beam_score", "greedy_step", "shift_right"]
    for name, ex in exercises("09").items():
        assert check(name, ex.reference, quiet=True), name


@pytest.mark.parametrize("wrong, message", [
    (lambda tgt: (tgt, tgt), "each should be (batch, len - 1) = (2, 4)"),
    (lambda tgt: (tgt[:, 1:], tgt[:, :-1]), "the decoder input starts with [7, 5], not <bos>"),
    (lambda tgt: (tgt[:, :-1], tgt[:, 1:].masked_fill(tgt[:, 1:] == EOS_ID, PAD_ID)), "no label is <eos>"),
    (lambda tgt: (tgt[:, :-1], tgt[:, :-1]), "the decoder input equals the labels"),
    (lambda tgt: (tgt[:, :-1], torch.cat([tgt[:, :1], tgt[:, 2:]], 1)), "a label is <bos>"),
    (lambda tgt: tgt[:, :-1], "returned a Tensor; return two tensors"),
    (lambda tgt: (tgt[:, :-2], tgt[:, 2:]), "each should be (batch, len - 1) = (2, 4)"),
])
def test_shift_right_checker_fails_plausible_mistakes(wrong, message: str) -> None:
    result = check("shift_right", wrong, quiet=True)
    assert not result and message in result.message, result.message


@pytest.mark.parametrize("wrong, message", [
    (lambda logits, ys: torch.cat([ys, logits[:, 0].argmax(-1, keepdim=True)], 1), "the first position's choice"),
    (lambda logits, ys: torch.cat([ys, logits[:, -1].max(-1, keepdim=True).values], 1),
     "append token ids (argmax), not scores"),
    (lambda logits, ys: logits[:, -1].argmax(-1, keepdim=True), "returned shape (2, 1), expected"),
    (lambda logits, ys: torch.cat([ys[:, 1:], logits[:, -1].argmax(-1, keepdim=True)], 1),
     "returned shape (2, 3)"),
    (lambda logits, ys: torch.cat([logits[:, -1].argmax(-1, keepdim=True), ys], 1), "append, do not replace"),
    (lambda logits, ys: torch.cat([ys, logits[:, -2].argmax(-1, keepdim=True)], 1),
     "but the most likely next tokens are"),
])
def test_greedy_step_checker_fails_plausible_mistakes(wrong, message: str) -> None:
    result = check("greedy_step", wrong, quiet=True)
    assert not result and message in result.message, result.message


@pytest.mark.parametrize("wrong, message", [
    (lambda lp, alpha: float(lp.sum()), "the plain sum Σ log p whatever alpha is"),
    (lambda lp, alpha: float(lp.mean()), "the mean log-probability whatever alpha is"),
    (lambda lp, alpha: float(lp.sum().exp()) / len(lp) ** alpha, "the score stays in log space"),
    (lambda lp, alpha: float(lp.sum()) / (len(lp) * alpha) if alpha else float(lp.sum()),
     "you divided by length × alpha"),
    (lambda lp, alpha: float(lp.sum()) / (len(lp) - 1) ** alpha, "with alpha = 1.0 the score is -0.5000; got -0.6667"),
    (lambda lp, alpha: [float(lp.sum())], "returned a list; return one number"),
])
def test_beam_score_checker_fails_plausible_mistakes(wrong, message: str) -> None:
    result = check("beam_score", wrong, quiet=True)
    assert not result and message in result.message, result.message
