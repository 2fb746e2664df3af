"""Notebook 09's exercises, in the order the notebook teaches them: the source padding mask, the decoder's shifted
input, one greedy step, one beam-search step, a length-normalised beam score, and BLEU's clipped n-gram precision.

Each reference follows labkit's own rule: `EncoderDecoder.source_mask`, `labkit.encoder_decoder.shift_right`,
`greedy_decode`'s step, `beam_search`'s step and `length_normalised`, and the n-gram counts sacrebleu makes inside
`labkit.translation_data.bleu` (tests/test_exercises_encoder_decoder.py proves each agreement).
"""

from __future__ import annotations

import math
import numbers
from collections import Counter
from collections.abc import Sequence
from typing import Any, Callable

import torch
from torch import Tensor

from labkit.exercises import Failed, expect, exercise
from labkit.exercises._compare import same
from labkit.translation_data import BOS_ID, EOS_ID, PAD_ID


# --- the source padding mask ------------------------------------------------------------------------------------

def reference_source_padding_mask(src: Tensor) -> Tensor:
    return (src != PAD_ID)[:, None, None, :]


# three sources of 5, 3 and 2 words, padded to 5
_SRC = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 12, PAD_ID, PAD_ID], [13, 14, PAD_ID, PAD_ID, PAD_ID]])


@exercise("source_padding_mask", "09",
          task="source_padding_mask(src) → (batch, 1, 1, src_len) bool for source ids src (batch, src_len): True "
               "on real words, False on <pad>, shaped to broadcast over heads and queries",
          hint=f"compare with the padding id (src != PAD_ID, PAD_ID = {PAD_ID}), then add a heads and a queries "
               f"axis before the keys: [:, None, None, :]",
          reference=reference_source_padding_mask)
def check_source_padding_mask(answer: Callable[[Tensor], Any]) -> None:
    out = answer(_SRC.clone())
    expected = reference_source_padding_mask(_SRC)
    expect(isinstance(out, Tensor), f"returned a {type(out).__name__}, not a tensor")
    expect(out.dtype == torch.bool, f"returned dtype {out.dtype}; return a bool mask (True = may attend), as "
                                    f"src != PAD_ID gives")
    shape = tuple(out.shape)
    expect(shape != (3, 5), "returned shape (3, 5) = (batch, src_len); add a heads and a queries axis, "
                            "(batch, 1, 1, src_len), so that it broadcasts over both")
    expect(shape != (3, 1, 5, 1), "returned shape (3, 1, 5, 1): that hides padded queries (rows of the scores); "
                                  "padding is hidden as a key, so src_len goes last: (batch, 1, 1, src_len)")
    expect(shape == (3, 1, 1, 5), f"returned shape {shape}; expected (batch, 1, 1, src_len) = (3, 1, 1, 5)")
    expect(not torch.equal(out, ~expected), "True on the padding and False on the words: True means may attend, "
                                            "so it is True on real words")
    expect(torch.equal(out, expected), f"for src {_SRC.tolist()} the mask is {expected[:, 0, 0].tolist()} "
                                       f"(shown without its two middle axes); got {out[:, 0, 0].tolist()}")


# --- teacher forcing: the shifted decoder input -----------------------------------------------------------------

def reference_shift_right(tgt: Tensor) -> tuple[Tensor, Tensor]:
    return tgt[:, :-1], tgt[:, 1:]


# <bos> 7 8 9 <eos>, and a shorter one padded after its <eos>
_TGT = torch.tensor([[BOS_ID, 7, 8, 9, EOS_ID], [BOS_ID, 5, 6, EOS_ID, PAD_ID]])


@exercise("shift_right", "09",
          task="shift_right(tgt) → (decoder input, labels) for tgt (batch, len) = <bos> y1 … yn <eos> (<pad>…): "
               "the decoder reads <bos> y1 … and must predict y1 … <eos>",
          hint="the input drops the last column (tgt[:, :-1]) and the labels drop the first, <bos> (tgt[:, 1:])",
          reference=reference_shift_right)
