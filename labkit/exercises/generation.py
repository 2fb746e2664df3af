"""Notebook 07's exercises, in the order the notebook teaches them: the greedy generation loop, the share of
repeated n-grams that measures how much a text repeats itself, then the four settings that reshape the next-token
distribution before a draw: temperature, top-k, top-p and the repetition penalty (labkit's rule, as
`labkit.generation.filter_logits` applies it); last, one attention layer fed one token at a time with a KV cache."""

from __future__ import annotations

import numbers
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.attention import MultiHeadAttention, merge_heads
from labkit.exercises import Failed, expect, exercise
from labkit.exercises._compare import expect_tensor, max_difference, same, seeded, seeded_randn
from labkit.generation import filter_logits, generate
from labkit.models import GPTConfig, TinyGPT


# --- the generation loop, and how much its text repeats ---------------------------------------------------

def reference_greedy_generate(model: nn.Module, idx: Tensor, max_new_tokens: int, block_size: int) -> Tensor:
    ids = idx
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = model(ids[:, -block_size:])[:, -1, :]  # (batch, vocab): the scores of the next token
            ids = torch.cat([ids, logits.argmax(dim=-1, keepdim=True)], dim=1)
    return ids


def _small_gpt() -> TinyGPT:
    """A seeded, untrained two-layer TinyGPT with a context of 8; its weight matrices are scaled up 20 times so that
    the greedy choice depends on the context instead of repeating one token."""
    with seeded(2):
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
    expected = generate(model, idx, 10, block_size=8, greedy=True)
    differ = (out != expected).any(0).nonzero()
    column = int(differ[0]) if len(differ) else 0
    expect(not len(differ), f"{what}: new token {column - 3} is {out[:, column].tolist()} (per row), the greedy "
                            f"choice is {expected[:, column].tolist()}: take the argmax of the logits at the last "
                            f"position")


def reference_repeated_ngrams(text: str, n: int = 4) -> float:
    grams = [text[i:i + n] for i in range(len(text) - n + 1)]
    return 1 - len(set(grams)) / len(grams)


def _number(value: Any, what: str) -> float:
    expect(isinstance(value, numbers.Real) or (isinstance(value, Tensor) and value.numel() == 1),
           f"{what} returned a {type(value).__name__}; return one number, the share of repeats (between 0 and 1)")
    return float(value)


@exercise("repeated_ngrams", "07",
          task="repeated_ngrams(text, n=4) → float: of the text's len(text) − n + 1 n-grams (runs of n consecutive "
               "characters), the share that already occurred earlier in the text",
          hint="grams = [text[i:i + n] for i in range(len(text) - n + 1)]; every copy of an n-gram after its first "
               "is a repeat, so the share is 1 − len(set(grams)) / len(grams)",
          reference=reference_repeated_ngrams)
def check_repeated_ngrams(answer: Callable[..., Any]) -> None:
    text, n = "the cat, the hat", 3  # 14 trigrams; "the" and "he " come back once each: 2 repeats
    what = f"repeated_ngrams({text!r}, n={n})"
    got = _number(answer(text, n), what)
    grams = [text[i:i + n] for i in range(len(text) - n + 1)]
    distinct, repeats, expected = len(set(grams)), len(grams) - len(set(grams)), reference_repeated_ngrams(text, n)

    def near(value: float) -> bool:
        return abs(got - value) < 1e-9

    expect(not near(100 * expected), f"{what} returned {got:.1f}, a percentage; return the share itself, "
                                     f"{expected:.3f}")
    expect(not near(repeats), f"{what} returned {got:g}, the number of repeats; divide it by the {len(grams)} "
                              f"n-grams")
    expect(not near(distinct / len(grams)),
           f"{what} returned {got:.3f} = {distinct} / {len(grams)}, the share of distinct n-grams; return the share "
           f"that repeat an earlier one, {repeats} / {len(grams)}")
    first_too = sum(grams.count(g) > 1 for g in grams)
    expect(not near(first_too / len(grams)),
           f"{what} returned {got:.3f} = {first_too} / {len(grams)}: it counts the first 'the' and 'he ' as well; "
           f"only a later copy repeats something ({repeats} / {len(grams)})")
    expect(not near(repeats / len(text)), f"{what} returned {got:.3f} = {repeats} / {len(text)}: divided by the "
                                          f"text's {len(text)} characters; divide by its {len(grams)} n-grams")
    short = [text[i:i + n] for i in range(len(text) - n)]
    expect(not near(1 - len(set(short)) / len(short)),
           f"{what} left out the last n-gram: a text of {len(text)} characters has {len(text)} − {n} + 1 = "
           f"{len(grams)} n-grams of {n}, range(len(text) - n + 1)")
    expect(not near(reference_repeated_ngrams(text, 4)), f"{what} counted 4-grams: use the n it is given")
    expect(near(expected), f"{what} returned {got:.4f}; {repeats} of its {len(grams)} n-grams repeat an earlier one: "
                           f"{expected:.4f}")
    for text, n in (("aaaaa", 2), ("abcdef", 2)):
        what = f"repeated_ngrams({text!r}, n={n})"
        got, expected = _number(answer(text, n), what), reference_repeated_ngrams(text, n)
        expect(near(expected), f"{what} returned {got:.4f}, expected {expected:.4f}")
    what = "repeated_ngrams('the cat, the hat') (no n given)"
    got, expected = _number(answer("the cat, the hat"), what), reference_repeated_ngrams("the cat, the hat")
    expect(near(expected), f"{what} returned {got:.4f}, expected {expected:.4f}: n defaults to 4")


