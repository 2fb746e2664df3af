"""The bias probes' exercises: the he-versus-she log-probability gap at each sentence's [MASK] (notebook 05), and the
percentile bootstrap interval of a mean gap (notebook 06). The rules are labkit's (`labkit.bias.mask_log_probs`,
`labkit.bias.bootstrap_ci`); tests/test_exercises_bias.py proves the references agree with them."""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable

import torch
from torch import Tensor

from labkit.exercises import expect, exercise
from labkit.exercises._compare import expect_tensor, max_difference, same, seeded_randn

# --- the pronoun gap at a mask ------------------------------------------------------------------------------------

MASK, HE, SHE = 1, 5, 8  # the checker's ids in a vocabulary of 12


def reference_mask_pronoun_gap(logits: Tensor, input_ids: Tensor, mask_id: int, he_id: int, she_id: int) -> Tensor:
    at_mask = logits[input_ids == mask_id]  # (n, vocab): each row's one mask, rows in order
    log_probs = at_mask.log_softmax(-1)
    return log_probs[:, he_id] - log_probs[:, she_id]


def _gap_inputs() -> tuple[Tensor, Tensor]:
    """logits (4, 7, 12) and input_ids (4, 7), each row's one mask at a different position (as padding leaves it)."""
    n, seq, vocab = 4, 7, 12
    logits = 3 * seeded_randn(n, seq, vocab, seed=526)
    ids = torch.randint(2, vocab, (n, seq), generator=torch.Generator().manual_seed(527))
    ids[ids == MASK] = 2
    ids[torch.arange(n), torch.tensor([2, 5, 1, 4])] = MASK
    return logits, ids


@exercise("mask_pronoun_gap", "05",
          task="mask_pronoun_gap(logits, input_ids, mask_id, he_id, she_id) → (n,): logits (n, seq, vocab) are the "
               "MLM head's scores at every position of n padded sentences, input_ids (n, seq) their ids, each row "
               "with one mask_id (at its own position). Return log P(he) − log P(she) at each row's mask, the "
               "probabilities being the softmax over the vocabulary",
          hint="at_mask = logits[input_ids == mask_id] gives (n, vocab), one row per sentence; log_probs = "
               "at_mask.log_softmax(-1); return log_probs[:, he_id] − log_probs[:, she_id]",
          reference=reference_mask_pronoun_gap)
def check_mask_pronoun_gap(answer: Callable[..., Any]) -> None:
    logits, ids = _gap_inputs()
    n = len(ids)
    what = f"mask_pronoun_gap(logits {tuple(logits.shape)}, input_ids {tuple(ids.shape)}, {MASK}, {HE}, {SHE})"
    given_logits, given_ids = logits.clone(), ids.clone()
    out = answer(given_logits, given_ids, MASK, HE, SHE)
    expect(torch.equal(given_logits, logits) and torch.equal(given_ids, ids),
           f"{what} changed its inputs in place; compute new tensors")
    out = expect_tensor(out, (n,), what).detach().double()
    right = reference_mask_pronoun_gap(logits.double(), ids, MASK, HE, SHE)
    at_mask = logits.double()[ids == MASK]  # (n, vocab)
    probs = at_mask.softmax(-1)
    first = int((ids[0] == MASK).nonzero()[0, 0])
    over_positions = logits.double().log_softmax(1)[ids == MASK]
    wrong = {
        "the wrong sign: the gap is log P(he) − log P(she), positive where the model expects 'he' more": -right,
        "that is P(he) − P(she), a difference of probabilities; take the difference of their logs, log P(he) − "
        "log P(she) (the log of their ratio)": probs[:, HE] - probs[:, SHE],
        "that is the ratio P(he) / P(she); take its log": probs[:, HE] / probs[:, SHE],
        "the softmax ran over the positions (dim 1), not over the vocabulary: take each row's scores at its mask "
        "first, then log_softmax(-1) over the vocabulary": over_positions[:, HE] - over_positions[:, SHE],
        f"every row was read at row 0's mask position ({first}); each sentence has its mask at its own position "
        f"(shorter sentences are padded): use input_ids == mask_id row by row":
            (logits.double()[:, first].log_softmax(-1)[:, HE] - logits.double()[:, first].log_softmax(-1)[:, SHE]),
    }
    for message, value in wrong.items():  # within float32's precision of the mistake's numbers, however large
        expect(not same(out, value, 1e-5 * (1 + float(value.abs().max()))), message)
    worst = max_difference(out, right)
    expect(worst <= 1e-4, f"{what} differs from log P(he) − log P(she) at each row's mask by up to {worst:.3g}")


# --- the percentile bootstrap interval ----------------------------------------------------------------------------

