"""Notebook 03's exercises, one per part of the block, each where the notebook teaches it: LayerNorm by hand, the
post-LN and pre-LN residual steps, the position-wise feed-forward network, a post-LN decoder block's forward written
from its parts, and a block's parameter count."""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.blocks import DecoderBlock, EncoderBlock, count_parameters
from labkit.exercises import Failed, expect, exercise
from labkit.exercises._compare import expect_tensor, max_difference, same, seeded


def _random_(module: nn.Module, gen: torch.Generator) -> nn.Module:
    """Every parameter of `module` drawn again from N(0, 1) with `gen`, in place: distinct norms, non-zero biases."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return module


# --- LayerNorm (section 2) ---------------------------------------------------------------------------------------

def reference_layer_norm(x: Tensor, gamma: Tensor, beta: Tensor, eps: float = 1e-5) -> Tensor:
    return F.layer_norm(x, x.shape[-1:], gamma, beta, eps)


def _layer_norm_inputs() -> tuple[Tensor, Tensor, Tensor]:
    """x (2, 4, 16) far from mean 0 / std 1, with one constant token and one of tiny variance; random γ and β."""
    gen = torch.Generator().manual_seed(0)
    x = 3 * torch.randn(2, 4, 16, generator=gen) + 5
    x[1, 2] = 7.0  # σ² = 0: only eps keeps the division finite
    x[1, 3] = 1e-3 * torch.randn(16, generator=gen)  # σ² ≈ 1e-6, below eps: where eps goes matters
    return x, torch.randn(16, generator=gen), torch.randn(16, generator=gen)


@exercise("layer_norm", "03",
          task="layer_norm(x, gamma, beta, eps=1e-5) → γ ⊙ (x − μ) / √(σ² + ε) + β, with μ and σ² the mean and "
               "variance of each token's features (the last dim), as nn.LayerNorm computes",
          hint="mean and var over dim=-1 with keepdim=True; var(unbiased=False) divides by d, as LayerNorm does; "
               "eps goes inside the square root",
          reference=reference_layer_norm)
def check_layer_norm(answer: Callable[..., Any]) -> None:
    x, gamma, beta = _layer_norm_inputs()
    out = expect_tensor(answer(x.clone(), gamma, beta), tuple(x.shape), "layer_norm(x of shape (2, 4, 16), γ, β)")
    expect(bool(out.isfinite().all()), "NaN or inf for a token whose features are all equal (σ² = 0): "
                                       "add eps to the variance inside the square root")
    mean = x.mean(-1, keepdim=True)
    unbiased = gamma * (x - mean) / (x.var(-1, keepdim=True, unbiased=True) + 1e-5).sqrt() + beta
    expect(not same(out, unbiased, 1e-4), "you used the unbiased variance (divided by d − 1); LayerNorm divides by "
                                          "d: var(unbiased=False)")
    eps_outside = gamma * (x - mean) / (x.var(-1, keepdim=True, unbiased=False).sqrt() + 1e-5) + beta
    expect(not same(out, eps_outside, 1e-4), "eps was added to the standard deviation; it goes inside the square "
                                             "root: √(σ² + ε)")
    expect(not same(out, reference_layer_norm(x, torch.ones(16), torch.zeros(16)), 1e-4),
           "γ and β are not applied: multiply by gamma, then add beta")
    normalised = (out - beta) / gamma
    per_token = normalised[0].mean(-1).abs().max()
    expect(per_token < 1e-3, f"each token must be normalised over its own features (the last dim), but a token's "
                             f"mean after removing γ and β is {per_token:.3g}, not 0")
    worst = max_difference(out, reference_layer_norm(x, gamma, beta))
    expect(worst <= 1e-4, f"differs from F.layer_norm by up to {worst:.3g}")


# --- the two residual steps (section 3) --------------------------------------------------------------------------

def _step_inputs() -> tuple[Tensor, nn.Linear, nn.LayerNorm]:
    """x (2, 5, 8) off-centre, a Linear sublayer and a LayerNorm, all with random parameters (seed 0)."""
    gen = torch.Generator().manual_seed(0)
    d = 8
    with seeded(0):  # the notebook's random state is left as it was
        sublayer, norm = nn.Linear(d, d), nn.LayerNorm(d)
    sublayer, norm = _random_(sublayer, gen), _random_(norm, gen)
    return 2 * torch.randn(2, 5, d, generator=gen) + 1, sublayer, norm


def _check_step(answer: Callable[..., Any], name: str, expected: Callable[..., Tensor],
                wrong: Callable[[Tensor, nn.Module, nn.Module], dict[str, Tensor]], formula: str) -> None:
    """Run `answer(x, sublayer, norm)`; refuse it with the message of the first mistake in `wrong` it equals."""
    x, sublayer, norm = _step_inputs()
    with torch.no_grad():
        out = expect_tensor(answer(x.clone(), sublayer, norm), tuple(x.shape),
                            f"{name}(x of shape (2, 5, 8), sublayer, norm)")
        for message, value in wrong(x, sublayer, norm).items():
            expect(not same(out, value, 1e-4), message)
        worst = max_difference(out, expected(x, sublayer, norm))
    expect(worst <= 1e-4, f"differs from {formula} by up to {worst:.3g}")


def reference_post_ln_step(x: Tensor, sublayer: Callable[[Tensor], Tensor], norm: nn.Module) -> Tensor:
    return norm(x + sublayer(x))


@exercise("post_ln_step", "03",
          task="post_ln_step(x, sublayer, norm) → one post-LN residual step on x (batch, seq, d_model), as in the "
               "original Transformer and BERT: the sublayer reads x, its output is added to x, and the sum is "
               "normalised",
          hint="post-LN is norm(x + sublayer(x)): the norm sits on the residual path, after the add",
          reference=reference_post_ln_step)
def check_post_ln_step(answer: Callable[..., Any]) -> None:
    _check_step(answer, "post_ln_step", reference_post_ln_step, lambda x, f, norm: {
        "this is pre-LN, x + sublayer(norm(x)); post-LN adds first and normalises the sum: norm(x + sublayer(x))":
            x + f(norm(x)),
        "the residual connection is missing: add x to the sublayer's output before the norm, "
        "norm(x + sublayer(x))": norm(f(x)),
        "the norm is missing: post-LN normalises the sum, norm(x + sublayer(x))": x + f(x),
        "the norm went on the sublayer's output alone; it goes on the sum, after the residual add: "
        "norm(x + sublayer(x))": x + norm(f(x)),
        "the sublayer read the normalised x; in post-LN it reads x itself, and the norm comes after the add":
            norm(x + f(norm(x))),
    }, "norm(x + sublayer(x))")


def reference_pre_ln_step(x: Tensor, sublayer: Callable[[Tensor], Tensor], norm: nn.Module) -> Tensor:
    return x + sublayer(norm(x))


@exercise("pre_ln_step", "03",
          task="pre_ln_step(x, sublayer, norm) → one pre-LN residual step on x (batch, seq, d_model): the sublayer "
               "reads the normalised x, and its output is added to x itself",
          hint="pre-LN is x + sublayer(norm(x)); post-LN would be norm(x + sublayer(x))",
          reference=reference_pre_ln_step)
def check_pre_ln_step(answer: Callable[..., Any]) -> None:
    _check_step(answer, "pre_ln_step", reference_pre_ln_step, lambda x, f, norm: {
        "this is post-LN, norm(x + sublayer(x)): in pre-LN the norm sits on the sublayer's input, and the "
        "residual path is left alone": norm(x + f(x)),
        "the residual connection is missing: add x back, x + sublayer(norm(x))": f(norm(x)),
        "the norm went on the sublayer's output; it goes on its input: x + sublayer(norm(x))": x + norm(f(x)),
        "the residual adds the normalised x; it adds x itself, untouched: x + sublayer(norm(x))":
            norm(x) + f(norm(x)),
    }, "x + sublayer(norm(x))")


# --- the position-wise feed-forward network (section 4) ----------------------------------------------------------

def reference_position_wise_ffn(x: Tensor, linear1: nn.Linear, linear2: nn.Linear) -> Tensor:
    return linear2(F.gelu(linear1(x)))


@exercise("position_wise_ffn", "03",
          task="position_wise_ffn(x, linear1, linear2) → the feed-forward network on x (..., d_model): widen with "
               "linear1 (d_model → d_ff), apply the exact GELU, project back with linear2 (d_ff → d_model); "
               "every token on its own",
          hint="linear2(F.gelu(linear1(x))): nn.Linear acts on the last dim, so it works for one token (d_model,) "
               "and for a whole batch (batch, seq, d_model) alike",
          reference=reference_position_wise_ffn)
def check_position_wise_ffn(answer: Callable[..., Any]) -> None:
    gen = torch.Generator().manual_seed(0)
    d, d_ff = 8, 32
    with seeded(0):
        up, down = nn.Linear(d, d_ff), nn.Linear(d_ff, d)
    up, down = _random_(up, gen), _random_(down, gen)
    x = torch.randn(2, 5, d, generator=gen)
    with torch.no_grad():
        out = expect_tensor(answer(x.clone(), up, down), (2, 5, d),
                            "position_wise_ffn(x of shape (2, 5, 8), linear1 8 → 32, linear2 32 → 8)")
        wrong = {
            "no non-linearity between linear1 and linear2: two linear layers in a row are one linear layer; put "
            "F.gelu between them": down(up(x)),
            "that is ReLU; this network uses GELU (F.gelu), as GPT and BERT do": down(F.relu(up(x))),
            "that is GELU's tanh approximation; use the exact F.gelu (no approximate=)":
                down(F.gelu(up(x), approximate="tanh")),
            "GELU was applied to the output as well; the output is linear2's, with no activation after it":
                F.gelu(down(F.gelu(up(x)))),
        }
        for message, value in wrong.items():
            expect(not same(out, value, 1e-4), message)
        expected = reference_position_wise_ffn(x, up, down)
        worst = max_difference(out, expected)
        expect(worst <= 1e-4, f"differs from linear2(gelu(linear1(x))) by up to {worst:.3g}")
        alone = expect_tensor(answer(x[1, 3].clone(), up, down), (d,),
                              "position_wise_ffn(one token of shape (8,), linear1, linear2)")
    worst = max_difference(alone, expected[1, 3])
    expect(worst <= 1e-4, f"one token alone gives another output than the same token inside the batch (up to "
                          f"{worst:.3g} apart): the network must treat every token on its own, with nothing "
                          f"mixed across positions")


# --- the decoder block (section 6) -------------------------------------------------------------------------------

def reference_decoder_block_forward(block: DecoderBlock, y: Tensor, memory: Tensor) -> Tensor:
    h = block.norm1(y + block.self_attn(y, is_causal=True))
    h = block.norm2(h + block.cross_attn(h, memory))
    return block.norm3(h + block.ff(h))


def decoder_mistake(block: DecoderBlock, y: Tensor, memory: Tensor, *, self_causal: bool = True,
                    cross_causal: bool = False, cross_context: str = "memory", pre_ln: bool = False,
                    residual: bool = True, norms: tuple[int, int, int] = (1, 2, 3), cross_first: bool = False,
                    residual_from: str = "previous") -> Tensor:
    """The post-LN decoder block, or one mistake in it (for the checker's messages and the tests' wrong answers):
    self_causal=False drops the causal mask; cross_causal=True puts one on the cross-attention; cross_context="self"
    gives the cross-attention the target as keys and values, "swapped" makes memory the queries; pre_ln=True
    normalises each sublayer's input instead; residual=False drops the skips; norms picks which norm follows each
    sublayer; cross_first=True runs cross-attention before self-attention; residual_from="input" adds the block's
    input y back after every sublayer instead of that sublayer's own input."""
    norm = [block.norm1, block.norm2, block.norm3]
    n1, n2, n3 = (norm[i - 1] for i in norms)

    def self_part(h: Tensor) -> Tensor:
        return block.self_attn(h, is_causal=self_causal)

    def cross_part(h: Tensor) -> Tensor:
        if cross_context == "self":
            return block.cross_attn(h, is_causal=cross_causal)
        if cross_context == "swapped":
            return block.cross_attn(memory, h, is_causal=cross_causal)
        return block.cross_attn(h, memory, is_causal=cross_causal)

    parts = [(self_part, n1), (cross_part, n2), (block.ff, n3)]
    if cross_first:
        parts[0], parts[1] = (cross_part, n1), (self_part, n2)
    h = y
    for sublayer, n in parts:
        skip = (y if residual_from == "input" else h) if residual else 0
        h = skip + sublayer(n(h)) if pre_ln else n(skip + sublayer(h))
    return h


