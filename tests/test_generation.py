"""labkit.generation against fake models whose logits we set, so that every expected value is exact."""

import pytest
import torch
from torch import nn

from labkit.corpus import CharTokenizer
from labkit.generation import filter_logits, generate, next_token_distribution, sample_text
from labkit.models import GPTConfig, TinyGPT

INF = float("inf")


class LastTokenLM(nn.Module):
    """logits[b, t] = table[idx[b, t]]: the next token depends only on the current one (a bigram table).

    Checks what `generate` promises: no gradients, eval mode, at most `max_len` tokens of context.
    """

    def __init__(self, table: torch.Tensor, max_len: int | None = None) -> None:
        super().__init__()
        self.table = nn.Parameter(table.clone().float(), requires_grad=False)
        self.max_len = max_len
        self.lengths: list[int] = []
        self.modes: list[bool] = []

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        assert idx.dim() == 2 and idx.dtype == torch.long
        assert not torch.is_grad_enabled(), "generate must run under torch.no_grad()"
        if self.max_len is not None:
            assert idx.shape[1] <= self.max_len, f"context of {idx.shape[1]} tokens > {self.max_len}"
        self.lengths.append(idx.shape[1])
        self.modes.append(self.training)
        return self.table[idx]  # (batch, seq, vocab)


class FirstTokenLM(LastTokenLM):
    """Every position's logits come from the FIRST token it is shown, so the output reveals the context window."""

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return super().forward(idx[:, :1].expand_as(idx))


def _cycle_table(vocab: int, step: int = 1) -> torch.Tensor:
    """Logits whose argmax after token i is (i + step) % vocab, with a clear margin."""
    table = torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(0))
    table[torch.arange(vocab), (torch.arange(vocab) + step) % vocab] = 10.0
    return table


def _kept(logits: torch.Tensor) -> list[int]:
    return torch.isfinite(logits).nonzero().flatten().tolist()


# ---------------------------------------------------------------------------------------------- filter_logits


@pytest.mark.parametrize("temperature", [0.25, 0.7, 1.0, 3.0])
def test_temperature_divides_the_logits(temperature):
    logits = torch.randn(3, 11, generator=torch.Generator().manual_seed(1))
    out = filter_logits(logits, temperature=temperature)
    torch.testing.assert_close(out.softmax(-1), (logits / temperature).softmax(-1))
    torch.testing.assert_close(out, logits / temperature)


def test_top_k_keeps_exactly_the_k_largest():
    logits = torch.tensor([0.3, 2.0, -1.0, 1.5, 0.9, -0.2])
    out = filter_logits(logits, top_k=3)
    assert _kept(out) == [1, 3, 4]
    assert torch.equal(out[[1, 3, 4]], logits[[1, 3, 4]])  # kept logits are untouched
    assert _kept(filter_logits(logits, top_k=1)) == [1]
    assert torch.equal(filter_logits(logits, top_k=100), logits)  # top_k > vocab: keep all


def test_top_k_breaks_ties_towards_the_lower_id():
    logits = torch.tensor([1.0, 2.0, 2.0, 2.0, 0.0])
    assert _kept(filter_logits(logits, top_k=2)) == [1, 2]
    batch = torch.stack([logits, logits.flip(0)])  # row-wise: [0, 2, 2, 2, 1]
    out = filter_logits(batch, top_k=2)
    assert _kept(out[0]) == [1, 2] and _kept(out[1]) == [1, 2]
    assert torch.isfinite(out).sum(-1).tolist() == [2, 2]
    many = torch.zeros(3, 5000)  # long runs of ties, where an unstable sort would scramble the order
    assert _kept(filter_logits(many, top_k=7)[2]) == list(range(7))
    assert _kept(filter_logits(many, top_p=0.001)[1]) == list(range(5))


