"""labkit.blocks against PyTorch's own transformer layers, plus gradients at initialisation and parameter counts."""

from __future__ import annotations

import statistics

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labkit.attention import MultiHeadAttention
from labkit.blocks import DecoderBlock, EncoderBlock, FeedForward, count_parameters
from labkit.masks import causal_mask, padding_mask

ATOL = 1e-5
D, H, D_FF, SEQ = 16, 4, 40, 6
LAYOUTS = [pytest.param(nf, act, id=f"{'pre' if nf else 'post'}LN-{act}")
           for nf in (False, True) for act in ("relu", "gelu")]


def torch_encoder_layer(norm_first: bool, activation: str, dropout: float = 0.0) -> nn.TransformerEncoderLayer:
    torch.manual_seed(0)
    return nn.TransformerEncoderLayer(D, H, D_FF, dropout=dropout, activation=activation, batch_first=True,
                                      norm_first=norm_first).eval()


def torch_decoder_layer(norm_first: bool, activation: str) -> nn.TransformerDecoderLayer:
    torch.manual_seed(0)
    return nn.TransformerDecoderLayer(D, H, D_FF, dropout=0.0, activation=activation, batch_first=True,
                                      norm_first=norm_first).eval()


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.shape == expected.shape
    worst = (actual - expected).abs().max().item()
    assert worst <= ATOL, f"max |difference| {worst:.3g} > {ATOL}"


# --- encoder block vs nn.TransformerEncoderLayer ----------------------------------------------------------------

@pytest.mark.parametrize(("norm_first", "activation"), LAYOUTS)
def test_encoder_block_matches_torch_without_mask(norm_first: bool, activation: str) -> None:
    layer = torch_encoder_layer(norm_first, activation)
    ours = EncoderBlock.from_torch(layer).eval()
    x = torch.randn(3, SEQ, D)
    with torch.no_grad():
        assert_close(ours(x), layer(x))


@pytest.mark.parametrize(("norm_first", "activation"), LAYOUTS)
def test_encoder_block_matches_torch_with_padding_mask(norm_first: bool, activation: str) -> None:
    layer = torch_encoder_layer(norm_first, activation)
    ours = EncoderBlock.from_torch(layer).eval()
    x = torch.randn(3, SEQ, D)
    keep = padding_mask([SEQ, 4, 2], SEQ)  # (batch, 1, 1, seq), True = real token
    ignore = ~keep[:, 0, 0]  # torch's key_padding_mask: (batch, seq), True = ignore
    with torch.no_grad():
        ours_out, ref = ours(x, mask=keep), layer(x, src_key_padding_mask=ignore)
        assert_close(ours_out, ref)
        # and the mask really does something: without it, the padded sentences change
        assert (ours(x) - ref)[1:].abs().max() > 1e-3


@pytest.mark.parametrize(("norm_first", "activation"), LAYOUTS)
def test_encoder_block_with_is_causal_matches_torch_square_mask(norm_first: bool, activation: str) -> None:
    layer = torch_encoder_layer(norm_first, activation)
    ours = EncoderBlock.from_torch(layer).eval()
    x = torch.randn(2, SEQ, D)
    square = nn.Transformer.generate_square_subsequent_mask(SEQ)  # float: 0 on/below the diagonal, -inf above
    with torch.no_grad():
        ref = layer(x, src_mask=square, is_causal=True)
        assert_close(ours(x, is_causal=True), ref)
        assert_close(ours(x, mask=causal_mask(SEQ)), ref)
        # causal: changing the last token changes nothing before it
        x2 = x.clone()
        x2[:, -1] += 1.0
        assert_close(ours(x2, is_causal=True)[:, :-1], ref[:, :-1])


