"""labkit.attention against PyTorch: SDPA for the two attention paths, nn.MultiheadAttention for the module."""

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labkit.attention import (
    MultiHeadAttention,
    attention_scores,
    fast_attention,
    merge_heads,
    naive_attention,
    split_heads,
)
from labkit.masks import additive_mask, causal_mask, padding_mask

TOL = dict(atol=1e-5, rtol=1e-5)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def close(actual, expected):
    torch.testing.assert_close(actual, expected, **TOL)


def qkv(lead=(2, 3), seq_q=5, seq_k=5, d_k=8, d_v=8, grad=False):
    """Random q (*lead, seq_q, d_k), k (*lead, seq_k, d_k), v (*lead, seq_k, d_v)."""
    q = torch.randn(*lead, seq_q, d_k, requires_grad=grad)
    k = torch.randn(*lead, seq_k, d_k, requires_grad=grad)
    v = torch.randn(*lead, seq_k, d_v, requires_grad=grad)
    return q, k, v


def naive_out(*args, **kwargs):
    return naive_attention(*args, **kwargs)[0]


PATHS = pytest.mark.parametrize("attend", [naive_out, fast_attention], ids=["naive", "fast"])


# --- the two paths against SDPA -------------------------------------------------------------------------------

SHAPES = {
    "4d-self": dict(lead=(2, 3), seq_q=5, seq_k=5, d_k=8, d_v=8),
    "4d-cross": dict(lead=(2, 3), seq_q=4, seq_k=7, d_k=8, d_v=8),
    "4d-dv-differs": dict(lead=(2, 3), seq_q=5, seq_k=6, d_k=8, d_v=3),
    "3d-self": dict(lead=(2,), seq_q=5, seq_k=5, d_k=8, d_v=8),
    "3d-cross-dv": dict(lead=(2,), seq_q=3, seq_k=6, d_k=4, d_v=10),
}


@PATHS
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_matches_sdpa_without_mask(attend, shape):
    q, k, v = qkv(**shape)
    close(attend(q, k, v), F.scaled_dot_product_attention(q, k, v))


