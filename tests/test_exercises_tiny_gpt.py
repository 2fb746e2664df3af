"""Notebook 04's checkers: a right answer written by hand passes, each plausible mistake gets its own message, and
the references agree with labkit's own batching."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from labkit.corpus import random_batch
from labkit.exercises import check
from labkit.exercises.tiny_gpt import reference_next_char_batch


def test_the_batch_reference_cuts_the_windows_random_batch_cuts() -> None:
    ids = torch.arange(100) * 7 % 61
    x, y = random_batch(ids, 5, 12, generator=torch.Generator().manual_seed(3))
    starts = torch.randint(100 - 12, (5,), generator=torch.Generator().manual_seed(3))
    ref_x, ref_y = reference_next_char_batch(ids, starts, 12)
    assert torch.equal(ref_x, x) and torch.equal(ref_y, y)


def test_next_char_batch_written_by_hand_passes() -> None:
    def next_char_batch(ids, starts, block_size):
        x = torch.stack([ids[s:s + block_size] for s in starts.tolist()])
        y = torch.stack([ids[s + 1:s + block_size + 1] for s in starts.tolist()])
        return x, y

    assert check("next_char_batch", next_char_batch, quiet=True)


def _windows(ids, starts, length, shift=0):
    """ids[s + shift : s + shift + length] for every start s, by index (so shift -1 wraps at 0, as indexing does)."""
    return ids[starts[:, None] + shift + torch.arange(length)]


def _lr(step, warmup, total, top, bottom, *, from_one=True, floor=True, period=1.0, after_warmup=True, clamp=True):
    if step < warmup:
        return top * (step + 1 if from_one else step) / warmup
    progress = (step - warmup) / (total - warmup) if after_warmup else step / total
    progress = min(progress, 1.0) if clamp else progress
    low = bottom if floor else 0.0
    return low + 0.5 * (top - low) * (1 + math.cos(period * math.pi * progress))


def test_warmup_cosine_lr_written_by_hand_passes() -> None:
    assert check("warmup_cosine_lr", _lr, quiet=True)


def test_warmup_cosine_lr_without_warmup_must_not_divide_by_zero() -> None:
    result = check("warmup_cosine_lr", lambda s, w, t, top, low: _lr(s, w, t, top, low) + 0 * top / w, quiet=True)
    assert not result and "your function raised ZeroDivisionError" in result.message


def test_perplexity_written_by_hand_passes() -> None:
    def perplexity(logits, targets):
        log_probs = logits.log_softmax(-1).gather(-1, targets[..., None])
        return torch.exp(-log_probs.mean())

    assert check("perplexity", perplexity, quiet=True)


def _loss(logits, targets, reduction="mean"):
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction=reduction)


def _lr_with(**mistake):
    return lambda *args: _lr(*args, **mistake)


# exercise name → plausible wrong answers and a piece of the message each must get (run by test_exercises.py)
WRONG_ANSWERS = {
    "next_char_batch": [
        (lambda ids, s, b: (_windows(ids, s, b), _windows(ids, s, b)), "y equals x"),
        (lambda ids, s, b: (_windows(ids, s, b), _windows(ids, s, b, shift=-1)), "shifted the wrong way"),
        (lambda ids, s, b: (_windows(ids, s, b + 1), _windows(ids, s, b, 1)), "has shape (4, 9), expected (4, 8)"),
        (lambda ids, s, b: (_windows(ids, s, b, -1), _windows(ids, s, b)), "x[1] should be ids[17:25]"),
        (lambda ids, s, b: (_windows(ids, s, b), _windows(ids, s, b).roll(-1, dims=1)), "y[1] should be ids[18:26]"),
        (lambda ids, s, b: torch.stack([_windows(ids, s, b), _windows(ids, s, b, 1)]), "expected a pair (x, y)"),
    ],
    "warmup_cosine_lr": [
        (_lr_with(from_one=False), "step 0 gives 0"),
        (_lr_with(after_warmup=False), "measure progress from the end of warm-up"),
        (_lr_with(period=2.0), "that is a whole cosine period"),
        (_lr_with(floor=False), "the cosine decays to min_lr = 0.0001, not to 0"),
        (_lr_with(clamp=False), "clamp the progress to 1"),
    ],
    "perplexity": [
        (lambda lg, t: _loss(lg, t).item(), "the loss itself; perplexity is exp(loss)"),
        (lambda lg, t: 2 ** _loss(lg, t).item(), "the loss is in nats (natural log), so use exp"),
        (lambda lg, t: _loss(lg, t, "none").exp().mean(), "average the loss first, then take exp"),
        (lambda lg, t: _loss(lg, t, "sum").exp(), "should give perplexity 11"),
        (lambda lg, t: math.exp(F.nll_loss(lg.flatten(0, 1), t.flatten()).item()), "perplexity 11, got 1.0000"),
        (lambda lg, t: _loss(lg[:, -1:], t[:, -1:]).exp(), "expected exp(mean cross-entropy)"),
        (lambda lg, t: "11", "expected a number"),
    ],
}