def check_shift_right(answer: Callable[[Tensor], Any]) -> None:
    out = answer(_TGT.clone())
    expect(isinstance(out, tuple) and len(out) == 2, f"returned a {type(out).__name__}; return two tensors: "
                                                     f"(decoder input, labels)")
    tgt_in, labels = out
    expect(isinstance(tgt_in, Tensor) and isinstance(labels, Tensor), "both parts must be tensors")
    expect(tgt_in.shape == labels.shape == (2, 4), f"the parts have shapes {tuple(tgt_in.shape)} and "
                                                   f"{tuple(labels.shape)}; each should be (batch, len - 1) = (2, 4)")
    expect(not torch.equal(tgt_in, labels), "the decoder input equals the labels: at every position the decoder "
                                            "would read the very token it must predict")
    expect(bool((tgt_in[:, 0] == BOS_ID).all()), f"the decoder input starts with {tgt_in[:, 0].tolist()}, not "
                                                 f"<bos> (id {BOS_ID}): the decoder's first step reads <bos>")
    expect(not (labels == BOS_ID).any(), "a label is <bos>: the decoder is never asked to write <bos>")
    expect(bool((labels == EOS_ID).any(1).all()), "no label is <eos>: the decoder must learn when to stop")
    expected_in, expected_labels = reference_shift_right(_TGT)
    expect(torch.equal(tgt_in, expected_in) and torch.equal(labels, expected_labels),
           f"got input {tgt_in.tolist()} and labels {labels.tolist()} for tgt {_TGT.tolist()}")


# --- greedy decoding: one step ----------------------------------------------------------------------------------

def reference_greedy_step(logits: Tensor, ys: Tensor) -> Tensor:
    return torch.cat([ys, logits[:, -1].argmax(-1, keepdim=True)], dim=1)


@exercise("greedy_step", "09",
          task="greedy_step(logits, ys) → ys with one more column: for logits (batch, len, vocab) of the decoder "
               "run on ys (batch, len), append each row's most likely next token",
          hint="the next token comes from the last position: logits[:, -1].argmax(-1), then torch.cat on dim 1",
          reference=reference_greedy_step)
def check_greedy_step(answer: Callable[[Tensor, Tensor], Any]) -> None:
    gen = torch.Generator().manual_seed(9)
    ys = torch.tensor([[BOS_ID, 5, 6], [BOS_ID, 7, 7]])
    logits = torch.randn(2, 3, 12, generator=gen)
    logits[:, 0, 4] += 10  # a first position that votes clearly for token 4, the last for something else
    logits[:, -1, 4] -= 10
    out = answer(logits.clone(), ys.clone())
    expect(isinstance(out, Tensor), f"returned a {type(out).__name__}, not a tensor")
    expect(out.shape == (2, 4), f"returned shape {tuple(out.shape)}, expected (batch, len + 1) = (2, 4)")
    expect(out.dtype == torch.long, f"returned dtype {out.dtype}: append token ids (argmax), not scores")
    expect(torch.equal(out[:, :3], ys), "the first columns must be ys as it was: append, do not replace")
    expected = reference_greedy_step(logits, ys)
    expect(not torch.equal(out[:, 3], logits[:, 0].argmax(-1)), "you took the first position's choice; the next "
                                                                "token is predicted at the last position")
    expect(torch.equal(out, expected), f"appended {out[:, 3].tolist()}, but the most likely next tokens are "
                                       f"{expected[:, 3].tolist()}")


# --- beam search: one step --------------------------------------------------------------------------------------

def reference_beam_step(beam_log_probs: Tensor, next_log_probs: Tensor,
                        beam_width: int) -> tuple[Tensor, Tensor, Tensor]:
    total = beam_log_probs[:, None] + next_log_probs  # (beams, vocab): every beam extended by every token
    scores, flat = total.flatten().topk(min(beam_width, total.numel()))
    vocab = total.shape[1]
    return scores, flat // vocab, flat % vocab


