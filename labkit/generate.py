"""Sampling text from a causal language model: greedy, temperature, top-k, top-p and repetition penalty.

Works with any model whose forward maps idx (batch, seq) long → logits (batch, seq, vocab) (an output with a
`.logits` attribute, as Hugging Face models return, works too). Each step the model sees the last `block_size`
tokens, its logits for the last position are filtered, and the next token is drawn (or taken as the argmax).

`filter_logits` applies the filters in this order, each on the result of the one before:

1. repetition penalty (CTRL, Keskar et al. 2019): a token already in `previous` has a positive logit divided by
   the penalty and a negative one multiplied by it, so a penalty > 1 makes repeats less likely;
2. temperature: logits / T, sharper for T < 1, flatter for T > 1;
3. top-k: keep the k largest logits (exactly k: ties go to the lower token id);
4. top-p (nucleus): keep the smallest set of most probable tokens whose probability reaches p, at least one.

Filtered tokens get logit -inf, so softmax gives them probability 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from labkit.validate import check_positive_int

__all__ = ["TOP_P_TOLERANCE", "filter_logits", "next_token_distribution", "generate", "sample_text"]

# A prefix whose probability is within this of top_p counts as reaching it, so that rounding in softmax
# (0.5 + 0.25 coming out as 0.74999994) does not pull in one more token.
TOP_P_TOLERANCE = 1e-6


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_filters(temperature: float, top_k: int | None, top_p: float | None, repetition_penalty: float) -> None:
    if not _is_number(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a number > 0, got {temperature!r} (for the argmax, use greedy=True)")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise ValueError(f"top_k must be None or an int >= 1, got {top_k!r}")
    if top_p is not None and (not _is_number(top_p) or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be None or a number in (0, 1], got {top_p!r}")
    if not _is_number(repetition_penalty) or repetition_penalty <= 0:
        raise ValueError(f"repetition_penalty must be a number > 0 (1 = no penalty), got {repetition_penalty!r}")


def _penalize(logits: Tensor, previous: Tensor, penalty: float) -> Tensor:
    """Divide the positive logits of tokens in `previous` by `penalty`, multiply the negative ones by it."""
    if not isinstance(previous, Tensor) or previous.dtype != torch.long:
        raise TypeError(f"previous must be a long tensor of token ids, got "
                        f"{previous.dtype if isinstance(previous, Tensor) else type(previous).__name__}")
    if previous.shape[:-1] != logits.shape[:-1] or previous.dim() != logits.dim():
        raise ValueError(f"previous must be (..., seq) with the same leading dims as logits (..., vocab), got "
                         f"shapes {tuple(previous.shape)} and {tuple(logits.shape)}")
    vocab = logits.shape[-1]
    if previous.numel() and not (0 <= int(previous.min()) and int(previous.max()) < vocab):
        raise ValueError(f"previous holds token ids outside 0..{vocab - 1}: "
                         f"min {int(previous.min())}, max {int(previous.max())}")
    previous = previous.to(logits.device)
    seen = logits.gather(-1, previous)  # (..., seq): the logits of the tokens already there
    seen = torch.where(seen > 0, seen / penalty, seen * penalty)
    return logits.scatter(-1, previous, seen)  # a repeated id writes the same value twice


def _top_k(logits: Tensor, k: int) -> Tensor:
    k = min(k, logits.shape[-1])
    order = torch.sort(logits, dim=-1, descending=True, stable=True).indices  # ties: lower id first
    drop = torch.ones_like(logits, dtype=torch.bool).scatter(-1, order[..., :k], False)
    return logits.masked_fill(drop, float("-inf"))


def _top_p(logits: Tensor, p: float) -> Tensor:
    ranked, order = torch.sort(logits, dim=-1, descending=True, stable=True)
    exact = torch.float32 if logits.device.type == "mps" else torch.float64  # MPS has no float64
    probs = ranked.to(exact).softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability of the tokens ranked above each one
    drop_ranked = mass_before >= p - TOP_P_TOLERANCE  # the prefix above already reached p
    drop_ranked[..., 0] = False  # always keep the most probable token
    drop = torch.empty_like(drop_ranked).scatter(-1, order, drop_ranked)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def filter_logits(logits: Tensor, *, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                  repetition_penalty: float = 1.0, previous: Tensor | None = None) -> Tensor:
    """logits (..., vocab) → new logits (..., vocab), with the filtered-out tokens set to -inf.

    `previous` (..., seq) long: the tokens so far, needed when repetition_penalty != 1.
    """
    if not isinstance(logits, Tensor) or not logits.dtype.is_floating_point:
        raise TypeError(f"logits must be a floating-point tensor, got "
                        f"{logits.dtype if isinstance(logits, Tensor) else type(logits).__name__}")
    if logits.dim() < 1 or logits.shape[-1] == 0:
        raise ValueError(f"logits must be (..., vocab) with vocab >= 1, got shape {tuple(logits.shape)}")
    _check_filters(temperature, top_k, top_p, repetition_penalty)
    if repetition_penalty != 1.0:
        if previous is None:
            raise ValueError(f"repetition_penalty={repetition_penalty} needs previous=(..., seq) token ids to "
                             f"know which tokens to penalize")
        logits = _penalize(logits, previous, repetition_penalty)
    if temperature != 1.0:
        logits = logits / temperature
    if top_k is not None:
        logits = _top_k(logits, top_k)
    if top_p is not None and top_p < 1.0:
        logits = _top_p(logits, top_p)
    return logits


@contextmanager
def _inference(model: nn.Module) -> Iterator[None]:
    """Eval mode and no gradients inside; the model's own training mode back afterwards, even on an error."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return fallback