class _PartsOnly(DecoderBlock):
    """A DecoderBlock that refuses to run itself: the answer must use its parts."""

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        raise Failed("you called the block itself, block(y, memory); write its forward from the parts: "
                     "block.self_attn, block.cross_attn, block.ff and block.norm1/2/3")


def _decoder_inputs() -> tuple[_PartsOnly, Tensor, Tensor]:
    """A post-LN decoder block (d_model 16, 2 heads, d_ff 32) with its own initial weights and random norms, a target
    y (2, 5, 16) and a memory (2, 7, 16) of another length."""
    gen = torch.Generator().manual_seed(0)
    with seeded(0):
        block = _PartsOnly(16, 2, 32, activation="gelu").eval()
    with torch.no_grad():
        for norm in (block.norm1, block.norm2, block.norm3):  # distinct norms, so that a swap shows
            norm.weight.copy_(0.5 + torch.rand(16, generator=gen))
            norm.bias.copy_(torch.randn(16, generator=gen))
    return block, torch.randn(2, 5, 16, generator=gen), torch.randn(2, 7, 16, generator=gen)


@exercise("decoder_block_forward", "03",
          task="decoder_block_forward(block, y, memory) → a post-LN DecoderBlock's output, written from its parts: "
               "causal self-attention over the target y (batch, seq_tgt, d_model), cross-attention from y to memory "
               "(batch, seq_src, d_model), the feed-forward network; each in a residual connection followed by its "
               "norm (norm1, norm2, norm3) → (batch, seq_tgt, d_model)",
          hint="h = block.norm1(y + block.self_attn(y, is_causal=True)); "
               "h = block.norm2(h + block.cross_attn(h, memory)); then block.norm3(h + block.ff(h))",
          reference=reference_decoder_block_forward)
