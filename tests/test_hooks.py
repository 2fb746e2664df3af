"""labkit.hooks: what is recorded equals the computation done by hand, ablating a head equals recomputing its layer
without it, patching a run with its own activations changes nothing, the hooks come off after an error, the logit
lens ends on the model's logits, and bad names, heads and lengths are named."""

from __future__ import annotations

import pytest
import torch

from labkit.attention import merge_heads, naive_attention
from labkit.hooks import (ablating_heads, logit_lens, module_named, patching, patching_heads, recording,
                          recording_heads, residual_stream)
from labkit.models import GPTConfig, TinyGPT


@pytest.fixture(scope="module")
def model() -> TinyGPT:
    torch.manual_seed(0)
    return TinyGPT(GPTConfig(vocab_size=11, block_size=12, n_layer=2, n_head=4, d_model=16)).double().eval()


IDX = torch.randint(0, 11, (3, 12), generator=torch.Generator().manual_seed(1))


def _by_hand(model: TinyGPT, idx: torch.Tensor, head: tuple[int, int] | None = None,
             value: torch.Tensor | float = 0.0) -> list[torch.Tensor]:
    """The residual stream after the embedding and after each block, computed step by step; `head` = (layer, head)
    whose output is set to `value` (d_head,) before the attention's output projection."""
    x = model.drop(model.pos_emb(model.token_emb(idx)))
    stream = [x]
    for i, block in enumerate(model.blocks):
        attn = block.self_attn
        q, k, v = attn.queries_keys_values(block.norm1(x))
        heads, _ = naive_attention(q, k, v, is_causal=True)  # (batch, heads, seq, d_head)
        if head is not None and head[0] == i:
            heads = heads.clone()
            heads[:, head[1]] = value
        x = x + attn.out_proj(merge_heads(heads))
        x = x + block.ff(block.norm2(x))
        stream.append(x)
    return stream


def test_recorded_outputs_are_the_computation_by_hand(model: TinyGPT) -> None:
    with torch.no_grad(), recording(model, ["drop", "blocks.0", "blocks.1"]) as seen:
        model(IDX)
        expected = _by_hand(model, IDX)
    for name, by_hand in zip(["drop", "blocks.0", "blocks.1"], expected):
        torch.testing.assert_close(seen[name], by_hand, atol=1e-6, rtol=0)
    torch.testing.assert_close(residual_stream(model, IDX), torch.stack(expected), atol=1e-6, rtol=0)


def test_recorded_heads_are_the_attention_outputs_per_head(model: TinyGPT) -> None:
    block = model.blocks[1]
    with torch.no_grad(), recording_heads(model) as heads:
        model(IDX)
        x = _by_hand(model, IDX)[1]
        q, k, v = block.self_attn.queries_keys_values(block.norm1(x))
        expected, _ = naive_attention(q, k, v, is_causal=True)
    assert heads[1].shape == (3, 4, 12, 4)  # (batch, heads, seq, d_head)
    torch.testing.assert_close(heads[1], expected, atol=1e-6, rtol=0)


def test_ablating_a_head_is_recomputing_its_layer_without_it(model: TinyGPT) -> None:
    with torch.no_grad():
        with ablating_heads(model, [(0, 2)]):
            ablated = model(IDX)
        expected = model.lm_head(model.norm(_by_hand(model, IDX, head=(0, 2))[-1]))
        torch.testing.assert_close(ablated, expected, atol=1e-6, rtol=0)
        assert not torch.allclose(ablated, model(IDX))  # the head mattered: the test can tell


def test_mean_ablation_writes_the_heads_mean_output(model: TinyGPT) -> None:
    with torch.no_grad():
        with recording_heads(model) as heads:
            model(IDX)
        means = {layer: out.mean(dim=(0, 2)) for layer, out in heads.items()}  # layer → (heads, d_head)
        with ablating_heads(model, [(1, 0)], means=means):
            ablated = model(IDX)
        expected = model.lm_head(model.norm(_by_hand(model, IDX, head=(1, 0), value=means[1][0])[-1]))
    torch.testing.assert_close(ablated, expected, atol=1e-6, rtol=0)


def test_patching_a_run_with_its_own_activations_changes_nothing(model: TinyGPT) -> None:
    with torch.no_grad():
        with recording(model, ["blocks.0"]) as clean, recording_heads(model) as clean_heads:
            before = model(IDX)
        with patching(model, {"blocks.0": clean["blocks.0"]}):
            torch.testing.assert_close(model(IDX), before, atol=0, rtol=0)
        with patching_heads(model, {(1, 3): clean_heads[1][:, 3]}):
            torch.testing.assert_close(model(IDX), before, atol=0, rtol=0)


def test_patching_one_position_moves_only_what_can_see_it(model: TinyGPT) -> None:
    other = IDX.flip(1)
    with torch.no_grad():
        with recording(model, ["blocks.0"]) as clean:
            model(IDX)
        corrupted = model(other)
        with patching(model, {"blocks.0": clean["blocks.0"]}, positions=[5]):
            patched = model(other)
    torch.testing.assert_close(patched[:, :5], corrupted[:, :5], atol=0, rtol=0)  # causal: earlier rows untouched
    assert not torch.allclose(patched[:, 5], corrupted[:, 5])


def test_hooks_come_off_after_an_error(model: TinyGPT) -> None:
    with torch.no_grad():
        before = model(IDX)
        for context in (recording(model, ["blocks.0"]), ablating_heads(model, [(0, 0)]),
                        patching(model, {"blocks.1": torch.zeros(3, 12, 16, dtype=torch.float64)})):
            with pytest.raises(RuntimeError, match="boom"):
                with context:
                    raise RuntimeError("boom")
        torch.testing.assert_close(model(IDX), before, atol=0, rtol=0)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_the_logit_lens_ends_on_the_models_logits(model: TinyGPT) -> None:
    lens = logit_lens(model, IDX)
    assert lens.shape == (3, 3, 12, 11)  # (layers + 1, batch, seq, vocab)
    with torch.no_grad():
        torch.testing.assert_close(lens[-1], model(IDX), atol=1e-5, rtol=0)


def test_bad_names_heads_and_lengths_are_named(model: TinyGPT) -> None:
    with pytest.raises(ValueError, match=r"TinyGPT has no module named 'blocks.7'; it has e.g. \['blocks'"):
        module_named(model, "blocks.7")
    with pytest.raises(ValueError, match=r"head 4 is out of range: layer 1 has heads 0..3"):
        with ablating_heads(model, [(1, 4)]):
            pass
    with pytest.raises(ValueError, match=r"layer 2 is out of range: the model has layers 0..1"):
        with patching_heads(model, {(2, 0): torch.zeros(1)}):
            pass
    with torch.no_grad():
        with recording(model, ["blocks.0"]) as clean:
            model(IDX)
        with pytest.raises(ValueError, match=r"the patch for 'blocks.0' has shape \(3, 12, 16\) but the module "
                                             r"computes \(3, 8, 16\): clean and corrupted inputs must have the same"):
            with patching(model, {"blocks.0": clean["blocks.0"]}):
                model(IDX[:, :8])
