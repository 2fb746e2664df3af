"""labkit.generation's step-by-step trace, the Hugging Face adapter, and the prompt and seed helpers."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from labkit.corpus import CharTokenizer
from labkit.generation import (CausalLMAdapter, encode_prompt, generate, generation_trace, next_token_distribution,
                               sample_text, seeded_generator)
from labkit.models import GPTConfig, TinyGPT

VOCAB, BLOCK = 12, 8
SETTINGS = [
    dict(greedy=True),
    dict(greedy=True, repetition_penalty=1.8),
    dict(),
    dict(temperature=0.6),
    dict(top_k=3),
    dict(top_p=0.7),
    dict(temperature=1.4, top_k=6, top_p=0.9, repetition_penalty=1.5),
]


@pytest.fixture(scope="module")
def model() -> TinyGPT:
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(vocab_size=VOCAB, block_size=BLOCK, n_layer=1, n_head=2, d_model=16))
    with torch.no_grad():  # GPT-2's init is near uniform; larger weights give a distribution worth filtering
        for p in model.parameters():
            p.mul_(4.0)
    return model.eval()


def trace_and_generate(model: nn.Module, idx: torch.Tensor, steps: int, n_candidates: int = 10, **settings):
    """The trace and generate's output for the same settings and seed."""
    trace = generation_trace(model, idx, steps, block_size=BLOCK, generator=seeded_generator(7),
                             n_candidates=n_candidates, **settings)
    out = generate(model, idx, steps, block_size=BLOCK, generator=seeded_generator(7), **settings)
    return trace, out


@pytest.mark.parametrize("settings", SETTINGS, ids=str)
def test_the_trace_writes_what_generate_writes(model, settings) -> None:
    prompt = torch.tensor([[1, 4, 2]])
    trace, out = trace_and_generate(model, prompt, 20, **settings)  # 23 tokens > BLOCK: the context is cropped
    assert torch.equal(trace.ids, out)
    assert torch.equal(trace.tokens, out[0, 3:]) and trace.prompt_length == 3
    assert trace.candidates.shape == trace.raw.shape == trace.filtered.shape == (20, 10)


@pytest.mark.parametrize("settings", SETTINGS, ids=str)
def test_each_step_holds_the_distributions_of_its_context(model, settings) -> None:
    trace, _ = trace_and_generate(model, torch.tensor([[3, 3]]), 12, n_candidates=VOCAB, **settings)
    filters = {k: v for k, v in settings.items() if k != "greedy"}
    for s in range(12):
        context = trace.ids[:, :trace.prompt_length + s]
        raw = next_token_distribution(model, context, block_size=BLOCK)[0]
        probs = next_token_distribution(model, context, block_size=BLOCK, **filters)[0]
        ids = trace.candidates[s]
        assert sorted(ids.tolist()) == list(range(VOCAB))  # every token, once
        torch.testing.assert_close(trace.raw[s], raw[ids])
        torch.testing.assert_close(trace.filtered[s], probs[ids])
        assert int(trace.kept[s]) == int((probs > 0).sum())
        assert float(trace.chosen[s]) == pytest.approx(float(probs[trace.tokens[s]]))


@pytest.mark.parametrize("settings", SETTINGS, ids=str)
def test_candidates_are_ranked_and_the_chosen_token_was_allowed(model, settings) -> None:
    trace, _ = trace_and_generate(model, torch.tensor([[5]]), 15, n_candidates=5, **settings)
    assert bool((trace.filtered[:, :-1] >= trace.filtered[:, 1:]).all())  # most probable first
    assert bool((trace.filtered.sum(-1) <= 1 + 1e-6).all()) and bool((trace.raw.sum(-1) <= 1 + 1e-6).all())
    assert bool((trace.chosen > 0).all())  # the filters allowed every chosen token
    assert bool((trace.ranks < trace.kept).all())
    shown = trace.ranks < 5
    assert torch.equal(trace.candidates[shown, trace.ranks[shown]], trace.tokens[shown])
    if settings.get("greedy"):
        assert bool((trace.ranks == 0).all())


def test_top_k_leaves_k_candidates_that_sum_to_one(model) -> None:
    trace, _ = trace_and_generate(model, torch.tensor([[0, 1]]), 10, top_k=3, n_candidates=6)
    assert trace.kept.tolist() == [3] * 10
    assert bool((trace.filtered[:, 3:] == 0).all()) and bool((trace.ranks < 3).all())
    torch.testing.assert_close(trace.filtered[:, :3].sum(-1), torch.ones(10))


def test_more_candidates_than_the_vocabulary_gives_the_whole_vocabulary(model) -> None:
    trace = generation_trace(model, torch.tensor([[2]]), 3, block_size=BLOCK, greedy=True, n_candidates=100)
    assert trace.candidates.shape == (3, VOCAB)
    torch.testing.assert_close(trace.raw.sum(-1), torch.ones(3))


def test_the_trace_restores_the_training_mode(model) -> None:
    model.train()
    try:
        generation_trace(model, torch.tensor([[2]]), 2, block_size=BLOCK)
        assert model.training and torch.is_grad_enabled()
    finally:
        model.eval()


