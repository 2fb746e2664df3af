"""TinyGPT: shapes, causality, tied weights, attention maps and its errors."""

from __future__ import annotations

import pytest
import torch

from labkit.models import GPTConfig, TinyGPT

CONFIG = GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, d_model=32)


@pytest.fixture
def model() -> TinyGPT:
    torch.manual_seed(0)
    return TinyGPT(CONFIG).eval()


def test_logits_shape_and_tied_embedding(model: TinyGPT) -> None:
    idx = torch.randint(0, 11, (3, 10))
    assert model(idx).shape == (3, 10, 11)
    assert model.lm_head.weight is model.token_emb.weight
    assert model.num_parameters() == sum(p.numel() for p in model.parameters())


def test_future_tokens_do_not_change_past_logits(model: TinyGPT) -> None:
    idx = torch.randint(0, 11, (1, 12))
    changed = idx.clone()
    changed[0, 8:] = (changed[0, 8:] + 1) % 11
    assert torch.allclose(model(idx)[0, :8], model(changed)[0, :8], atol=1e-6)
    assert not torch.allclose(model(idx)[0, 8:], model(changed)[0, 8:])


def test_attention_maps_are_causal_distributions(model: TinyGPT) -> None:
    maps = model.attention_maps(torch.randint(0, 11, (2, 7)))
    assert maps.shape == (2, 2, 2, 7, 7)  # (layers, batch, heads, seq, seq)
    assert torch.allclose(maps.sum(-1), torch.ones(2, 2, 2, 7))
    assert torch.all(maps.triu(diagonal=1) == 0)
    assert not any(block.self_attn.record_weights for block in model.blocks)  # switched back off


def test_bad_inputs_and_configs(model: TinyGPT) -> None:
    with pytest.raises(ValueError, match="exceeds the model's block_size=16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="dtype long"):
        model(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="not divisible by n_head"):
        GPTConfig(vocab_size=11, d_model=30, n_head=4)
    with pytest.raises(ValueError, match="vocab_size must be a positive int"):
        GPTConfig(vocab_size=0)


def test_attention_maps_leave_out_dropout_and_keep_the_mode() -> None:
    model = TinyGPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, d_model=16, dropout=0.5))
    model.train()
    maps = model.attention_maps(torch.randint(11, (2, 8)))
    assert torch.allclose(maps.sum(-1), torch.ones(2, 2, 2, 8))  # dropout would break the rows' sums
    assert model.training
