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

A model that can keep a KV cache (one with `new_cache`, as `TinyGPT`) runs with one by default: the prompt goes in
once, then each step feeds only the new token, for the same tokens as the loop that feeds the whole context again.

`generation_trace` runs the same loop as `generate` and records each step's candidates with their probabilities
before and after the filters. `CausalLMAdapter` lets a Hugging Face causal LM (GPT-2) run through these functions.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from labkit.modules import eval_mode
from labkit.validate import require_positive_int

__all__ = ["TOP_P_TOLERANCE", "filter_logits", "next_token_distribution", "generate", "GenerationTrace",
           "generation_trace", "CausalLMAdapter", "encode_prompt", "seeded_generator", "sample_text", "visible_char",
           "token_label", "token_pieces"]

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


def _check_finite(logits: Tensor) -> None:
    """Refuse logits a distribution cannot come from: NaN or +inf anywhere, or a row with every token at -inf."""
    bad = torch.isnan(logits) | torch.isposinf(logits)
    if bad.any():
        where = tuple(bad.nonzero()[0].tolist())
        raise ValueError(f"logits hold {int(bad.sum())} NaN or +inf value(s), the first at index {where}: the model "
                         f"produced non-finite scores (diverged training, or an overflow in low precision)")
    empty = torch.isneginf(logits).all(dim=-1)
    if empty.any():
        raise ValueError(f"logits row {tuple(empty.nonzero()[0].tolist())} is -inf for every token: nothing can be "
                         f"sampled from it")


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
    _check_finite(logits)
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
    with eval_mode(model), torch.no_grad():
            yield


def _model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return fallback


def _vocab_size(model: nn.Module) -> int | None:
    """The model's vocabulary size when its config says (TinyGPT, Hugging Face models, the adapter's model)."""
    config = getattr(getattr(model, "model", model), "config", None)
    size = getattr(config, "vocab_size", None)
    return size if isinstance(size, int) else None


def _check_idx(idx: Tensor, model: nn.Module | None = None) -> None:
    if not isinstance(idx, Tensor) or idx.dtype != torch.long:
        raise TypeError(f"idx must be a long tensor of token ids, got "
                        f"{idx.dtype if isinstance(idx, Tensor) else type(idx).__name__}")
    if idx.dim() != 2:
        raise ValueError(f"idx must be (batch, seq) token ids, got shape {tuple(idx.shape)}")
    if idx.shape[1] == 0:
        raise ValueError(f"idx is an empty prompt (shape {tuple(idx.shape)}): give at least one token of prompt")
    vocab = _vocab_size(model) if model is not None else None
    if vocab is not None and (int(idx.min()) < 0 or int(idx.max()) >= vocab):
        raise ValueError(f"idx holds token ids outside the model's vocabulary 0..{vocab - 1}: min {int(idx.min())}, "
                         f"max {int(idx.max())} (a prompt encoded with another tokenizer?)")


def _last_logits(model: nn.Module, context: Tensor, cache: list | None = None) -> Tensor:
    """The model's logits (batch, vocab) for the token after `context` (batch, seq), which follows `cache`'s."""
    out = model(context) if cache is None else model(context, cache=cache)
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
    _check_idx(idx, model)
    if block_size is not None:
        require_positive_int("block_size", block_size)
    idx = idx.to(_model_device(model, idx.device))
    with _inference(model):
        logits = _last_logits(model, idx if block_size is None else idx[:, -block_size:])
        logits = filter_logits(logits.float(), previous=idx, **filters)
        return logits.softmax(dim=-1)


def _check_generation(model: nn.Module, idx: Tensor, max_new_tokens: int, block_size: int, temperature: float,
                      top_k: int | None, top_p: float | None, repetition_penalty: float) -> None:
    _check_idx(idx, model)
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    require_positive_int("block_size", block_size)
    _check_filters(temperature, top_k, top_p, repetition_penalty)


def _new_cache(model: nn.Module, idx: Tensor, max_new_tokens: int, block_size: int,
               use_cache: bool | None) -> list | None:
    """A KV cache for the generation (`model.new_cache`), long enough for the positions it will hold, or None:
    when use_cache is None, a cache wherever the model can keep one."""
    if use_cache is not None and not isinstance(use_cache, bool):
        raise ValueError(f"use_cache must be True, False or None (where the model can), got {use_cache!r}")
    can_cache = callable(getattr(model, "new_cache", None))
    if use_cache and not can_cache:
        raise ValueError(f"use_cache=True, but a {type(model).__name__} keeps no KV cache (it has no new_cache, as "
                         f"TinyGPT has): pass use_cache=False, or leave it None to use one where the model can")
    if not (can_cache if use_cache is None else use_cache):
        return None
    model_max = getattr(model, "max_len", None) or block_size  # past it the forward raises, as without a cache
    return model.new_cache(idx.shape[0], min(block_size, model_max, idx.shape[1] + max_new_tokens))