@PATHS
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_matches_sdpa_with_bool_mask(attend, shape):
    q, k, v = qkv(**shape)
    mask = torch.rand(*shape["lead"], shape["seq_q"], shape["seq_k"]) > 0.4
    mask[..., 0] = True  # every query keeps at least one key
    close(attend(q, k, v, mask), F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


@PATHS
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_matches_sdpa_with_float_mask(attend, shape):
    q, k, v = qkv(**shape)
    mask = torch.randn(shape["seq_q"], shape["seq_k"])  # a bias, broadcast over batch and heads
    mask[:, -1] = float("-inf")
    close(attend(q, k, v, mask), F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


@PATHS
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_matches_sdpa_causal(attend, shape):
    q, k, v = qkv(**shape)
    close(attend(q, k, v, is_causal=True), F.scaled_dot_product_attention(q, k, v, is_causal=True))


@PATHS
@pytest.mark.parametrize("as_float", [False, True], ids=["bool", "float"])
def test_mask_combined_with_causal(attend, as_float):
    q, k, v = qkv(seq_q=5, seq_k=6)
    keep = padding_mask([6, 4], 6)
    both = keep & causal_mask(5, 6)
    mask = additive_mask(keep) if as_float else keep
    close(attend(q, k, v, mask, is_causal=True), F.scaled_dot_product_attention(q, k, v, attn_mask=both))


@PATHS
def test_padding_mask_hides_padded_keys(attend):
    q, k, v = qkv(lead=(3, 2), seq_q=6, seq_k=6)
    mask = padding_mask([6, 2, 4], 6)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    close(attend(q, k, v, mask), expected)
    # the padded keys' values do not matter
    v2 = v.clone()
    v2[1, :, 2:] = 100.0
    close(attend(q, k, v2, mask), expected)


@PATHS
@pytest.mark.parametrize("scale", [0.1, 1.0, 2.5])
def test_custom_scale(attend, scale):
    q, k, v = qkv(seq_q=4, seq_k=6)
    close(attend(q, k, v, scale=scale), F.scaled_dot_product_attention(q, k, v, scale=scale))


@pytest.mark.parametrize("mask", [None, "bool"], ids=["no-mask", "bool-mask"])
def test_weights_rows_sum_to_one(mask):
    q, k, v = qkv(seq_q=4, seq_k=6)
    m = torch.rand(4, 6) > 0.5 if mask else None
    if m is not None:
        m[:, 0] = True  # with the causal triangle, query 0 sees only key 0
    out, weights = naive_attention(q, k, v, m, is_causal=True)
    assert weights.shape == (2, 3, 4, 6)
    close(weights.sum(-1), torch.ones(2, 3, 4))
    assert (weights >= 0).all()
    close(out, weights @ v)


def test_weights_are_zero_where_masked():
    q, k, v = qkv(seq_q=4, seq_k=4)
    _, weights = naive_attention(q, k, v, is_causal=True)
    assert (weights[..., ~causal_mask(4)] == 0).all()
    assert (weights[..., causal_mask(4)] > 0).all()


@PATHS
@pytest.mark.parametrize("as_float", [False, True], ids=["bool", "float"])
def test_fully_masked_query_gives_zeros(attend, as_float):
    q, k, v = qkv(seq_q=4, seq_k=5)
    keep = torch.ones(4, 5, dtype=torch.bool)
    keep[2] = False  # query 2 may attend to nothing
    mask = additive_mask(keep) if as_float else keep
    out = attend(q, k, v, mask)
    assert not out.isnan().any()
    assert (out[..., 2, :] == 0).all()
    close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def test_fully_masked_query_gets_zero_weights():
    q, k, v = qkv(seq_q=4, seq_k=5)
    keep = torch.ones(4, 5, dtype=torch.bool)
    keep[2] = False
    _, weights = naive_attention(q, k, v, keep)
    assert (weights[..., 2, :] == 0).all()
    close(weights[..., [0, 1, 3], :].sum(-1), torch.ones(2, 3, 3))


MASKS_FOR_GRAD = {
    "none": (None, False),
    "causal": (None, True),
    "bool": ("bool", False),
    "bool+causal": ("bool", True),
    "float": ("float", False),
    "fully-masked-row": ("empty-row", False),
}


@pytest.mark.parametrize("mask_kind,is_causal", MASKS_FOR_GRAD.values(), ids=MASKS_FOR_GRAD.keys())
def test_gradients_of_naive_and_fast_agree(mask_kind, is_causal):
    seq_q, seq_k = 5, 6
    mask = None
    if mask_kind in ("bool", "float"):
        mask = torch.rand(2, 1, seq_q, seq_k) > 0.3
        mask[..., 0] = True
        mask = additive_mask(mask) if mask_kind == "float" else mask
    elif mask_kind == "empty-row":
        mask = torch.ones(seq_q, seq_k, dtype=torch.bool)
        mask[1] = False
    inputs = qkv(seq_q=seq_q, seq_k=seq_k, d_v=7)
    grad_out = torch.randn(2, 3, seq_q, 7)
    grads = []
    for attend in (naive_out, fast_attention):
        q, k, v = (t.clone().requires_grad_() for t in inputs)
        out = attend(q, k, v, mask, is_causal=is_causal)
        grads.append(torch.autograd.grad(out, (q, k, v), grad_out))
    for g_naive, g_fast in zip(*grads):
        assert not g_naive.isnan().any()
        assert g_naive.abs().sum() > 0
        close(g_naive, g_fast)


def test_naive_gradient_matches_sdpa():
    q, k, v = qkv(seq_q=4, seq_k=6, grad=True)
    mask = padding_mask([6, 3], 6)
    g_ours = torch.autograd.grad(naive_out(q, k, v, mask, is_causal=True).sum(), (q, k, v))
    both = mask & causal_mask(4, 6)
    g_ref = torch.autograd.grad(F.scaled_dot_product_attention(q, k, v, attn_mask=both).sum(), (q, k, v))
    for a, b in zip(g_ours, g_ref):
        close(a, b)


# --- scores and heads -----------------------------------------------------------------------------------------

def test_attention_scores_by_hand():
    q, k, _ = qkv(seq_q=3, seq_k=4, d_k=8)
    by_hand = torch.empty(2, 3, 3, 4)
    for b in range(2):
        for h in range(3):
            for i in range(3):
                for j in range(4):
                    by_hand[b, h, i, j] = (q[b, h, i] * k[b, h, j]).sum() / math.sqrt(8)
    close(attention_scores(q, k), by_hand)
    close(attention_scores(q, k, scale=0.5), by_hand * math.sqrt(8) * 0.5)


def test_split_heads_puts_feature_slices_into_heads():
    x = torch.randn(2, 5, 12)
    heads = split_heads(x, 3)
    assert heads.shape == (2, 3, 5, 4)
    for h in range(3):
        assert torch.equal(heads[:, h], x[..., h * 4:(h + 1) * 4])


def test_split_and_merge_are_inverses():
    x = torch.randn(2, 5, 12)
    assert torch.equal(merge_heads(split_heads(x, 4)), x)
    y = torch.randn(2, 4, 5, 3)
    assert torch.equal(split_heads(merge_heads(y), 4), y)


# --- MultiHeadAttention against nn.MultiheadAttention ---------------------------------------------------------

D_MODEL, N_HEADS = 16, 4


def pair(bias=True):
    """A torch nn.MultiheadAttention and our copy of it, the copy recording its weights."""
    torch_mha = nn.MultiheadAttention(D_MODEL, N_HEADS, bias=bias, batch_first=True).eval()
    ours = MultiHeadAttention.from_torch(torch_mha).eval()
    ours.record_weights = True
    return torch_mha, ours


def run_torch(torch_mha, x, context, **masks):
    return torch_mha(x, context, context, need_weights=True, average_attn_weights=False, **masks)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_mha_self_attention_matches_torch(bias):
    torch_mha, ours = pair(bias)
    x = torch.randn(2, 5, D_MODEL)
    out, weights = run_torch(torch_mha, x, x)
    close(ours(x), out)
    close(ours.last_weights, weights)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_mha_cross_attention_matches_torch(bias):
    torch_mha, ours = pair(bias)
    x, context = torch.randn(2, 3, D_MODEL), torch.randn(2, 7, D_MODEL)
    out, weights = run_torch(torch_mha, x, context)
    close(ours(x, context), out)
    assert ours.last_weights.shape == (2, N_HEADS, 3, 7)
    close(ours.last_weights, weights)


def test_mha_key_padding_matches_torch():
    torch_mha, ours = pair()
    x, context = torch.randn(3, 4, D_MODEL), torch.randn(3, 6, D_MODEL)
    keep = padding_mask([6, 2, 5], 6)  # ours: True = keep
    out, weights = run_torch(torch_mha, x, context, key_padding_mask=~keep[:, 0, 0])  # torch: True = ignore
    close(ours(x, context, keep), out)
    close(ours.last_weights, weights)
    assert (ours.last_weights[1, :, :, 2:] == 0).all()


@pytest.mark.parametrize("with_padding", [False, True], ids=["causal", "causal+padding"])
def test_mha_causal_matches_torch(with_padding):
    torch_mha, ours = pair()
    x = torch.randn(2, 6, D_MODEL)
    keep = padding_mask([6, 4], 6) if with_padding else None
    torch_masks = {"attn_mask": ~causal_mask(6)}  # torch: True = not allowed
    if with_padding:
        torch_masks["key_padding_mask"] = ~keep[:, 0, 0]
    out, weights = run_torch(torch_mha, x, x, **torch_masks)
    close(ours(x, mask=keep, is_causal=True), out)
    close(ours.last_weights, weights)
    # the same causal mask passed explicitly instead of is_causal
    explicit = causal_mask(6) if keep is None else keep & causal_mask(6)
    close(ours(x, mask=explicit), out)


@pytest.mark.parametrize("case", ["self", "cross", "padding", "causal"])
def test_mha_fast_path_matches_naive_path(case):
    _, ours = pair()
    x = torch.randn(2, 5, D_MODEL)
    context = torch.randn(2, 8, D_MODEL) if case == "cross" else None
    mask = padding_mask([5, 3], 5) if case == "padding" else None
    is_causal = case == "causal"
    ours.record_weights = True
    naive = ours(x, context, mask, is_causal=is_causal)
    ours.record_weights = False
    close(ours(x, context, mask, is_causal=is_causal), naive)


def test_mha_last_weights_only_when_recording():
    torch_mha, _ = pair()
    ours = MultiHeadAttention.from_torch(torch_mha)
    x = torch.randn(2, 5, D_MODEL)
    ours(x)
    assert ours.last_weights is None
    ours.record_weights = True
    ours(x)
    assert ours.last_weights is not None and ours.last_weights.shape == (2, N_HEADS, 5, 5)
    assert not ours.last_weights.requires_grad


def test_mha_gradients_flow_to_every_parameter():
    _, ours = pair()
    ours(torch.randn(2, 5, D_MODEL), is_causal=True).sum().backward()
    for name, p in ours.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_from_torch_rejects_separate_kv_sizes():
    torch_mha = nn.MultiheadAttention(D_MODEL, N_HEADS, kdim=8, vdim=8, batch_first=True)
    with pytest.raises(ValueError, match="kdim = vdim = embed_dim"):
        MultiHeadAttention.from_torch(torch_mha)


def test_from_torch_rejects_bias_kv():
    torch_mha = nn.MultiheadAttention(D_MODEL, N_HEADS, add_bias_kv=True, batch_first=True)
    with pytest.raises(ValueError, match="bias_k"):
        MultiHeadAttention.from_torch(torch_mha)


# --- bad inputs -----------------------------------------------------------------------------------------------

BAD_QKV = {
    "q-k-features": ((2, 3, 5, 8), (2, 3, 5, 6), (2, 3, 5, 8), ValueError, "same feature size d_k"),
    "k-v-lengths": ((2, 3, 5, 8), (2, 3, 5, 8), (2, 3, 4, 8), ValueError, "same sequence length"),
    "head-counts": ((2, 3, 5, 8), (2, 2, 5, 8), (2, 2, 5, 8), ValueError, "different head counts"),
    "batch": ((2, 3, 5, 8), (4, 3, 5, 8), (4, 3, 5, 8), ValueError, "leading"),
    "batch-3d": ((2, 5, 8), (3, 5, 8), (3, 5, 8), ValueError, "leading"),
    "ranks": ((2, 3, 5, 8), (3, 5, 8), (3, 5, 8), ValueError, "same number of dims"),
    "1-d": ((8,), (8,), (8,), ValueError, "at least 2 dims"),
    "empty-q": ((2, 3, 0, 8), (2, 3, 5, 8), (2, 3, 5, 8), ValueError, "q has an empty sequence"),
    "empty-k": ((2, 3, 5, 8), (2, 3, 0, 8), (2, 3, 0, 8), ValueError, "k has an empty sequence"),
}


@PATHS
@pytest.mark.parametrize("q_shape,k_shape,v_shape,error,message", BAD_QKV.values(), ids=BAD_QKV.keys())
def test_bad_shapes_raise(attend, q_shape, k_shape, v_shape, error, message):
    with pytest.raises(error, match=message):
        attend(torch.randn(q_shape), torch.randn(k_shape), torch.randn(v_shape))


@PATHS
@pytest.mark.parametrize("which", ["q", "k", "v"])
def test_int_tensors_raise(attend, which):
    tensors = dict(zip("qkv", qkv()))
    tensors[which] = tensors[which].long()
    with pytest.raises(TypeError, match=f"{which} must be a floating-point tensor"):
        attend(**tensors)


@PATHS
def test_non_tensor_raises(attend):
    q, k, v = qkv()
    with pytest.raises(TypeError, match="q must be a torch.Tensor"):
        attend(q.tolist(), k, v)


@PATHS
@pytest.mark.parametrize("mask_shape", [(5, 6), (4,), (3, 2, 3, 5, 5), (2, 2, 5, 5)])
def test_mask_of_wrong_shape_raises(attend, mask_shape):
    q, k, v = qkv()  # scores (2, 3, 5, 5)
    with pytest.raises(ValueError, match="does not broadcast"):
        attend(q, k, v, torch.ones(mask_shape, dtype=torch.bool))


@PATHS
@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8])
def test_mask_of_int_dtype_raises(attend, dtype):
    q, k, v = qkv()
    with pytest.raises(TypeError, match="mask must be bool"):
        attend(q, k, v, torch.ones(5, 5, dtype=dtype))