def reference_bootstrap_ci(values: Tensor, n_resamples: int = 2000, confidence: float = 0.95,
                           seed: int = 0) -> tuple[float, float, float]:
    values = torch.as_tensor(values, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    index = torch.randint(len(values), (n_resamples, len(values)), generator=generator)  # (n_resamples, n)
    means = values[index].mean(1)  # one mean per resample
    tail = (1 - confidence) / 2
    low, high = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    return float(values.mean()), low, high


def _skewed_sample() -> Tensor:
    """12 values from an exponential distribution (a skewed sample, where a percentile interval is not symmetric)."""
    uniform = torch.rand(12, generator=torch.Generator().manual_seed(606), dtype=torch.float64)
    return -torch.log1p(-uniform)


def _triple(value: Any, what: str) -> tuple[float, float, float]:
    expect(isinstance(value, (tuple, list)) and len(value) == 3,
           f"{what} returned {value!r}; return three numbers, (mean, low, high)")
    expect(all(isinstance(v, numbers.Real) and not isinstance(v, bool) or isinstance(v, Tensor) and v.numel() == 1
               for v in value), f"{what} returned {value!r}; return three numbers, (mean, low, high)")
    return tuple(float(v) for v in value)


def _interval(values: Tensor, cut_low: float, cut_high: float, n_resamples: int = 200_000) -> tuple[float, float]:
    """The quantiles cut_low and cut_high of many resample means (a fixed seed): the interval without its noise."""
    index = torch.randint(len(values), (n_resamples, len(values)), generator=torch.Generator().manual_seed(1))
    means = values.index_select(0, index.flatten()).view(index.shape).mean(1)  # values[index].mean(1), faster
    low, high = torch.quantile(means, torch.tensor([cut_low, cut_high], dtype=torch.float64)).tolist()
    return low, high


@exercise("bootstrap_ci", "06",
          task="bootstrap_ci(values, n_resamples, confidence, seed) → (mean, low, high): values (n,) are the gaps of "
               "n templates. Draw n_resamples resamples of n values WITH replacement from a generator seeded with "
               "seed, take each resample's mean, and return the values' own mean and the (1 − confidence)/2 and "
               "1 − (1 − confidence)/2 quantiles of the resample means (the percentile interval)",
          hint="g = torch.Generator().manual_seed(seed); index = torch.randint(n, (n_resamples, n), generator=g); "
               "means = values[index].mean(1); torch.quantile(means, torch.tensor([tail, 1 − tail], "
               "dtype=means.dtype)) with tail = (1 − confidence) / 2",
          reference=reference_bootstrap_ci)
def check_bootstrap_ci(answer: Callable[..., Any]) -> None:
    two = torch.tensor([0.0, 2.0], dtype=torch.float64)
    what_two = "bootstrap_ci([0, 2], 2000, 0.95, seed=0)"
    mean, low, high = _triple(answer(two.clone(), 2000, 0.95, 0), what_two)
    expect(low >= -1e-9 and high <= 2 + 1e-9,
           f"{what_two} = ({low:.3g}, {high:.3g}) reaches beyond 0 and 2, where no resample mean can be (resamples "
           f"of [0, 2] average 0, 1 or 2): that is mean ± z · standard error, a normal interval; the percentile "
           f"interval is the quantiles of the resample means")
    two_answer = mean, low, high

    values = _skewed_sample()
    n = len(values)
    what = f"bootstrap_ci(values ({n},), 20000, 0.95, seed=3)"
    got = _triple(answer(values.clone(), 20_000, 0.95, 3), what)
    expect(got == _triple(answer(values.clone(), 20_000, 0.95, 3), what),
           f"two calls of {what} gave different intervals: draw every resample from "
           f"torch.Generator().manual_seed(seed), so the same seed gives the same interval")
    mean, low, high = got
    spread = float(values.std(unbiased=False)) / math.sqrt(n)  # the bootstrap's standard error of the mean
    tolerance = 0.12 * spread  # about 5 times the noise of 20,000 resamples at a 2.5% quantile
    expect(high - low > 1e-9, f"{what} has width 0: resampling without replacement (a permutation) gives the "
                              f"sample's own mean every time; draw with replacement")
    expect(math.isclose(mean, float(values.mean()), abs_tol=1e-9),
           f"{what} gave the mean {mean:.6g}, not the values' own mean {float(values.mean()):.6g}: the bootstrap "
           f"only measures the spread; the estimate is the mean of the sample itself, not of the resample means")
    data_low, data_high = torch.quantile(values, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    wrong = {
        "the quantiles of the values themselves, not of the resample means: the interval is for the mean, which "
        "varies √n times less than single values": (data_low, data_high),
        "too narrow: a 90% interval. Cut (1 − confidence)/2 = 2.5% off each end, not 1 − confidence = 5%":
            _interval(values, 0.05, 0.95),
        "far too narrow: you cut confidence/2 = 47.5% off each end; cut (1 − confidence)/2 = 2.5%":
            _interval(values, 0.475, 0.525),
    }
    for message, (wrong_low, wrong_high) in wrong.items():
        expect(not (abs(low - wrong_low) < tolerance and abs(high - wrong_high) < tolerance), message)
    right_low, right_high = _interval(values, 0.025, 0.975)
    expect(abs(low - right_low) < tolerance and abs(high - right_high) < tolerance,
           f"{what} = ({low:.4f}, {high:.4f}), expected about ({right_low:.4f}, {right_high:.4f}) (± {tolerance:.3f} "
           f"for the resampling noise)")
    mean, low, high = two_answer
    expect(math.isclose(mean, 1.0, abs_tol=1e-9) and math.isclose(low, 0.0, abs_tol=1e-9)
           and math.isclose(high, 2.0, abs_tol=1e-9),
           f"{what_two} = ({mean:.4g}, {low:.4g}, {high:.4g}), expected (1, 0, 2): a quarter of the resamples "
           f"average 0 and a quarter 2, so the 2.5% and 97.5% quantiles of the resample means are 0 and 2")
    constant = torch.full((5,), 0.3, dtype=torch.float64)
    mean, low, high = _triple(answer(constant.clone(), 500, 0.95, 0), "bootstrap_ci([0.3] * 5, 500, 0.95, 0)")
    expect(abs(high - low) < 1e-12 and abs(mean - 0.3) < 1e-12,
           f"bootstrap_ci([0.3] * 5, 500, 0.95, 0) = ({mean:.4g}, {low:.4g}, {high:.4g}): a sample with no spread "
           f"has every resample mean 0.3, so the interval is (0.3, 0.3)")