# --- the settings that reshape the next-token distribution ------------------------------------------------

def reference_apply_temperature(logits: Tensor, temperature: float) -> Tensor:
    return logits / temperature


def _untouched(given: Tensor, original: Tensor, what: str, fix: str) -> None:
    expect(torch.equal(given, original), f"{what} changed the logits it was given, in place; {fix}")


def _probabilities(out: Tensor, what: str, then: str) -> None:
    expect(not (bool((out >= 0).all()) and same(out.sum(-1), torch.ones(out.shape[:-1]), 1e-4)),
           f"{what} returned probabilities (each row sums to 1); return logits: {then}")


@exercise("apply_temperature", "07",
          task="apply_temperature(logits, temperature) → logits (batch, vocab) divided by the temperature T, as a "
               "new tensor: T < 1 sharpens the distribution softmax makes of them, T > 1 flattens it",
          hint="return logits / temperature (not logits /= temperature, which changes the caller's tensor); the "
               "softmax comes later, after the other filters",
          reference=reference_apply_temperature)
def check_apply_temperature(answer: Callable[[Tensor, float], Any]) -> None:
    logits = 2 * torch.randn(2, 8, generator=torch.Generator().manual_seed(3))
    for t in (0.5, 2.0, 1.0):
        what = f"apply_temperature(logits of shape (2, 8), temperature={t})"
        given = logits.clone()
        out = expect_tensor(answer(given, t), (2, 8), what)
        _untouched(given, logits, what, "return a new tensor, logits / T")
        _probabilities(out, what, "logits / T, and softmax comes later")
        expected = filter_logits(logits, temperature=t)
        if t != 1.0:  # at T = 1 these mistakes give the right answer
            expect(not same(out, logits * t), f"{what} multiplied the logits by T = {t}; divide them, so that "
                                              f"T = {t} makes the distribution {'sharper' if t < 1 else 'flatter'}")
            expect(not same(out, logits.softmax(-1) / t),
                   f"{what} divided the probabilities by T; divide the logits, before any softmax")
        expect(not same(out, expected.log_softmax(-1)),
               f"{what} returned log-probabilities, log_softmax(logits / T): the same distribution, but return "
               f"logits / T itself, as filter_logits does")
        expect(same(out, expected), f"{what} differs from logits / {t} by up to {max_difference(out, expected):.2g}")


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
    kth_best = logits.topk(k, dim=-1).values[:, -1:]  # (batch, 1)
    return logits.masked_fill(logits < kth_best, float("-inf"))


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
        _check_filtered(out, logits, filter_logits(logits, top_k=k), what, f"the {k} largest")


def reference_top_p_filter(logits: Tensor, p: float) -> Tensor:
    ranked, order = logits.softmax(dim=-1).sort(dim=-1, descending=True)
    keep_ranked = ranked.cumsum(dim=-1) - ranked < p  # the tokens ranked above have not yet reached p
    keep = torch.zeros_like(keep_ranked).scatter(-1, order, keep_ranked)  # back to vocabulary order
    return logits.masked_fill(~keep, float("-inf"))


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
        _check_filtered(out, logits, filter_logits(logits, top_p=p), what, setting)


def reference_repetition_penalty(logits: Tensor, previous: Tensor, penalty: float) -> Tensor:
    seen = logits.gather(-1, previous)  # (batch, seq): the logits of the tokens already in the text
    seen = torch.where(seen > 0, seen / penalty, seen * penalty)  # both ways make the token less likely
    return logits.scatter(-1, previous, seen)  # a token that occurs twice gets the same value written twice


@exercise("repetition_penalty", "07",
          task="repetition_penalty(logits, previous, penalty) → logits (batch, vocab), a new tensor, where every "
               "token that occurs in its row of previous (batch, seq) has a positive logit divided by the penalty "
               "and a negative one multiplied by it, once however often it occurs; every other token unchanged",
          hint="seen = logits.gather(-1, previous) picks the logits of the tokens already there; "
               "torch.where(seen > 0, seen / penalty, seen * penalty); put them back with "
               "logits.scatter(-1, previous, seen)",
          reference=reference_repetition_penalty)