@PATHS
@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_dropout_out_of_range_raises(attend, p):
    q, k, v = qkv()
    with pytest.raises(ValueError, match="dropout"):
        attend(q, k, v, dropout_p=p)


@pytest.mark.parametrize("n_heads", [0, -2])
def test_split_heads_rejects_non_positive_heads(n_heads):
    with pytest.raises(ValueError, match="n_heads"):
        split_heads(torch.randn(2, 5, 12), n_heads)


def test_split_heads_rejects_indivisible_and_wrong_rank():
    with pytest.raises(ValueError, match="d_model=12 is not divisible by n_heads=5"):
        split_heads(torch.randn(2, 5, 12), 5)
    with pytest.raises(ValueError, match=r"expected \(batch, seq, d_model\)"):
        split_heads(torch.randn(5, 12), 3)
    with pytest.raises(ValueError, match=r"expected \(batch, heads, seq, d_head\)"):
        merge_heads(torch.randn(2, 5, 12))


@pytest.mark.parametrize("kwargs,message", [
    (dict(d_model=10, n_heads=3), "d_model=10 is not divisible by n_heads=3"),
    (dict(d_model=0, n_heads=1), "positive ints"),
    (dict(d_model=8, n_heads=0), "positive ints"),
    (dict(d_model=-8, n_heads=2), "positive ints"),
    (dict(d_model=8.0, n_heads=2), "positive ints"),
    (dict(d_model=8, n_heads=2, dropout=1.0), r"dropout must lie in \[0, 1\)"),
    (dict(d_model=8, n_heads=2, dropout=-0.1), r"dropout must lie in \[0, 1\)"),
])
def test_mha_bad_config_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MultiHeadAttention(**kwargs)


