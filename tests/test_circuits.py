"""labkit.circuits: direct logit attributions add up to the logit, the induction and previous-token scores read the
right diagonals, and the in-context loss tells a model that reads its context from one that does not."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.circuits import (RepeatMix, copy_losses, direct_logit_attribution, head_ablation_effects,
                             induction_scores, logit_difference, patch_head_sweep, patch_residual_sweep,
                             previous_token_scores, repeated_tokens)
from labkit.corpus import CharCorpus
from labkit.hooks import ablating_heads
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


# --- the induction mix, ablation and patching sweeps --------------------------------------------------------------


def _corpus() -> CharCorpus:
    return CharCorpus.from_text("the quick brown fox jumps over the lazy dog. " * 40)


def _repeat(row: Tensor, min_length: int) -> bool:
    """Whether `row` holds a stretch of at least `min_length` tokens followed at once by the same tokens."""
    n = len(row)
    return any(torch.equal(row[s:s + length], row[s + length:s + 2 * length])
               for length in range(min_length, n // 2 + 1) for s in range(n - 2 * length + 1))


def test_repeat_mix_puts_a_repeated_stretch_in_its_share_of_rows() -> None:
    corpus = _corpus()
    x, y = RepeatMix(corpus, share=1.0, min_length=5).batch("train", 16, 24, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (16, 24) and torch.equal(x[:, 1:], y[:, :-1])
    assert all(_repeat(torch.cat([row, last[-1:]]), 5) for row, last in zip(x, y))
    plain = corpus.batch("val", 16, 24, torch.Generator().manual_seed(3))
    mixed = RepeatMix(corpus, share=0.0).batch("val", 16, 24, torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip(plain, mixed))  # share 0: the corpus's own batches
    with pytest.raises(ValueError, match="share must be between 0 and 1, got 1.5"):
        RepeatMix(corpus, share=1.5)
    with pytest.raises(ValueError, match="block_size=6 cannot hold two copies of min_length=4 tokens"):
        RepeatMix(corpus, share=1.0).batch("train", 2, 6)


def _trained_looking(**config) -> TinyGPT:
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(vocab_size=VOCAB, block_size=12, n_layer=2, n_head=3, d_model=12, **config))
    for p in model.parameters():  # away from the initialisation, so that every head matters
        torch.nn.init.normal_(p, std=0.3)
    return model.eval()


def test_head_ablation_effects_are_the_loss_changes_one_head_at_a_time() -> None:
    model = _trained_looking()
    x = torch.randint(0, VOCAB, (4, 12), generator=torch.Generator().manual_seed(5))
    y = x.roll(-1, dims=1)

    def loss() -> float:
        with torch.no_grad():
            return F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()

    clean = loss()
    effects = head_ablation_effects(model, x, y)
    with ablating_heads(model, [(1, 2)]):
        assert effects[1, 2].item() == pytest.approx(loss() - clean, abs=1e-6)
    mean = head_ablation_effects(model, x, y, "mean")
    assert effects.shape == mean.shape == (2, 3) and not torch.allclose(effects, mean)
    with pytest.raises(ValueError, match="kind must be 'zero' or 'mean', got 'random'"):
        head_ablation_effects(model, x, y, "random")


def test_patching_sweeps_restore_what_the_patched_activation_carries() -> None:
    model = _trained_looking()
    clean = torch.randint(0, VOCAB, (1, 10), generator=torch.Generator().manual_seed(6))
    corrupted = clean.clone()
    corrupted[0, 3] = (clean[0, 3] + 1) % VOCAB
    right, wrong = int(clean[0, 4]), int(corrupted[0, 4]) + 1

    def metric(logits: Tensor) -> Tensor:
        return logit_difference(logits, right, wrong)

    restored = patch_residual_sweep(model, clean, corrupted, metric)  # (3, 10)
    assert restored.shape == (3, 10)
    torch.testing.assert_close(restored[0, 3], torch.tensor(1.0))  # the changed token itself: all of it
    torch.testing.assert_close(restored[0, [0, 1, 2, 4, 5]], torch.zeros(5))  # tokens both inputs share: nothing
    torch.testing.assert_close(restored[-1, -1], torch.tensor(1.0))  # the last stream at the last position decides
    torch.testing.assert_close(restored[-1, :-1], torch.zeros(9), atol=1e-6, rtol=0)  # later positions do not
    heads = patch_head_sweep(model, clean, corrupted, metric)
    assert heads.shape == (2, 3) and heads.abs().max() > 0.01
    with pytest.raises(ValueError, match="clean has 10 tokens but corrupted has 9"):
        patch_residual_sweep(model, clean, corrupted[:, 1:], metric)
    with pytest.raises(ValueError, match=r"corrupted must be one sequence of token ids \(1, seq\), got shape"):
        patch_head_sweep(model, clean, corrupted.expand(2, -1), metric)
    with pytest.raises(ValueError, match="the corruption changes nothing to restore"):
        patch_residual_sweep(model, clean, clean, metric)


def test_logit_difference_reads_the_last_position() -> None:
    logits = torch.zeros(2, 3, VOCAB)
    logits[0, -1, 4], logits[1, -1, 7], logits[1, 0, 4] = 2.0, -1.0, 9.0
    torch.testing.assert_close(logit_difference(logits, 4, 7), torch.tensor([2.0, 1.0]))
    torch.testing.assert_close(logit_difference(logits, torch.tensor([4, 7]), 5), torch.tensor([2.0, -1.0]))


def test_induction_heads_form_in_the_induction_preset_and_not_before_training() -> None:
    """The preset notebook 11 trains: at least one head with induction score ≥ 0.5 on held-out repeated random
    tokens and a second-copy loss well below the first; an untrained model of the same shape has neither."""
    from labkit.data import load_data
    from labkit.presets import get_preset
    from labkit.train import train

    preset = get_preset("induction", "cpu")
    corpus = CharCorpus.from_text(load_data("tinyshakespeare"))
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(vocab_size=corpus.tokenizer.vocab_size, **preset.shape))
    length = preset.shape["block_size"] // 2
    tokens = repeated_tokens(corpus.tokenizer.vocab_size, length, 32, torch.Generator().manual_seed(123))

    def measure() -> tuple[float, dict[str, float]]:
        return float(induction_scores(model.attention_maps(tokens), length).max()), copy_losses(model, tokens, length)

    score, losses = measure()
    assert score < 0.2 and losses["second"] > losses["first"] - 0.2, (score, losses)
    train(model, RepeatMix(corpus), preset.train, progress=False)
    score, losses = measure()
    print(f"induction preset: best induction score {score:.2f}, losses {losses}")
    assert score >= 0.5 and losses["second"] < losses["first"] - 1.5, (score, losses)