# Hand-worked nucleus: probabilities 0.1, 0.4, 0.2, 0.3 rank as ids 1 (0.4), 3 (0.3), 2 (0.2), 0 (0.1)
# with running totals 0.4, 0.7, 0.9, 1.0.
@pytest.mark.parametrize("top_p,kept", [
    (1e-9, [1]),  # the most probable token is always kept
    (0.05, [1]),
    (0.4, [1]),  # 0.4 reaches 0.4 exactly
    (0.5, [1, 3]),
    (0.7, [1, 3]),  # reaches 0.7 exactly: no third token
    (0.71, [1, 2, 3]),
    (0.95, [0, 1, 2, 3]),
    (1.0, [0, 1, 2, 3]),
])
def test_top_p_keeps_the_smallest_prefix_reaching_p(top_p, kept):
    logits = torch.tensor([0.1, 0.4, 0.2, 0.3]).log() + 5.0  # the offset must not matter
    out = filter_logits(logits, top_p=top_p)
    assert _kept(out) == kept
    assert torch.equal(out[kept], logits[kept])


@pytest.mark.parametrize("top_p,kept", [(0.4, [1]), (0.5, [0, 1]), (0.7, [0, 1]), (0.75, [0, 1, 2])])
def test_top_p_ties_at_the_boundary_go_to_the_lower_id(top_p, kept):
    # 0.3, 0.4, 0.3: ids 0 and 2 tie; the ranking is 1, 0, 2 with totals 0.4, 0.7, 1.0
    assert _kept(filter_logits(torch.tensor([0.3, 0.4, 0.3]).log(), top_p=top_p)) == kept


def test_top_p_works_row_by_row():
    logits = torch.tensor([[0.1, 0.4, 0.2, 0.3], [0.7, 0.1, 0.1, 0.1]]).log()
    out = filter_logits(logits[None], top_p=0.6)[0]  # (1, 2, vocab): any leading dims
    assert _kept(out[0]) == [1, 3] and _kept(out[1]) == [0]


def test_top_p_renormalises_after_top_k():
    logits = torch.tensor([0.4, 0.3, 0.2, 0.1]).log()
    # alone: totals 0.4, 0.7, 0.9 → three tokens reach 0.75
    assert _kept(filter_logits(logits, top_p=0.75)) == [0, 1, 2]
    # after top_k=3 the shares are 4/9, 3/9, 2/9: totals 0.44, 0.78 → two tokens reach 0.75
    assert _kept(filter_logits(logits, top_k=3, top_p=0.75)) == [0, 1]


def test_repetition_penalty_follows_the_ctrl_formula():
    logits = torch.tensor([[2.0, -1.0, 0.5, -3.0, 0.0],
                           [2.0, -1.0, 0.5, -3.0, 0.0]])
    previous = torch.tensor([[0, 1, 1, 4], [2, 3, 3, 3]])  # repeats count once
    out = filter_logits(logits, repetition_penalty=2.0, previous=previous)
    assert torch.equal(out, torch.tensor([[1.0, -2.0, 0.5, -3.0, 0.0],
                                          [2.0, -1.0, 0.25, -6.0, 0.0]]))
    out = filter_logits(logits, repetition_penalty=0.5, previous=previous)  # < 1 favours repeats
    assert torch.equal(out[0], torch.tensor([4.0, -0.5, 0.5, -3.0, 0.0]))
    # then temperature: ((2 / 2) / 4, (-1 * 2) / 4, ...)
    out = filter_logits(logits, repetition_penalty=2.0, previous=previous, temperature=4.0)
    assert torch.equal(out[0], torch.tensor([0.25, -0.5, 0.125, -0.75, 0.0]))
    assert torch.equal(filter_logits(logits, previous=previous), logits)  # penalty 1: nothing changes