def _next_logits(model: nn.Module, idx: Tensor, block_size: int, filters: dict[str, Any],
                 cache: list | None) -> tuple[Tensor, Tensor]:
    """(raw, filtered) float logits (batch, vocab) for the token after idx (batch, seq); the model sees the last
    block_size tokens, the repetition penalty all of them. With a cache, only the tokens it lacks go in while idx
    fits in block_size; past that the window slides every step, every key in it changes, and the model recomputes
    the window without the cache, as the loop without one does."""
    if cache is None or idx.shape[1] > block_size:
        raw = _last_logits(model, idx[:, -block_size:])
    else:
        raw = _last_logits(model, idx[:, cache[0].length:], cache)
    raw = raw.float()
    return raw, filter_logits(raw, previous=idx, **filters)


def _choose(logits: Tensor, greedy: bool, generator: torch.Generator | None) -> Tensor:
    """The next ids (batch, 1) from filtered logits (batch, vocab): their argmax, or a draw from `generator`."""
    if greedy:
        return logits.argmax(dim=-1, keepdim=True)
    probs = logits.softmax(dim=-1)
    if generator is not None:
        probs = probs.to(generator.device)
    return torch.multinomial(probs, 1, generator=generator).to(logits.device)


def generate(model: nn.Module, idx: Tensor, max_new_tokens: int, *, block_size: int, greedy: bool = False,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             repetition_penalty: float = 1.0, generator: torch.Generator | None = None,
             use_cache: bool | None = None) -> Tensor:
    """idx (batch, seq) → (batch, seq + max_new_tokens): the prompt followed by the generated tokens.

    Each step the model sees the last `block_size` tokens; the repetition penalty looks at the whole sequence.
    `greedy` takes the argmax of the filtered logits (only the repetition penalty can change it); otherwise the
    token is drawn with `torch.multinomial` from `generator` (on the generator's device, so a seeded CPU generator
    gives the same text whatever device the model is on). Runs without gradients in eval mode, and puts the
    model back in the training mode it had.

    `use_cache` (None: wherever the model has `new_cache`, as TinyGPT; True for another model is a ValueError) keeps
    every layer's keys and values, so each step feeds only the new token: the same tokens as without it, logits
    equal to float rounding. The cache serves while the text fits in block_size. Past it the window of the last
    block_size tokens moves every step, which changes every cached key (positions shift, and later layers' keys
    saw tokens now cropped), so each step recomputes the window without the cache, as the loop without one does.
    """
    _check_generation(model, idx, max_new_tokens, block_size, temperature, top_k, top_p, repetition_penalty)
    filters = dict(temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty)
    idx = idx.to(_model_device(model, idx.device))
    cache = _new_cache(model, idx, max_new_tokens, block_size, use_cache)
    with _inference(model):
        for _ in range(max_new_tokens):
            _, logits = _next_logits(model, idx, block_size, filters, cache)
            idx = torch.cat([idx, _choose(logits, greedy, generator)], dim=1)
    return idx


@dataclass(frozen=True)
class GenerationTrace:
    """One generation, step by step (`generation_trace`); all tensors on the CPU, one row per new token.

    ids: (1, prompt + steps) long, the prompt and the new tokens, as `generate` returns them
    tokens: (steps,) long, the chosen ids;  ranks: (steps,) long, each one's place in its step's ranking (0 = first)
    candidates: (steps, n) long, the n highest-ranked ids: by probability after the filters, ties by the model's
        own probability, then by lower id
    raw: (steps, n) their probabilities under the model's own distribution (T = 1, no filters)
    filtered: (steps, n) their probabilities after the filters: what the token was drawn from
    chosen: (steps,) the chosen token's probability after the filters
    kept: (steps,) long, how many tokens the filters left with probability > 0
    """

    ids: Tensor
    tokens: Tensor
    ranks: Tensor
    candidates: Tensor
    raw: Tensor
    filtered: Tensor
    chosen: Tensor
    kept: Tensor

    @property
    def prompt_length(self) -> int:
        return self.ids.shape[1] - len(self.tokens)


def generation_trace(model: nn.Module, idx: Tensor, max_new_tokens: int, *, block_size: int, greedy: bool = False,
                     temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                     repetition_penalty: float = 1.0, generator: torch.Generator | None = None,
                     n_candidates: int = 10) -> GenerationTrace:
    """`generate` for one prompt idx (1, seq), recording every step's `n_candidates` best candidates.

    Same settings and the same seeded generator give the same tokens as `generate`. It runs without a KV cache, so
    each step's probabilities are exactly those of its context computed afresh (`next_token_distribution`).
    """
    require_positive_int("max_new_tokens", max_new_tokens)
    _check_generation(model, idx, max_new_tokens, block_size, temperature, top_k, top_p, repetition_penalty)
    if idx.shape[0] != 1:
        raise ValueError(f"idx must hold one prompt, shape (1, seq), to be traced; got shape {tuple(idx.shape)}")
    require_positive_int("n_candidates", n_candidates)
    filters = dict(temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty)
    idx = idx.to(_model_device(model, idx.device))
    steps: list[dict[str, Tensor]] = []
    with _inference(model):
        for _ in range(max_new_tokens):
            raw_logits, logits = _next_logits(model, idx, block_size, filters, cache=None)
            next_id = _choose(logits, greedy, generator)  # (1, 1)
            raw, probs = raw_logits[0].softmax(dim=-1).cpu(), logits[0].softmax(dim=-1).cpu()  # (vocab,)
            order, token = _ranking(probs, raw), next_id[0, 0].cpu()
            top = order[:n_candidates]
            steps.append(dict(tokens=token, ranks=(order == token).nonzero()[0, 0], candidates=top, raw=raw[top],
                              filtered=probs[top], chosen=probs[token], kept=(probs > 0).sum()))
            idx = torch.cat([idx, next_id], dim=1)
    return GenerationTrace(ids=idx.cpu(), **{name: torch.stack([step[name] for step in steps]) for name in steps[0]})


