"""Notebook 07's checkers: a right answer written by hand passes, each plausible mistake (WRONG_ANSWERS, run by
tests/test_exercises.py) gets its own message, and the references agree with `labkit.generation` beyond the checkers'
own inputs."""

from __future__ import annotations

import math
from collections import Counter

import torch

from labkit.attention import KVCache, MultiHeadAttention, merge_heads
from labkit.exercises import check
from labkit.exercises.generation import (_small_gpt, reference_apply_temperature, reference_attend_with_cache,
                                         reference_greedy_generate, reference_repetition_penalty,
                                         reference_top_k_filter, reference_top_p_filter)
from labkit.generation import filter_logits, generate


# --- the greedy loop --------------------------------------------------------------------------------------------

def _greedy(model, idx, max_new_tokens, block_size, *, crop=True, position=-1, new_only=False):
    ids = idx
    for _ in range(max_new_tokens):
        logits = model(ids[:, -block_size:] if crop else ids)[:, position, :]
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    return ids[:, idx.shape[1]:] if new_only else ids


def _sampled(model, idx, max_new_tokens, block_size):
    generator = torch.Generator().manual_seed(0)
    ids = idx
    for _ in range(max_new_tokens):
        probs = model(ids[:, -block_size:])[:, -1, :].softmax(-1)
        ids = torch.cat([ids, torch.multinomial(probs, 1, generator=generator)], dim=1)
    return ids


def test_greedy_generate_written_by_hand_passes() -> None:
    assert check("greedy_generate", _greedy, quiet=True)


# --- the share of repeated n-grams ------------------------------------------------------------------------------

def _grams(text, n, short=False):
    return [text[i:i + n] for i in range(len(text) - n + (0 if short else 1))]


def _ngrams(text, n=4, *, measure="repeats", short=False):
    grams = _grams(text, n, short)
    repeats = len(grams) - len(set(grams))
    return {"repeats": repeats / len(grams), "count": repeats, "distinct": len(set(grams)) / len(grams),
            "percent": 100 * repeats / len(grams), "per_char": repeats / len(text),
            "first_too": sum(c > 1 for c in map(Counter(grams).__getitem__, grams)) / len(grams)}[measure]


def test_repeated_ngrams_written_with_a_loop_passes() -> None:
    def repeated_ngrams(text: str, n: int = 4) -> float:
        seen, repeats = set(), 0
        for i in range(len(text) - n + 1):
            repeats += text[i:i + n] in seen
            seen.add(text[i:i + n])
        return repeats / (len(text) - n + 1)

    assert check("repeated_ngrams", repeated_ngrams, quiet=True)


# --- temperature, top-k, top-p, repetition penalty --------------------------------------------------------------

def _top_k(logits, k, fill=float("-inf"), keep=0, dim=-1):
    kth = logits.topk(min(k + keep, logits.shape[dim]), dim=dim).values.narrow(dim, -1, 1)
    return logits.masked_fill(logits < kth, fill)


def _top_p(logits, p, inclusive=False, scatter_back=True, fill=float("-inf")):
    probs = logits.softmax(-1)
    ranked, order = probs.sort(dim=-1, descending=True)
    mass = ranked.cumsum(-1) if inclusive else ranked.cumsum(-1) - ranked
    keep_ranked = mass < p
    keep = torch.zeros_like(keep_ranked).scatter(-1, order, keep_ranked) if scatter_back else keep_ranked
    return logits.masked_fill(~keep, fill)


def _penalty(logits, previous, penalty, *, rule="labkit", per_occurrence=False, shared_rows=False, inplace=False):
    out = logits if inplace else logits.clone()
    for row in range(logits.shape[0]):
        tokens = previous.flatten().tolist() if shared_rows else previous[row].tolist()
        for token in (tokens if per_occurrence else set(tokens)):
            value = out[row, token]
            out[row, token] = {"labkit": value / penalty if value > 0 else value * penalty,
                               "divide": value / penalty, "multiply": value * penalty,
                               "subtract": value - penalty}[rule]
    return out


def test_top_k_filter_written_by_hand_passes() -> None:
    def top_k_filter(logits, k):
        kth = logits.topk(k, dim=-1).values[:, -1:]
        return logits.masked_fill(logits < kth, float("-inf"))

    assert check("top_k_filter", top_k_filter, quiet=True)


def test_top_p_filter_written_by_hand_passes() -> None:
    assert check("top_p_filter", _top_p, quiet=True)


def test_repetition_penalty_written_with_a_loop_passes() -> None:
    assert check("repetition_penalty", _penalty, quiet=True)


