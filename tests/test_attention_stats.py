"""labkit.attention_stats against plain reference computations, and its answers to bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from labkit.attention_stats import (aggregate_heads, attention_rollout, attention_share, check_index,
                                    head_entropy, head_statistics, mean_distance, stack_attentions, token_groups,
                                    window)

LAYERS, HEADS, SEQ = 3, 4, 6
TOKENS = ["[CLS]", "hello", ",", "world", "##s", "[SEP]"]


@pytest.fixture(scope="module")
def attn() -> torch.Tensor:
    torch.manual_seed(0)
    return (3 * torch.randn(LAYERS, HEADS, SEQ, SEQ)).softmax(-1)


def test_entropy_is_the_categorical_entropy_averaged_over_queries(attn) -> None:
    expected = torch.distributions.Categorical(probs=attn).entropy().mean(-1)
    torch.testing.assert_close(head_entropy(attn), expected)
    one_hot = torch.eye(SEQ).expand(1, 1, SEQ, SEQ)
    uniform = torch.full((1, 1, SEQ, SEQ), 1 / SEQ)
    assert head_entropy(one_hot).item() == pytest.approx(0.0, abs=1e-6)
    assert head_entropy(uniform).item() == pytest.approx(math.log(SEQ))


def test_mean_distance_matches_a_loop(attn) -> None:
    a = attn.numpy()
    expected = np.zeros((LAYERS, HEADS))
    for layer in range(LAYERS):
        for head in range(HEADS):
            expected[layer, head] = np.mean([sum(a[layer, head, q, k] * abs(q - k) for k in range(SEQ))
                                             for q in range(SEQ)])
    np.testing.assert_allclose(mean_distance(attn).numpy(), expected, rtol=1e-5)
    assert mean_distance(torch.eye(SEQ).expand(1, 1, SEQ, SEQ)).item() == 0.0  # a head on itself looks nowhere


def test_token_groups_find_specials_and_punctuation() -> None:
    groups = token_groups(TOKENS + ["...", "##.", "'s", "[PAD]"])
    assert groups == {"[CLS]": [0], "[SEP]": [5], "punctuation": [2, 6, 7]}


def test_share_is_the_attention_on_those_keys(attn) -> None:
    expected = (attn[..., 0] + attn[..., 2]).mean(-1)
    torch.testing.assert_close(attention_share(attn, [0, 2]), expected)
    assert (attention_share(attn, []) == 0).all()
    torch.testing.assert_close(attention_share(attn, range(SEQ)), torch.ones(LAYERS, HEADS))


def test_head_statistics_gathers_every_table(attn) -> None:
    stats = head_statistics(attn, TOKENS)
    assert list(stats) == ["entropy", "distance", "share on [CLS]", "share on [SEP]", "share on punctuation"]
    assert all(value.shape == (LAYERS, HEADS) for value in stats.values())
    torch.testing.assert_close(stats["share on [SEP]"], attn[..., 5].mean(-1))


def test_mean_and_max_over_heads(attn) -> None:
    torch.testing.assert_close(aggregate_heads(attn, "mean"), sum(attn[:, h] for h in range(HEADS)) / HEADS)
    expected = np.max(attn.numpy(), axis=1)
    np.testing.assert_array_equal(aggregate_heads(attn, "max").numpy(), expected)
    with pytest.raises(ValueError, match=r"how must be one of \['mean', 'max', 'rollout'\], got 'sum'"):
        aggregate_heads(attn, "sum")


def test_rollout_multiplies_the_layers_with_the_residual_added(attn) -> None:
    a = attn.double().numpy()
    rolled = np.eye(SEQ)
    for layer in range(LAYERS):
        mixed = 0.5 * a[layer].mean(0) + 0.5 * np.eye(SEQ)
        rolled = mixed @ rolled
        np.testing.assert_allclose(attention_rollout(attn)[layer].numpy(), rolled, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(aggregate_heads(attn, "rollout"), attention_rollout(attn))
    torch.testing.assert_close(attention_rollout(attn).sum(-1), torch.ones(LAYERS, SEQ))  # still distributions


def test_stacking_a_models_attentions() -> None:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, attn_implementation="eager")
    model = BertModel(config).eval()
    ids = torch.tensor([[2, 5, 7, 3], [2, 9, 3, 0]])
    with torch.no_grad():
        out = model(input_ids=ids, output_attentions=True)
    attn = stack_attentions(out.attentions, tokens=["a", "b", "c", "d"], example=1)
    assert attn.shape == (2, 2, 4, 4) and attn.dtype == torch.float32
    torch.testing.assert_close(attn[1], out.attentions[1][1])
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 2, 4))
    assert stack_attentions(attn) is not None


@pytest.mark.parametrize("attentions, kwargs, match", [
    (None, {}, "the model returned no attentions: load it with attention weights"),
    ((), {}, "the model returned no attentions"),
    ((None, None), {}, "the model returned no attentions"),
    ((torch.rand(1, 2, 4, 4), torch.rand(1, 2, 5, 5)), {}, r"all the same shape; got shapes"),
    ((torch.rand(1, 2, 4, 4),), {"example": 1}, r"example 1 is out of range: the batch holds 1 example"),
    ((torch.rand(1, 2, 4, 5),), {}, r"self-attention maps are square \(seq, seq\), got \(4, 5\)"),
    (torch.rand(2, 4, 4), {}, r"must be \(layers, heads, seq, seq\), got shape \(2, 4, 4\)"),
    ((torch.rand(1, 2, 4, 4),), {"tokens": ["a", "b", "c"]}, "3 tokens but the attention covers 4 positions"),
])
def test_bad_attentions_get_one_clear_error(attentions, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        stack_attentions(attentions, **kwargs)


def test_layer_and_head_indices_are_checked() -> None:
    assert check_index("layer", 5, 6) == 5
    for bad in (6, -1, True, 1.0):
        with pytest.raises(IndexError, match=rf"layer {bad!r} is out of range: this model has 6 layers, "
                                             r"numbered 0..5"):
            check_index("layer", bad, 6)


def test_a_window_cuts_queries_and_keys(attn) -> None:
    part, tokens = window(attn, TOKENS, 2, 3)
    torch.testing.assert_close(part, attn[:, :, 2:5, 2:5])
    assert tokens == [",", "world", "##s"]
    part, tokens = window(attn, TOKENS, 4, 10)  # the last window is shorter
    assert part.shape[-1] == 2 and tokens == ["##s", "[SEP]"]
    with pytest.raises(IndexError, match=r"window start 6 is out of range: the sequence has 6 tokens"):
        window(attn, TOKENS, 6, 2)
    with pytest.raises(ValueError, match="length must be a positive int"):
        window(attn, TOKENS, 0, 0)


# ----------------------------------------------------------------------------- cross-attention (target × source)

TGT, SRC = 4, 7
SOURCE = ["march", "the", "fifth", ",", "nineteen", "ninety", "one"]


@pytest.fixture(scope="module")
def cross() -> torch.Tensor:
    torch.manual_seed(1)
    return (3 * torch.randn(LAYERS, HEADS, TGT, SRC)).softmax(-1)


def test_stacking_cross_attention_needs_the_key_tokens(cross) -> None:
    per_layer = [cross[layer][None] for layer in range(LAYERS)]  # as a model returns it: (batch, heads, tgt, src)
    attn = stack_attentions(per_layer, tokens=list("1991"), key_tokens=SOURCE)
    torch.testing.assert_close(attn, cross)
    with pytest.raises(ValueError, match=r"square \(seq, seq\), got \(4, 7\); for cross-attention .* key_tokens"):
        stack_attentions(per_layer, tokens=list("1991"))
    with pytest.raises(ValueError, match="6 key tokens but the attention covers 7 positions"):
        stack_attentions(per_layer, tokens=list("1991"), key_tokens=SOURCE[:-1])
    with pytest.raises(ValueError, match="3 tokens but the attention covers 4 positions"):
        stack_attentions(per_layer, tokens=list("199"), key_tokens=SOURCE)


def test_distance_and_rollout_refuse_cross_attention(cross) -> None:
    with pytest.raises(ValueError, match=r"the mean attention distance is defined for self-attention only .*"
                                         r"got \(4, 7\) maps: cross-attention's queries and keys belong to two"):
        mean_distance(cross)
    with pytest.raises(ValueError, match="attention rollout is defined for self-attention only"):
        aggregate_heads(cross, "rollout")


def test_cross_attention_statistics_are_entropy_and_the_punctuation_share(cross) -> None:
    from labkit.attention_stats import CROSS_STATISTICS

    stats = head_statistics(cross, SOURCE, cross=True)
    assert tuple(stats) == CROSS_STATISTICS == ("entropy", "share on punctuation")
    expected = torch.distributions.Categorical(probs=cross).entropy().mean(-1)
    torch.testing.assert_close(stats["entropy"], expected)
    torch.testing.assert_close(stats["share on punctuation"], cross[..., 3].mean(-1))  # the "," of the source
    torch.testing.assert_close(aggregate_heads(cross, "mean"), cross.mean(1))
    assert aggregate_heads(cross, "max").shape == (LAYERS, TGT, SRC)