def _ranking(probs: Tensor, raw: Tensor) -> Tensor:
    """Every id (vocab,), by `probs` (vocab,) high to low; ties by `raw` (vocab,), then by lower id."""
    by_raw = torch.sort(raw, descending=True, stable=True).indices
    return by_raw[torch.sort(probs[by_raw], descending=True, stable=True).indices]  # stable: keeps raw's order


class CausalLMAdapter(nn.Module):
    """A Hugging Face causal LM (e.g. GPT-2) as labkit's functions expect a model: idx (batch, seq) → logits
    (batch, seq, vocab). `block_size`: the context length, `config.n_positions` or `max_position_embeddings`."""

    def __init__(self, model: nn.Module, block_size: int | None = None) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module (a Hugging Face causal LM), got {type(model).__name__}")
        if block_size is None:
            config = getattr(model, "config", None)
            block_size = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
            if block_size is None:
                raise ValueError(f"{type(model).__name__}.config has neither n_positions nor "
                                 "max_position_embeddings: pass block_size=<its context length>")
        require_positive_int("block_size", block_size)
        self.model, self.block_size = model, block_size
        self.train(model.training)  # generate restores the adapter's mode, and with it the model's: start equal

    def forward(self, idx: Tensor) -> Tensor:
        return self.model(input_ids=idx, use_cache=False).logits


def encode_prompt(tokenizer: Any, prompt: str, block_size: int) -> Tensor:
    """A prompt as ids (1, seq), with `tokenizer.encode` (labkit's CharTokenizer or a Hugging Face tokenizer).

    ValueError for an empty prompt, one the tokenizer cannot encode, or one longer than block_size tokens.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    if not prompt:
        raise ValueError("prompt is empty: give at least one token of prompt")
    require_positive_int("block_size", block_size)
    idx = torch.as_tensor(tokenizer.encode(prompt), dtype=torch.long)[None, :]  # unknown characters raise here
    if idx.shape[1] == 0:
        raise ValueError(f"prompt {prompt!r} encodes to no tokens: give at least one token of prompt")
    if idx.shape[1] > block_size:
        raise ValueError(f"prompt is {idx.shape[1]} tokens long, more than the model's block_size={block_size}: "
                         "shorten it")
    return idx


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with `seed`, for repeatable sampling; ValueError unless 0 <= seed < 2**63."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an int in 0..2**63 - 1, got {seed!r}")
    return torch.Generator().manual_seed(seed)


def sample_text(model: nn.Module, tokenizer: Any, prompt: str, max_new_tokens: int, block_size: int,
                **kwargs: Any) -> str:
    """The prompt and its continuation, as text: `encode_prompt`, `generate(**kwargs)`, decode with `tokenizer`."""
    out = generate(model, encode_prompt(tokenizer, prompt, block_size), max_new_tokens, block_size=block_size,
                   **kwargs)
    return tokenizer.decode(out[0].cpu())


# ----------------------------------------------------------------------------- tokens as text to show

_SHOWN = {"\n": "⏎", " ": "␣", "\t": "⇥"}


def visible_char(char: str) -> str:
    """A character as a label you can see: '⏎' for a newline, '␣' for a space, repr() for other invisible ones."""
    if char in _SHOWN:
        return _SHOWN[char]
    return char if char.isprintable() else repr(char)


def token_label(tokenizer: Any, token_id: int) -> str:
    """A token's text as a label you can see: '␣fox' for ' fox', '⏎' for a newline; '#id' if it decodes to ''."""
    text = tokenizer.decode([token_id])
    return "".join(visible_char(c) for c in text) if text else f"#{token_id}"


def token_pieces(tokenizer: Any, ids: list[int], start: int) -> list[str]:
    """The text each of ids[start:] adds to the decoded text: 'fox' gains its space after 'brown' with WordPiece
    too. A token that does not simply extend the text (half of a UTF-8 character) gives its own decode."""
    pieces, before = [], tokenizer.decode(ids[:start])
    for end in range(start + 1, len(ids) + 1):
        after = tokenizer.decode(ids[:end])
        pieces.append(after[len(before):] if after.startswith(before) else tokenizer.decode(ids[end - 1:end]))
        before = after
    return pieces