@pytest.mark.parametrize("x_shape,context_shape,message", [
    ((2, 5, 12), None, r"x must have shape \(batch, seq, d_model=16\)"),
    ((5, 16), None, r"x must have shape"),
    ((2, 5, 16), (2, 7, 12), r"context must have shape \(batch, seq, d_model=16\)"),
    ((2, 5, 16), (3, 7, 16), "different batch sizes: 2 and 3"),
])
def test_mha_bad_inputs_raise(x_shape, context_shape, message):
    mha = MultiHeadAttention(D_MODEL, N_HEADS)
    context = None if context_shape is None else torch.randn(context_shape)
    with pytest.raises(ValueError, match=message):
        mha(torch.randn(x_shape), context)


@pytest.mark.parametrize("record", [False, True], ids=["fast", "naive"])
def test_mha_bad_mask_raises(record):
    mha = MultiHeadAttention(D_MODEL, N_HEADS)
    mha.record_weights = record
    x = torch.randn(2, 5, D_MODEL)
    with pytest.raises(ValueError, match="does not broadcast"):
        mha(x, mask=padding_mask([5, 5, 5], 5))  # batch of 3 masks for a batch of 2
    with pytest.raises(TypeError, match="mask must be bool"):
        mha(x, mask=torch.ones(5, 5, dtype=torch.int32))


