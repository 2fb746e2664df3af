"""labkit.ladder: notebook 04's hand-written GPT (here the exercise's reference answer) copied into TinyGPT gives the
same logits on both attention paths and the same loss and gradients; what cannot be copied is refused clearly; the
ladder's table and figure."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labkit.attention import recording_attention
from labkit.exercises.ladder import ReferenceGPT
from labkit.ladder import Rung, ladder_config, ladder_table, tiny_gpt_tensors, to_tiny_gpt
from labkit.viz.ladder import ladder_figure


def _gpt(n_layer: int = 2, n_head: int = 4) -> ReferenceGPT:
    torch.manual_seed(0)
    model = ReferenceGPT(vocab_size=13, block_size=10, d_model=16, n_head=n_head, n_layer=n_layer)
    with torch.no_grad():  # norms away from 1, so a norm copied to the wrong place shows
        for name, p in model.named_parameters():
            if "ln" in name:
                p.copy_(1 + 0.3 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("n_layer, n_head", [(1, 1), (2, 4), (3, 2)])
def test_the_copy_gives_the_same_logits_on_both_attention_paths(n_layer: int, n_head: int) -> None:
    model = _gpt(n_layer, n_head).eval()
    tiny = to_tiny_gpt(model)
    assert tiny.config == ladder_config(model)
    assert (tiny.config.n_layer, tiny.config.n_head, tiny.config.block_size) == (n_layer, n_head, 10)
    idx = torch.randint(13, (3, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(idx)
        torch.testing.assert_close(tiny(idx), expected, atol=1e-5, rtol=0)
        with recording_attention(tiny, [b.self_attn for b in tiny.blocks]):
            torch.testing.assert_close(tiny(idx), expected, atol=1e-5, rtol=0)
            assert all(b.self_attn.last_weights is not None for b in tiny.blocks)
    assert not any(b.self_attn.record_weights for b in tiny.blocks)


def test_one_training_step_gives_the_same_loss_and_gradients() -> None:
    model = _gpt()
    tiny = to_tiny_gpt(model)
    assert tiny.training
    idx = torch.randint(13, (4, 10), generator=torch.Generator().manual_seed(2))
    targets = idx.roll(-1, dims=1)
    losses = [F.cross_entropy(m(idx).flatten(0, 1), targets.flatten()) for m in (model, tiny)]
    for loss in losses:
        loss.backward()
    torch.testing.assert_close(losses[1], losses[0], atol=1e-6, rtol=0)
    ours = tiny_gpt_tensors({n: p.grad for n, p in model.named_parameters()})
    theirs = {n: p.grad for n, p in tiny.named_parameters()}
    assert ours.keys() == theirs.keys()
    for name in theirs:
        torch.testing.assert_close(ours[name], theirs[name], atol=1e-6, rtol=0, msg=name)


def test_heads_are_stacked_in_order() -> None:
    model = _gpt(n_layer=1, n_head=4)
    tiny = to_tiny_gpt(model)
    for h, head in enumerate(model.blocks[0].attn.heads):
        assert torch.equal(tiny.blocks[0].self_attn.k_proj.weight[4 * h:4 * (h + 1)], head.key.weight)


def test_the_copy_leaves_the_callers_random_state_alone() -> None:
    model = _gpt()
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    to_tiny_gpt(model)
    assert torch.equal(torch.rand(2), expected)


def test_a_shared_output_matrix_gives_a_tied_tiny_gpt() -> None:
    model = _gpt().eval()
    assert to_tiny_gpt(model).config.tie_head is False  # notebook 04's GPT: an output layer of its own
    model.lm_head.weight = model.token_emb.weight
    tiny = to_tiny_gpt(model)
    assert tiny.config.tie_head is True and tiny.lm_head.weight is tiny.token_emb.weight
    assert "lm_head.weight" not in tiny_gpt_tensors(model.state_dict())
    idx = torch.randint(13, (2, 10), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(tiny(idx), model(idx), atol=1e-5, rtol=0)


def test_what_cannot_be_copied_is_refused() -> None:
    biased = _gpt()
    biased.ln_f = nn.LayerNorm(16)
    with pytest.raises(ValueError, match=r"'ln_f.bias' has no place in TinyGPT \(.*bias=False"):
        to_tiny_gpt(biased)
    with pytest.raises(ValueError, match="is it notebook 04's GPT"):
        to_tiny_gpt(nn.Sequential(nn.Embedding(13, 16)))
    gapped = _gpt().state_dict()
    gapped = {k: v for k, v in gapped.items() if ".heads.1." not in k}
    with pytest.raises(ValueError, match=r"heads \[0, 2, 3\]; expected 0..n_head-1"):
        tiny_gpt_tensors(gapped)


def test_recording_attention_switches_back_after_an_exception() -> None:
    tiny = to_tiny_gpt(_gpt()).train()
    layers = [b.self_attn for b in tiny.blocks]
    with pytest.raises(RuntimeError, match="boom"):
        with recording_attention(tiny, layers):
            assert not tiny.training and all(a.record_weights for a in layers)
            raise RuntimeError("boom")
    assert tiny.training and not any(a.record_weights for a in layers)


def test_the_ladder_table_and_figure() -> None:
    rungs = {"bigram": Rung(4225, 2.6, 2.7, 1.5, [4.2, 3.0, 2.8]),
             "GPT": Rung(800_000, 1.6, 1.8, 60.0, [4.2, 2.0, 1.7])}
    table = ladder_table(rungs)
    assert table.splitlines()[2] == "| bigram | 4,225 | 2.600 | 2.700 |  | 1.5 |"
    assert table.splitlines()[3] == "| GPT | 800,000 | 1.600 | 1.800 | +0.900 | 60.0 |"
    fig = ladder_figure(rungs, smoothing=2)
    assert [t.name for t in fig.data[:2]] == ["bigram", "GPT"]
    assert list(fig.data[0].y) == pytest.approx([4.2, 3.6, 2.9])  # the trailing mean over 2 steps
    assert list(fig.data[2].y) == [2.7, 1.8]
    with pytest.raises(ValueError, match="rungs is empty"):
        ladder_table({})
    with pytest.raises(ValueError, match="rungs is empty"):
        ladder_figure({})


def test_the_copy_takes_the_models_dtype() -> None:
    model = _gpt().double().eval()
    tiny = to_tiny_gpt(model)
    assert all(p.dtype == torch.float64 for p in tiny.parameters())
    idx = torch.randint(13, (2, 10), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert (tiny(idx) - model(idx)).abs().max() < 1e-12
