"""labkit.masks: the bool / float mask conventions of F.scaled_dot_product_attention."""

import pytest
import torch
import torch.nn.functional as F

from labkit.masks import additive_mask, causal_mask, check_mask, padding_mask

SCORES = (2, 3, 4, 5)  # (batch, heads, seq_q, seq_k)


def test_causal_mask_square():
    expected = torch.tensor([
        [True, False, False],
        [True, True, False],
        [True, True, True],
    ])
    assert torch.equal(causal_mask(3), expected)


@pytest.mark.parametrize("seq_q,seq_k", [(2, 5), (5, 2), (1, 1), (4, 4)])
def test_causal_mask_rectangular(seq_q, seq_k):
    mask = causal_mask(seq_q, seq_k)
    assert mask.shape == (seq_q, seq_k) and mask.dtype == torch.bool
    for i in range(seq_q):
        for j in range(seq_k):
            assert mask[i, j] == (j <= i)


@pytest.mark.parametrize("seq_q,seq_k", [(3, 3), (3, 6), (6, 3)])
def test_causal_mask_matches_sdpa_is_causal(seq_q, seq_k):
    q, k, v = torch.randn(1, seq_q, 4), torch.randn(1, seq_k, 4), torch.randn(1, seq_k, 4)
    torch.testing.assert_close(
        F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(seq_q, seq_k)),
        F.scaled_dot_product_attention(q, k, v, is_causal=True),
        atol=1e-5, rtol=1e-5,
    )


@pytest.mark.parametrize("args,name", [((0,), "seq_q"), ((-1,), "seq_q"), ((3, 0), "seq_k"), ((2.0,), "seq_q")])
def test_causal_mask_rejects_bad_sizes(args, name):
    with pytest.raises(ValueError, match=f"{name} must be a positive int"):
        causal_mask(*args)


def test_padding_mask_values_and_shape():
    mask = padding_mask([2, 4, 1], 4)
    assert mask.shape == (3, 1, 1, 4) and mask.dtype == torch.bool
    expected = torch.tensor([
        [True, True, False, False],
        [True, True, True, True],
        [True, False, False, False],
    ])
    assert torch.equal(mask[:, 0, 0], expected)


def test_padding_mask_accepts_a_tensor_of_lengths():
    assert torch.equal(padding_mask(torch.tensor([3, 1]), 3), padding_mask([3, 1], 3))


@pytest.mark.parametrize("lengths,seq_len,message", [
    ([0, 2], 3, r"every length must lie in 1..seq_len=3"),
    ([2, 4], 3, r"every length must lie in 1..seq_len=3"),
    ([-1], 3, r"every length must lie in 1..seq_len=3"),
    ([[1, 2], [2, 3]], 3, "lengths must be a 1-D sequence of ints"),
    (3, 3, "lengths must be a 1-D sequence of ints"),
    ([1.5, 2.0], 3, "lengths must be a 1-D sequence of ints"),
    ([True, False], 3, "lengths must be a 1-D sequence of ints"),
    ([1, 2], 0, "seq_len must be a positive int"),
])
def test_padding_mask_rejects_bad_lengths(lengths, seq_len, message):
    with pytest.raises(ValueError, match=message):
        padding_mask(lengths, seq_len)


def test_additive_mask_gives_zero_and_minus_inf():
    keep = torch.tensor([[True, False, True], [False, False, True]])
    add = additive_mask(keep)
    assert add.dtype == torch.float32 and add.shape == keep.shape
    assert (add[keep] == 0).all()
    assert add[~keep].isneginf().all()
    assert additive_mask(keep, torch.float64).dtype == torch.float64


def test_additive_mask_passes_float_masks_through():
    bias = torch.randn(3, 3, dtype=torch.float64)
    assert torch.equal(additive_mask(bias), bias.float())


def test_additive_mask_gives_the_same_attention_as_the_bool_mask():
    keep = torch.rand(4, 5) > 0.3
    keep[:, 0] = True
    q, k, v = torch.randn(2, 4, 8), torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    torch.testing.assert_close(
        F.scaled_dot_product_attention(q, k, v, attn_mask=additive_mask(keep)),
        F.scaled_dot_product_attention(q, k, v, attn_mask=keep),
        atol=1e-5, rtol=1e-5,
    )


@pytest.mark.parametrize("shape", [
    (),
    (5,),
    (1,),
    (4, 5),
    (1, 5),
    (4, 1),
    (3, 4, 5),
    (1, 1, 5),
    (2, 1, 1, 5),
    (2, 3, 4, 5),
    (1, 3, 1, 1),
])
@pytest.mark.parametrize("dtype", [torch.bool, torch.float32])
def test_check_mask_accepts_broadcastable_masks(shape, dtype):
    check_mask(torch.zeros(shape, dtype=dtype), SCORES)  # no error


@pytest.mark.parametrize("shape", [(4,), (5, 4), (2, 4, 5), (3, 2, 3, 4, 5), (2, 3, 4, 5, 1), (3, 1, 1, 5)])
def test_check_mask_rejects_wrong_shapes(shape):
    with pytest.raises(ValueError, match=r"does not broadcast .* \(2, 3, 4, 5\)"):
        check_mask(torch.zeros(shape, dtype=torch.bool), SCORES)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8])
def test_check_mask_rejects_int_masks(dtype):
    with pytest.raises(TypeError, match="mask must be bool .* or float .* got dtype"):
        check_mask(torch.ones(4, 5, dtype=dtype), SCORES)


def test_check_mask_rejects_non_tensors():
    with pytest.raises(TypeError, match="mask must be a torch.Tensor, got list"):
        check_mask([[True] * 5] * 4, SCORES)