# ----------------------------------------------------------------------------- positions inside attention


def _positional_mha(kind: str) -> MultiHeadAttention:
    from labkit.positional import RotaryEmbedding

    if kind == "rope":
        return MultiHeadAttention(16, 4, rotary=RotaryEmbedding(4, max_len=32)).eval()
    return MultiHeadAttention(16, 4, alibi=True).eval()


@pytest.mark.parametrize("kind", ["rope", "alibi"])
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("with_padding", [False, True])
def test_mha_positions_take_the_same_path_fused_and_naive(kind, is_causal, with_padding):
    mha = _positional_mha(kind)
    x = torch.randn(2, 7, 16)
    mask = padding_mask(torch.tensor([7, 5]), 7) if with_padding else None  # (batch, 1, 1, seq)
    fast = mha(x, mask=mask, is_causal=is_causal)
    mha.record_weights = True
    naive = mha(x, mask=mask, is_causal=is_causal)
    close(fast, naive)
    assert torch.allclose(mha.last_weights.sum(-1), torch.ones(2, 4, 7), atol=1e-6)
    if with_padding:
        assert torch.all(mha.last_weights[1, :, :, 5:] == 0)


def test_mha_rope_is_q_and_k_rotated_before_the_scores():
    from labkit.positional import apply_rope

    mha = _positional_mha("rope")
    x = torch.randn(1, 9, 16)
    q, k, v = mha.queries_keys_values(x)
    plain = MultiHeadAttention(16, 4)
    plain.load_state_dict(mha.state_dict())  # the cos/sin tables are not part of the state
    q0, k0, v0 = plain.queries_keys_values(x)
    close(q, apply_rope(q0))
    close(k, apply_rope(k0))
    close(v, v0)  # values carry content, not position
    close(mha(x), plain.out_proj(merge_heads(naive_attention(apply_rope(q0), apply_rope(k0), v0)[0])))


