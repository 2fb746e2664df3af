"""Notebook 03's checkers: a right answer written by hand passes, and each plausible mistake gets its own message
(WRONG_ANSWERS, run by test_exercises.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from labkit.blocks import DecoderBlock
from labkit.exercises import check
from labkit.exercises.blocks import decoder_mistake


def _layer_norm(x, gamma, beta, eps=1e-5, unbiased=False, dim=-1, eps_outside=False, affine=True):
    mean = x.mean(dim=dim, keepdim=True)
    var = x.var(dim=dim, keepdim=True, unbiased=unbiased)
    normalised = (x - mean) / (var.sqrt() + eps if eps_outside else (var + eps).sqrt())
    return gamma * normalised + beta if affine else normalised


def test_layer_norm_written_by_hand_passes() -> None:
    assert check("layer_norm", _layer_norm, quiet=True)


def test_the_two_steps_written_by_hand_pass() -> None:
    def pre_ln_step(x, sublayer, norm):
        h = norm(x)
        return h.new_zeros(h.shape).add_(x).add_(sublayer(h))

    def post_ln_step(x, sublayer, norm):
        residual = x.clone()
        residual += sublayer(x)
        return norm(residual)

    assert check("pre_ln_step", pre_ln_step, quiet=True) and check("post_ln_step", post_ln_step, quiet=True)


def test_position_wise_ffn_written_from_the_weights_passes() -> None:
    def position_wise_ffn(x, linear1, linear2):
        hidden = x @ linear1.weight.T + linear1.bias
        return 0.5 * hidden * (1 + torch.erf(hidden / 2**0.5)) @ linear2.weight.T + linear2.bias

    assert check("position_wise_ffn", position_wise_ffn, quiet=True)


def test_decoder_block_forward_written_step_by_step_passes() -> None:
    def decoder_block_forward(block, y, memory):
        steps = [(lambda h: block.self_attn(h, is_causal=True), block.norm1),
                 (lambda h: block.cross_attn(h, context=memory), block.norm2),
                 (block.ff, block.norm3)]
        for sublayer, norm in steps:
            y = norm(y + sublayer(y))
        return y

    assert check("decoder_block_forward", decoder_block_forward, quiet=True)


def test_the_decoder_reference_is_pytorchs_decoder_layer() -> None:
    torch.manual_seed(0)
    layer = nn.TransformerDecoderLayer(16, 2, 32, dropout=0.0, batch_first=True).eval()
    y, memory = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    causal = nn.Transformer.generate_square_subsequent_mask(5)
    with torch.no_grad():
        ours = decoder_mistake(DecoderBlock.from_torch(layer).eval(), y, memory)
        torch.testing.assert_close(ours, layer(y, memory, tgt_mask=causal, tgt_is_causal=True))


def test_the_checks_leave_the_callers_random_state_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    assert check("decoder_block_forward", decoder_mistake, quiet=True)
    assert check("position_wise_ffn", lambda x, a, b: b(F.gelu(a(x))), quiet=True)
    assert torch.equal(torch.rand(3), expected)


def test_block_parameter_count_written_by_hand_passes() -> None:
    def block_parameter_count(d_model: int, n_heads: int, d_ff: int) -> int:
        attention = 4 * (d_model * d_model + d_model)
        feed_forward = d_model * d_ff + d_ff + d_ff * d_model + d_model
        return attention + feed_forward + 2 * 2 * d_model

    assert check("block_parameter_count", block_parameter_count, quiet=True)


def _decoder(**mistake):
    return lambda block, y, memory: decoder_mistake(block, y, memory, **mistake)


# exercise name → plausible wrong answers and a piece of the message each must get (run by test_exercises.py)
WRONG_ANSWERS = {
    "layer_norm": [
        (lambda x, g, b, eps=1e-5: _layer_norm(x, g, b, eps=0.0), "NaN or inf for a token whose features are all "
                                                                  "equal"),
        (lambda x, g, b, eps=1e-5: _layer_norm(x, g, b, unbiased=True), "the unbiased variance"),
        (lambda x, g, b, eps=1e-5: _layer_norm(x, g, b, eps_outside=True), "added to the standard deviation"),
        (lambda x, g, b, eps=1e-5: _layer_norm(x, g, b, affine=False), "γ and β are not applied"),
        (lambda x, g, b, eps=1e-5: _layer_norm(x, g, b, dim=0), "normalised over its own features"),
        (lambda x, g, b, eps=1e-5: _layer_norm(x, g, b, eps=1e-2), "differs from F.layer_norm by up to"),
    ],
    "post_ln_step": [
        (lambda x, f, norm: x + f(norm(x)), "this is pre-LN"),
        (lambda x, f, norm: norm(f(x)), "the residual connection is missing"),
        (lambda x, f, norm: x + f(x), "the norm is missing"),
        (lambda x, f, norm: x + norm(f(x)), "the norm went on the sublayer's output alone"),
        (lambda x, f, norm: norm(x + f(norm(x))), "the sublayer read the normalised x"),
        (lambda x, f, norm: norm(x) + f(x), "differs from norm(x + sublayer(x))"),
    ],
    "pre_ln_step": [
        (lambda x, f, norm: norm(x + f(x)), "this is post-LN"),
        (lambda x, f, norm: f(norm(x)), "the residual connection is missing"),
        (lambda x, f, norm: x + norm(f(x)), "the norm went on the sublayer's output"),
        (lambda x, f, norm: norm(x) + f(norm(x)), "the residual adds the normalised x"),
        (lambda x, f, norm: x + f(x), "differs from x + sublayer(norm(x))"),
    ],
    "position_wise_ffn": [
        (lambda x, a, b: b(a(x)), "no non-linearity between linear1 and linear2"),
        (lambda x, a, b: b(F.relu(a(x))), "that is ReLU"),
        (lambda x, a, b: b(F.gelu(a(x), approximate="tanh")), "GELU's tanh approximation"),
        (lambda x, a, b: F.gelu(b(F.gelu(a(x)))), "GELU was applied to the output as well"),
        (lambda x, a, b: b(F.gelu(a(x) - a(x).mean(-2, keepdim=True))), "differs from linear2(gelu(linear1(x)))"),
        (lambda x, a, b: b(F.gelu(a(x))) if x.dim() == 3 else b(F.gelu(a(2 * x))), "one token alone gives another "
                                                                                   "output"),
        (lambda x, a, b: b(F.gelu(a(x))).tolist(), "returned a list, not a tensor"),
    ],
    "decoder_block_forward": [
        (lambda block, y, memory: block(y, memory), "you called the block itself"),
        (_decoder(self_causal=False), "the self-attention sees the future"),
        (_decoder(cross_causal=True), "the cross-attention is causal"),
        (_decoder(cross_context="self"), "the output does not change when memory changes"),
        (_decoder(cross_context="swapped"), "the cross-attention's queries came from memory"),
        (lambda block, y, memory: block.ff(block.cross_attn(memory, y)), "the cross-attention's queries came from "
                                                                         "memory"),
        (_decoder(pre_ln=True), "that is pre-LN"),
        (_decoder(residual=False), "the residual connections are missing"),
        (_decoder(cross_first=True), "cross-attention ran before the self-attention"),
        (_decoder(residual_from="input"), "each residual connection added the block's input y"),
        (_decoder(norms=(3, 2, 1)), "the norms are in the order norm3, norm2, norm1"),
        (_decoder(norms=(2, 1, 3)), "the norms are in the order norm2, norm1, norm3"),
        (lambda block, y, memory: 2 * decoder_mistake(block, y, memory), "differs from DecoderBlock's own forward"),
    ],
    "block_parameter_count": [
        (lambda d, h, f: h * (4 * d * d + 4 * d) + 2 * d * f + f + d + 4 * d, "changed with the number of heads"),
        (lambda d, h, f: 4 * d * d + 2 * d * f + 4 * d, "forgot the biases (4·d of attention"),
        (lambda d, h, f: 4 * d * d + 2 * d * f, "forgot the biases and the LayerNorms"),
        (lambda d, h, f: 4 * d * d + 4 * d + 2 * d * f + f + d, "forgot the LayerNorms"),
        (lambda d, h, f: 4 * d * d + 4 * d + 2 * d * f + f + d + 2 * d, "counted one LayerNorm"),
        (lambda d, h, f: 3 * d * d + 3 * d + 2 * d * f + f + d + 4 * d, "block_parameter_count(64, 4, 256) = 45,824, "
                                                                         "expected 49,984"),
        (lambda d, h, f: float(4 * d * d + 4 * d + 2 * d * f + f + d + 4 * d), "expected a whole number"),
    ],
}