def _beam_step_inputs() -> tuple[Tensor, Tensor]:
    """Three beams over six tokens: beam 0 far ahead (its top three children are the step's best three), beam 2
    far behind but very sure of its next token (ranked by that token alone, it would come first)."""
    beam_log_probs = torch.tensor([-0.2, -1.5, -4.0])
    logits = torch.tensor([[2.0, 1.6, 0.3, 1.2, -1.0, 0.1],
                           [0.5, 1.9, 0.2, -0.3, 0.9, 0.0],
                           [-2.0, -1.0, -1.5, 7.0, -0.5, -3.0]])
    return beam_log_probs, logits.log_softmax(-1)


def _beam_step_out(out: Any, k: int, what: str) -> tuple[Tensor, Tensor, Tensor]:
    """The answer's (scores, beams, tokens), checked to be three (k,) tensors, ids as integers."""
    expect(isinstance(out, tuple) and len(out) == 3, f"{what} returned a {type(out).__name__}; return three "
                                                     f"tensors: (scores, beams, tokens)")
    expect(all(isinstance(t, Tensor) for t in out), f"{what}: scores, beams and tokens must each be a tensor")
    scores, beams, tokens = out
    expect(not (scores.dtype.is_floating_point and not beams.dtype.is_floating_point
                and beams.shape == tokens.shape == (k * 3,)),
           f"{what} kept {k} candidates per beam, {k * 3} in all; keep the {k} best of all beams × vocab together")
    expect(scores.dim() != 2, f"{what}: scores has shape {tuple(scores.shape)}, the best of each beam apart; "
                              f"flatten the (beams, vocab) totals and keep the best of all of them")
    for name, t in (("scores", scores), ("beams", beams), ("tokens", tokens)):
        expect(tuple(t.shape) == (k,), f"{what}: {name} has shape {tuple(t.shape)}, expected (beam_width,) = ({k},)")
    expect(not beams.dtype.is_floating_point and not tokens.dtype.is_floating_point,
           f"{what}: beams and tokens are indices; return integer tensors (dtypes {beams.dtype}, {tokens.dtype})")
    return scores, beams, tokens


@exercise("beam_step", "09",
          task="beam_step(beam_log_probs, next_log_probs, beam_width) → (scores, beams, tokens), each "
               "(min(beam_width, beams × vocab),), best first: extend every beam (Σ log p so far, beam_log_probs "
               "(beams,)) by every token (next_log_probs (beams, vocab)) and keep the best candidates by total "
               "log-probability; candidate i is beam beams[i] followed by token tokens[i]",
          hint="total = beam_log_probs[:, None] + next_log_probs; scores, flat = total.flatten().topk(k) with "
               "k = min(beam_width, total.numel()); flat index i is beam i // vocab and token i % vocab",
          reference=reference_beam_step)