def check_decoder_block_forward(answer: Callable[..., Any]) -> None:
    block, y, memory = _decoder_inputs()
    what = "decoder_block_forward(block, y of shape (2, 5, 16), memory of shape (2, 7, 16))"
    swapped = (f"{what}: the cross-attention's queries came from memory (length 7); in cross-attention the queries "
               f"come from the target and the keys and values from memory: block.cross_attn(h, memory)")
    query_lengths: list[int] = []

    def record_queries(module: nn.Module, args: tuple, kwargs: dict) -> None:  # the length of what asks the questions
        queries = args[0] if args else kwargs.get("x")
        if isinstance(queries, Tensor) and queries.dim() == 3:
            query_lengths.append(queries.shape[1])

    hook = block.cross_attn.register_forward_pre_hook(record_queries, with_kwargs=True)
    try:
        with torch.no_grad():
            out = answer(block, y.clone(), memory.clone())
    except Failed:
        raise
    except Exception:
        expect(7 not in query_lengths, swapped)  # the answer broke on the shapes because memory asked the questions
        raise
    finally:
        hook.remove()
    expect(not (isinstance(out, Tensor) and tuple(out.shape) == (2, 7, 16)), swapped)
    out = expect_tensor(out, (2, 5, 16), what)
    with torch.no_grad():
        expected = DecoderBlock.forward(block, y, memory)  # the parent's forward: labkit's own DecoderBlock
        other = torch.randn(memory.shape, generator=torch.Generator().manual_seed(1))
        expect(not same(answer(block, y.clone(), other), out, 1e-4),
               "the output does not change when memory changes: the cross-attention must take its keys and values "
               "from memory, block.cross_attn(h, memory)")
        changed = y.clone()
        changed[:, 3:] += 1.0
        early = answer(block, changed, memory.clone())[:, :3]
        expect(same(early, out[:, :3], 1e-4),
               "the output at positions 0..2 changes when only later target tokens change: the self-attention "
               "sees the future; call it with is_causal=True")
        wrong = {
            "the cross-attention is causal; every target token may see the whole source, so no is_causal there":
                dict(cross_causal=True),
            "that is pre-LN, x + sublayer(norm(x)); this block is post-LN, like nn.TransformerDecoderLayer's "
            "default: norm(x + sublayer(x))": dict(pre_ln=True),
            "the residual connections are missing: add each sublayer's input to its output before the norm":
                dict(residual=False),
            "cross-attention ran before the self-attention; the block first looks at the target so far (causal "
            "self-attention), then at the source": dict(cross_first=True),
            "each residual connection added the block's input y; each adds its own sublayer's input, the previous "
            "step's output h": dict(residual_from="input"),
        }
        for message, mistake in wrong.items():
            expect(not same(out, decoder_mistake(block, y, memory, **mistake), 1e-4), message)
        for order in ((3, 2, 1), (2, 1, 3), (1, 3, 2), (3, 1, 2), (2, 3, 1)):
            expect(not same(out, decoder_mistake(block, y, memory, norms=order), 1e-4),
                   f"the norms are in the order norm{order[0]}, norm{order[1]}, norm{order[2]}; norm1 follows the "
                   f"self-attention, norm2 the cross-attention, norm3 the feed-forward network")
    worst = max_difference(out, expected)
    expect(worst <= 1e-4, f"differs from DecoderBlock's own forward (post-LN) by up to {worst:.3g}")