def test_mha_alibi_with_a_float_mask_adds_both():
    from labkit.positional import alibi_bias

    mha = _positional_mha("alibi")
    x = torch.randn(2, 6, 16)
    extra = torch.randn(2, 1, 6, 6)
    q, k, v = mha.queries_keys_values(x)
    expected = naive_attention(q, k, v, alibi_bias(4, 6) + extra, is_causal=True)[0]
    close(mha(x, mask=extra, is_causal=True), mha.out_proj(merge_heads(expected)))


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(rotary="rope"), ValueError, "rotary must be a RotaryEmbedding over d_head = d_model / n_heads = 4, got str"),
    (dict(alibi=1), ValueError, "alibi must be True or False, got 1"),
])
def test_mha_bad_position_arguments_raise(kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        MultiHeadAttention(16, 4, **kwargs)


def test_mha_rotary_of_the_wrong_width_raises():
    from labkit.positional import RotaryEmbedding

    with pytest.raises(ValueError, match=r"over d_head = d_model / n_heads = 4, got d_head=8"):
        MultiHeadAttention(16, 4, rotary=RotaryEmbedding(8))


@pytest.mark.parametrize("kind", ["rope", "alibi"])
def test_mha_positions_refuse_cross_attention(kind):
    with pytest.raises(ValueError, match="RoPE / ALiBi encode positions within one sequence: use them for "
                                         "self-attention only"):
        _positional_mha(kind)(torch.randn(1, 3, 16), torch.randn(1, 5, 16))
