"""The encoder–decoder: shapes, teacher forcing by hand, the causal mask, source padding, greedy and beam search
against step-by-step and brute-force references, cross-attention maps, training that learns, and bad input."""

from __future__ import annotations

import itertools

import pytest
import torch

from labkit.device import one_cpu_thread
from labkit.encoder_decoder import (EncoderDecoder, EncoderDecoderConfig, beam_search, cross_attention,
                                    encode_source, evaluate, greedy_decode, length_normalised, sequence_log_prob,
                                    shift_right, teacher_forcing_loss, train_encoder_decoder)
from labkit.loop import History
from labkit.masks import padding_mask
from labkit.presets import get_preset
from labkit.translation_data import BOS_ID, EOS_ID, PAD_ID, collate, make_date_translation
from labkit.viz.training import LossPlot

SRC_VOCAB, TGT_VOCAB = 20, 9


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: one thread runs them faster than several (and far faster on a busy machine)."""
    with one_cpu_thread(torch.device("cpu")):
        yield


def small_model(seed: int = 0, tgt_vocab: int = TGT_VOCAB, **overrides) -> EncoderDecoder:
    torch.manual_seed(seed)
    shape = dict(max_src_len=10, max_tgt_len=6, n_encoder_layers=2, n_decoder_layers=2, n_head=2, d_model=16,
                 d_ff=32) | overrides
    return EncoderDecoder(EncoderDecoderConfig(SRC_VOCAB, tgt_vocab, **shape)).eval()


def random_ids(shape: tuple[int, int], vocab: int, seed: int = 1) -> torch.Tensor:
    """Ids that are never <pad>, <bos> or <eos> (4..vocab-1)."""
    return torch.randint(4, vocab, shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def model() -> EncoderDecoder:
    return small_model()


def test_shapes(model) -> None:
    src, tgt_in = random_ids((3, 7), SRC_VOCAB), random_ids((3, 5), TGT_VOCAB)
    memory, mask = model.encode(src)
    assert memory.shape == (3, 7, 16) and mask is None  # nothing padded: the fused kernel's path
    assert model(src, tgt_in).shape == (3, 5, TGT_VOCAB)
    src[1, 5:] = PAD_ID
    assert torch.equal(model.source_mask(src), padding_mask([7, 5, 7], 7))  # labkit.masks' convention


def test_teacher_forcing_loss_is_the_hand_computed_cross_entropy(model) -> None:
    src = random_ids((2, 6), SRC_VOCAB)
    tgt = torch.tensor([[BOS_ID, 5, 6, 7, EOS_ID], [BOS_ID, 8, EOS_ID, PAD_ID, PAD_ID]])
    tgt_in, labels = shift_right(tgt)
    assert tgt_in.tolist() == [[BOS_ID, 5, 6, 7], [BOS_ID, 8, EOS_ID, PAD_ID]]
    assert labels.tolist() == [[5, 6, 7, EOS_ID], [8, EOS_ID, PAD_ID, PAD_ID]]
    log_p = model(src, tgt_in).log_softmax(-1)
    picked = [-log_p[b, t, labels[b, t]] for b in range(2) for t in range(4) if labels[b, t] != PAD_ID]
    expected = torch.stack(picked).mean()  # 6 real labels; the 2 pads are left out
    torch.testing.assert_close(teacher_forcing_loss(model, src, tgt), expected)


def test_later_target_tokens_do_not_change_earlier_outputs_but_the_source_does(model) -> None:
    src, tgt_in = random_ids((1, 7), SRC_VOCAB), random_ids((1, 6), TGT_VOCAB)
    before = model(src, tgt_in)
    for t in range(5):
        changed = tgt_in.clone()
        changed[0, t + 1:] = (changed[0, t + 1:] - 4 + 1) % (TGT_VOCAB - 4) + 4  # every token after t, altered
        after = model(src, changed)
        torch.testing.assert_close(after[:, :t + 1], before[:, :t + 1], atol=1e-5, rtol=0)
        assert not torch.allclose(after[:, t + 1:], before[:, t + 1:], atol=1e-4)
    other_src = src.clone()
    other_src[0, -1] = (other_src[0, -1] - 4 + 1) % (SRC_VOCAB - 4) + 4
    moved = (model(other_src, tgt_in) - before).abs().amax(-1)[0]  # (tgt_len,)
    assert (moved > 1e-4).all()  # cross-attention lets every target position read the whole source


def test_padding_the_source_changes_nothing(model) -> None:
    src, tgt_in = random_ids((1, 5), SRC_VOCAB), random_ids((1, 4), TGT_VOCAB)
    alone = model(src, tgt_in)
    padded = torch.cat([src, torch.full((1, 3), PAD_ID)], dim=1)
    torch.testing.assert_close(model(padded, tgt_in), alone, atol=1e-5, rtol=0)
    batch = torch.cat([padded, random_ids((1, 8), SRC_VOCAB, seed=2)])  # beside a longer source, unpadded
    torch.testing.assert_close(model(batch, tgt_in.expand(2, -1))[:1], alone, atol=1e-5, rtol=0)


def up_to_eos(row: list[int]) -> list[int]:
    """The tokens a decoder wrote: up to its first <eos> (included); greedy_decode pads after it."""
    return row[:row.index(EOS_ID) + 1] if EOS_ID in row else row


def test_greedy_decoding_is_the_argmax_step_by_step(model) -> None:
    src = random_ids((3, 6), SRC_VOCAB)
    out = greedy_decode(model, src)
    for row in range(3):
        ys = [BOS_ID]
        with torch.no_grad():
            while len(ys) <= model.config.max_tgt_len and ys[-1] != EOS_ID:
                ys.append(int(model(src[row:row + 1], torch.tensor([ys]))[0, -1].argmax()))
        written = up_to_eos(out[row].tolist())
        assert written == ys[1:]
        assert all(t == PAD_ID for t in out[row, len(written):])


def peaked_model(seed: int) -> EncoderDecoder:
    """A small model whose output distributions are far from uniform, so that sequences differ clearly."""
    model = small_model(seed)
    with torch.no_grad():
        model.lm_head.weight.mul_(8)
        model.lm_head.bias.normal_(0, 2)
    return model


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_width_one_is_greedy(seed) -> None:
    model = peaked_model(seed)
    for row in random_ids((4, 6), SRC_VOCAB, seed=seed):
        greedy = up_to_eos(greedy_decode(model, row[None])[0].tolist())
        (best,) = beam_search(model, row, beam_width=1)
        assert best.tokens == greedy


def test_length_normalisation() -> None:
    assert length_normalised(-2.0, 4, 0.0) == -2.0  # the plain sum
    assert length_normalised(-2.0, 4, 1.0) == -0.5  # per token
    assert length_normalised(-2.0, 4, 0.5) == -1.0


def all_outputs(vocab: int, steps: int):
    """Every output a decoder can write in at most `steps` tokens: ends in <eos>, or is `steps` long."""
    for length in range(1, steps + 1):
        for tokens in itertools.product([t for t in range(vocab) if t != EOS_ID], repeat=length - 1):
            yield [*tokens, EOS_ID]
            if length == steps:
                yield from ([*tokens, t] for t in range(vocab) if t != EOS_ID)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_a_wide_beam_finds_the_brute_force_best_output(alpha) -> None:
    vocab, steps = 5, 3
    model = small_model(3, tgt_vocab=vocab, max_tgt_len=steps)  # <pad> <bos> <eos> <unk> and one more token
    torch.nn.init.normal_(model.lm_head.weight, std=3.0)  # far from uniform: the outputs' scores differ clearly
    for seed in range(6):
        src = random_ids((1, 6), SRC_VOCAB, seed=seed)
        scored = [(length_normalised(sequence_log_prob(model, src, out), len(out), alpha), out)
                  for out in all_outputs(vocab, steps)]
        assert len(scored) == 1 + 4 + 4 * 4 * 5
        best_score, best = max(scored)
        found = beam_search(model, src, beam_width=len(scored), alpha=alpha)
        assert found[0].tokens == best
        assert found[0].score == pytest.approx(best_score, abs=1e-5)
        assert found[0].log_prob == pytest.approx(sequence_log_prob(model, src, best), abs=1e-5)
        narrow = beam_search(model, src, beam_width=2, alpha=alpha)[0]
        assert narrow.score <= best_score + 1e-6


class TableModel:
    """A stand-in for EncoderDecoder whose next-token probabilities come from a table: written prefix → {token: p}
    (a prefix not in the table writes <eos>). Only what greedy_decode and beam_search call."""

    def __init__(self, table: dict[tuple[int, ...], dict[int, float]], vocab: int = 6, steps: int = 3) -> None:
        self.table, self.vocab = table, vocab
        self.config = EncoderDecoderConfig(SRC_VOCAB, vocab, max_tgt_len=steps)

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, None]:
        return torch.zeros(src.shape[0], src.shape[1], 1), None

    def decode(self, ys: torch.Tensor, memory: torch.Tensor, mask: None) -> torch.Tensor:
        rows = []
        for prefix in ys[:, 1:].tolist():
            probs = torch.full((self.vocab,), 1e-12)
            for token, p in self.table.get(tuple(prefix), {EOS_ID: 1.0}).items():
                probs[token] = p
            rows.append(probs.log())
        return torch.stack(rows)[:, None].expand(-1, ys.shape[1], -1)  # (beams, len, vocab); the last is read


A, B = 4, 5


def test_beam_search_finds_the_likely_output_that_greedy_misses() -> None:
    # greedy takes A (0.6), then <eos> (0.5): 0.30 in all; B (0.4) then <eos> (0.99) is 0.396
    model = TableModel({(): {A: 0.6, B: 0.4}, (A,): {EOS_ID: 0.5, A: 0.45, B: 0.05}, (B,): {EOS_ID: 0.99, B: 0.01}})
    src = torch.tensor([[5, 6]])
    assert up_to_eos(greedy_decode(model, src)[0].tolist()) == [A, EOS_ID]
    assert beam_search(model, src, beam_width=1, alpha=0.0)[0].tokens == [A, EOS_ID]
    best = beam_search(model, src, beam_width=2, alpha=0.0)[0]
    assert best.tokens == [B, EOS_ID]
    assert best.log_prob == pytest.approx(float(torch.tensor(0.4 * 0.99).log()))


def test_length_normalisation_changes_the_winner_and_the_search_waits_for_it() -> None:
    # <eos> at once: log 0.5 = -0.69 for 1 token; A A <eos>: log(0.5 · 0.99 · 0.99) = -0.71 for 3 tokens
    model = TableModel({(): {EOS_ID: 0.5, A: 0.5}, (A,): {A: 0.99, EOS_ID: 0.01}, (A, A): {EOS_ID: 0.99, A: 0.01}})
    src = torch.tensor([[5, 6]])
    assert beam_search(model, src, beam_width=2, alpha=0.0)[0].tokens == [EOS_ID]  # the raw sum prefers short
    best = beam_search(model, src, beam_width=2, alpha=1.0)[0]  # per token, the longer output wins
    assert best.tokens == [A, A, EOS_ID]
    assert best.score == pytest.approx(float(torch.tensor(0.5 * 0.99 * 0.99).log()) / 3)


def test_cross_attention_maps(model) -> None:
    src = random_ids((1, 7), SRC_VOCAB)
    tokens = [5, 6, 7, EOS_ID]
    model.train()
    maps = cross_attention(model, src[0], tokens)
    assert model.training  # the mode is put back
    assert all(not block.cross_attn.record_weights for block in model.decoder)
    assert maps.shape == (2, 2, 4, 7)  # (layers, heads, target tokens, source tokens)
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 2, 4))
    model.eval()
    with pytest.raises(ValueError, match="tokens is empty"):
        cross_attention(model, src, [])


def test_cross_attention_never_looks_at_source_padding(model) -> None:
    src = torch.cat([random_ids((1, 4), SRC_VOCAB), torch.full((1, 2), PAD_ID)], dim=1)
    maps = cross_attention(model, src, [5, EOS_ID])
    assert (maps[..., 4:] == 0).all()


@pytest.fixture(scope="module")
def trained():
    """The smoke preset, trained for real on a small dataset (a few seconds)."""
    preset = get_preset("encoder_decoder", "smoke")
    torch.manual_seed(0)
    data = make_date_translation(n_train=2000, n_heldout=100, seed=0)
    model = EncoderDecoder(EncoderDecoderConfig(len(data.source), len(data.target), **preset.shape))
    plot, seen = LossPlot(), []
    history = train_encoder_decoder(model, data, preset.train, progress=False,
                                    on_eval=lambda h: (seen.append(h.step), plot.update(h)))
    return model, data, history, seen, plot


def test_smoke_training_lowers_the_heldout_loss(trained) -> None:
    model, data, history, seen, plot = trained
    assert isinstance(history, History) and history.step == get_preset("encoder_decoder", "smoke").train.steps
    assert seen == history.eval_steps == [50, 100, 150]
    assert history.eval_val[-1] < 0.3 * history.eval_val[0]
    assert list(plot.figure.data[2].y) == history.eval_val  # LossPlot().update draws it
    assert not model.training


def test_evaluate_scores_greedy_and_beam_outputs(trained) -> None:
    model, data, *_ = trained
    greedy = evaluate(model, data.heldout, data.source, data.target)
    beam = evaluate(model, data.heldout, data.source, data.target, beam_width=3)
    for scores in (greedy, beam):
        assert len(scores.predictions) == 100
        right = sum(p == pair.target for p, pair in zip(scores.predictions, data.heldout))
        assert scores.exact_match == right / 100
        assert scores.exact_match * 100 <= scores.bleu <= 100
    assert greedy.exact_match >= 0.5  # smoke-trained: about 0.9
    src = collate(data.heldout[:8], data.source, data.target).src
    decoded = ["".join(data.target.decode(row)) for row in greedy_decode(model, src)]
    assert decoded == greedy.predictions[:8]


@pytest.mark.parametrize("src, error, match", [
    (torch.zeros(1, 0, dtype=torch.long), ValueError, r"src is empty \(shape \(1, 0\)\): a source needs at least"),
    (torch.full((1, 11), 5), ValueError, r"src has 11 tokens, more than the 10 this model was built for"),
    (torch.full((1, 4), 5.0), ValueError, r"src must be \(batch, src_len\) token ids of dtype torch.long, got "
                                          r"shape \(1, 4\) and dtype torch.float32"),
    (torch.full((4,), 5), ValueError, r"src must be \(batch, src_len\) token ids"),
    (torch.tensor([[5, 99]]), ValueError, r"src holds ids from 5 to 99, outside the vocabulary's 0..19"),
    (torch.tensor([[5, 6], [PAD_ID, PAD_ID]]), ValueError, r"src rows \[1\] are all padding"),
    ([[5, 6]], TypeError, "src must be a tensor of token ids, got list"),
])
def test_bad_sources_are_clear_errors(model, src, error, match) -> None:
    with pytest.raises(error, match=match):
        greedy_decode(model, src)


def test_bad_decoding_arguments_are_clear_errors(model) -> None:
    src = random_ids((1, 4), SRC_VOCAB)
    with pytest.raises(ValueError, match=r"beam_width must be a positive int \(1 is greedy decoding\), got 0"):
        beam_search(model, src, beam_width=0)
    with pytest.raises(ValueError, match="alpha .* must be a number >= 0, got -1"):
        beam_search(model, src, alpha=-1)
    with pytest.raises(ValueError, match=r"beam_search decodes one source at a time: .* got shape \(2, 4\)"):
        beam_search(model, random_ids((2, 4), SRC_VOCAB))
    with pytest.raises(ValueError, match="max_len=7 is more than the 6 tokens this decoder can write"):
        greedy_decode(model, src, max_len=7)
    with pytest.raises(ValueError, match=r"tgt must be \(batch, len >= 2\) ids starting with <bos>, got \(1, 1\)"):
        teacher_forcing_loss(model, src, torch.tensor([[BOS_ID]]))
    with pytest.raises(ValueError, match="tgt has 7 tokens, more than the 6"):
        model(src, random_ids((1, 7), TGT_VOCAB))


def test_unknown_words_in_a_sentence_are_named() -> None:
    data = make_date_translation(n_train=10, n_heldout=1)
    assert encode_source("march first nineteen ninety", data.source).shape == (1, 4)
    with pytest.raises(ValueError, match=r"unknown source token\(s\) \['1990'\]"):
        encode_source("march first 1990", data.source)


@pytest.mark.parametrize("kwargs, match", [
    (dict(d_model=30, n_head=4), "d_model=30 is not divisible by n_head=4"),
    (dict(d_model=15, n_head=3), "d_model=15 must be even"),
    (dict(n_decoder_layers=0), "n_decoder_layers must be a positive int, got 0"),
    (dict(dropout=1.0), r"dropout must lie in \[0, 1\), got 1.0"),
])
def test_bad_configs_are_clear_errors(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        EncoderDecoderConfig(SRC_VOCAB, TGT_VOCAB, **kwargs)


def test_a_padded_target_has_the_loss_of_the_unpadded_one(model) -> None:
    src = random_ids((1, 4), SRC_VOCAB)
    padded = torch.tensor([[BOS_ID, 5, EOS_ID, PAD_ID, PAD_ID]])
    torch.testing.assert_close(teacher_forcing_loss(model, src, padded),
                               teacher_forcing_loss(model, src, padded[:, :3]))
