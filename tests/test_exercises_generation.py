"""Notebook 07's checkers: a right answer written by hand passes, and each plausible mistake gets its own message."""

from __future__ import annotations

import pytest
import torch

from labkit.exercises import check


def test_top_k_filter_written_by_hand_passes() -> None:
    def top_k_filter(logits, k):
        kth = logits.topk(k, dim=-1).values[:, -1:]
        return logits.masked_fill(logits < kth, float("-inf"))

    assert check("top_k_filter", top_k_filter, quiet=True)


def _top_k(logits, k, fill=float("-inf"), keep=0, dim=-1):
    kth = logits.topk(min(k + keep, logits.shape[dim]), dim=dim).values.narrow(dim, -1, 1)
    return logits.masked_fill(logits < kth, fill)


@pytest.mark.parametrize("wrong, message", [
    (lambda lg, k: _top_k(lg, k, keep=1), "row 0 keeps 4 of the 10 tokens, expected 3"),
    (lambda lg, k: _top_k(lg, k, fill=0.0), "filtered tokens hold 0"),
    (lambda lg, k: _top_k(lg, k).softmax(-1), "returned probabilities"),
    (lambda lg, k: lg.masked_fill(lg < lg.flatten().topk(k).values[-1], float("-inf")),
     "row 0 keeps 1 of the 10 tokens, expected 3"),
    (lambda lg, k: lg.masked_fill(lg < lg.topk(k).values[-1], float("-inf")), "your function raised RuntimeError"),
    (lambda lg, k: torch.cat([_top_k(lg[:1], k), _top_k(lg[:1], k)]), "keeps the right number of tokens but the wrong"),
    (lambda lg, k: _top_k(lg, k) / 2, "the kept logits changed"),
    (lambda lg, k: _top_k(lg[0], k), "has shape (10,), expected (2, 10)"),
])
def test_top_k_filter_checker_fails_plausible_mistakes(wrong, message: str) -> None:
    result = check("top_k_filter", wrong, quiet=True)
    assert not result and message in result.message, result.message


def _top_p(logits, p, inclusive=False, scatter_back=True, fill=float("-inf")):
    probs = logits.softmax(-1)
    ranked, order = probs.sort(dim=-1, descending=True)
    mass = ranked.cumsum(-1) if inclusive else ranked.cumsum(-1) - ranked
    keep_ranked = mass < p
    keep = torch.zeros_like(keep_ranked).scatter(-1, order, keep_ranked) if scatter_back else keep_ranked
    return logits.masked_fill(~keep, fill)


def test_top_p_filter_written_by_hand_passes() -> None:
    assert check("top_p_filter", _top_p, quiet=True)


@pytest.mark.parametrize("wrong, message", [
    (lambda lg, p: _top_p(lg, p, inclusive=True), "row 0 keeps 2 of the 6 tokens, expected 3"),
    (lambda lg, p: _top_p(lg, p, inclusive=True) if p < 0.5 else _top_p(lg, p), "filtered out every token of a row"),
    (lambda lg, p: _top_p(lg, p, scatter_back=False), "keeps the right number of tokens but the wrong ones"),
    (lambda lg, p: _top_p(lg, p, fill=0.0), "filtered tokens hold 0"),
    (lambda lg, p: _top_p(lg, p, fill=torch.finfo(lg.dtype).min), "filtered tokens hold -3.4e+38"),
    (lambda lg, p: _top_p(lg, p).softmax(-1), "returned probabilities"),
])
def test_top_p_filter_checker_fails_plausible_mistakes(wrong, message: str) -> None:
    result = check("top_p_filter", wrong, quiet=True)
    assert not result and message in result.message, result.message


def _greedy(model, idx, max_new_tokens, block_size, *, crop=True, position=-1, new_only=False):
    ids = idx
    for _ in range(max_new_tokens):
        logits = model(ids[:, -block_size:] if crop else ids)[:, position, :]
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    return ids[:, idx.shape[1]:] if new_only else ids


def test_greedy_generate_written_by_hand_passes() -> None:
    assert check("greedy_generate", _greedy, quiet=True)


@pytest.mark.parametrize("mistake, message", [
    (dict(crop=False), "your function raised ValueError: sequence length 9"),
    (dict(position=0), "take the argmax of the logits at the last position"),
    (dict(new_only=True), "returned only the 10 new tokens"),
])
def test_greedy_generate_checker_fails_plausible_mistakes(mistake, message: str) -> None:
    result = check("greedy_generate", lambda *args: _greedy(*args, **mistake), quiet=True)
    assert not result and message in result.message, result.message


def test_greedy_generate_checker_fails_sampling() -> None:
    def sampled(model, idx, max_new_tokens, block_size):
        generator = torch.Generator().manual_seed(0)
        ids = idx
        for _ in range(max_new_tokens):
            probs = model(ids[:, -block_size:])[:, -1, :].softmax(-1)
            ids = torch.cat([ids, torch.multinomial(probs, 1, generator=generator)], dim=1)
        return ids

    result = check("greedy_generate", sampled, quiet=True)
    assert not result and "the greedy choice is" in result.message
