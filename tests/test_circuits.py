"""labkit.circuits: direct logit attributions add up to the logit, the induction and previous-token scores read the
right diagonals, and the in-context loss tells a model that reads its context from one that does not."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from labkit.circuits import (copy_losses, direct_logit_attribution, induction_scores, previous_token_scores,
                             repeated_tokens)
from labkit.models import GPTConfig, TinyGPT

LENGTH, VOCAB = 6, 20


def test_repeated_tokens_repeat() -> None:
    tokens = repeated_tokens(VOCAB, LENGTH, 4, torch.Generator().manual_seed(0))
    assert tokens.shape == (4, 2 * LENGTH) and torch.equal(tokens[:, :LENGTH], tokens[:, LENGTH:])
    assert 0 <= int(tokens.min()) and int(tokens.max()) < VOCAB


def _maps() -> Tensor:
    """(layers 1, batch 2, heads 3, seq, seq): head 0 a perfect induction head on the second copy (uniform over the
    past elsewhere), head 1 a previous-token head, head 2 looks at itself."""
    seq = 2 * LENGTH
    uniform = torch.tril(torch.ones(seq, seq))
    uniform = uniform / uniform.sum(-1, keepdim=True)
    induction = uniform.clone()
    for t in range(LENGTH, seq):
        induction[t] = 0
        induction[t, t - LENGTH + 1] = 1
    previous = torch.zeros(seq, seq)
    previous[0, 0] = 1
    previous[torch.arange(1, seq), torch.arange(seq - 1)] = 1
    heads = torch.stack([induction, previous, torch.eye(seq)])  # (heads, seq, seq)
    return heads.expand(1, 2, 3, seq, seq)


def test_the_scores_read_the_induction_and_previous_token_diagonals() -> None:
    maps = _maps()
    torch.testing.assert_close(induction_scores(maps, LENGTH)[0], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(previous_token_scores(maps)[0, 1:], torch.tensor([1.0, 0.0]))
    assert previous_token_scores(maps)[0, 0] < 0.3  # the induction head is not a previous-token head


class Oracle(nn.Module):
    """Predicts every repeated token from the first copy (perfect in the second copy), knows nothing in the first."""

    def __init__(self, length: int) -> None:
        super().__init__()
        self.length, self.anchor = length, nn.Parameter(torch.zeros(()))

    def forward(self, idx: Tensor) -> Tensor:
        logits = torch.zeros(*idx.shape, VOCAB)
        for t in range(self.length - 1, idx.shape[1]):  # position t predicts token t + 1 = token t + 1 - length
            logits[torch.arange(idx.shape[0]), t, idx[:, t + 1 - self.length]] = 50.0
        return logits + self.anchor


def test_the_in_context_loss_tells_a_model_that_reads_its_context() -> None:
    tokens = repeated_tokens(VOCAB, LENGTH, 8, torch.Generator().manual_seed(1))
    losses = copy_losses(Oracle(LENGTH), tokens, LENGTH)
    assert losses["first"] == pytest.approx(math.log(VOCAB), abs=1e-5) and losses["second"] < 1e-6


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match=r"maps must be attention weights \(layers, batch, heads, seq, seq\)"):
        induction_scores(torch.rand(2, 3, 12, 12), LENGTH)
    with pytest.raises(ValueError, match=r"maps cover 12 positions, but two copies of length=5 are 10"):
        induction_scores(_maps(), 5)
    with pytest.raises(ValueError, match=r"tokens must be \(batch, 2·length = 10\) from repeated_tokens"):
        copy_losses(Oracle(5), torch.zeros(2, 12, dtype=torch.long), 5)
    with pytest.raises(ValueError, match="length must be a positive int, got 0"):
        repeated_tokens(VOCAB, 0, 2)


@pytest.mark.parametrize("config", [dict(), dict(bias=True), dict(attention_only=True)], ids=["GPT", "biases",
                                                                                             "attention only"])
def test_direct_logit_attributions_add_up_to_the_logit(config: dict) -> None:
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(vocab_size=VOCAB, block_size=12, n_layer=2, n_head=3, d_model=12, **config))
    for p in model.parameters():  # away from the initialisation, so that every part writes something
        torch.nn.init.normal_(p, std=0.3)
    model = model.double()
    idx = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(2))
    targets = idx.roll(-1, dims=1)
    names, shares, constant = direct_logit_attribution(model, idx, targets)
    assert names[:4] == ["embedding", "L0H0", "L0H1", "L0H2"]
    assert ("L1 MLP" in names) is not config.get("attention_only", False)
    assert shares.shape == (2, 12, len(names)) and shares.abs().min(-1).values.max() > 0
    with torch.no_grad():
        logits = model.eval()(idx).gather(-1, targets[..., None])[..., 0]
    torch.testing.assert_close(shares.sum(-1) + constant, logits, atol=1e-9, rtol=0)
    with pytest.raises(ValueError, match=r"targets must be shaped like idx \(2, 12\), got \(2, 11\)"):
        direct_logit_attribution(model, idx, targets[:, 1:])
