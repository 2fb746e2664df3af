"""Notebook 04's ladder checkers: each rung's plausible mistakes are refused with their own message, the checks leave
the notebook's random state alone, and the reference GPT is TinyGPT once copied."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from labkit.exercises import check
from labkit.exercises.ladder import (ReferenceBigram, ReferenceBlock, ReferenceFeedForward, ReferenceGPT,
                                     ReferenceHead, ReferenceMultiHead, _loop)


def test_checks_leave_the_callers_random_state_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    for name, reference in (("head", ReferenceHead), ("gpt", ReferenceGPT), ("train_loop", lambda *a: _loop(*a))):
        assert check(name, reference, quiet=True)
    assert torch.equal(torch.rand(3), expected)


class _Probabilities(ReferenceBigram):
    def forward(self, idx):
        return super().forward(idx).softmax(-1)


class _Contextual(ReferenceBigram):
    def forward(self, idx):
        return super().forward(idx) + super().forward(idx.roll(1, dims=1))


class _Wide(nn.Module):
    def __init__(self, vocab_size):
        super().__init__()
        self.emb, self.out = nn.Embedding(vocab_size, 16), nn.Linear(16, vocab_size)

    def forward(self, idx):
        return self.out(self.emb(idx))


def _prefix(x, divide_by=None, include_self=True):
    total = x.cumsum(1) if include_self else x.cumsum(1) - x
    counts = torch.arange(1, x.shape[1] + 1)[None, :, None] - (0 if include_self else 1)
    return total / (divide_by if divide_by else counts.clamp(min=1))


def test_the_three_ways_of_averaging_the_past_pass() -> None:
    def loop(x):
        return torch.stack([x[:, :t + 1].mean(1) for t in range(x.shape[1])], 1)

    def softmax(x):
        seq = x.shape[1]
        scores = torch.zeros(seq, seq).masked_fill(~torch.ones(seq, seq, dtype=torch.bool).tril(), float("-inf"))
        return scores.softmax(-1) @ x

    assert check("average_past", loop, quiet=True) and check("average_past", softmax, quiet=True)


def _head(scale="sqrt", dim=-1, mask="tril"):
    class Wrong(ReferenceHead):
        def forward(self, x):
            q, k, v = self.query(x), self.key(x), self.value(x)
            d = k.shape[-1]
            scores = q @ k.transpose(-2, -1) / {"sqrt": math.sqrt(d), "none": 1.0, "d": d}[scale]
            seq = x.shape[1]
            allowed = {"tril": torch.ones(seq, seq, dtype=torch.bool).tril(),
                       "triu": torch.ones(seq, seq, dtype=torch.bool).triu(),
                       "none": torch.ones(seq, seq, dtype=torch.bool)}[mask]
            return scores.masked_fill(~allowed, float("-inf")).softmax(dim).nan_to_num() @ v
    return Wrong


class _BiasedHead(ReferenceHead):
    def __init__(self, d_model, d_head):
        super().__init__(d_model, d_head)
        self.query = nn.Linear(d_model, d_head)


class _NoProj(ReferenceMultiHead):
    def forward(self, x):
        return torch.cat([h(x) for h in self.heads], -1)


class _SummedHeads(ReferenceMultiHead):
    def forward(self, x):
        return self.proj(torch.cat([h(x) for h in self.heads], -1)) + self.heads[0](x).repeat(1, 1, 3)


class _FullWidthHeads(ReferenceMultiHead):
    def __init__(self, d_model, n_head):
        super().__init__(d_model, n_head)
        self.heads = nn.ModuleList(ReferenceHead(d_model, d_model) for _ in range(n_head))


class _NonCausalMultiHead(ReferenceMultiHead):
    def __init__(self, d_model, n_head):
        super().__init__(d_model, n_head)
        self.heads = nn.ModuleList(_head(mask="none")(d_model, d_model // n_head) for _ in range(n_head))


def _ff(act):
    class Wrong(ReferenceFeedForward):
        def forward(self, x):
            return self.down(act(self.up(x)))
    return Wrong


class _Narrow(ReferenceFeedForward):
    def __init__(self, d_model):
        super().__init__(d_model)
        self.up, self.down = nn.Linear(d_model, 2 * d_model, bias=False), nn.Linear(2 * d_model, d_model, bias=False)


def _block(kind):
    class Wrong(ReferenceBlock):
        def forward(self, x):
            if kind == "post":
                x = self.ln1(x + self.attn(x))
                return self.ln2(x + self.ff(x))
            if kind == "no skip":
                return self.ff(self.ln2(self.attn(self.ln1(x))))
            if kind == "no norm":
                x = x + self.attn(x)
                return x + self.ff(x)
            x = x + self.attn(self.ln1(x))  # "one norm": ln1 reused for the feed-forward
            return x + self.ff(self.ln1(x))
    return Wrong


def _gpt(kind):
    class Wrong(ReferenceGPT):
        def __init__(self, *args):
            super().__init__(*args)
            if kind == "biased head":
                self.lm_head = nn.Linear(self.lm_head.in_features, self.lm_head.out_features)

        def forward(self, idx):
            x = self.token_emb(idx)
            if kind == "positions by token":
                x = x + self.pos_emb(idx % self.pos_emb.num_embeddings)
            elif kind != "no positions":
                x = x + self.pos_emb(torch.arange(idx.shape[1]))
            x = self.blocks(x)
            return self.lm_head(x if kind == "no final norm" else self.ln_f(x))
    return Wrong


class _BiasedGPT(ReferenceGPT):
    def __init__(self, *args):
        super().__init__(*args)
        self.ln_f = nn.LayerNorm(self.ln_f.normalized_shape)


def _train_loop(**mistake):
    return lambda model, get_batch, steps, lr: _loop(model, get_batch, steps, lr, **mistake)


def _sum_loss_loop(model, get_batch, steps, lr):
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        x, y = get_batch(step)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten(), reduction="sum")
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _step_first_loop(model, get_batch, steps, lr):
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        x, y = get_batch(step)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        opt.step()  # before backward: there is no gradient yet
        loss.backward()
        losses.append(loss.item())
    return losses


def _no_step_loop(model, get_batch, steps, lr):
    losses = []
    for step in range(steps):
        x, y = get_batch(step)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        loss.backward()
        losses.append(loss.item())
    return losses


# exercise name → plausible wrong answers and a piece of the message each must get (run by test_exercises.py)
WRONG_ANSWERS = {
    "bigram": [
        (_Probabilities, "return the logits, not probabilities"),
        (_Contextual, "token 3 gets different scores at different places"),
        (_Wide, "has 231 parameters; a bigram table has 7 × 7 = 49"),
        (lambda v: ReferenceBigram(v + 1), "has shape (2, 5, 8), expected (2, 5, 7)"),
    ],
    "average_past": [
        (lambda x: x.mean(1, keepdim=True).expand_as(x), "holds the mean of the whole sequence"),
        (lambda x: x.cumsum(1), "that is the running sum"),
        (lambda x: _prefix(x, divide_by=x.shape[1]), "divided by the length 6"),
        (lambda x: _prefix(x, include_self=False), "include x[t] itself"),
        (lambda x: x.flip(1).cumsum(1).flip(1) / torch.arange(x.shape[1], 0, -1)[None, :, None], "whole sequence"),
    ],
    "head": [
        (_head(scale="none"), "the scores are not scaled"),
        (_head(scale="d"), "divided by d_head = 4; divide by √d_head = 2"),
        (_head(dim=-2), "softmax over the queries"),
        (_head(mask="none"), "a position sees its future"),
        (_head(mask="triu"), "a position sees its future"),
        (_BiasedHead, "has a bias"),
    ],
    "multi_head": [
        (_NoProj, "pass them through proj"),
        (lambda d, n: ReferenceMultiHead(d, 1), "has 1 heads, expected 3"),
        (_FullWidthHeads, "each head has d_head = 12 / 3 = 4 features"),
        (_SummedHeads, "differs from proj(cat of the heads' outputs)"),
        (_NonCausalMultiHead, "a position sees its future"),
    ],
    "feed_forward": [
        (_ff(lambda h: h), "no non-linearity between up and down"),
        (_ff(F.relu), "ReLU; GPT uses GELU"),
        (_ff(lambda h: F.gelu(h, approximate="tanh")), "tanh approximation"),
        (_Narrow, "maps 8 → 16 features, expected 8 → 32"),
    ],
    "block": [
        (_block("post"), "that is post-LN"),
        (_block("no skip"), "no residual connections"),
        (_block("no norm"), "the LayerNorms are never used"),
        (_block("one norm"), "differs from x + attn(ln1(x))"),
    ],
    "gpt": [
        (_gpt("biased head"), "'lm_head.bias' has no place in TinyGPT"),
        (_gpt("positions by token"), "TinyGPT holding your weights gives logits that differ from yours"),
        (_gpt("no final norm"), "the final LayerNorm ln_f is not applied"),
        (_gpt("no positions"), "the position embeddings are not added"),
        (_BiasedGPT, "'ln_f.bias' has no place in TinyGPT"),
        (lambda v, b, d, h, n: ReferenceGPT(v, b, d, h, 1), "has 1 blocks, expected n_layer = 2"),
    ],
    "train_loop": [
        (_train_loop(zero_grad=False), "the gradients add up across steps"),
        (_train_loop(optimizer="sgd"), "that is plain SGD"),
        (_step_first_loop, "call optimizer.step() after loss.backward()"),
        (_no_step_loop, "the weights did not change"),
        (_sum_loss_loop, "expected the mean cross-entropy over every position"),
        (lambda *args: torch.tensor(_loop(*args)), "expected a list of 4 losses"),
    ],
}
