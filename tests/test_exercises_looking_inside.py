"""Notebook 08's checkers: a right answer written by hand passes, and each plausible mistake gets its own message."""

from __future__ import annotations

import pytest
import torch

from labkit.exercises import check


def _entropy(attn, log=torch.log, sign=-1.0, reduce="mean", clamp=True):
    p = attn.clamp_min(1e-30) if clamp else attn
    rows = sign * (attn * log(p)).sum(-1)
    return rows.mean(-1) if reduce == "mean" else rows.sum(-1)


def test_head_entropies_written_by_hand_passes() -> None:
    def head_entropies(attn):
        terms = torch.where(attn > 0, attn * attn.log(), torch.zeros_like(attn))
        return -terms.sum(-1).mean(-1)

    assert check("head_entropies", head_entropies, quiet=True)


@pytest.mark.parametrize("wrong, message", [
    (lambda a: _entropy(a, clamp=False), "0·ln 0 must count as 0"),
    (lambda a: _entropy(a, sign=1.0), "entropy is −Σ p ln p (the minus sign)"),
    (lambda a: _entropy(a, log=torch.log2), "bits; use the natural log"),
    (lambda a: _entropy(a, reduce="sum"), "you summed over the queries"),
    (lambda a: _entropy(a)[..., None], "has shape (2, 3, 1), expected (2, 3)"),
    (lambda a: _entropy(a.mean(1, keepdim=True)).expand(2, 3), "has entropy ln 6 = 1.7918, got 1.3883"),
    (lambda a: _entropy(a.softmax(-1)), "a head looking at one key only has entropy 0, got 1.691"),
])
def test_head_entropies_checker_fails_plausible_mistakes(wrong, message: str) -> None:
    result = check("head_entropies", wrong, quiet=True)
    assert not result and message in result.message, result.message


def test_head_entropies_checker_catches_a_wrong_random_head() -> None:
    def head_entropies(attn):
        out = _entropy(attn)
        out[1, 2] += 0.01
        return out

    result = check("head_entropies", head_entropies, quiet=True)
    assert not result and "averaged over queries by up to 0.01" in result.message


def _rollout(attn, residual=0.5, combine="mean", order="new_left", keep_all=True):
    seq = attn.shape[-1]
    heads = attn.mean(1) if combine == "mean" else attn.amax(1)
    layers = (1 - residual) * heads + residual * torch.eye(seq) if residual else heads
    if residual == 1.0:
        layers = heads + torch.eye(seq)
    rolled, maps = torch.eye(seq), []
    for layer in layers:
        rolled = layer @ rolled if order == "new_left" else rolled @ layer
        maps.append(rolled)
    return torch.stack(maps) if keep_all else maps[-1]


def test_rollout_maps_written_by_hand_passes() -> None:
    assert check("rollout_maps", _rollout, quiet=True)


@pytest.mark.parametrize("wrong, message", [
    (lambda a: _rollout(a, keep_all=False), "returned one (seq, seq) map; return one per layer"),
    (lambda a: _rollout(a, residual=1.0), "whose rows sum to 2"),
    (lambda a: _rollout(a, residual=0.0), "the plain mean of its heads"),
    (lambda a: _rollout(a, combine="max"), "combine the heads by their mean, not their max"),
    (lambda a: _rollout(a, order="new_right"), "multiplied in the wrong order"),
    (lambda a: _rollout(a, residual=0.3), "layer 0's map should be A_0"),
    (lambda a: _rollout(a) / _rollout(a).sum(-1, keepdim=True) * 1.01, "every row of a rollout map sums to 1"),
])
def test_rollout_maps_checker_fails_plausible_mistakes(wrong, message: str) -> None:
    result = check("rollout_maps", wrong, quiet=True)
    assert not result and message in result.message, result.message
