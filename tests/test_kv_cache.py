"""The KV cache: TinyGPT fed one token at a time after a cache gives the logits of the whole sequence, for every
position scheme, so `generate` writes the same tokens with it and without; its memory is the formula's; bad use is
refused with a message."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from labkit.attention import KVCache, MultiHeadAttention
from labkit.generation import generate, seeded_generator
from labkit.models import POSITIONS, GPTConfig, TinyGPT

VOCAB, BLOCK, BATCH, PROMPT = 11, 16, 3, 4
VARIANTS = {"plain": {}, "qk_norm": dict(qk_norm=True), "attention_only": dict(attention_only=True),
            "untied": dict(tie_head=False)}
CASES = [(position, variant) for position in POSITIONS for variant in VARIANTS]


def _model(position: str, variant: str = "plain", **shape) -> TinyGPT:
    """A seeded untrained TinyGPT whose weight matrices are scaled up 10 times, so that its greedy text depends on
    the context (GPT-2's small initial weights give nearly one distribution everywhere)."""
    torch.manual_seed(0)
    config = dict(vocab_size=VOCAB, block_size=BLOCK, n_layer=2, n_head=2, d_model=16, position=position)
    model = TinyGPT(GPTConfig(**{**config, **VARIANTS[variant], **shape}))
    with torch.no_grad():
        for weight in model.parameters():
            if weight.dim() > 1:
                weight.mul_(10)
    return model.eval()


def _prompt(batch: int = BATCH) -> torch.Tensor:
    return torch.randint(VOCAB, (batch, PROMPT), generator=torch.Generator().manual_seed(1))


def _forwards(model: nn.Module) -> tuple[list[tuple[int, bool]], torch.utils.hooks.RemovableHandle]:
    """Every forward's (tokens fed, with a cache?), recorded until the handle is removed."""
    seen: list[tuple[int, bool]] = []
    handle = model.register_forward_pre_hook(
        lambda _m, args, kwargs: seen.append((args[0].shape[1], kwargs.get("cache") is not None)), with_kwargs=True)
    return seen, handle


@pytest.mark.parametrize("position, variant", CASES)
def test_each_cached_step_gives_the_logits_of_the_whole_sequence(position: str, variant: str) -> None:
    model = _model(position, variant)
    ids = generate(model, _prompt(), BLOCK - PROMPT, block_size=BLOCK, greedy=True, use_cache=False)
    cache = model.new_cache(BATCH, BLOCK)
    with torch.no_grad():
        step = model(ids[:, :PROMPT], cache=cache)  # the prompt fills the cache
        for t in range(PROMPT, BLOCK + 1):
            full = model(ids[:, :t])  # (batch, t, vocab): every position again
            assert (step[:, -1] - full[:, -1]).abs().max() <= 1e-5, f"step {t}"
            if t < BLOCK:
                step = model(ids[:, t:t + 1], cache=cache)  # only the new token
    assert cache[0].length == BLOCK


@pytest.mark.parametrize("position, variant", CASES)
def test_generate_writes_the_same_tokens_with_the_cache_and_without(position: str, variant: str) -> None:
    model, prompt = _model(position, variant), _prompt()
    greedy = [generate(model, prompt, BLOCK - PROMPT, block_size=BLOCK, greedy=True, use_cache=c)
              for c in (True, False)]
    assert torch.equal(*greedy)
    sampled = [generate(model, prompt, BLOCK - PROMPT, block_size=BLOCK, generator=seeded_generator(3),
                        use_cache=c) for c in (True, False)]
    assert torch.equal(*sampled)
    assert len(sampled[0][:, PROMPT:].unique()) > 3  # a text, not one token repeated


@pytest.mark.parametrize("position", [p for p in POSITIONS if p != "none"])
def test_the_new_token_gets_its_own_position(position: str) -> None:
    """Fed after a cache one position longer than its text, the token gets other logits: positions count."""
    model, ids = _model(position), _prompt()
    with torch.no_grad():
        right, wrong = model.new_cache(BATCH, BLOCK), model.new_cache(BATCH, BLOCK)
        model(ids[:, :-1], cache=right)
        model(torch.cat([ids[:, :1], ids[:, :-1]], dim=1), cache=wrong)  # one more token before the same ones
        full = model(ids)[:, -1]
        assert (model(ids[:, -1:], cache=right)[:, -1] - full).abs().max() <= 1e-5
        assert (model(ids[:, -1:], cache=wrong)[:, -1] - full).abs().max() > 1e-3


@pytest.mark.parametrize("position", POSITIONS)
def test_several_tokens_after_a_cache_see_the_cache_and_each_other_causally(position: str) -> None:
    model, ids = _model(position), torch.randint(VOCAB, (2, 14), generator=torch.Generator().manual_seed(2))
    cache = model.new_cache(2, BLOCK)
    with torch.no_grad():
        parts = [model(ids[:, a:b], cache=cache) for a, b in ((0, 5), (5, 8), (8, 9), (9, 14))]
        torch.testing.assert_close(torch.cat(parts, dim=1), model(ids), atol=1e-5, rtol=0)


@pytest.mark.parametrize("position", POSITIONS)
def test_past_block_size_the_window_is_recomputed_and_the_text_stays_the_same(position: str) -> None:
    model, prompt = _model(position), _prompt()
    seen, handle = _forwards(model)
    try:
        cached = generate(model, prompt, 2 * BLOCK, block_size=BLOCK, greedy=True)  # the cache by default
    finally:
        handle.remove()
    # the prompt, then one token at a time until the text fills block_size, then the whole window every step
    by_one = BLOCK - PROMPT
    assert seen == [(PROMPT, True)] + [(1, True)] * by_one + [(BLOCK, False)] * (2 * BLOCK - 1 - by_one)
    assert torch.equal(cached, generate(model, prompt, 2 * BLOCK, block_size=BLOCK, greedy=True, use_cache=False))
    sampled = [generate(model, prompt, 2 * BLOCK, block_size=BLOCK, top_k=5, generator=seeded_generator(4),
                        use_cache=c) for c in (True, False)]
    assert torch.equal(*sampled)


def test_a_prompt_longer_than_block_size_never_uses_the_cache() -> None:
    model, prompt = _model("rope"), torch.randint(VOCAB, (2, BLOCK + 3))
    seen, handle = _forwards(model)
    try:
        out = generate(model, prompt, 4, block_size=BLOCK, greedy=True)
    finally:
        handle.remove()
    assert seen == [(BLOCK, False)] * 4
    assert torch.equal(out, generate(model, prompt, 4, block_size=BLOCK, greedy=True, use_cache=False))


def test_a_learned_model_stops_at_its_table_with_the_cache_as_without() -> None:
    model = _model("learned", block_size=8)
    for use_cache in (True, False):
        with pytest.raises(ValueError, match="sequence length 9 exceeds the model's block_size=8"):
            generate(model, _prompt(), 10, block_size=12, greedy=True, use_cache=use_cache)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_caches_memory_is_the_formula(dtype: torch.dtype) -> None:
    model = _model("rope", n_layer=3, n_head=4, d_model=32).to(dtype)
    batch, max_len = 2, 12
    cache = model.new_cache(batch, max_len)
    measured = sum(t.numel() * t.element_size() for layer in cache for t in (layer.keys, layer.values))
    formula = 2 * 3 * batch * 4 * max_len * (32 // 4) * torch.finfo(dtype).bits // 8
    assert measured == formula == sum(layer.nbytes for layer in cache)
    assert all(layer.keys.dtype == dtype and layer.keys.shape == (batch, 4, max_len, 8) for layer in cache)


def test_generate_uses_the_cache_where_the_model_keeps_one() -> None:
    class Bigram(nn.Module):  # no new_cache: the loop feeds the whole context
        def __init__(self) -> None:
            super().__init__()
            self.table = nn.Embedding(VOCAB, VOCAB)

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            return self.table(idx)

    model = Bigram()
    seen, handle = _forwards(model)
    try:
        generate(model, _prompt(1), 3, block_size=BLOCK, greedy=True)
    finally:
        handle.remove()
    assert seen == [(PROMPT, False), (PROMPT + 1, False), (PROMPT + 2, False)]
    with pytest.raises(ValueError, match="use_cache=True, but a Bigram keeps no KV cache"):
        generate(model, _prompt(1), 3, block_size=BLOCK, use_cache=True)
    with pytest.raises(ValueError, match="use_cache must be True, False or None"):
        generate(_model("rope"), _prompt(1), 3, block_size=BLOCK, use_cache="yes")


def test_bad_caches_are_refused() -> None:
    model = _model("learned")
    with pytest.raises(ValueError, match=r"max_len=17 is longer than this 'learned' model runs: 16 positions"):
        model.new_cache(1, BLOCK + 1)
    with pytest.raises(ValueError, match="batch must be a positive int"):
        model.new_cache(0, 4)
    with torch.no_grad():
        with pytest.raises(ValueError, match="the cache was made for batch 2, but idx has batch 3"):
            model(_prompt(3), cache=model.new_cache(2, BLOCK))
        with pytest.raises(ValueError, match=r"cache must be a list of 2 KVCache, one per layer .* got \[.KVCache.\]"):
            model(_prompt(3), cache=model.new_cache(3, BLOCK)[:1])
        cache = model.new_cache(3, 6)
        model(_prompt(3), cache=cache)
        with pytest.raises(ValueError, match="the cache holds max_len=6 positions and 4 are filled: 3 more do not"):
            model(_prompt(3)[:, :3], cache=cache)
        uneven = model.new_cache(3, BLOCK)
        uneven[1].append(*(torch.zeros(3, 2, 1, 8),) * 2)
        with pytest.raises(ValueError, match=r"different numbers of positions \[0, 1\]"):
            model(_prompt(3), cache=uneven)


def test_a_layers_cache_refuses_keys_of_another_shape_and_cross_attention() -> None:
    cache = KVCache(2, 4, 10, 8)
    with pytest.raises(ValueError, match=r"k has shape \(2, 3, 1, 8\); this cache takes \(batch=2, heads=4, seq, "):
        cache.append(torch.zeros(2, 3, 1, 8), torch.zeros(2, 3, 1, 8))
    with pytest.raises(ValueError, match=r"v has shape \(2, 4, 2, 8\)"):
        cache.append(torch.zeros(2, 4, 1, 8), torch.zeros(2, 4, 2, 8))
    assert cache.length == 0 and cache.nbytes == 2 * 2 * 4 * 10 * 8 * 4
    attn, x = MultiHeadAttention(32, 4), torch.zeros(2, 1, 32)
    with pytest.raises(ValueError, match="cache is for self-attention without a mask"):
        attn(x, context=torch.zeros(2, 3, 32), cache=cache)
    with pytest.raises(ValueError, match="cache is for self-attention without a mask"):
        attn(x, mask=torch.ones(1, 1, dtype=torch.bool), cache=cache)
