"""Notebook 07's exercises: top-k and top-p filtering of logits, and the greedy generation loop."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from labkit.exercises import expect, exercise
from labkit.exercises._compare import expect_tensor, same
from labkit.generate import filter_logits, generate
from labkit.models import GPTConfig, TinyGPT


def _check_filtered(out: Tensor, logits: Tensor, expected: Tensor, what: str, setting: str) -> None:
    """The checks top-k and top-p share: -inf (not 0) where filtered, logits (not probabilities), kept ones as
    they were, the right tokens kept."""
    expect(not (bool((out >= 0).all()) and same(out.sum(-1), torch.ones(out.shape[:-1]), 1e-4)),
           f"{what} returned probabilities (rows sum to 1); return logits, with −inf where a token is filtered")
    expect(not bool((out == 0).any()) or bool(out.isneginf().any()),
           f"{what}: filtered tokens hold 0, which softmax still turns into a probability; set them to −inf")
    huge = out[out.isfinite() & (out < -1e6)]  # a stand-in for -inf such as -1e9 or torch.finfo(...).min
    expect(not len(huge), f"{what}: filtered tokens hold {float(huge.max()) if len(huge) else 0:.3g}, a very "
                          f"negative number; use −inf itself, float('-inf'), so that they are filtered whatever the "
                          f"temperature")
    kept, expected_kept = out.isfinite(), expected.isfinite()
    for row in range(out.shape[0]):
        n, expected_n = int(kept[row].sum()), int(expected_kept[row].sum())
        expect(n == expected_n, f"{what}: row {row} keeps {n} of the {out.shape[-1]} tokens, expected {expected_n} "
                                f"({setting})")
    expect(torch.equal(kept, expected_kept), f"{what} keeps the right number of tokens but the wrong ones: each row "
                                             f"must keep its own most probable tokens, at their vocabulary positions")
    expect(same(out[kept], logits[kept], 1e-6), f"{what}: the kept logits changed; keep them as they were")
    expect(bool(out[~kept].isneginf().all()), f"{what}: filtered tokens must be −inf")


def reference_top_k_filter(logits: Tensor, k: int) -> Tensor:
    return filter_logits(logits, top_k=k)


@exercise("top_k_filter", "07",
          task="top_k_filter(logits, k) → logits (batch, vocab) with every token outside each row's k largest "
               "logits set to −inf",
          hint="the k-th largest logit of each row is logits.topk(k, dim=-1).values[:, -1:]; masked_fill the "
               "logits below it with float('-inf')",
          reference=reference_top_k_filter)
def check_top_k_filter(answer: Callable[[Tensor, int], Any]) -> None:
    logits = torch.randn(2, 10, generator=torch.Generator().manual_seed(0))
    for k in (3, 1, 10):
        what = f"top_k_filter(logits of shape (2, 10), k={k})"
        out = expect_tensor(answer(logits.clone(), k), (2, 10), what)
        _check_filtered(out, logits, reference_top_k_filter(logits, k), what, f"the {k} largest")


def reference_top_p_filter(logits: Tensor, p: float) -> Tensor:
    return filter_logits(logits, top_p=p)


@exercise("top_p_filter", "07",
          task="top_p_filter(logits, p) → logits (batch, vocab) keeping, in each row, the smallest set of most "
               "probable tokens whose probabilities add up to at least p (always at least one); the rest −inf",
          hint="sort the probabilities in descending order; a token is kept while the mass ranked above it, "
               "cumsum − itself, is still below p; scatter the decisions back with the sort's indices",
          reference=reference_top_p_filter)
def check_top_p_filter(answer: Callable[[Tensor, float], Any]) -> None:
    probs = torch.tensor([[0.06, 0.40, 0.10, 0.25, 0.04, 0.15], [0.55, 0.05, 0.20, 0.13, 0.04, 0.03]])
    logits = probs.log()
    for p, setting in ((0.7, "p = 0.7: keep tokens until their mass reaches 0.7, the one that crosses it included"),
                       (0.05, "p = 0.05: even below the top token's probability, that token is kept"),
                       (1.0, "p = 1 keeps every token")):
        what = f"top_p_filter(logits, p={p})"
        out = expect_tensor(answer(logits.clone(), p), (2, 6), what)
        expect(bool(out.isfinite().any(-1).all()), f"{what} filtered out every token of a row; the most probable "
                                                   f"token is always kept")
        _check_filtered(out, logits, reference_top_p_filter(logits, p), what, setting)


def reference_greedy_generate(model: nn.Module, idx: Tensor, max_new_tokens: int, block_size: int) -> Tensor:
    return generate(model, idx, max_new_tokens, block_size=block_size, greedy=True)


def _small_gpt() -> TinyGPT:
    """A seeded, untrained two-layer TinyGPT with a context of 8; its weight matrices are scaled up 20 times so that
    the greedy choice depends on the context instead of repeating one token."""
    with torch.random.fork_rng():
        torch.manual_seed(2)
        model = TinyGPT(GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, d_model=16))
    with torch.no_grad():
        for weight in model.parameters():
            if weight.dim() > 1:
                weight.mul_(20)
    return model.eval()


@exercise("greedy_generate", "07",
          task="greedy_generate(model, idx, max_new_tokens, block_size) → (batch, seq + max_new_tokens): the "
               "prompt idx (batch, seq) followed by tokens chosen one at a time, each the argmax of the model's "
               "logits at the last position, the model seeing at most the last block_size tokens",
          hint="loop max_new_tokens times: logits = model(ids[:, -block_size:])[:, -1, :]; next_id = "
               "logits.argmax(-1, keepdim=True); ids = torch.cat([ids, next_id], dim=1)",
          reference=reference_greedy_generate)
def check_greedy_generate(answer: Callable[..., Any]) -> None:
    model = _small_gpt()
    idx = torch.tensor([[1, 5, 2], [7, 7, 0]])
    with torch.no_grad():
        out = answer(model, idx.clone(), 10, 8)
    what = "greedy_generate(model, idx of shape (2, 3), max_new_tokens=10, block_size=8)"
    expect(not (isinstance(out, Tensor) and tuple(out.shape) == (2, 10)),
           f"{what} returned only the 10 new tokens; return the prompt followed by them, (2, 13)")
    out = expect_tensor(out, (2, 13), what)
    expect(torch.equal(out[:, :3], idx), f"{what}: the first 3 tokens must be the prompt {idx.tolist()}")
    expected = reference_greedy_generate(model, idx, 10, 8)
    differ = (out != expected).any(0).nonzero()
    column = int(differ[0]) if len(differ) else 0
    expect(not len(differ), f"{what}: new token {column - 3} is {out[:, column].tolist()} (per row), the greedy "
                            f"choice is {expected[:, column].tolist()}: take the argmax of the logits at the last "
                            f"position")