@pytest.mark.parametrize("kwargs,match", [
    ({"temperature": 0}, r"temperature must be a number > 0, got 0 \(for the argmax, use greedy=True\)"),
    ({"temperature": -1.0}, "temperature must be a number > 0, got -1.0"),
    ({"temperature": float("nan")}, "temperature must be a number > 0, got nan"),
    ({"top_k": 0}, "top_k must be None or an int >= 1, got 0"),
    ({"top_k": 2.5}, "top_k must be None or an int >= 1, got 2.5"),
    ({"top_k": True}, "top_k must be None or an int >= 1, got True"),
    ({"top_p": 0.0}, r"top_p must be None or a number in \(0, 1\], got 0.0"),
    ({"top_p": 1.5}, r"top_p must be None or a number in \(0, 1\], got 1.5"),
    ({"repetition_penalty": 0.0}, r"repetition_penalty must be a number > 0 \(1 = no penalty\), got 0.0"),
    ({"repetition_penalty": -2.0}, "repetition_penalty must be a number > 0"),
    ({"repetition_penalty": 1.2}, r"repetition_penalty=1.2 needs previous=\(\.\.\., seq\) token ids"),
    ({"repetition_penalty": 1.2, "previous": torch.tensor([[0, 7]])}, r"outside 0\.\.4: min 0, max 7"),
    ({"repetition_penalty": 1.2, "previous": torch.tensor([0, 1])}, r"same leading dims .* \(2,\) and \(1, 5\)"),
])
def test_filter_logits_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        filter_logits(torch.zeros(1, 5), **kwargs)


def test_filter_logits_rejects_bad_logits():
    with pytest.raises(TypeError, match="logits must be a floating-point tensor, got torch.int64"):
        filter_logits(torch.zeros(5, dtype=torch.long))
    with pytest.raises(TypeError, match="previous must be a long tensor"):
        filter_logits(torch.zeros(1, 5), repetition_penalty=1.5, previous=torch.zeros(1, 2))


# ---------------------------------------------------------------------------------------------- next_token_distribution


def test_next_token_distribution_is_the_filtered_softmax_of_the_last_position():
    table = _cycle_table(6)
    model = LastTokenLM(table)
    idx = torch.tensor([[0, 1, 4], [5, 5, 2]])
    probs = next_token_distribution(model, idx, temperature=0.5)
    assert probs.shape == (2, 6)
    torch.testing.assert_close(probs, (table[[4, 2]] / 0.5).softmax(-1))
    probs = next_token_distribution(model, idx, top_k=2)
    assert (probs > 0).sum(-1).tolist() == [2, 2]
    torch.testing.assert_close(probs.sum(-1), torch.ones(2))
    probs = next_token_distribution(model, idx, repetition_penalty=3.0)  # penalizes what idx already holds
    torch.testing.assert_close(probs, filter_logits(table[[4, 2]], repetition_penalty=3.0, previous=idx).softmax(-1))
    next_token_distribution(FirstTokenLM(table, max_len=2), idx, block_size=2)  # crops when asked


# ---------------------------------------------------------------------------------------------- generate


def test_greedy_follows_the_argmax_chain():
    model = LastTokenLM(_cycle_table(7, step=3))
    out = generate(model, torch.tensor([[0], [5]]), 6, block_size=8, greedy=True)
    assert out.tolist() == [[0, 3, 6, 2, 5, 1, 4], [5, 1, 4, 0, 3, 6, 2]]


def test_greedy_with_repetition_penalty_avoids_repeats():
    # every row prefers 0 (logit 3) over 1 (2.9); penalty 2 halves a repeated positive logit
    model = LastTokenLM(torch.tensor([3.0, 2.9, 1.0, 0.5]).expand(4, 4))
    assert generate(model, torch.tensor([[2]]), 4, block_size=8, greedy=True).tolist() == [[2, 0, 0, 0, 0]]
    out = generate(model, torch.tensor([[2]]), 4, block_size=8, greedy=True, repetition_penalty=2.0)
    # after 0: 1.5 < 2.9 → 1; after 0 and 1: 1.5 > 1.45 → 0 again, and from then on
    assert out.tolist() == [[2, 0, 1, 0, 0]]
    # the penalty looks at the whole sequence, not just the model's window of block_size tokens
    out = generate(model, torch.tensor([[2]]), 4, block_size=1, greedy=True, repetition_penalty=2.0)
    assert out.tolist() == [[2, 0, 1, 0, 0]]


