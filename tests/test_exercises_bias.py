"""The bias probes' checkers: right answers written by hand pass (another random generator included), each reference
agrees with labkit.bias, and each plausible mistake gets its own message (WRONG_ANSWERS, run by
test_exercises.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from labkit.bias import bootstrap_ci, mask_log_probs
from labkit.exercises import check, exercises
from labkit.exercises.bias import reference_bootstrap_ci, reference_mask_pronoun_gap
from labkit.models import BertConfig, TinyBERT

# --- mask_pronoun_gap ---------------------------------------------------------------------------------------------


def test_mask_pronoun_gap_as_a_difference_of_logits_passes() -> None:
    """log P(he) − log P(she) = logit(he) − logit(she): the softmax's normaliser is the same for both and cancels."""
    def mask_pronoun_gap(logits, input_ids, mask_id, he_id, she_id):
        rows, positions = (input_ids == mask_id).nonzero(as_tuple=True)
        return logits[rows, positions, he_id] - logits[rows, positions, she_id]

    assert check("mask_pronoun_gap", mask_pronoun_gap, quiet=True)


@pytest.mark.usefixtures("packaged_models_only")
def test_mask_pronoun_gap_reference_is_labkits_mask_log_probs(packaged_tokenizer) -> None:
    tokenizer = packaged_tokenizer
    torch.manual_seed(0)
    model = TinyBERT(BertConfig(vocab_size=tokenizer.vocab_size, max_len=32, n_layer=1, n_head=2, d_model=16)).eval()
    texts = ["[MASK] is a nurse .", "the pilot said that [MASK] would be late today ."]
    he, she = tokenizer.convert_tokens_to_ids(["he", "she"])
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(encoded["input_ids"], encoded["token_type_ids"], encoded["attention_mask"])
        logits = model.mlm_head(hidden)  # (2, seq, vocab)
    ours = reference_mask_pronoun_gap(logits, encoded["input_ids"], tokenizer.mask_token_id, he, she)
    theirs = mask_log_probs(model, tokenizer, texts, [he, she])
    torch.testing.assert_close(ours, theirs[:, 0] - theirs[:, 1], atol=1e-5, rtol=0)


def _gap(logits, input_ids, mask_id, he_id, she_id, *, how="right"):
    """mask_pronoun_gap, or one mistake in it: how="probs" subtracts probabilities, "ratio" divides them, "sign"
    is she − he, "positions" takes the softmax over the positions, "first_row" reads every row at row 0's mask."""
    if how == "positions":
        log_probs = logits.log_softmax(1)[input_ids == mask_id]
        return log_probs[:, he_id] - log_probs[:, she_id]
    if how == "first_row":
        position = int((input_ids[0] == mask_id).nonzero()[0, 0])
        log_probs = logits[:, position].log_softmax(-1)
        return log_probs[:, he_id] - log_probs[:, she_id]
    probs = logits[input_ids == mask_id].softmax(-1)
    if how == "probs":
        return probs[:, he_id] - probs[:, she_id]
    if how == "ratio":
        return probs[:, he_id] / probs[:, she_id]
    return probs[:, she_id].log() - probs[:, he_id].log()  # "sign"


# --- bootstrap_ci -------------------------------------------------------------------------------------------------


def test_bootstrap_ci_with_numpys_generator_passes() -> None:
    """Another generator draws other resamples; the interval agrees within the resampling noise, which passes."""
    def bootstrap_ci_numpy(values, n_resamples, confidence, seed):
        values = np.asarray(values, dtype=float)
        rng = np.random.default_rng(seed)
        means = values[rng.integers(0, len(values), size=(n_resamples, len(values)))].mean(axis=1)
        tail = 100 * (1 - confidence) / 2
        low, high = np.percentile(means, [tail, 100 - tail])
        return float(values.mean()), float(low), float(high)

    assert check("bootstrap_ci", bootstrap_ci_numpy, quiet=True)


def test_bootstrap_ci_reference_is_labkits() -> None:
    values = torch.randn(17, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    for confidence in (0.8, 0.95):
        assert reference_bootstrap_ci(values, 700, confidence, 9) == bootstrap_ci(values, 700, confidence, 9)


def _bootstrap(values, n_resamples, confidence, seed, *, how="right"):
    """bootstrap_ci, or one mistake in it: how="normal" is mean ± 1.96 standard errors, "permutation" resamples
    without replacement, "data" takes the values' own quantiles, "ninety" cuts 1 − confidence off each end, "half"
    cuts confidence/2, "mean_of_means" returns the resample means' mean, "unseeded" ignores the seed."""
    values = torch.as_tensor(values, dtype=torch.float64)
    n = len(values)
    if how == "normal":
        half = 1.96 * float(values.std()) / n ** 0.5 if n > 1 else 0.0
        return float(values.mean()), float(values.mean()) - half, float(values.mean()) + half
    generator = None if how == "unseeded" else torch.Generator().manual_seed(seed)
    if how == "permutation":
        index = torch.stack([torch.randperm(n, generator=generator) for _ in range(n_resamples)])
    else:
        index = torch.randint(n, (n_resamples, n), generator=generator)
    means = values[index].mean(1)
    tail = {"ninety": 1 - confidence, "half": confidence / 2}.get(how, (1 - confidence) / 2)
    source = values if how == "data" else means
    low, high = torch.quantile(source, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    mean = float(means.mean()) if how == "mean_of_means" else float(values.mean())
    return mean, low, high


# --- the checks run on inputs of their own and leave the notebook's random state alone --------------------------


def test_checks_leave_the_callers_random_state_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    for name in ("mask_pronoun_gap", "bootstrap_ci"):
        assert check(name, exercises()[name].reference, quiet=True), name
    assert torch.equal(torch.rand(3), expected)


# exercise name → plausible wrong answers and a piece of the message each must get (run by test_exercises.py)
WRONG_ANSWERS = {
    "mask_pronoun_gap": [
        (lambda *a: _gap(*a, how="probs"), "that is P(he) − P(she), a difference of probabilities"),
        (lambda *a: _gap(*a, how="ratio"), "that is the ratio P(he) / P(she); take its log"),
        (lambda *a: _gap(*a, how="sign"), "the wrong sign"),
        (lambda *a: _gap(*a, how="positions"), "the softmax ran over the positions (dim 1)"),
        (lambda *a: _gap(*a, how="first_row"), "every row was read at row 0's mask position (2)"),
        (lambda logits, ids, *a: _gap(logits, ids, *a).sum(), "has shape (), expected (4,)"),
    ],
    "bootstrap_ci": [
        (lambda *a: _bootstrap(*a, how="normal"), "that is mean ± z · standard error, a normal interval"),
        (lambda *a: _bootstrap(*a, how="permutation"), "resampling without replacement (a permutation)"),
        (lambda *a: _bootstrap(*a, how="data"), "the quantiles of the values themselves"),
        (lambda *a: _bootstrap(*a, how="ninety"), "too narrow: a 90% interval"),
        (lambda *a: _bootstrap(*a, how="half"), "you cut confidence/2 = 47.5% off each end"),
        (lambda *a: _bootstrap(*a, how="mean_of_means"), "not the values' own mean"),
        (lambda *a: _bootstrap(*a, how="unseeded"), "gave different intervals"),
        (lambda *a: _bootstrap(*a)[1:], "return three numbers, (mean, low, high)"),
    ],
}