class Scale(nn.Module):
    """A stand-in for a dropout module that is deterministic: multiply by a fixed factor."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def test_encoder_block_dropouts_sit_where_torch_puts_them() -> None:
    """Swap every dropout for a distinct fixed scale on both sides: the outputs agree only if the places do.

    (Random masks cannot be compared: torch drops out a transposed, non-contiguous tensor, so the same seed gives
    different masks.)
    """
    layer = torch_encoder_layer(False, "relu").train()  # train mode: torch's fused eval path would skip them
    ours = EncoderBlock.from_torch(layer)
    layer.dropout1, layer.dropout, layer.dropout2 = Scale(0.5), Scale(0.25), Scale(0.125)
    ours.dropout1, ours.ff.dropout, ours.ff.dropout_out = Scale(0.5), Scale(0.25), Scale(0.125)
    x = torch.randn(2, SEQ, D)
    assert_close(ours(x), layer(x))
    ours.ff.dropout, ours.ff.dropout_out = Scale(0.125), Scale(0.25)  # swapped: must differ
    assert (ours(x) - layer(x)).abs().max() > 1e-3


def test_decoder_block_dropouts_sit_where_torch_puts_them() -> None:
    layer = torch_decoder_layer(True, "gelu").train()
    ours = DecoderBlock.from_torch(layer)
    layer.dropout1, layer.dropout2, layer.dropout, layer.dropout3 = Scale(0.5), Scale(0.3), Scale(0.2), Scale(0.1)
    ours.dropout1, ours.dropout2, ours.ff.dropout, ours.ff.dropout_out = Scale(0.5), Scale(0.3), Scale(0.2), Scale(0.1)
    tgt, memory = torch.randn(2, SEQ, D), torch.randn(2, 9, D)
    square = nn.Transformer.generate_square_subsequent_mask(SEQ)
    assert_close(ours(tgt, memory), layer(tgt, memory, tgt_mask=square, tgt_is_causal=True))


def test_feed_forward_matches_torch_feed_forward_in_train_mode() -> None:
    layer = torch_encoder_layer(False, "gelu", dropout=0.25).train()
    ff = EncoderBlock.from_torch(layer).ff
    x = torch.randn(2, SEQ, D)
    torch.manual_seed(3)
    ref = layer._ff_block(x)
    torch.manual_seed(3)
    assert_close(ff(x), ref)


def test_feed_forward_dropout_is_off_in_eval_and_scaled_in_train() -> None:
    torch.manual_seed(0)
    ff = FeedForward(D, D_FF, dropout=0.5)
    x = torch.randn(4, SEQ, D)
    ff.eval()
    with torch.no_grad():
        plain = ff.linear2(F.gelu(ff.linear1(x)))
        assert_close(ff(x), plain)
        ff.train()
        out = ff.dropout_out(plain)
    zeros = out == 0
    assert 0.3 < zeros.float().mean() < 0.7
    assert_close(out[~zeros], plain[~zeros] * 2.0)  # survivors scaled by 1 / (1 - p)


# --- decoder block vs nn.TransformerDecoderLayer ----------------------------------------------------------------

@pytest.mark.parametrize(("norm_first", "activation"), LAYOUTS)
def test_decoder_block_matches_torch(norm_first: bool, activation: str) -> None:
    layer = torch_decoder_layer(norm_first, activation)
    ours = DecoderBlock.from_torch(layer).eval()
    tgt, memory = torch.randn(2, SEQ, D), torch.randn(2, 9, D)
    square = nn.Transformer.generate_square_subsequent_mask(SEQ)
    with torch.no_grad():
        ref = layer(tgt, memory, tgt_mask=square, tgt_is_causal=True)
        assert_close(ours(tgt, memory), ref)
        assert_close(ours(tgt, memory, self_mask=causal_mask(SEQ), is_causal=False), ref)
        assert (ours(tgt, memory, is_causal=False) - ref).abs().max() > 1e-3


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_block_matches_torch_with_memory_padding(norm_first: bool) -> None:
    layer = torch_decoder_layer(norm_first, "relu")
    ours = DecoderBlock.from_torch(layer).eval()
    tgt, memory = torch.randn(2, SEQ, D), torch.randn(2, 9, D)
    keep = padding_mask([9, 5], 9)
    square = nn.Transformer.generate_square_subsequent_mask(SEQ)
    with torch.no_grad():
        ref = layer(tgt, memory, tgt_mask=square, memory_key_padding_mask=~keep[:, 0, 0])
        assert_close(ours(tgt, memory, memory_mask=keep), ref)


def test_decoder_block_records_cross_attention_weights() -> None:
    block = DecoderBlock(D, H, D_FF).eval()
    block.cross_attn.record_weights = True
    with torch.no_grad():
        block(torch.randn(2, SEQ, D), torch.randn(2, 9, D))
    w = block.cross_attn.last_weights
    assert w.shape == (2, H, SEQ, 9)
    assert_close(w.sum(-1), torch.ones(2, H, SEQ))


def test_from_torch_rejects_what_it_cannot_copy() -> None:
    with pytest.raises(ValueError, match="batch_first=True"):
        EncoderBlock.from_torch(nn.TransformerEncoderLayer(D, H, D_FF))
    with pytest.raises(ValueError, match="batch_first=True"):
        DecoderBlock.from_torch(nn.TransformerDecoderLayer(D, H, D_FF))
    with pytest.raises(ValueError, match="relu and"):
        EncoderBlock.from_torch(nn.TransformerEncoderLayer(D, H, D_FF, activation=torch.tanh, batch_first=True))
    with pytest.raises(ValueError, match="relu and"):
        EncoderBlock.from_torch(nn.TransformerEncoderLayer(D, H, D_FF, activation=nn.GELU(approximate="tanh"),
                                                           batch_first=True))
    with pytest.raises(TypeError, match="TransformerDecoderLayer"):
        DecoderBlock.from_torch(nn.TransformerEncoderLayer(D, H, D_FF, batch_first=True))


def test_from_torch_copies_eps_bias_and_mode() -> None:
    layer = nn.TransformerEncoderLayer(D, H, D_FF, layer_norm_eps=1e-3, bias=False, batch_first=True).eval()
    ours = EncoderBlock.from_torch(layer)
    assert not ours.training and ours.norm1.eps == 1e-3 and ours.ff.linear1.bias is None
    x = torch.randn(2, SEQ, D)
    with torch.no_grad():
        assert_close(ours(x), layer(x))


# --- gradients at initialisation: post-LN vs pre-LN -------------------------------------------------------------

def stack_gradients(norm_first: bool, seed: int, n_blocks: int = 6) -> tuple[list[float], list[float]]:
    """Per-block parameter gradient norms, and gradient norms on the residual stream (input first, output last)."""
    torch.manual_seed(seed)
    d = 64
    blocks = nn.ModuleList(EncoderBlock(d, 4, 4 * d, norm_first=norm_first) for _ in range(n_blocks))
    final_norm = nn.LayerNorm(d) if norm_first else nn.Identity()  # pre-LN stacks end in a norm (GPT-2's ln_f)
    x = torch.randn(4, 16, d, requires_grad=True)
    target = torch.randn(4, 16, d)
    stream = [x]
    for block in blocks:
        stream.append(block(stream[-1]))
        stream[-1].retain_grad()
    F.mse_loss(final_norm(stream[-1]), target).backward()
    per_block = [torch.cat([p.grad.flatten() for p in b.parameters()]).norm().item() for b in blocks]
    return per_block, [h.grad.norm().item() for h in stream]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_post_ln_gradients_shrink_toward_the_input_and_pre_ln_ones_do_not(seed: int) -> None:
    # Measured over seeds 0-29: input/output ratio 0.65-0.73 for post-LN, 1.15-1.21 for pre-LN.
    _, post = stack_gradients(False, seed)
    _, pre = stack_gradients(True, seed)
    assert post[0] / post[-1] < 0.9  # each post-LN norm sits on the gradient's path and scales it down
    assert pre[0] / pre[-1] > 1.05  # the pre-LN residual stream is an identity path: nothing scales it down
    assert all(a >= b for a, b in zip(pre, pre[1:]))  # and it only gains on the way down


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_post_ln_gradients_peak_at_the_last_block(seed: int) -> None:
    # Measured over seeds 0-29: last / mean(others) 1.33-1.66 for post-LN, 0.81-0.97 for pre-LN.
    post, _ = stack_gradients(False, seed)
    pre, _ = stack_gradients(True, seed)
    assert post[-1] > 1.2 * statistics.mean(post[:-1])
    assert pre[-1] < statistics.mean(pre[:-1])


# --- parameter counts -------------------------------------------------------------------------------------------

def attention_params(d: int) -> int:
    return 4 * d * d + 4 * d


def ff_params(d: int, d_ff: int) -> int:
    return 2 * d * d_ff + d_ff + d


@pytest.mark.parametrize(("d", "h", "d_ff"), [(16, 4, 40), (768, 12, 3072)])
def test_encoder_parameter_counts(d: int, h: int, d_ff: int) -> None:
    block = EncoderBlock(d, h, d_ff)
    counts = count_parameters(block, by="child")
    assert counts == {"self_attn": attention_params(d), "ff": ff_params(d, d_ff), "norm1": 2 * d, "norm2": 2 * d}
    total = sum(p.numel() for p in block.parameters())
    assert sum(counts.values()) == total == count_parameters(block)
    assert total == sum(p.numel() for p in nn.TransformerEncoderLayer(d, h, d_ff).parameters())
    assert count_parameters(block, by="component") == {
        "attention": attention_params(d), "feed-forward": ff_params(d, d_ff), "norms": 4 * d}


def test_decoder_parameter_counts() -> None:
    block = DecoderBlock(D, H, D_FF)
    counts = count_parameters(block, by="component")
    assert counts == {"attention": 2 * attention_params(D), "feed-forward": ff_params(D, D_FF), "norms": 6 * D}
    assert sum(counts.values()) == sum(p.numel() for p in nn.TransformerDecoderLayer(D, H, D_FF).parameters())


def test_count_parameters_counts_tied_weights_once_and_names_the_rest() -> None:
    model = nn.Module()
    model.embed = nn.Embedding(10, D)
    model.block = EncoderBlock(D, H, D_FF)
    model.head = nn.Linear(D, 10, bias=False)
    model.head.weight = model.embed.weight  # tied, as in GPT-2
    model.scale = nn.Parameter(torch.ones(()))
    by_child = count_parameters(model, by="child")
    assert by_child["embed"] == 10 * D and "head" not in by_child and by_child["(own)"] == 1
    assert count_parameters(model) == sum(by_child.values())  # the total, the tied matrix once
    model.embed.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == count_parameters(model) - 10 * D
    assert "embed" not in count_parameters(model, by="child", trainable_only=True)
    model.embed.requires_grad_(True)
    by_kind = count_parameters(model, by="component")
    assert by_kind["embeddings"] == 10 * D and by_kind["other"] == 1
    assert sum(by_kind.values()) == sum(by_child.values()) == sum(p.numel() for p in model.parameters())
    with pytest.raises(ValueError, match="by must be"):
        count_parameters(model, by="layer")


# --- bad configurations and inputs ------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(d_model=10, n_heads=4, d_ff=8), "d_model=10 is not divisible by n_heads=4"),
    (dict(d_model=16, n_heads=4, d_ff=0), "d_ff must be a positive int, got 0"),
    (dict(d_model=16, n_heads=0, d_ff=8), "n_heads must be a positive int"),
    (dict(d_model=16, n_heads=4, d_ff=8, activation="tanh"), "activation must be one of .*'tanh'"),
    (dict(d_model=16, n_heads=4, d_ff=8, dropout=1.0), r"dropout must lie in \[0, 1\), got 1.0"),
    (dict(d_model=16, n_heads=4, d_ff=8, dropout=-0.1), r"dropout must lie in \[0, 1\)"),
])
@pytest.mark.parametrize("cls", [EncoderBlock, DecoderBlock])
def test_bad_config_raises(cls: type, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_bad_feed_forward_config_raises() -> None:
    with pytest.raises(ValueError, match="d_ff must be a positive int"):
        FeedForward(16, -1)
    with pytest.raises(ValueError, match="activation must be one of"):
        FeedForward(16, 8, activation="swish")


@pytest.mark.parametrize("norm_first", [False, True])
def test_bad_inputs_raise(norm_first: bool) -> None:
    enc = EncoderBlock(D, H, D_FF, norm_first=norm_first)
    dec = DecoderBlock(D, H, D_FF, norm_first=norm_first)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, seq, d_model=16\), got \(2, 5, 8\)"):
        enc(torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match="x must have shape"):
        enc(torch.randn(5, D))
    with pytest.raises(ValueError, match=r"memory must have shape \(batch, seq, d_model=16\)"):
        dec(torch.randn(2, 5, D), torch.randn(2, 7, 12))
    with pytest.raises(ValueError, match="memory has batch size 3 but x has 2"):
        dec(torch.randn(2, 5, D), torch.randn(3, 7, D))


def test_our_attention_is_labkits() -> None:
    """The blocks reuse labkit's attention (so record_weights works), not a copy of it."""
    block = DecoderBlock(D, H, D_FF)
    assert isinstance(block.self_attn, MultiHeadAttention) and isinstance(block.cross_attn, MultiHeadAttention)


def test_encoder_block_hands_rope_and_alibi_to_its_self_attention() -> None:
    from labkit.positional import RotaryEmbedding, alibi_bias

    rotary = RotaryEmbedding(D // H)
    with_rope = EncoderBlock(D, H, D_FF, norm_first=True, rotary=rotary)
    with_alibi = EncoderBlock(D, H, D_FF, norm_first=True, alibi=True)
    assert with_rope.self_attn.rotary is rotary and not with_rope.self_attn.alibi
    assert with_alibi.self_attn.alibi and with_alibi.self_attn.rotary is None
    # The ALiBi block is the plain block with alibi_bias as its attention's float mask.
    plain = EncoderBlock(D, H, D_FF, norm_first=True)
    plain.load_state_dict(with_alibi.state_dict())
    x = torch.randn(2, SEQ, D)
    expected = plain(x, alibi_bias(H, SEQ), is_causal=True)
    assert torch.allclose(with_alibi(x, is_causal=True), expected, atol=ATOL)
    assert not torch.allclose(plain(x, is_causal=True), expected, atol=1e-3)