def test_context_is_cropped_to_the_last_block_size_tokens():
    table = _cycle_table(9, step=2)
    model = FirstTokenLM(table, max_len=3)
    prompt = torch.tensor([[0, 1, 2, 3, 4, 5]])  # longer than block_size
    out = generate(model, prompt, 5, block_size=3, greedy=True)
    seq = prompt[0].tolist()
    for _ in range(5):  # the model sees seq[-3:], and its answer depends on seq[-3]
        seq.append((seq[-3] + 2) % 9)
    assert out[0].tolist() == seq
    assert model.lengths == [3] * 5
    model.lengths.clear()
    generate(model, torch.tensor([[0]]), 5, block_size=3, greedy=True)
    assert model.lengths == [1, 2, 3, 3, 3]


def test_generate_with_tinygpt_beyond_its_block_size():
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, d_model=16))
    out = generate(model, torch.randint(10, (2, 12)), 5, block_size=8, top_k=5,
                   generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 17) and int(out.max()) < 10


@pytest.mark.parametrize("start_training", [True, False])
def test_training_mode_is_restored(start_training):
    model = LastTokenLM(_cycle_table(5)).train(start_training)
    generate(model, torch.tensor([[0]]), 3, block_size=4)
    next_token_distribution(model, torch.tensor([[0]]))
    assert model.modes == [False] * 4 and model.training is start_training


def test_training_mode_is_restored_after_an_error():
    class Broken(LastTokenLM):
        def forward(self, idx):
            if idx.shape[1] > 2:
                raise RuntimeError("boom")
            return super().forward(idx)

    model = Broken(_cycle_table(5)).train()
    with pytest.raises(RuntimeError, match="boom"):
        generate(model, torch.tensor([[0]]), 5, block_size=8)
    assert model.training and torch.is_grad_enabled()


def test_seeded_sampling_is_reproducible():
    model = LastTokenLM(torch.zeros(5, 5))  # uniform: every draw is random

    def sample(seed):
        return generate(model, torch.zeros(3, 1, dtype=torch.long), 30, block_size=4,
                        generator=torch.Generator().manual_seed(seed))

    assert torch.equal(sample(1), sample(1))
    assert not torch.equal(sample(1), sample(2))


def _frequencies(model, max_new_tokens=1, draws=20_000, seed=0, **filters):
    out = generate(model, torch.zeros(draws, 1, dtype=torch.long), max_new_tokens, block_size=4,
                   generator=torch.Generator().manual_seed(seed), **filters)
    return torch.bincount(out[:, -1], minlength=model.table.shape[1]).double() / draws


def _assert_matches(freq, probs, draws=20_000):
    """Every frequency within 5 standard errors of its probability; filtered tokens never drawn."""
    probs = probs.double()
    bound = 5 * (probs * (1 - probs) / draws).sqrt() + 1e-12
    assert bool(((freq - probs).abs() <= bound).all()), (freq, probs)
    assert bool((freq[probs == 0] == 0).all())


def test_sampled_frequencies_match_a_hand_worked_nucleus():
    model = LastTokenLM(torch.tensor([0.1, 0.4, 0.2, 0.3]).log().expand(4, 4))
    _assert_matches(_frequencies(model, top_p=0.5), torch.tensor([0.0, 4 / 7, 0.0, 3 / 7]))
    _assert_matches(_frequencies(model), torch.tensor([0.1, 0.4, 0.2, 0.3]))


def test_sampled_frequencies_match_the_filtered_distribution():
    table = torch.randn(8, 8, generator=torch.Generator().manual_seed(3))
    model = LastTokenLM(table)
    filters = dict(temperature=0.7, top_k=5, top_p=0.9)
    expected = filter_logits(table[0], **filters).softmax(-1)
    assert 2 <= int((expected > 0).sum()) <= 5
    _assert_matches(_frequencies(model, **filters), expected)