def check_repetition_penalty(answer: Callable[[Tensor, Tensor, float], Any]) -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0, -2.0, 1.0, -0.5, 0.25],
                           [-1.5, 2.5, 1.0, -0.5, 0.8, -3.0, 2.0, 0.3]])
    previous = torch.tensor([[3, 1, 3, 3, 5],   # row 0 saw token 3 three times (logit 3), 1 (−1) and 5 (1)
                             [0, 6, 6, 2, 0]])  # row 1 saw token 0 twice (−1.5), 6 twice (2) and 2 (1)
    seen = torch.zeros(2, 8, dtype=torch.bool).scatter(-1, previous, True)
    counts = torch.zeros(2, 8).scatter_add(-1, previous, torch.ones(2, 5))
    for penalty in (2.0, 1.0):
        what = f"repetition_penalty(logits of shape (2, 8), previous of shape (2, 5), penalty={penalty})"
        given, given_previous = logits.clone(), previous.clone()
        out = expect_tensor(answer(given, given_previous, penalty), (2, 8), what)
        _untouched(given, logits, what, "return a new tensor (scatter, not scatter_, or clone the logits first)")
        _probabilities(out, what, "the penalized logits, and softmax comes later")
        changed = (out - logits).abs() > 1e-6
        stray = changed & ~seen
        elsewhere = seen.flip(0) & ~seen  # tokens only the other row's previous holds
        if bool(stray.any()) and bool((stray <= elsewhere).all()):
            row, token = (stray & elsewhere).nonzero()[0].tolist()
            raise Failed(f"{what}: row {row}'s token {token} changed, but only row {1 - row}'s previous holds it: "
                         f"penalize each row by its own previous")
        if bool(stray.any()):
            row, token = (stray & ~elsewhere if bool((stray & ~elsewhere).any()) else stray).nonzero()[0].tolist()
            raise Failed(f"{what}: row {row}'s token {token} never occurs in previous[{row}], yet its logit went "
                         f"from {logits[row, token]:g} to {out[row, token]:g}: penalize only tokens already in the "
                         f"text")
        if penalty == 1.0:  # no penalty: the mistakes below all give the logits back unchanged
            expect(same(out, logits), f"{what} changed the logits; a penalty of 1 leaves them as they are")
            continue
        missed = (~changed & seen).nonzero().tolist()
        expect(not missed, f"{what}: row {missed[0][0] if missed else 0}'s token {missed[0][1] if missed else 0} "
                           f"occurs in its previous but kept its logit; penalize every token already in the text")
        expect(not same(out, torch.where(seen, logits / penalty, logits)),
               f"{what}: row 0's token 1 has the negative logit −1, and dividing it by {penalty:g} gave "
               f"{-1 / penalty:g}, which makes it MORE likely; multiply negative logits by the penalty "
               f"({-penalty:g}), divide positive ones")
        expect(not same(out, torch.where(seen, logits * penalty, logits)),
               f"{what}: row 0's token 3 has the positive logit 3, and multiplying it by {penalty:g} gave "
               f"{3 * penalty:g}, which makes it MORE likely; divide positive logits by the penalty, multiply "
               f"negative ones")
        each = torch.where(logits > 0, logits / penalty ** counts, logits * penalty ** counts)
        expect(not same(out, each), f"{what}: row 0's token 3 occurs 3 times and its logit 3 became "
                                    f"{3 / penalty ** 3:g} = 3 / {penalty:g}³; penalize a token once, however "
                                    f"often it occurs")
        expect(not same(out, torch.where(seen, logits - penalty, logits)),
               f"{what} subtracted the penalty from the logits; labkit's rule divides a positive logit by it "
               f"and multiplies a negative one")
        expected = filter_logits(logits, repetition_penalty=penalty, previous=previous)
        expect(same(out, expected), f"{what} differs from labkit's penalized logits by up to "
                                    f"{max_difference(out, expected):.2g}")


# --- a KV cache: one attention layer, one token at a time -------------------------------------------------