def test_the_references_agree_with_labkit_beyond_the_checkers_inputs() -> None:
    generator = torch.Generator().manual_seed(11)
    logits = 3 * torch.randn(4, 50, generator=generator)
    previous = torch.randint(0, 50, (4, 30), generator=generator)  # with repeats, and different per row
    for penalty in (1.0, 1.3, 2.5):
        assert torch.allclose(reference_repetition_penalty(logits, previous, penalty),
                              filter_logits(logits, repetition_penalty=penalty, previous=previous))
    for t in (0.3, 1.0, 1.7):
        assert torch.allclose(reference_apply_temperature(logits, t), filter_logits(logits, temperature=t))
    for k in (1, 7, 50):
        assert torch.equal(reference_top_k_filter(logits, k), filter_logits(logits, top_k=k))
    for p in (0.1, 0.5, 0.9):
        assert torch.equal(reference_top_p_filter(logits, p), filter_logits(logits, top_p=p))
    model, idx = _small_gpt(), torch.tensor([[3, 1, 4], [1, 5, 9]])
    assert torch.equal(reference_greedy_generate(model, idx, 12, 8), generate(model, idx, 12, block_size=8,
                                                                              greedy=True))


# --- attention with a KV cache ----------------------------------------------------------------------------------

def _attend(layer, x, past_k, past_v, *, keep="all", causal=False, project=True, scaled=True, attend_first=False,
            swap=False):
    """One cached step written out: scores, softmax, weighted sum; each keyword one mistake."""
    q, k, v = layer.queries_keys_values(x)
    keys, values = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
    seen_k, seen_v = (past_k, past_v) if attend_first else (keys, values)
    scores = q @ seen_k.transpose(-2, -1) / (math.sqrt(q.shape[-1]) if scaled else 1.0)  # (batch, heads, 1, t + 1)
    if causal:  # the triangle aligned top-left: the one query sees key 0 only
        scores = scores.masked_fill(~torch.ones(1, seen_k.shape[2], dtype=torch.bool).tril(), float("-inf"))
    out = merge_heads(scores.softmax(dim=-1) @ seen_v)
    out = layer.out_proj(out) if project else out
    keys, values = {"all": (keys, values), "new": (k, v), "past": (past_k, past_v)}[keep]
    return (out, values, keys) if swap else (out, keys, values)


def test_attend_with_cache_written_out_passes() -> None:
    assert check("attend_with_cache", _attend, quiet=True)


def test_the_cached_reference_is_labkits_cached_layer() -> None:
    torch.manual_seed(4)
    layer, x = MultiHeadAttention(24, 3).eval(), torch.randn(2, 9, 24)
    cache, past_k, past_v = KVCache(2, 3, 9, 8), torch.zeros(2, 3, 0, 8), torch.zeros(2, 3, 0, 8)
    with torch.no_grad():
        for t in range(9):
            ours, past_k, past_v = reference_attend_with_cache(layer, x[:, t:t + 1], past_k, past_v)
            torch.testing.assert_close(ours, layer(x[:, t:t + 1], is_causal=True, cache=cache))
        torch.testing.assert_close(past_k, cache.keys)


def test_the_checks_leave_the_callers_random_state_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    answers = {"greedy_generate": _greedy, "apply_temperature": lambda lg, t: lg / t, "top_k_filter": _top_k,
               "top_p_filter": _top_p, "repetition_penalty": _penalty, "attend_with_cache": _attend}
    for name, answer in answers.items():
        assert check(name, answer, quiet=True)
    assert torch.equal(torch.rand(3), expected)