def _check_idx(idx: Tensor) -> None:
    if not isinstance(idx, Tensor) or idx.dtype != torch.long:
        raise TypeError(f"idx must be a long tensor of token ids, got "
                        f"{idx.dtype if isinstance(idx, Tensor) else type(idx).__name__}")
    if idx.dim() != 2:
        raise ValueError(f"idx must be (batch, seq) token ids, got shape {tuple(idx.shape)}")
    if idx.shape[1] == 0:
        raise ValueError(f"idx is an empty prompt (shape {tuple(idx.shape)}): give at least one token of prompt")


def _last_logits(model: nn.Module, context: Tensor) -> Tensor:
    """The model's logits (batch, vocab) for the token after `context` (batch, seq)."""
    out = model(context)
    logits = getattr(out, "logits", out)
    if not isinstance(logits, Tensor) or logits.dim() != 3 or logits.shape[:2] != context.shape:
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"the model must return logits (batch, seq, vocab) = {(*context.shape, 'vocab')} "
                         f"for idx of shape {tuple(context.shape)}, got {got}")
    return logits[:, -1, :]


def next_token_distribution(model: nn.Module, idx: Tensor, *, block_size: int | None = None,
                            **filters: Any) -> Tensor:
    """Probabilities (batch, vocab) of the token after idx (batch, seq), after `filter_logits(**filters)`.

    `block_size`, when given, crops idx to its last block_size tokens before the model sees it.
    """
    _check_idx(idx)
    if block_size is not None:
        check_positive_int("block_size", block_size)
    idx = idx.to(_model_device(model, idx.device))
    with _inference(model):
        logits = _last_logits(model, idx if block_size is None else idx[:, -block_size:])
        logits = filter_logits(logits.float(), previous=idx, **filters)
        return logits.softmax(dim=-1)


def generate(model: nn.Module, idx: Tensor, max_new_tokens: int, *, block_size: int, greedy: bool = False,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             repetition_penalty: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """idx (batch, seq) → (batch, seq + max_new_tokens): the prompt followed by the generated tokens.

    Each step the model sees the last `block_size` tokens; the repetition penalty looks at the whole sequence.
    `greedy` takes the argmax of the filtered logits (only the repetition penalty can change it); otherwise the
    token is drawn with `torch.multinomial` from `generator` (on the generator's device, so a seeded CPU generator
    gives the same text whatever device the model is on). Runs without gradients in eval mode, and puts the
    model back in the training mode it had.
    """
    _check_idx(idx)
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    check_positive_int("block_size", block_size)
    _check_filters(temperature, top_k, top_p, repetition_penalty)
    idx = idx.to(_model_device(model, idx.device))
    with _inference(model):
        for _ in range(max_new_tokens):
            logits = _last_logits(model, idx[:, -block_size:]).float()  # (batch, vocab)
            logits = filter_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p,
                                   repetition_penalty=repetition_penalty, previous=idx)
            if greedy:
                next_id = logits.argmax(dim=-1, keepdim=True)  # (batch, 1)
            else:
                probs = logits.softmax(dim=-1)
                if generator is not None:
                    probs = probs.to(generator.device)
                next_id = torch.multinomial(probs, 1, generator=generator).to(idx.device)
            idx = torch.cat([idx, next_id], dim=1)
    return idx


def sample_text(model: nn.Module, tokenizer: Any, prompt: str, max_new_tokens: int, block_size: int,
                **kwargs: Any) -> str:
    """The prompt and its continuation, as text: encode with `tokenizer`, `generate(**kwargs)`, decode."""
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    if not prompt:
        raise ValueError("prompt is empty: give at least one token of prompt")
    idx = tokenizer.encode(prompt)[None, :]  # (1, prompt tokens); unknown characters raise here
    if idx.shape[1] > block_size:
        raise ValueError(f"prompt is {idx.shape[1]} tokens long, more than the model's block_size={block_size}: "
                         "shorten it")
    out = generate(model, idx, max_new_tokens, block_size=block_size, **kwargs)
    return tokenizer.decode(out[0].cpu())