@pytest.mark.parametrize("idx, steps, kwargs, error, match", [
    (torch.tensor([[1], [2]]), 3, {}, ValueError, r"one prompt, shape \(1, seq\), to be traced; got shape \(2, 1\)"),
    (torch.zeros(1, 0, dtype=torch.long), 3, {}, ValueError, "empty prompt"),
    (torch.tensor([[1]]), 0, {}, ValueError, "max_new_tokens must be a positive int, got 0"),
    (torch.tensor([[1]]), 3, {"n_candidates": 0}, ValueError, "n_candidates must be a positive int, got 0"),
    (torch.tensor([[1]]), 3, {"temperature": 0}, ValueError, "temperature must be a number > 0"),
    (torch.tensor([[1]]), 3, {"top_p": 1.5}, ValueError, r"top_p must be None or a number in \(0, 1\]"),
    (torch.tensor([[1]]), 3, {"block_size": 0}, ValueError, "block_size must be a positive int, got 0"),
    (torch.tensor([[1.0]]), 3, {}, TypeError, "idx must be a long tensor"),
])
def test_the_trace_rejects_bad_inputs(model, idx, steps, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        generation_trace(model, idx, steps, **{"block_size": BLOCK, **kwargs})


# ---------------------------------------------------------------------------------------------- prompts and seeds


def test_encode_prompt_gives_one_row_of_ids() -> None:
    tok = CharTokenizer.from_text("abcd")
    assert encode_prompt(tok, "dab", 4).tolist() == [[3, 0, 1]]
    assert encode_prompt(tok, "abcd", 4).shape == (1, 4)  # exactly block_size is fine


@pytest.mark.parametrize("prompt, error, match", [
    ("", ValueError, "prompt is empty: give at least one token of prompt"),
    ("abz", ValueError, r"outside this tokenizer's vocabulary of 4: 'z' at position 2"),
    ("abcda", ValueError, r"prompt is 5 tokens long, more than the model's block_size=4: shorten it"),
    (None, TypeError, "prompt must be a str, got NoneType"),
])
def test_encode_prompt_rejects_bad_prompts(prompt, error, match) -> None:
    with pytest.raises(error, match=match):
        encode_prompt(CharTokenizer.from_text("abcd"), prompt, 4)


def test_a_prompt_that_encodes_to_nothing_is_rejected() -> None:
    class Silent:
        def encode(self, text: str) -> list[int]:
            return []

    with pytest.raises(ValueError, match="prompt ' ' encodes to no tokens"):
        encode_prompt(Silent(), " ", 4)


def test_seeded_generators_repeat_and_bad_seeds_are_named() -> None:
    assert torch.equal(torch.rand(3, generator=seeded_generator(5)), torch.rand(3, generator=seeded_generator(5)))
    for seed in (-1, 2**63, True, 1.5):
        with pytest.raises(ValueError, match=r"seed must be an int in 0..2\*\*63 - 1, got"):
            seeded_generator(seed)


# ---------------------------------------------------------------------------------------------- Hugging Face


@pytest.fixture(scope="module")
def gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=50, n_positions=24, bos_token_id=0,
                        eos_token_id=0)
    return GPT2LMHeadModel(config).eval()


def test_the_adapter_returns_logits_and_the_context_length(gpt2) -> None:
    adapter = CausalLMAdapter(gpt2)
    assert adapter.block_size == 24 and not adapter.training
    idx = torch.tensor([[3, 1, 4, 1, 5]])
    with torch.no_grad():
        torch.testing.assert_close(adapter(idx), gpt2(input_ids=idx).logits)
    assert adapter(idx).shape == (1, 5, 50)


def test_greedy_through_the_adapter_is_hugging_faces_greedy(gpt2) -> None:
    adapter = CausalLMAdapter(gpt2)
    idx = torch.tensor([[7, 2, 9]])
    theirs = gpt2.generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=10, do_sample=False,
                           pad_token_id=0)
    ours = generate(adapter, idx, 10, block_size=adapter.block_size, greedy=True)
    assert torch.equal(ours, theirs)
    trace = generation_trace(adapter, idx, 10, block_size=adapter.block_size, greedy=True)
    assert torch.equal(trace.ids, theirs)
    assert not gpt2.training  # the adapter gives the model back in the mode it had


def test_sampling_through_the_adapter_matches_generate_beyond_the_context(gpt2) -> None:
    adapter = CausalLMAdapter(gpt2)
    idx = torch.tensor([[1, 2, 3]])
    settings = dict(block_size=adapter.block_size, temperature=0.9, top_k=20, top_p=0.9, repetition_penalty=1.2)
    trace = generation_trace(adapter, idx, 30, generator=seeded_generator(3), **settings)  # 33 tokens > 24
    assert torch.equal(trace.ids, generate(adapter, idx, 30, generator=seeded_generator(3), **settings))


def test_the_adapter_reads_max_position_embeddings_or_takes_a_block_size() -> None:
    class Bare(nn.Module):
        def __init__(self, **config) -> None:
            super().__init__()
            self.config = SimpleNamespace(**config)

    assert CausalLMAdapter(Bare(max_position_embeddings=512)).block_size == 512
    assert CausalLMAdapter(Bare(), block_size=64).block_size == 64
    with pytest.raises(ValueError, match="Bare.config has neither n_positions nor max_position_embeddings"):
        CausalLMAdapter(Bare())
    with pytest.raises(ValueError, match="block_size must be a positive int, got 0"):
        CausalLMAdapter(Bare(), block_size=0)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        CausalLMAdapter("gpt2")


def test_sample_text_still_checks_its_prompt(model) -> None:
    tok = CharTokenizer("abcdefghijkl")
    with pytest.raises(ValueError, match="prompt is empty"):
        sample_text(model, tok, "", 3, BLOCK)
    assert len(sample_text(model, tok, "abc", 5, BLOCK, greedy=True)) == 8