def reference_attend_with_cache(layer: MultiHeadAttention, x: Tensor, past_k: Tensor,
                                past_v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    q, k, v = layer.queries_keys_values(x)  # (batch, heads, 1, d_head) each: the new token's
    keys = torch.cat([past_k, k], dim=2)  # (batch, heads, t + 1, d_head): the cached keys, then the new one
    values = torch.cat([past_v, v], dim=2)
    out = F.scaled_dot_product_attention(q, keys, values)  # the one new query may see every key: no mask
    return layer.out_proj(merge_heads(out)), keys, values


def _attention_outputs(layer: MultiHeadAttention, q: Tensor, keys: Tensor, values: Tensor) -> dict[str, Tensor]:
    """The new token's output (batch, 1, d_model) from q (batch, heads, 1, d_head) and the keys and values so far,
    done each wrong way the checker names."""
    def attend(k: Tensor, v: Tensor, scale: float | None = None) -> Tensor:
        return layer.out_proj(merge_heads(F.scaled_dot_product_attention(q, k, v, scale=scale)))

    return {"first key only": attend(keys[:, :, :1], values[:, :, :1]),
            "no projection": merge_heads(F.scaled_dot_product_attention(q, keys, values)),
            "past only": attend(keys[:, :, :-1], values[:, :, :-1]), "unscaled": attend(keys, values, scale=1.0)}


@exercise("attend_with_cache", "07",
          task="attend_with_cache(layer, x, past_k, past_v) → (out, keys, values): one step of causal "
               "self-attention with a KV cache. x (batch, 1, d_model) is the new token, past_k and past_v (batch, "
               "heads, t, d_head) the keys and values of the t tokens before it (t may be 0); return the layer's "
               "output for the new token (batch, 1, d_model) and the keys and values of all t + 1 tokens",
          hint="q, k, v = layer.queries_keys_values(x); keys = torch.cat([past_k, k], dim=2), values alike; the one "
               "new query may see every key, so no mask: F.scaled_dot_product_attention(q, keys, values); then "
               "layer.out_proj(merge_heads(...))",
          reference=reference_attend_with_cache)
def check_attend_with_cache(answer: Callable[..., Any]) -> None:
    with seeded(5):
        layer = MultiHeadAttention(16, 2).eval()
    x = seeded_randn(2, 6, 16, seed=6)  # (batch, seq, d_model)
    with torch.no_grad():
        expected = layer(x, is_causal=True)  # (2, 6, 16): every position at once, no cache
        q_all, k_all, v_all = layer.queries_keys_values(x)  # (2, 2, 6, 8) each
        past_k = past_v = torch.zeros(2, 2, 0, 8)
        for t in range(x.shape[1]):
            what = f"attend_with_cache(layer, x[:, {t}:{t + 1}], past_k, past_v) with t = {t} tokens cached"
            result = answer(layer, x[:, t:t + 1].clone(), past_k.clone(), past_v.clone())
            expect(isinstance(result, tuple) and len(result) == 3,
                   f"{what} returned a {type(result).__name__}; return three things: (out, keys, values)")
            out, keys, values = result
            for name, got, right in (("keys", keys, k_all), ("values", values, v_all)):
                expect(not same(got, right[:, :, :t]), f"{what} returned the cached {name} unchanged, (2, 2, {t}, 8): "
                                                       f"append the new token's to them, torch.cat([past, new], dim=2)")
                expect(t == 0 or not same(got, right[:, :, t:t + 1]),
                       f"{what} returned the new token's {name} alone, (2, 2, 1, 8): the cache must keep every "
                       f"token's, the {t} before it and its own, (2, 2, {t + 1}, 8)")
                got = expect_tensor(got, (2, 2, t + 1, 8), f"{what}: its {name}")
                expect(not same(got, (v_all if name == "keys" else k_all)[:, :, :t + 1]),
                       f"{what} returned the values as keys and the keys as values: return (out, keys, values)")
                expect(same(got, right[:, :, :t + 1]),
                       f"{what}: its {name} differ from the layer's by up to "
                       f"{max_difference(got, right[:, :, :t + 1]):.2g}; project the new token with the layer "
                       f"(layer.queries_keys_values(x)) and put it after the cached ones")
            out = expect_tensor(out, (2, 1, 16), f"{what}: its out")
            if same(out, expected[:, t:t + 1]):
                past_k, past_v = keys, values
                continue
            outputs = _attention_outputs(layer, q_all[:, :, t:t + 1], k_all[:, :, :t + 1], v_all[:, :, :t + 1])
            expect(not (t > 0 and same(out, outputs["first key only"])),
                   f"{what}: the new token saw key 0 only. is_causal=True aligns the triangle top-left, so one query "
                   f"against {t + 1} keys sees the first alone; the newest token may see every key: pass no mask")
            expect(not same(out, outputs["no projection"]),
                   f"{what} returned the heads' outputs side by side; pass them through the layer's output "
                   f"projection W^O, layer.out_proj")
            expect(not same(out, outputs["past only"]),
                   f"{what}: the new token did not attend to itself (with no cached tokens its output is the bias "
                   f"alone); append its key and value to the cache first, then attend")
            expect(not same(out, outputs["unscaled"]),
                   f"{what}: the scores were not divided by √d_head = √8; use F.scaled_dot_product_attention, or "
                   f"divide q·k by math.sqrt(d_head)")
            raise Failed(f"{what}: out differs from the layer's causal output at position {t} by up to "
                         f"{max_difference(out, expected[:, t:t + 1]):.2g}")
