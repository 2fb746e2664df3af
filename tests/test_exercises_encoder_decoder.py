"""Notebook 09's exercise checkers: each refuses plausible mistakes with its own message (WRONG_ANSWERS, run by
tests/test_exercises.py), passes answers written other ways, and each reference agrees with labkit's own rule."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import sacrebleu
import torch

from labkit import encoder_decoder
from labkit.exercises import check, exercises
from labkit.exercises.encoder_decoder import (reference_beam_score, reference_beam_step, reference_clipped_precision,
                                              reference_shift_right, reference_source_padding_mask)
from labkit.translation_data import EOS_ID, PAD_ID


def _grams(tokens, n):
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def _precision(hyp, ref, n, *, clip=True, denominator="hypothesis", distinct=False, drop_last=False):
    """Clipped precision and the ways of getting it wrong."""
    grams, ref_grams = _grams(hyp, n), _grams(ref, n)
    if drop_last:
        grams, ref_grams = grams[:-1], ref_grams[:-1]
    if distinct:
        return len(set(grams) & set(ref_grams)) / len(set(grams))
    matched = (sum(min(grams.count(g), ref_grams.count(g)) for g in set(grams)) if clip
               else sum(g in ref_grams for g in grams))
    return matched / len(grams if denominator == "hypothesis" else ref_grams)


def _beam(beam_lp, next_lp, width, *, combine=torch.add, swap=False, ascending=False):
    """A beam step and the ways of getting it wrong."""
    total = combine(beam_lp[:, None], next_lp)
    scores, flat = total.flatten().topk(min(width, total.numel()), largest=not ascending)
    vocab = total.shape[1]
    beams, tokens = flat // vocab, flat % vocab
    return (scores, tokens, beams) if swap else (scores, beams, tokens)


def _one_child_per_beam(beam_lp, next_lp, width):
    best, tokens = next_lp.max(-1)
    scores, order = (beam_lp + best).sort(descending=True)
    return scores[:width], order[:width], tokens[order][:width]


WRONG_ANSWERS = {
    "source_padding_mask": [
        (lambda src: (src == PAD_ID)[:, None, None, :], "True on the padding and False on the words"),
        (lambda src: src != PAD_ID, "returned shape (3, 5) = (batch, src_len); add a heads and a queries axis"),
        (lambda src: (src != PAD_ID)[:, None, :, None], "that hides padded queries (rows of the scores)"),
        (lambda src: (src != PAD_ID).float()[:, None, None, :], "returned dtype torch.float32; return a bool mask"),
        (lambda src: (src != PAD_ID)[:, None, :], "returned shape (3, 1, 5); expected (batch, 1, 1, src_len)"),
        (lambda src: (src != EOS_ID)[:, None, None, :], "(shown without its two middle axes)"),
    ],
    "shift_right": [
        (lambda tgt: (tgt, tgt), "each should be (batch, len - 1) = (2, 4)"),
        (lambda tgt: (tgt[:, 1:], tgt[:, :-1]), "the decoder input starts with [7, 5], not <bos>"),
        (lambda tgt: (tgt[:, :-1], tgt[:, 1:].masked_fill(tgt[:, 1:] == EOS_ID, PAD_ID)), "no label is <eos>"),
        (lambda tgt: (tgt[:, :-1], tgt[:, :-1]), "the decoder input equals the labels"),
        (lambda tgt: (tgt[:, :-1], torch.cat([tgt[:, :1], tgt[:, 2:]], 1)), "a label is <bos>"),
        (lambda tgt: tgt[:, :-1], "returned a Tensor; return two tensors"),
        (lambda tgt: (tgt[:, :-2], tgt[:, 2:]), "each should be (batch, len - 1) = (2, 4)"),
    ],
    "greedy_step": [
        (lambda logits, ys: torch.cat([ys, logits[:, 0].argmax(-1, keepdim=True)], 1), "the first position's choice"),
        (lambda logits, ys: torch.cat([ys, logits[:, -1].max(-1, keepdim=True).values], 1),
         "append token ids (argmax), not scores"),
        (lambda logits, ys: logits[:, -1].argmax(-1, keepdim=True), "returned shape (2, 1), expected"),
        (lambda logits, ys: torch.cat([ys[:, 1:], logits[:, -1].argmax(-1, keepdim=True)], 1),
         "returned shape (2, 3)"),
        (lambda logits, ys: torch.cat([logits[:, -1].argmax(-1, keepdim=True), ys], 1), "append, do not replace"),
        (lambda logits, ys: torch.cat([ys, logits[:, -2].argmax(-1, keepdim=True)], 1),
         "but the most likely next tokens are"),
    ],
    "beam_step": [
        (lambda b, n, k: _beam(torch.zeros_like(b), n, k), "ranked by the new token's log p alone"),
        (lambda b, n, k: _beam(b, n, k, combine=torch.mul), "multiplied the log-probabilities; add them"),
        (_one_child_per_beam, "kept each beam's best token, one child per beam"),
        (lambda b, n, k: _beam(b, n, k, swap=True), "swapped beams and tokens"),
        (lambda b, n, k: _beam(b, n, k, ascending=True), "kept the three least likely candidates"),
        (lambda b, n, k: tuple(t.flip(0) for t in _beam(b, n, k)), "the right candidates in the wrong order"),
        (lambda b, n, k: (lambda s, i: (s.flatten(), (i // n.shape[1]).flatten(), i.flatten()))(
            *(b[:, None] + n).topk(k, dim=-1)), "kept 3 candidates per beam, 9 in all"),
        (lambda b, n, k: (b[:, None] + n).topk(k, dim=-1), "return three tensors: (scores, beams, tokens)"),
        (lambda b, n, k: (lambda s, bb, t: (n[bb, t], bb, t))(*_beam(b, n, k)), "each must be the candidate's total"),
        (lambda b, n, k: (lambda s, bb, t: (s, bb.float(), t.float()))(*_beam(b, n, k)),
         "beams and tokens are indices; return integer tensors"),
        (lambda b, n, k: (lambda t, f: (t, f // n.shape[1], f % n.shape[1]))(*(b[:, None] + n).flatten().topk(k)),
         "there are only 4 candidates; keep min(beam_width, beams × vocab)"),
    ],
    "beam_score": [
        (lambda lp, alpha: float(lp.sum()), "the plain sum Σ log p whatever alpha is"),
        (lambda lp, alpha: float(lp.mean()), "the mean log-probability whatever alpha is"),
        (lambda lp, alpha: float(lp.sum().exp()) / len(lp) ** alpha, "the score stays in log space"),
        (lambda lp, alpha: float(lp.sum()) / (len(lp) * alpha) if alpha else float(lp.sum()),
         "you divided by length × alpha"),
        (lambda lp, alpha: float(lp.sum()) / (len(lp) - 1) ** alpha,
         "with alpha = 1.0 the score is -0.5000; got -0.6667"),
        (lambda lp, alpha: [float(lp.sum())], "returned a list; return one number"),
    ],
    "clipped_precision": [
        (lambda h, r, n: _precision(h, r, n, clip=False), "'the' counted 3 times, but the reference has it 1 time"),
        (lambda h, r, n: _precision(h, r, n, denominator="reference"), "divided by the reference's 3 n-grams"),
        (lambda h, r, n: _precision(h, r, n, distinct=True), "counted distinct n-grams only"),
        (lambda h, r, n: _precision(h, r, n, drop_last=True), "missed the last n-gram; 5 tokens hold 5 n-grams"),
        (lambda h, r, n: 100 * _precision(h, r, n), "a percentage; return a share, 0..1 (0.8)"),
        (lambda h, r, n: _precision(h, r, n) if len(h) >= n else 1 / 0, "divided by zero: one token holds no bigram"),
        (lambda h, r, n: _precision(h, r, n) if len(h) >= n else 1.0, "nothing to match; return 0.0"),
        (lambda h, r, n: str(_precision(h, r, n)), "returned a str; return one number"),
    ],
}


def test_notebook_09_has_its_six_exercises() -> None:
    assert sorted(exercises("09")) == ["beam_score", "beam_step", "clipped_precision", "greedy_step", "shift_right",
                                       "source_padding_mask"]
    for name, ex in exercises("09").items():
        assert check(name, ex.reference, quiet=True), name


def test_answers_written_other_ways_pass() -> None:
    def source_padding_mask(src):
        return src.ne(PAD_ID).unsqueeze(1).unsqueeze(2)

    def beam_step(beam_log_probs, next_log_probs, beam_width):
        candidates = sorted(((float(beam_log_probs[b] + next_log_probs[b, t]), b, t)
                             for b in range(next_log_probs.shape[0]) for t in range(next_log_probs.shape[1])),
                            reverse=True)[:beam_width]
        return (torch.tensor([c[0] for c in candidates]), torch.tensor([c[1] for c in candidates]),
                torch.tensor([c[2] for c in candidates]))

    def clipped_precision(hypothesis, reference, n):
        grams = Counter(zip(*(hypothesis[i:] for i in range(n))))
        ref = Counter(zip(*(reference[i:] for i in range(n))))
        return sum((grams & ref).values()) / max(sum(grams.values()), 1)

    for name, answer in (("source_padding_mask", source_padding_mask), ("beam_step", beam_step),
                         ("clipped_precision", clipped_precision)):
        assert check(name, answer, quiet=True), check(name, answer, quiet=True).message


def test_the_references_agree_with_labkit() -> None:
    src = torch.tensor([[5, 6, 7], [8, PAD_ID, PAD_ID]])
    model = encoder_decoder.EncoderDecoder(encoder_decoder.EncoderDecoderConfig(src_vocab_size=12, tgt_vocab_size=15))
    assert torch.equal(reference_source_padding_mask(src), model.source_mask(src))
    tgt = torch.tensor([[1, 7, 8, 2], [1, 9, 2, 0]])
    assert all(torch.equal(a, b) for a, b in zip(reference_shift_right(tgt), encoder_decoder.shift_right(tgt)))
    lp = torch.tensor([-0.3, -1.1, -0.05, -2.0, -0.4])
    for alpha in (0.0, 0.6, 1.0):
        expected = encoder_decoder.length_normalised(float(lp.sum()), 5, alpha)
        assert reference_beam_score(lp, alpha) == pytest.approx(expected)


def test_beam_step_is_beam_searchs_step() -> None:
    """A beam search written with the reference step and score (no early stop) finds beam_search's best."""
    with torch.random.fork_rng():
        torch.manual_seed(3)
        config = encoder_decoder.EncoderDecoderConfig(src_vocab_size=12, tgt_vocab_size=15, max_tgt_len=6)
        model = encoder_decoder.EncoderDecoder(config).eval()
    src = torch.tensor([[4, 5, 6, 7]])
    for width in (1, 3):
        with torch.no_grad():
            memory, mask = model.encode(src)
            live, finished = [([], [])], []
            for step in range(6):
                ys = torch.tensor([[1, *tokens] for tokens, _ in live])
                next_lp = model.decode(ys, memory.expand(len(live), -1, -1), mask)[:, -1].log_softmax(-1)
                sums = torch.tensor([sum(lps) for _, lps in live])
                scores, beams, tokens = reference_beam_step(sums, next_lp, width)
                extended = []
                for b, t in zip(beams.tolist(), tokens.tolist()):
                    hyp = (live[b][0] + [t], live[b][1] + [float(next_lp[b, t])])
                    (finished if t == EOS_ID or step == 5 else extended).append(hyp)
                live = extended
                if not live:
                    break
        best = max(finished, key=lambda h: reference_beam_score(torch.tensor(h[1]), 1.0))
        expected = encoder_decoder.beam_search(model, src, beam_width=width, alpha=1.0)[0]
        assert best[0] == expected.tokens
        assert reference_beam_score(torch.tensor(best[1]), 1.0) == pytest.approx(expected.score, abs=1e-5)


def test_clipped_precision_counts_what_sacrebleu_counts() -> None:
    rng = random.Random(0)
    for _ in range(50):
        hyp = [rng.choice("abcd") for _ in range(rng.randint(1, 8))]
        ref = [rng.choice("abcd") for _ in range(rng.randint(1, 8))]
        stats = sacrebleu.corpus_bleu([" ".join(hyp)], [[" ".join(ref)]], tokenize="none")
        for n in range(1, 5):
            expected = stats.counts[n - 1] / stats.totals[n - 1] if stats.totals[n - 1] else 0.0
            assert reference_clipped_precision(hyp, ref, n) == pytest.approx(expected), (hyp, ref, n)