WRONG_ANSWERS = {
    "greedy_generate": [
        (lambda *args: _greedy(*args, crop=False), "your function raised ValueError: sequence length 9"),
        (lambda *args: _greedy(*args, position=0), "take the argmax of the logits at the last position"),
        (lambda *args: _greedy(*args, new_only=True), "returned only the 10 new tokens"),
        (_sampled, "the greedy choice is"),
    ],
    "repeated_ngrams": [
        (lambda text, n=4: _ngrams(text, n, measure="distinct"), "the share of distinct n-grams"),
        (lambda text, n=4: _ngrams(text, n, measure="first_too"), "it counts the first 'the' and 'he ' as well"),
        (lambda text, n=4: _ngrams(text, n, short=True), "left out the last n-gram"),
        (lambda text, n=4: _ngrams(text, n, measure="per_char"), "divided by the text's 16 characters"),
        (lambda text, n=4: _ngrams(text, n, measure="count"), "the number of repeats; divide it by the 14"),
        (lambda text, n=4: _ngrams(text, n, measure="percent"), "a percentage"),
        (lambda text, n=4: _ngrams(text), "counted 4-grams: use the n it is given"),
        (lambda text, n=3: _ngrams(text, n), "n defaults to 4"),
        (lambda text, n=4: str(_ngrams(text, n)), "returned a str"),
    ],
    "apply_temperature": [
        (lambda lg, t: lg * t, "multiplied the logits by T = 0.5; divide them"),
        (lambda lg, t: (lg / t).softmax(-1), "returned probabilities"),
        (lambda lg, t: lg.div_(t), "changed the logits it was given, in place"),
        (lambda lg, t: lg.softmax(-1) / t, "divided the probabilities by T"),
        (lambda lg, t: (lg / t).log_softmax(-1), "returned log-probabilities"),
        (lambda lg, t: lg / (t ** 2), "differs from logits / 0.5 by up to"),
    ],
    "top_k_filter": [
        (lambda lg, k: _top_k(lg, k, keep=1), "row 0 keeps 4 of the 10 tokens, expected 3"),
        (lambda lg, k: _top_k(lg, k, fill=0.0), "filtered tokens hold 0"),
        (lambda lg, k: _top_k(lg, k).softmax(-1), "returned probabilities"),
        (lambda lg, k: lg.masked_fill(lg < lg.flatten().topk(k).values[-1], float("-inf")),
         "row 0 keeps 1 of the 10 tokens, expected 3"),
        (lambda lg, k: lg.masked_fill(lg < lg.topk(k).values[-1], float("-inf")),
         "your function raised RuntimeError"),
        (lambda lg, k: torch.cat([_top_k(lg[:1], k), _top_k(lg[:1], k)]),
         "keeps the right number of tokens but the wrong"),
        (lambda lg, k: _top_k(lg, k) / 2, "the kept logits changed"),
        (lambda lg, k: _top_k(lg[0], k), "has shape (10,), expected (2, 10)"),
    ],
    "top_p_filter": [
        (lambda lg, p: _top_p(lg, p, inclusive=True), "row 0 keeps 2 of the 6 tokens, expected 3"),
        (lambda lg, p: _top_p(lg, p, inclusive=True) if p < 0.5 else _top_p(lg, p),
         "filtered out every token of a row"),
        (lambda lg, p: _top_p(lg, p, scatter_back=False), "keeps the right number of tokens but the wrong ones"),
        (lambda lg, p: _top_p(lg, p, fill=0.0), "filtered tokens hold 0"),
        (lambda lg, p: _top_p(lg, p, fill=torch.finfo(lg.dtype).min), "filtered tokens hold -3.4e+38"),
        (lambda lg, p: _top_p(lg, p).softmax(-1), "returned probabilities"),
    ],
    "repetition_penalty": [
        (lambda lg, prev, r: _penalty(lg, prev, r, rule="divide"),
         "dividing it by 2 gave -0.5, which makes it MORE likely; multiply negative logits"),
        (lambda lg, prev, r: _penalty(lg, prev, r, rule="multiply"),
         "multiplying it by 2 gave 6, which makes it MORE likely; divide positive logits"),
        (lambda lg, prev, r: _penalty(lg, prev, r, per_occurrence=True),
         "occurs 3 times and its logit 3 became 0.375 = 3 / 2³"),
        (lambda lg, prev, r: _penalty(lg, prev, r, shared_rows=True),
         "row 0's token 0 changed, but only row 1's previous holds it"),
        (lambda lg, prev, r: _penalty(lg, prev, r, rule="subtract"), "subtracted the penalty"),
        (lambda lg, prev, r: _penalty(lg, prev, r, inplace=True), "changed the logits it was given, in place"),
        (lambda lg, prev, r: lg.clone(), "row 0's token 1 occurs in its previous but kept its logit"),
        (lambda lg, prev, r: lg / r, "row 0's token 4 never occurs in previous[0], yet its logit went from -2 to -1"),
        (lambda lg, prev, r: _penalty(lg, prev, r).softmax(-1), "returned probabilities"),
    ],
    "attend_with_cache": [
        (lambda *args: _attend(*args, causal=True), "the new token saw key 0 only. is_causal=True aligns the"),
        (lambda *args: _attend(*args, project=False), "through the layer's output projection W^O"),
        (lambda *args: _attend(*args, attend_first=True), "the new token did not attend to itself"),
        (lambda *args: _attend(*args, scaled=False), "the scores were not divided by √d_head = √8"),
        (lambda *args: _attend(*args, keep="new"), "returned the new token's keys alone, (2, 2, 1, 8)"),
        (lambda *args: _attend(*args, keep="past"), "returned the cached keys unchanged, (2, 2, 0, 8)"),
        (lambda *args: _attend(*args, swap=True), "returned the values as keys and the keys as values"),
        (lambda *args: _attend(*args)[0], "returned a Tensor; return three things: (out, keys, values)"),
    ],
}