@pytest.mark.parametrize("idx,max_new,kwargs,error,match", [
    (torch.zeros(2, 0, dtype=torch.long), 3, {}, ValueError, r"empty prompt \(shape \(2, 0\)\): give at least one"),
    (torch.zeros(1, 2, dtype=torch.long), -1, {}, ValueError, "max_new_tokens must be an int >= 0, got -1"),
    (torch.zeros(1, 2, dtype=torch.long), 2.0, {}, ValueError, "max_new_tokens must be an int >= 0, got 2.0"),
    (torch.zeros(3, dtype=torch.long), 1, {}, ValueError, r"idx must be \(batch, seq\) token ids, got shape \(3,\)"),
    (torch.zeros(1, 3), 1, {}, TypeError, "idx must be a long tensor of token ids, got torch.float32"),
    (torch.zeros(1, 2, dtype=torch.long), 1, {"block_size": 0}, ValueError, "block_size must be a positive int"),
    (torch.zeros(1, 2, dtype=torch.long), 1, {"temperature": 0.0}, ValueError, "use greedy=True"),
])
def test_generate_rejects_bad_inputs(idx, max_new, kwargs, error, match):
    kwargs = {"block_size": 4, **kwargs}
    with pytest.raises(error, match=match):
        generate(LastTokenLM(_cycle_table(4)), idx, max_new, **kwargs)


def test_generate_checks_the_models_output():
    class Flat(nn.Module):
        def forward(self, idx):
            return torch.zeros(idx.shape[0], 4)

    with pytest.raises(ValueError, match=r"must return logits \(batch, seq, vocab\).* got \(1, 4\)"):
        generate(Flat(), torch.zeros(1, 2, dtype=torch.long), 1, block_size=4)


def test_zero_new_tokens_and_a_model_without_parameters():
    class Uniform(nn.Module):
        def forward(self, idx):
            return torch.zeros(*idx.shape, 3)

    idx = torch.tensor([[1, 2]])
    assert torch.equal(generate(Uniform(), idx, 0, block_size=4), idx)
    assert generate(Uniform(), idx, 4, block_size=4).shape == (1, 6)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cpu_generator_gives_the_same_text_on_the_gpu():
    model = LastTokenLM(torch.randn(6, 6, generator=torch.Generator().manual_seed(0)))
    prompt = torch.zeros(4, 1, dtype=torch.long)
    on_cpu = generate(model, prompt, 20, block_size=4, top_k=4, generator=torch.Generator().manual_seed(5))
    on_gpu = generate(model.cuda(), prompt, 20, block_size=4, top_k=4, generator=torch.Generator().manual_seed(5))
    assert on_gpu.device.type == "cuda" and torch.equal(on_gpu.cpu(), on_cpu)


# ---------------------------------------------------------------------------------------------- sample_text


def test_sample_text_encodes_generates_and_decodes():
    tok = CharTokenizer.from_text("abcd")
    model = LastTokenLM(_cycle_table(4))  # a → b → c → d → a
    assert sample_text(model, tok, "a", 5, block_size=4, greedy=True) == "abcdab"
    assert sample_text(model, tok, "dd", 2, 4, greedy=True) == "ddab"
    text = sample_text(model, tok, "ab", 10, 4, generator=torch.Generator().manual_seed(0))
    assert len(text) == 12 and text.startswith("ab") and set(text) <= set("abcd")


def test_sample_text_rejects_bad_prompts():
    tok = CharTokenizer.from_text("abcd")
    model = LastTokenLM(_cycle_table(4))
    with pytest.raises(ValueError, match="prompt is empty: give at least one token of prompt"):
        sample_text(model, tok, "", 5, 4)
    with pytest.raises(ValueError, match=r"outside this tokenizer's vocabulary of 4: 'z' at position 1"):
        sample_text(model, tok, "az", 5, 4)
    with pytest.raises(ValueError, match=r"prompt is 5 tokens long, more than the model's block_size=4"):
        sample_text(model, tok, "abcda", 5, 4)
    assert sample_text(model, tok, "abcd", 1, 4, greedy=True) == "abcda"  # exactly block_size is fine