def check_beam_step(answer: Callable[[Tensor, Tensor, int], Any]) -> None:
    beam_lp, next_lp = _beam_step_inputs()
    what = "beam_step(3 beams, 6 tokens, beam_width=3)"
    scores, beams, tokens = _beam_step_out(answer(beam_lp.clone(), next_lp.clone(), 3), 3, what)
    expected_scores, expected_beams, expected_tokens = reference_beam_step(beam_lp, next_lp, 3)
    got = list(zip(beams.tolist(), tokens.tolist()))
    expected = list(zip(expected_beams.tolist(), expected_tokens.tolist()))

    def picks(total: Tensor) -> list[tuple[int, int]]:
        flat = total.flatten().topk(3).indices
        return list(zip((flat // 6).tolist(), (flat % 6).tolist()))

    expect(got != picks(next_lp), f"{what} kept {got} (beam, token): ranked by the new token's log p alone; a "
                                  f"candidate's score is its beam's Σ log p so far + the new token's log p")
    worst = (beam_lp[:, None] + next_lp).flatten().topk(3, largest=False)
    expect(not (got == [(i // 6, i % 6) for i in worst.indices.tolist()] and same(scores.float(), worst.values)),
           f"{what} kept the three least likely candidates; keep the most likely (topk's largest=True, or sort "
           f"descending)")
    expect(got != picks(beam_lp[:, None] * next_lp), f"{what} multiplied the log-probabilities; add them "
                                                     f"(log of a product = sum of the logs)")
    best_each = next_lp.argmax(-1)
    expect(sorted(got) != sorted(enumerate(best_each.tolist())),
           f"{what} kept each beam's best token, one child per beam; the best candidates of a step may all come "
           f"from one beam (here {expected} as (beam, token)) and a weak beam may have none")
    expect(got != [(t, b) for b, t in expected], f"{what} swapped beams and tokens: flat index i of the "
                                                 f"(beams, vocab) totals is beam i // vocab, token i % vocab")
    expect(sorted(got) != sorted(expected) or got == expected,
           f"{what} kept the right candidates in the wrong order; best first (topk's order): {expected}")
    expect(got == expected, f"{what} kept {got} (beam, token); the best three are {expected}")
    expect(same(scores.float(), expected_scores, 1e-5),
           f"{what}: the scores are {[round(s, 4) for s in scores.tolist()]}; each must be the candidate's total "
           f"Σ log p, {[round(s, 4) for s in expected_scores.tolist()]}")

    what = "beam_step(1 beam, 4 tokens, beam_width=6)"  # the first step of a wide beam over a small vocabulary
    try:
        out = answer(torch.zeros(1), torch.tensor([[0.1, 0.5, 0.3, 0.1]]).log(), 6)
    except RuntimeError as err:
        raise Failed(f"{what} raised {err}: there are only 4 candidates; keep min(beam_width, beams × vocab)")
    _, beams, tokens = _beam_step_out(out, 4, what)
    expect(tokens.tolist() == [1, 2, 0, 3] or tokens.tolist() == [1, 2, 3, 0],
           f"{what} kept tokens {tokens.tolist()}; all four, best first, are 1, 2, then 0 and 3")


# --- beam search: the length-normalised score -------------------------------------------------------------------

def reference_beam_score(token_log_probs: Tensor, alpha: float) -> float:
    return float(token_log_probs.sum()) / len(token_log_probs) ** alpha


@exercise("beam_score", "09",
          task="beam_score(token_log_probs, alpha) → the length-normalised score Σ log p / length^alpha of a "
               "hypothesis whose tokens had log-probabilities token_log_probs (length,)",
          hint="add the log-probabilities (do not multiply probabilities), then divide by len(...) ** alpha",
          reference=reference_beam_score)
def check_beam_score(answer: Callable[[Tensor, float], Any]) -> None:
    log_probs = torch.tensor([-0.1, -0.5, -0.2, -1.2])
    total, length = float(log_probs.sum()), len(log_probs)
    close = lambda a, b: math.isclose(a, b, rel_tol=1e-4)  # noqa: E731
    for alpha in (1.0, 0.6, 0.0):
        score = answer(log_probs.clone(), alpha)
        expect(isinstance(score, (float, int)) or (isinstance(score, Tensor) and score.numel() == 1),
               f"returned a {type(score).__name__}; return one number")
        score = float(score)
        expect(not (close(score, math.exp(total)) or close(score, math.exp(total) / length ** alpha)),
               "that is built on the probability exp(Σ log p); the score stays in log space: Σ log p")
        expect(alpha == 0 or not close(score, total), "that is the plain sum Σ log p whatever alpha is: divide it "
                                                      "by length ** alpha, or longer hypotheses always lose")
        expect(alpha == 1 or not close(score, total / length), "that is the mean log-probability whatever alpha "
                                                               "is: alpha is the power of the length")
        expect(alpha in (0, 1) or not close(score, total / (length * alpha)),
               "you divided by length × alpha; divide by length to the power alpha")
        expected = reference_beam_score(log_probs, alpha)
        expect(close(score, expected), f"with alpha = {alpha} the score is {expected:.4f}; got {score:.4g}")


# --- BLEU: the clipped n-gram precision -------------------------------------------------------------------------

def reference_clipped_precision(hypothesis: Sequence[str], reference: Sequence[str], n: int) -> float:
    grams = Counter(tuple(hypothesis[i:i + n]) for i in range(len(hypothesis) - n + 1))
    ref_grams = Counter(tuple(reference[i:i + n]) for i in range(len(reference) - n + 1))
    total = sum(grams.values())
    return sum(min(count, ref_grams[g]) for g, count in grams.items()) / total if total else 0.0


def _ngrams(tokens: Sequence[str], n: int, drop_last: bool = False) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + (0 if drop_last else 1))]


_PRECISION_CASES = [  # (hypothesis, reference, n): date pieces with a wrong day, a repeated word, bigrams
    ("1994 - 03 - 24".split(), "1994 - 03 - 23".split(), 1),
    ("the the the cat".split(), "the cat sat".split(), 1),
    ("the the the cat".split(), "the cat sat".split(), 2),
    ("1994 - 03 - 24".split(), "1994 - 03 - 23".split(), 3),
    ("03 - 03 - 1994".split(), "1994 - 03 - 23".split(), 1),
]


@exercise("clipped_precision", "09",
          task="clipped_precision(hypothesis, reference, n) → BLEU's modified n-gram precision, a number in 0..1, "
               "for two token lists: the hypothesis's n-grams that occur in the reference, each counted at most as "
               "often as the reference has it, over the number of the hypothesis's n-grams (0.0 if it has none)",
          hint="count both sides' n-grams (tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)) with "
               "collections.Counter; add up min(hypothesis count, reference count) and divide by the hypothesis's "
               "total",
          reference=reference_clipped_precision)
def check_clipped_precision(answer: Callable[[Sequence[str], Sequence[str], int], Any]) -> None:
    for hyp, ref, n in _PRECISION_CASES:
        what = f"clipped_precision({' '.join(hyp)!r}, {' '.join(ref)!r}, n={n})"
        value = answer(list(hyp), list(ref), n)
        expect(isinstance(value, numbers.Real) or (isinstance(value, Tensor) and value.numel() == 1),
               f"{what} returned a {type(value).__name__}; return one number")
        value = float(value)
        expected = reference_clipped_precision(hyp, ref, n)
        if math.isclose(value, expected, abs_tol=1e-9):
            continue
        grams, ref_grams = _ngrams(hyp, n), _ngrams(ref, n)
        matched = sum(g in ref_grams for g in grams)
        clipped = expected * len(grams)
        expect(not math.isclose(value, 100 * expected), f"{what} = {value:g}: a percentage; return a share, 0..1 "
                                                        f"({expected:.4g})")
        repeated = next((g for g in grams if grams.count(g) > ref_grams.count(g) > 0), None)
        expect(not math.isclose(value, matched / len(grams)),
               f"{what} = {value:.4g}: {' '.join(repeated or ())!r} counted {grams.count(repeated)} times, but the "
               f"reference has it {ref_grams.count(repeated)} time(s); clip each n-gram's count at the reference's "
               f"({expected:.4g})")
        expect(not math.isclose(value, clipped / len(ref_grams)),
               f"{what} = {value:.4g}: divided by the reference's {len(ref_grams)} n-grams (that is recall); "
               f"precision divides by the hypothesis's {len(grams)}")
        unique = set(grams)
        expect(not math.isclose(value, len(unique & set(ref_grams)) / len(unique)),
               f"{what} = {value:.4g}: counted distinct n-grams only; a hypothesis's repeated n-gram counts once per "
               f"time it occurs (up to the reference's count), out of all {len(grams)} of its n-grams")
        short, short_ref = _ngrams(hyp, n, drop_last=True), _ngrams(ref, n, drop_last=True)
        short_clipped = sum(min(short.count(g), short_ref.count(g)) for g in set(short))
        expect(not (short and math.isclose(value, short_clipped / len(short))),
               f"{what} = {value:.4g}: missed the last n-gram; {len(hyp)} tokens hold {len(grams)} n-grams of "
               f"{n}, range(len - n + 1)")
        raise Failed(f"{what} = {value:.4g}; expected {expected:.4g}")
    what = "clipped_precision('1994', '1994 - 03 - 23', n=2)"
    try:
        value = answer(["1994"], "1994 - 03 - 23".split(), 2)
    except ZeroDivisionError:
        raise Failed(f"{what} divided by zero: one token holds no bigram; return 0.0 when the hypothesis has no "
                     f"n-grams, as sacrebleu does") from None
    expect(math.isclose(float(value), 0.0), f"{what} = {value}: one token holds no bigram, so there is nothing "
                                            f"to match; return 0.0")
