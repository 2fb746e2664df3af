"""Notebook 04's ladder, checked the moment each rung is written: the bigram model, averaging the past, one head,
multi-head, the feed-forward layer, the pre-LN block, the GPT, and the training loop.

The modules are classes; a checker builds one with small sizes inside its own random state (the notebook's is left
as it was), runs it and compares with the same computation written from the module's own weights, or, for the
GPT, with `TinyGPT` holding those weights (`labkit.ladder.to_tiny_gpt`).
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.exercises import Failed, expect, exercise
from labkit.exercises._compare import expect_tensor, max_difference, same, seeded, seeded_randn
from labkit.ladder import to_tiny_gpt


# --- the reference answers --------------------------------------------------------------------------------------

class ReferenceBigram(nn.Module):
    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.table = nn.Embedding(vocab_size, vocab_size)

    def forward(self, idx: Tensor) -> Tensor:
        return self.table(idx)


def reference_average_past(x: Tensor) -> Tensor:
    seq = x.shape[1]
    weights = torch.ones(seq, seq).tril()
    return (weights / weights.sum(1, keepdim=True)) @ x


class ReferenceHead(nn.Module):
    def __init__(self, d_model: int, d_head: int) -> None:
        super().__init__()
        self.query = nn.Linear(d_model, d_head, bias=False)
        self.key = nn.Linear(d_model, d_head, bias=False)
        self.value = nn.Linear(d_model, d_head, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.query(x), self.key(x), self.value(x)
        scores = q @ k.transpose(-2, -1) / math.sqrt(k.shape[-1])
        past = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool, device=x.device).tril()
        return scores.masked_fill(~past, float("-inf")).softmax(-1) @ v


class ReferenceMultiHead(nn.Module):
    def __init__(self, d_model: int, n_head: int) -> None:
        super().__init__()
        self.heads = nn.ModuleList(ReferenceHead(d_model, d_model // n_head) for _ in range(n_head))
        self.proj = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(torch.cat([head(x) for head in self.heads], dim=-1))


class ReferenceFeedForward(nn.Module):
    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.up = nn.Linear(d_model, 4 * d_model, bias=False)
        self.down = nn.Linear(4 * d_model, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.gelu(self.up(x)))


class ReferenceBlock(nn.Module):
    def __init__(self, d_model: int, n_head: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model, bias=False)
        self.attn = ReferenceMultiHead(d_model, n_head)
        self.ln2 = nn.LayerNorm(d_model, bias=False)
        self.ff = ReferenceFeedForward(d_model)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.ff(self.ln2(x))


class ReferenceGPT(nn.Module):
    def __init__(self, vocab_size: int, block_size: int, d_model: int, n_head: int, n_layer: int) -> None:
        super().__init__()
        self.token_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(block_size, d_model)
        self.blocks = nn.Sequential(*[ReferenceBlock(d_model, n_head) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(d_model, bias=False)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)

    def forward(self, idx: Tensor) -> Tensor:
        positions = torch.arange(idx.shape[1], device=idx.device)
        x = self.token_emb(idx) + self.pos_emb(positions)
        return self.lm_head(self.ln_f(self.blocks(x)))


def reference_train_loop(model: nn.Module, get_batch: Callable[[int], tuple[Tensor, Tensor]], steps: int,
                         lr: float) -> list[float]:
    return _loop(model, get_batch, steps, lr)


def _loop(model: nn.Module, get_batch: Callable[[int], tuple[Tensor, Tensor]], steps: int, lr: float, *,
          zero_grad: bool = True, optimizer: str = "adamw") -> list[float]:
    """The reference loop, and the mistakes a learner could make in it (for the checker's messages)."""
    make = torch.optim.AdamW if optimizer == "adamw" else torch.optim.SGD
    opt = make(model.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        x, y = get_batch(step)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        if zero_grad:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


# --- shared pieces ----------------------------------------------------------------------------------------------

def _module(answer: Callable[..., Any], what: str, *args: int) -> nn.Module:
    with seeded(0):  # the notebook's random state is left as it was
        model = answer(*args)
    expect(isinstance(model, nn.Module), f"{what} made a {type(model).__name__}, not an nn.Module")
    return model.eval()


def _linear(module: nn.Module, name: str, what: str, shape: tuple[int, int]) -> nn.Linear:
    """module.name, checked to be an nn.Linear with a weight of `shape` (out, in) and no bias."""
    layer = getattr(module, name, None)
    expect(isinstance(layer, nn.Linear), f"{what} has no nn.Linear named {name!r}")
    expect(tuple(layer.weight.shape) == shape,
           f"{what}.{name} maps {layer.in_features} → {layer.out_features} features, expected {shape[1]} → "
           f"{shape[0]}")
    expect(layer.bias is None, f"{what}.{name} has a bias; build it with bias=False, as TinyGPT's layers are")
    return layer


def _causal(run: Callable[[Tensor], Tensor], x: Tensor, what: str) -> None:
    """Changing the tokens after position 2 must leave positions 0..2 alone."""
    changed = x.clone()
    changed[:, 3:] += 1.0
    with torch.no_grad():
        before, after = run(x)[:, :3], run(changed)[:, :3]
    expect(same(after, before), f"{what}: the output at positions 0..2 changes when only later tokens change, so "
                                f"a position sees its future; mask the scores above the diagonal")


# --- the checkers -----------------------------------------------------------------------------------------------

@exercise("bigram", "04",
          task="Bigram(vocab_size): idx (batch, seq) → logits (batch, seq, vocab_size), read from one table row per "
               "token: the next character's scores depend on the current character only",
          hint="self.table = nn.Embedding(vocab_size, vocab_size); forward returns self.table(idx), the raw scores "
               "(cross_entropy applies the softmax itself)",
          reference=ReferenceBigram)
def check_bigram(answer: Callable[..., Any]) -> None:
    vocab = 7
    model = _module(answer, "Bigram(7)", vocab)
    idx = torch.tensor([[0, 3, 3, 6, 1], [3, 2, 0, 3, 5]])
    with torch.no_grad():
        logits = expect_tensor(model(idx), (2, 5, vocab), "Bigram(7)(idx of shape (2, 5))")
    expect(not same(logits.softmax(-1), logits) and not torch.allclose(logits.sum(-1), torch.ones(2, 5)),
           "each position's outputs sum to 1: return the logits, not probabilities (cross_entropy takes logits)")
    threes = logits[idx == 3]  # token 3 at four places, after different tokens
    expect(max_difference(threes, threes[:1].expand_as(threes)) <= 1e-6,
           "token 3 gets different scores at different places: a bigram model's scores depend on the current "
           "token only, one table row per token")
    n_params = sum(p.numel() for p in model.parameters())
    expect(n_params == vocab * vocab, f"Bigram(7) has {n_params} parameters; a bigram table has 7 × 7 = 49")


@exercise("average_past", "04",
          task="average_past(x): x (batch, seq, channels) → (batch, seq, channels), where position t holds the mean "
               "of x[:, 0..t] (itself and everything before it, nothing after)",
          hint="out[:, t] = x[:, :t + 1].mean(1); as a matrix product: a lower-triangular matrix of ones, each row "
               "divided by its sum, times x",
          reference=reference_average_past)
def check_average_past(answer: Callable[[Tensor], Any]) -> None:
    x = seeded_randn(2, 6, 3, seed=1)
    out = expect_tensor(answer(x.clone()), (2, 6, 3), "average_past(x of shape (2, 6, 3))")
    expect(not same(out[:, 0], x.mean(1)),
           "position 0 holds the mean of the whole sequence: it may average only itself and earlier positions")
    expect(not same(out[:, 1:], x.cumsum(1)[:, 1:]), "that is the running sum; divide position t by t + 1")
    expect(not same(out[:, 1:], (x.cumsum(1) / 6)[:, 1:]),
           "every position is divided by the length 6; position t averages t + 1 values")
    excluding = torch.cat([torch.zeros(2, 1, 3), x.cumsum(1)[:, :-1] / torch.arange(1, 6)[None, :, None]], 1)
    expect(not same(out[:, 1:], excluding[:, 1:]), "position t averages x[0..t-1] only; include x[t] itself")
    expect(same(out, reference_average_past(x)),
           f"differs from the mean of x[:, 0..t] by up to {max_difference(out, reference_average_past(x)):.2g}")


@exercise("head", "04",
          task="Head(d_model, d_head): x (batch, seq, d_model) → (batch, seq, d_head): queries, keys and values "
               "from three nn.Linear(d_model, d_head, bias=False) named query, key, value; scores q·kᵀ/√d_head, "
               "masked so position t sees 0..t, softmax over the keys, times v",
          hint="scores = q @ k.transpose(-2, -1) / math.sqrt(d_head); scores.masked_fill(~tril, float('-inf')); "
               "softmax(dim=-1) so each query's weights sum to 1; then @ v",
          reference=ReferenceHead)
def check_head(answer: Callable[..., Any]) -> None:
    head = _module(answer, "Head(12, 4)", 12, 4)
    q, k, v = (_linear(head, name, "Head(12, 4)", (4, 12)) for name in ("query", "key", "value"))
    x = 3 * seeded_randn(2, 6, 12, seed=1)
    with torch.no_grad():
        out = expect_tensor(head(x), (2, 6, 4), "Head(12, 4)(x of shape (2, 6, 12))")
        scores = q(x) @ k(x).transpose(-2, -1)
        past = torch.ones(6, 6, dtype=torch.bool).tril()

        def attend(s: Tensor, dim: int = -1) -> Tensor:
            return s.masked_fill(~past, float("-inf")).softmax(dim).nan_to_num() @ v(x)

        expected = attend(scores / 2)
    expect(not same(out, attend(scores)), "the scores are not scaled: divide q·kᵀ by √d_head = 2")
    expect(not same(out, attend(scores / 4)), "divided by d_head = 4; divide by √d_head = 2")
    expect(not same(out, attend(scores / 2, dim=-2)),
           "softmax over the queries (dim -2): each query's weights over the keys (dim -1) must sum to 1")
    _causal(head, x, "Head(12, 4)")
    expect(same(out, expected), f"differs from softmax(mask(q·kᵀ/√d_head))·v computed from your own layers by up to "
                                f"{max_difference(out, expected):.2g}")


@exercise("multi_head", "04",
          task="MultiHead(d_model, n_head): n_head Heads of d_head = d_model / n_head in an nn.ModuleList named "
               "heads, their outputs concatenated on the last dim, then an nn.Linear(d_model, d_model, bias=False) "
               "named proj (W^O)",
          hint="self.heads = nn.ModuleList(Head(d_model, d_model // n_head) for _ in range(n_head)); forward: "
               "self.proj(torch.cat([h(x) for h in self.heads], dim=-1))",
          reference=ReferenceMultiHead)
def check_multi_head(answer: Callable[..., Any]) -> None:
    mh = _module(answer, "MultiHead(12, 3)", 12, 3)
    heads = getattr(mh, "heads", None)
    expect(isinstance(heads, nn.ModuleList), "MultiHead(12, 3) has no nn.ModuleList named heads")
    expect(len(heads) == 3, f"MultiHead(12, 3) has {len(heads)} heads, expected 3")
    proj = _linear(mh, "proj", "MultiHead(12, 3)", (12, 12))
    x = seeded_randn(2, 6, 12, seed=1)
    with torch.no_grad():
        parts = [head(x) for head in heads]
        expect(all(p.shape == (2, 6, 4) for p in parts),
               f"the heads return {[tuple(p.shape) for p in parts]}; each head has d_head = 12 / 3 = 4 features")
        out = expect_tensor(mh(x), (2, 6, 12), "MultiHead(12, 3)(x of shape (2, 6, 12))")
        joined = torch.cat(parts, dim=-1)
        expected = proj(joined)
    expect(not same(out, joined), "the concatenated heads are returned as they are; pass them through proj (W^O)")
    _causal(mh, x, "MultiHead(12, 3)")
    expect(same(out, expected), f"differs from proj(cat of the heads' outputs) by up to "
                                f"{max_difference(out, expected):.2g}")


@exercise("feed_forward", "04",
          task="FeedForward(d_model): x (batch, seq, d_model) → (batch, seq, d_model): nn.Linear named up "
               "(d_model → 4·d_model), GELU, nn.Linear named down (4·d_model → d_model), both bias=False",
          hint="self.up = nn.Linear(d_model, 4 * d_model, bias=False), self.down = nn.Linear(4 * d_model, "
               "d_model, bias=False); forward: self.down(F.gelu(self.up(x)))",
          reference=ReferenceFeedForward)
def check_feed_forward(answer: Callable[..., Any]) -> None:
    ff = _module(answer, "FeedForward(8)", 8)
    up = _linear(ff, "up", "FeedForward(8)", (32, 8))
    down = _linear(ff, "down", "FeedForward(8)", (8, 32))
    x = 2 * seeded_randn(2, 5, 8, seed=1)
    with torch.no_grad():
        out = expect_tensor(ff(x), (2, 5, 8), "FeedForward(8)(x of shape (2, 5, 8))")
        expected = down(F.gelu(up(x)))
        expect(not same(out, down(up(x))), "no non-linearity between up and down: two linear layers in a row are "
                                           "one linear layer; put F.gelu between them")
        expect(not same(out, down(F.relu(up(x)))), "ReLU; GPT uses GELU (F.gelu or nn.GELU())")
        expect(not same(out, down(F.gelu(up(x), approximate="tanh"))),
               "GELU's tanh approximation; TinyGPT uses the exact GELU (F.gelu with no approximate=)")
    expect(same(out, expected), f"differs from down(gelu(up(x))) by up to {max_difference(out, expected):.2g}")


@exercise("block", "04",
          task="Block(d_model, n_head): a pre-LN transformer block: x = x + attn(ln1(x)), then x = x + ff(ln2(x)), "
               "with ln1, ln2 = nn.LayerNorm(d_model, bias=False), attn = MultiHead(d_model, n_head), "
               "ff = FeedForward(d_model)",
          hint="pre-LN normalises the sublayer's input and adds its output to the un-normalised x: "
               "x = x + self.attn(self.ln1(x)); x = x + self.ff(self.ln2(x))",
          reference=ReferenceBlock)
def check_block(answer: Callable[..., Any]) -> None:
    block = _module(answer, "Block(12, 3)", 12, 3)
    parts = {name: getattr(block, name, None) for name in ("ln1", "attn", "ln2", "ff")}
    missing = [name for name, part in parts.items() if part is None]
    expect(not missing, f"Block(12, 3) has no {', '.join(missing)}; it needs ln1, attn, ln2 and ff")
    for name in ("ln1", "ln2"):
        expect(isinstance(parts[name], nn.LayerNorm) and parts[name].bias is None,
               f"Block(12, 3).{name} should be nn.LayerNorm(12, bias=False)")
    ln1, attn, ln2, ff = parts.values()
    with torch.no_grad():  # non-trivial norms, so that forgetting one shows
        for seed, norm in enumerate((ln1, ln2), start=2):
            norm.weight.copy_(1 + 0.5 * seeded_randn(12, seed=seed))
    x = 2 * seeded_randn(2, 6, 12, seed=1) + 1
    with torch.no_grad():
        out = expect_tensor(block(x), (2, 6, 12), "Block(12, 3)(x of shape (2, 6, 12))")
        h = x + attn(ln1(x))
        expected = h + ff(ln2(h))
        post = ln1(x + attn(x))
        expect(not same(out, ln2(post + ff(post))), "that is post-LN, norm(x + sublayer(x)); GPT's block is pre-LN: "
                                                    "x + sublayer(norm(x))")
        no_skip = attn(ln1(x))
        expect(not same(out, ff(ln2(no_skip))), "no residual connections: add each sublayer's output to x")
        no_norm = x + attn(x)
        expect(not same(out, no_norm + ff(no_norm)), "the LayerNorms are never used: each sublayer reads ln(x)")
    _causal(block, x, "Block(12, 3)")
    expect(same(out, expected), f"differs from x + attn(ln1(x)), then + ff(ln2(·)), by up to "
                                f"{max_difference(out, expected):.2g}")


@exercise("gpt", "04",
          task="GPT(vocab_size, block_size, d_model, n_head, n_layer): token_emb and pos_emb (nn.Embedding), "
               "n_layer Blocks in blocks (nn.Sequential), a final nn.LayerNorm ln_f (bias=False), and lm_head, an "
               "nn.Linear(d_model, vocab_size, bias=False); idx (batch, seq) → logits (batch, seq, vocab_size)",
          hint="x = self.token_emb(idx) + self.pos_emb(torch.arange(seq)); then self.blocks(x), self.ln_f(...), "
               "self.lm_head(...)",
          reference=ReferenceGPT)
def check_gpt(answer: Callable[..., Any]) -> None:
    what = "GPT(vocab_size=11, block_size=8, d_model=16, n_head=2, n_layer=2)"
    model = _module(answer, what, 11, 8, 16, 2, 2)
    for name in ("token_emb", "pos_emb", "blocks", "ln_f", "lm_head"):
        expect(hasattr(model, name), f"{what} has no {name}")
    expect(len(model.blocks) == 2, f"{what} has {len(model.blocks)} blocks, expected n_layer = 2")
    idx = torch.randint(11, (2, 8), generator=torch.Generator().manual_seed(2))
    try:
        tiny = to_tiny_gpt(model).eval()
    except ValueError as err:
        raise Failed(f"its weights do not map onto TinyGPT: {err}") from None
    with torch.no_grad():
        logits = expect_tensor(model(idx), (2, 8, 11), f"{what}(idx of shape (2, 8))")
        expected = tiny(idx)
        tiny.norm = nn.Identity()
        expect(not same(logits, tiny(idx), 1e-4), "the final LayerNorm ln_f is not applied before lm_head")
        tiny = to_tiny_gpt(model).eval()
        nn.init.zeros_(tiny.pos_emb.table.weight)
        expect(not same(logits, tiny(idx), 1e-4), "the position embeddings are not added: add "
                                                  "self.pos_emb(torch.arange(seq)) to the token embeddings")
    expect(same(logits, expected, 1e-5), f"TinyGPT holding your weights gives logits that differ from yours by "
                                         f"{max_difference(logits, expected):.2g}")


def _tiny_task() -> tuple[nn.Module, Callable[[int], tuple[Tensor, Tensor]]]:
    with seeded(0):
        model = ReferenceBigram(5)
    batches = [torch.randint(5, (2, 3, 6), generator=torch.Generator().manual_seed(s)).unbind() for s in range(4)]
    return model, lambda step: (batches[step][0], batches[step][1])


@exercise("train_loop", "04",
          task="train_loop(model, get_batch, steps, lr) → the list of the steps' losses (floats): AdamW over "
               "model.parameters() at lr; each step: x, y = get_batch(step), logits = model(x), cross-entropy over "
               "every position, zero the gradients, backward, optimizer step",
          hint="optimizer = torch.optim.AdamW(model.parameters(), lr=lr); per step: loss = F.cross_entropy("
               "logits.flatten(0, 1), y.flatten()); optimizer.zero_grad(); loss.backward(); optimizer.step(); "
               "losses.append(loss.item())",
          reference=reference_train_loop)
def check_train_loop(answer: Callable[..., Any]) -> None:
    model, get_batch = _tiny_task()
    start = copy.deepcopy(model.state_dict())
    losses = answer(model, get_batch, 4, 0.1)
    expect(isinstance(losses, (list, tuple)) and len(losses) == 4,
           f"train_loop(..., steps=4) returned {type(losses).__name__}"
           f"{f' of length {len(losses)}' if hasattr(losses, '__len__') else ''}; expected a list of 4 losses")
    expect(all(isinstance(v, numbers.Real) or (isinstance(v, Tensor) and v.numel() == 1) for v in losses),
           "the losses should be numbers: append loss.item()")
    losses = [float(v) for v in losses]
    weights = model.table.weight.detach()
    expect(not torch.equal(weights, start["table.weight"]),
           "the weights did not change: call optimizer.step() after loss.backward()")

    def run(**mistake: Any) -> tuple[list[float], Tensor]:
        again, _ = _tiny_task()
        out = _loop(again, get_batch, 4, 0.1, **mistake)
        return out, again.table.weight.detach()

    ref_losses, ref_weights = run()
    expect(math.isclose(losses[0], ref_losses[0], rel_tol=1e-5),
           f"the first loss is {losses[0]:.4f}, expected the mean cross-entropy over every position, "
           f"{ref_losses[0]:.4f}")
    if not torch.allclose(weights, ref_weights, atol=1e-6):
        for mistake, message in (
                (dict(zero_grad=False), "the gradients add up across steps: call optimizer.zero_grad() every step, "
                                        "before loss.backward()"),
                (dict(optimizer="sgd"), "that is plain SGD; use torch.optim.AdamW(model.parameters(), lr=lr)")):
            expect(not torch.allclose(weights, run(**mistake)[1], atol=1e-6), message)
        raise Failed(f"after 4 steps the weights differ from the reference loop's by up to "
                     f"{max_difference(weights, ref_weights):.2g}")
