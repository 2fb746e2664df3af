"""Notebook 04's exercises: (x, y) windows for next-character prediction, warm-up + cosine decay, perplexity."""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from labkit.exercises import expect, exercise
from labkit.exercises._compare import expect_tensor
from labkit.loop import lr_at
from labkit.presets import TrainConfig


def reference_next_char_batch(ids: Tensor, starts: Tensor, block_size: int) -> tuple[Tensor, Tensor]:
    offsets = starts[:, None] + torch.arange(block_size)  # (batch, block_size)
    return ids[offsets], ids[offsets + 1]


@exercise("next_char_batch", "04",
          task="next_char_batch(ids, starts, block_size) → (x, y), each (batch, block_size): row b of x is the "
               "window ids[s : s + block_size] at s = starts[b], and y is the same window one character later",
          hint="x[b] = ids[s : s + block_size] and y[b] = ids[s + 1 : s + block_size + 1]: y[b, t] is the "
               "character that follows x[b, t]",
          reference=reference_next_char_batch)
def check_next_char_batch(answer: Callable[[Tensor, Tensor, int], Any]) -> None:
    ids = torch.randint(65, (60,), generator=torch.Generator().manual_seed(0))
    block_size, starts = 8, torch.tensor([0, 17, 30, 51])  # 51 = the last start whose target window still fits
    result = answer(ids.clone(), starts.clone(), block_size)
    expect(isinstance(result, tuple) and len(result) == 2,
           f"next_char_batch returned {type(result).__name__}; expected a pair (x, y)")
    what = "next_char_batch(ids, starts=[0, 17, 30, 51], block_size=8)"
    x = expect_tensor(result[0], (4, block_size), f"x of {what}")
    y = expect_tensor(result[1], (4, block_size), f"y of {what}")
    expected_x, expected_y = reference_next_char_batch(ids, starts, block_size)
    expect(torch.equal(x, expected_x), f"x[1] should be ids[17:25] = {expected_x[1].tolist()}, got {x[1].tolist()}")
    expect(not torch.equal(y, x), "y equals x: the model would learn to copy its input; the target at position t "
                                  "is the next character, ids[start + t + 1]")
    expect(not torch.equal(y[1:], ids[starts[1:, None] - 1 + torch.arange(block_size)]),
           "y is shifted the wrong way, one character back; it is one character ahead")
    expect(torch.equal(y, expected_y), f"y[1] should be ids[18:26] = {expected_y[1].tolist()}, got {y[1].tolist()}")


def reference_warmup_cosine_lr(step: int, warmup_steps: int, total_steps: int, max_lr: float,
                               min_lr: float) -> float:
    config = TrainConfig(steps=total_steps, lr=max_lr, min_lr=min_lr, warmup_steps=warmup_steps)
    return lr_at(step, config)


@exercise("warmup_cosine_lr", "04",
          task="warmup_cosine_lr(step, warmup_steps, total_steps, max_lr, min_lr) → the learning rate at `step`: "
               "max_lr·(step + 1)/warmup_steps during warm-up, then half a cosine from max_lr down to min_lr at "
               "total_steps, and min_lr after that",
          hint="after warm-up, progress = (step − warmup_steps) / (total_steps − warmup_steps), clamped to 1, and "
               "lr = min_lr + ½·(max_lr − min_lr)·(1 + cos(π·progress))",
          reference=reference_warmup_cosine_lr)
