"""Notebook 09's exercises: the decoder's shifted input, one greedy step, a length-normalised beam score."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor

from labkit.exercises import expect, exercise
from labkit.translation_data import BOS_ID, EOS_ID, PAD_ID


def reference_shift_right(tgt: Tensor) -> tuple[Tensor, Tensor]:
    return tgt[:, :-1], tgt[:, 1:]


# <bos> 7 8 9 <eos>, and a shorter one padded after its <eos>
_TGT = torch.tensor([[BOS_ID, 7, 8, 9, EOS_ID], [BOS_ID, 5, 6, EOS_ID, PAD_ID]])


@exercise("shift_right", "09",
          task="shift_right(tgt) → (decoder input, labels) for tgt (batch, len) = <bos> y1 … yn <eos> (<pad>…): "
               "the decoder reads <bos> y1 … and must predict y1 … <eos>",
          hint="the input drops the last column (tgt[:, :-1]) and the labels drop the first, <bos> (tgt[:, 1:])",
          reference=reference_shift_right)
def check_shift_right(answer: Callable[[Tensor], Any]) -> None:
    out = answer(_TGT.clone())
    expect(isinstance(out, tuple) and len(out) == 2, f"returned a {type(out).__name__}; return two tensors: "
                                                     f"(decoder input, labels)")
    tgt_in, labels = out
    expect(isinstance(tgt_in, Tensor) and isinstance(labels, Tensor), "both parts must be tensors")
    expect(tgt_in.shape == labels.shape == (2, 4), f"the parts have shapes {tuple(tgt_in.shape)} and "
                                                   f"{tuple(labels.shape)}; each should be (batch, len - 1) = (2, 4)")
    expect(not torch.equal(tgt_in, labels), "the decoder input equals the labels: at every position the decoder "
                                            "would read the very token it must predict")
    expect(bool((tgt_in[:, 0] == BOS_ID).all()), f"the decoder input starts with {tgt_in[:, 0].tolist()}, not "
                                                 f"<bos> (id {BOS_ID}): the decoder's first step reads <bos>")
    expect(not (labels == BOS_ID).any(), "a label is <bos>: the decoder is never asked to write <bos>")
    expect(bool((labels == EOS_ID).any(1).all()), "no label is <eos>: the decoder must learn when to stop")
    expected_in, expected_labels = reference_shift_right(_TGT)
    expect(torch.equal(tgt_in, expected_in) and torch.equal(labels, expected_labels),
           f"got input {tgt_in.tolist()} and labels {labels.tolist()} for tgt {_TGT.tolist()}")


def reference_greedy_step(logits: Tensor, ys: Tensor) -> Tensor:
    return torch.cat([ys, logits[:, -1].argmax(-1, keepdim=True)], dim=1)


@exercise("greedy_step", "09",
          task="greedy_step(logits, ys) → ys with one more column: for logits (batch, len, vocab) of the decoder "
               "run on ys (batch, len), append each row's most likely next token",
          hint="the next token comes from the last position: logits[:, -1].argmax(-1), then torch.cat on dim 1",
          reference=reference_greedy_step)
def check_greedy_step(answer: Callable[[Tensor, Tensor], Any]) -> None:
    gen = torch.Generator().manual_seed(9)
    ys = torch.tensor([[BOS_ID, 5, 6], [BOS_ID, 7, 7]])
    logits = torch.randn(2, 3, 12, generator=gen)
    logits[:, 0, 4] += 10  # a first position that votes clearly for token 4, the last for something else
    logits[:, -1, 4] -= 10
    out = answer(logits.clone(), ys.clone())
    expect(isinstance(out, Tensor), f"returned a {type(out).__name__}, not a tensor")
    expect(out.shape == (2, 4), f"returned shape {tuple(out.shape)}, expected (batch, len + 1) = (2, 4)")
    expect(out.dtype == torch.long, f"returned dtype {out.dtype}: append token ids (argmax), not scores")
    expect(torch.equal(out[:, :3], ys), "the first columns must be ys as it was: append, do not replace")
    expected = reference_greedy_step(logits, ys)
    expect(not torch.equal(out[:, 3], logits[:, 0].argmax(-1)), "you took the first position's choice; the next "
                                                                "token is predicted at the last position")
    expect(torch.equal(out, expected), f"appended {out[:, 3].tolist()}, but the most likely next tokens are "
                                       f"{expected[:, 3].tolist()}")


def reference_beam_score(token_log_probs: Tensor, alpha: float) -> float:
    return float(token_log_probs.sum()) / len(token_log_probs) ** alpha


@exercise("beam_score", "09",
          task="beam_score(token_log_probs, alpha) → the length-normalised score Σ log p / length^alpha of a "
               "hypothesis whose tokens had log-probabilities token_log_probs (length,)",
          hint="add the log-probabilities (do not multiply probabilities), then divide by len(...) ** alpha",
          reference=reference_beam_score)
def check_beam_score(answer: Callable[[Tensor, float], Any]) -> None:
    log_probs = torch.tensor([-0.1, -0.5, -0.2, -1.2])
    total, length = float(log_probs.sum()), len(log_probs)
    close = lambda a, b: math.isclose(a, b, rel_tol=1e-4)  # noqa: E731
    for alpha in (1.0, 0.6, 0.0):
        score = answer(log_probs.clone(), alpha)
        expect(isinstance(score, (float, int)) or (isinstance(score, Tensor) and score.numel() == 1),
               f"returned a {type(score).__name__}; return one number")
        score = float(score)
        expect(not (close(score, math.exp(total)) or close(score, math.exp(total) / length ** alpha)),
               "that is built on the probability exp(Σ log p); the score stays in log space: Σ log p")
        expect(alpha == 0 or not close(score, total), "that is the plain sum Σ log p whatever alpha is: divide it "
                                                      "by length ** alpha, or longer hypotheses always lose")
        expect(alpha == 1 or not close(score, total / length), "that is the mean log-probability whatever alpha "
                                                               "is: alpha is the power of the length")
        expect(alpha in (0, 1) or not close(score, total / (length * alpha)),
               "you divided by length × alpha; divide by length to the power alpha")
        expected = reference_beam_score(log_probs, alpha)
        expect(close(score, expected), f"with alpha = {alpha} the score is {expected:.4f}; got {score:.4g}")