# --- the parameter count (section 7) -----------------------------------------------------------------------------

def reference_block_parameter_count(d_model: int, n_heads: int, d_ff: int) -> int:
    return count_parameters(EncoderBlock(d_model, n_heads, d_ff))


@exercise("block_parameter_count", "03",
          task="block_parameter_count(d_model, n_heads, d_ff) → the number of parameters of one encoder block "
               "(attention with W_Q, W_K, W_V, W_O, the feed-forward network, two LayerNorms; biases everywhere)",
          hint="attention 4·d² + 4·d (four d×d matrices and their biases), feed-forward 2·d·d_ff + d_ff + d, "
               "each LayerNorm 2·d (γ and β); the number of heads changes nothing",
          reference=reference_block_parameter_count)
def check_block_parameter_count(answer: Callable[[int, int, int], Any]) -> None:
    counts = {}
    for args in ((64, 4, 256), (32, 2, 64), (32, 8, 64)):
        value = answer(*args)
        expect(isinstance(value, int) or (isinstance(value, Tensor) and value.numel() == 1
                                          and not value.dtype.is_floating_point),
               f"block_parameter_count{args} returned {value!r}; expected a whole number (an int)")
        counts[args] = int(value)
    two, eight = counts[(32, 2, 64)], counts[(32, 8, 64)]
    expect(two == eight, f"the count changed with the number of heads ({two:,} for 2 heads, {eight:,} for 8): the "
                         f"heads split d_model between them, they add no weights")
    for (d, h, d_ff), count in counts.items():
        expected = reference_block_parameter_count(d, h, d_ff)
        what = f"block_parameter_count({d}, {h}, {d_ff}) = {count:,}"
        wrong = {
            "forgot the biases (4·d of attention, d_ff + d of the feed-forward network)":
                4 * d * d + 2 * d * d_ff + 4 * d,
            "forgot the biases and the LayerNorms": 4 * d * d + 2 * d * d_ff,
            "forgot the LayerNorms: two per block, 2·d each (γ and β)": expected - 4 * d,
            "counted one LayerNorm; a block has two (after attention and after the feed-forward network)":
                expected - 2 * d,
        }
        for message, value in wrong.items():
            expect(count != value, f"{what}: {message}")
        expect(count == expected, f"{what}, expected {expected:,}")