def check_warmup_cosine_lr(answer: Callable[..., Any]) -> None:
    for warmup, total, top, bottom in ((10, 100, 1e-3, 1e-4), (0, 50, 0.01, 0.001)):
        setting = f"warmup_steps={warmup}, total_steps={total}, max_lr={top:g}, min_lr={bottom:g}"
        values = {}
        for step in sorted({0, 4, max(warmup - 1, 0), warmup, (warmup + total) // 2, total - 1, total, 2 * total}):
            value = answer(step, warmup, total, top, bottom)
            expect(isinstance(value, numbers.Real) or (isinstance(value, Tensor) and value.numel() == 1),
                   f"step {step} gave {value!r}; expected a number")
            values[step] = float(value)
        if warmup:
            expect(values[0] != 0, f"{setting}: step 0 gives 0, so the first step does not move; warm-up is "
                                   f"max_lr·(step + 1)/warmup_steps")
            expect(math.isclose(values[warmup - 1], top, rel_tol=1e-6),
                   f"{setting}: the last warm-up step ({warmup - 1}) should reach max_lr = {top:g}, "
                   f"got {values[warmup - 1]:.6g}")
        expect(math.isclose(values[warmup], top, rel_tol=1e-6),
               f"{setting}: the decay starts from max_lr = {top:g} at step {warmup}, got {values[warmup]:.6g}; "
               f"measure progress from the end of warm-up")
        middle = (warmup + total) // 2
        expect(not math.isclose(values[middle], bottom, rel_tol=1e-3),
               f"{setting}: halfway through the decay (step {middle}) the rate is already min_lr: that is a whole "
               f"cosine period; use half of one, cos(π·progress)")
        expect(not math.isclose(values[total], 0, abs_tol=1e-12),
               f"{setting}: step {total} gives 0; the cosine decays to min_lr = {bottom:g}, not to 0")
        expect(math.isclose(values[total], bottom, rel_tol=1e-6),
               f"{setting}: at step total_steps = {total} the rate should be min_lr = {bottom:g}, "
               f"got {values[total]:.6g}")
        expect(math.isclose(values[2 * total], bottom, rel_tol=1e-6),
               f"{setting}: past total_steps (step {2 * total}) the rate should stay at min_lr = {bottom:g}, got "
               f"{values[2 * total]:.6g}; clamp the progress to 1")
        for step, value in values.items():
            expected = reference_warmup_cosine_lr(step, warmup, total, top, bottom)
            expect(math.isclose(value, expected, rel_tol=1e-6),
                   f"{setting}: step {step} gives {value:.6g}, expected {expected:.6g}")


def reference_perplexity(logits: Tensor, targets: Tensor) -> float:
    return math.exp(F.cross_entropy(logits.flatten(0, 1), targets.flatten()).item())


@exercise("perplexity", "04",
          task="perplexity(logits, targets) → exp of the mean cross-entropy, for logits (batch, seq, vocab) and "
               "targets (batch, seq): the number of equally likely characters the model is choosing between",
          hint="F.cross_entropy(logits.flatten(0, 1), targets.flatten()) is the mean loss in nats; perplexity is "
               "math.exp of it",
          reference=reference_perplexity)
def check_perplexity(answer: Callable[[Tensor, Tensor], Any]) -> None:
    gen = torch.Generator().manual_seed(0)
    vocab = 11
    logits = 2 * torch.randn(2, 6, vocab, generator=gen)
    targets = torch.randint(vocab, (2, 6), generator=gen)

    def value_of(result: Any, what: str) -> float:
        expect(isinstance(result, numbers.Real) or (isinstance(result, Tensor) and result.numel() == 1),
               f"{what} returned {result!r}; expected a number")
        return float(result)

    uniform = value_of(answer(torch.zeros(2, 6, vocab), targets), "perplexity(all-zero logits, targets)")
    expect(not math.isclose(uniform, math.log(vocab), rel_tol=1e-4),
           f"all-zero logits give {uniform:.4f} = ln {vocab}, the loss itself; perplexity is exp(loss)")
    expect(not math.isclose(uniform, 2 ** math.log(vocab), rel_tol=1e-4),
           f"all-zero logits give {uniform:.4f} = 2^(ln {vocab}): the loss is in nats (natural log), so use exp, "
           f"not 2 to the power")
    expect(math.isclose(uniform, vocab, rel_tol=1e-4),
           f"all-zero logits (a uniform guess over {vocab} characters) should give perplexity {vocab}, "
           f"got {uniform:.4f}")
    value = value_of(answer(logits.clone(), targets.clone()), "perplexity(logits, targets)")
    per_token = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    expected = reference_perplexity(logits, targets)
    expect(not math.isclose(value, per_token.exp().mean().item(), rel_tol=1e-4),
           f"got {value:.4f}, the mean of exp(loss) over positions; average the loss first, then take exp")
    expect(math.isclose(value, expected, rel_tol=1e-4), f"got {value:.4f}, expected exp(mean cross-entropy) = "
                                                        f"{expected:.4f}")
