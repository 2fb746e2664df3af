"""Every public entry point, walked with wrong shapes and dtypes, empty and oversized inputs, NaN / inf, unknown
characters, out-of-range values and missing or malformed files: each answers with one clear, specific error.

A case is (what is wrong, the call, the exception type, words its message must hold). The count of cases is the
figure the reliability issue asks for: `pytest tests/test_bad_input.py -q` prints it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from labkit import (attention_stats, checkpoint, corpus, data, device, encoder_decoder, finetune_data, finetune_metrics,
                    generation, loop, masks, positional_workbench, presets, pretraining_data, train, translation_data)
from labkit.attention import MultiHeadAttention, fast_attention, naive_attention, softmax_saturation, split_heads
from labkit.compare import assert_close
from labkit.exercises import check
from labkit.models import GPTConfig, TinyGPT
from labkit.positional import RotaryEmbedding, alibi_bias, apply_rope, sinusoidal_table
from labkit.viz.attention_explorer import AttentionExplorer
from labkit.viz.attention_widgets import AttentionHeatmapWidget
from labkit.viz.finetune_widgets import confusion_figure, entity_html
from labkit.viz.training import LossPlot, PretrainingPlot

NAN, INF = float("nan"), float("inf")
TOKENIZER = corpus.CharTokenizer.from_text("hello world")
MODEL = TinyGPT(GPTConfig(vocab_size=TOKENIZER.vocab_size, block_size=16, n_layer=1, n_head=1, d_model=8)).eval()
TEXT_CORPUS = corpus.CharCorpus.from_text("hello world " * 40)
SOURCE, TARGET = translation_data.source_vocab(), translation_data.target_vocab()
SEQ2SEQ = encoder_decoder.EncoderDecoder(encoder_decoder.EncoderDecoderConfig(src_vocab_size=len(SOURCE.tokens),
                                                       tgt_vocab_size=len(TARGET.tokens)))
Q = torch.randn(1, 2, 3, 4)


def _ids(*shape: int) -> torch.Tensor:
    return torch.zeros(*shape, dtype=torch.long)


def _no_special(*shape: int) -> torch.Tensor:
    return torch.zeros(*shape, dtype=torch.bool)


Case = tuple[str, Callable[[], Any], type[BaseException], str]

CASES: list[Case] = [
    # masks
    ("causal_mask of length 0", lambda: masks.causal_mask(0), ValueError, "seq_q must be a positive int, got 0"),
    ("causal_mask of a float length", lambda: masks.causal_mask(2.5), ValueError, "got 2.5"),
    ("padding_mask with float lengths", lambda: masks.padding_mask([1.5], 3), ValueError, "1-D sequence of ints"),
    ("padding_mask with a length beyond seq_len", lambda: masks.padding_mask([4], 3), ValueError,
     "every length must lie in 1..seq_len=3"),
    ("padding_mask with a length of 0", lambda: masks.padding_mask([0, 2], 3), ValueError, "got [0, 2]"),
    ("an int 0/1 mask made additive", lambda: masks.additive_mask(torch.ones(2, 2, dtype=torch.long)), TypeError,
     "use mask.bool()"),
    ("a mask that does not broadcast", lambda: masks.check_mask(torch.ones(3, 3, dtype=torch.bool), (1, 1, 2, 2)),
     ValueError, "does not broadcast"),
    # attention and positions
    ("NaN queries", lambda: naive_attention(torch.full_like(Q, NAN), Q, Q), ValueError, "q holds 24 NaN or inf"),
    ("inf values", lambda: naive_attention(Q, Q, Q.clone().fill_(INF)), ValueError, "v holds 24 NaN or inf"),
    ("q and k of different widths", lambda: naive_attention(Q, torch.randn(1, 2, 3, 5), Q), ValueError,
     "same feature size d_k"),
    ("integer q, k, v", lambda: fast_attention(Q.long(), Q.long(), Q.long()), TypeError, "floating-point tensor"),
    ("heads that do not divide d_model", lambda: split_heads(torch.randn(2, 3, 10), 3), ValueError,
     "d_model=10 is not divisible by n_heads=3"),
    ("a rotary table of the wrong width", lambda: MultiHeadAttention(8, 2, rotary=RotaryEmbedding(2)), ValueError,
     "over d_head = d_model / n_heads = 4, got d_head=2"),
    ("RoPE in cross-attention",
     lambda: MultiHeadAttention(8, 2, rotary=RotaryEmbedding(4))(torch.randn(1, 3, 8), torch.randn(1, 3, 8)),
     ValueError, "self-attention only"),
    ("an input of the wrong width", lambda: MultiHeadAttention(8, 2)(torch.randn(1, 3, 6)), ValueError,
     "got (1, 3, 6)"),
    ("ALiBi for 0 heads", lambda: alibi_bias(0, 3), ValueError, "n_heads must be a positive int, got 0"),
    ("a sinusoidal table of odd width", lambda: sinusoidal_table(4, 5), ValueError, "must be even, got 5"),
    ("RoPE on an odd head width", lambda: apply_rope(torch.randn(1, 1, 3, 5)), ValueError, "must be even, got 5"),
    ("an unknown position scheme", lambda: GPTConfig(vocab_size=5, position="relative"), ValueError,
     "got 'relative'"),
    ("RoPE with an odd head width", lambda: GPTConfig(vocab_size=5, d_model=12, n_head=4, position="rope"),
     ValueError, "got 12 / 4 = 3"),
    ("a token id outside the model's vocabulary", lambda: MODEL(torch.tensor([[99]])), ValueError,
     "outside the vocabulary 0..7"),
    ("a negative token id", lambda: MODEL(torch.tensor([[-1]])), ValueError, "from -1 to -1"),
    ("an unknown variant in the workbench", lambda: positional_workbench.train_variant("relative", TEXT_CORPUS),
     ValueError, "got 'relative'"),
    # the encoder–decoder and its task
    ("an unknown source word", lambda: encoder_decoder.encode_source("the blorp of march", SOURCE), ValueError,
     "unknown source token(s) ['blorp']"),
    ("an empty source", lambda: encoder_decoder.greedy_decode(SEQ2SEQ, _ids(1, 0)), ValueError, "src is empty"),
    ("a source longer than the model reads", lambda: encoder_decoder.greedy_decode(SEQ2SEQ, _ids(1, 40)), ValueError,
     "more than the 16 this model was built for"),
    ("a float source", lambda: encoder_decoder.greedy_decode(SEQ2SEQ, torch.zeros(1, 3)), ValueError,
     "dtype torch.long"),
    ("a beam of width 0",
     lambda: encoder_decoder.beam_search(SEQ2SEQ, torch.ones(1, 3, dtype=torch.long), beam_width=0),
     ValueError, "beam_width must be a positive int"),
    ("BLEU over lists of different lengths", lambda: translation_data.bleu(["a"], ["a", "b"]), ValueError,
     "got 1 and 2"),
    ("no training pairs", lambda: translation_data.make_date_translation(n_train=0), ValueError,
     "n_train must be a positive int"),
    # attention statistics and the explorer
    ("a model that returned no attentions", lambda: attention_stats.stack_attentions(None, ["a"]), ValueError,
     "attentions=True"),
    ("layers of different shapes",
     lambda: attention_stats.stack_attentions([torch.rand(1, 2, 3, 3), torch.rand(1, 2, 4, 4)], list("abc")),
     ValueError, "all the same shape"),
    ("mean distance of cross-attention", lambda: attention_stats.mean_distance(torch.rand(1, 2, 3, 5)), ValueError,
     "self-attention only"),
    ("explorer tokens that do not match", lambda: AttentionExplorer([torch.rand(1, 2, 3, 3)], ["a", "b"]),
     ValueError, "2 tokens but the attention covers 3 positions"),
    ("an explorer window of 0 tokens",
     lambda: AttentionExplorer([torch.rand(1, 2, 3, 3)], list("abc"), max_tokens=0), ValueError,
     "max_tokens must be a positive int"),
    # exercises
    ("an exercise that does not exist", lambda: check("nope", lambda: 0), KeyError, "no exercise named 'nope'"),
    ("an answer that is not a function", lambda: check("causal_mask", 3), TypeError, "needs the function you wrote"),
    # the character tokenizer and corpus
    ("characters outside the vocabulary", lambda: TOKENIZER.encode("hex!"), ValueError,
     "'x' at position 2, '!' at position 3"),
    ("a non-str text", lambda: TOKENIZER.encode(5), TypeError, "text must be a str, got int"),
    ("an id beyond the vocabulary", lambda: TOKENIZER.decode([100]), ValueError, "got 100 at position 0"),
    ("a negative id", lambda: TOKENIZER.decode([-1]), ValueError, "got -1 at position 0"),
    ("float ids", lambda: TOKENIZER.decode(torch.tensor([1.0])), TypeError, "integer tensor"),
    ("a vocabulary with a repeat", lambda: corpus.CharTokenizer("aab"), ValueError, "repeats ['a']"),
    ("an empty vocabulary", lambda: corpus.CharTokenizer(""), ValueError, "chars is empty"),
    ("an empty text", lambda: corpus.CharCorpus.from_text(""), ValueError, "text is empty"),
    ("a validation fraction of 1.5", lambda: corpus.train_val_split(torch.arange(10), 1.5), ValueError,
     "strictly between 0 and 1, got 1.5"),
    ("too few tokens to split", lambda: corpus.train_val_split(torch.arange(1), 0.1), ValueError, "too few"),
    ("a window longer than the text", lambda: corpus.random_batch(torch.arange(5), 2, 10), ValueError,
     "block_size + 1 = 11"),
    # the model
    ("float token ids", lambda: MODEL(torch.zeros(1, 3)), ValueError, "dtype long"),
    ("1-D token ids", lambda: MODEL(_ids(3)), ValueError, "got shape (3,)"),
    ("a sequence longer than the context", lambda: MODEL(_ids(1, 17)), ValueError, "exceeds the model's block_size=16"),
    ("an empty sequence", lambda: MODEL(_ids(1, 0)), ValueError, "empty sequence"),
    ("a vocabulary of 0", lambda: GPTConfig(vocab_size=0), ValueError, "vocab_size must be a positive int, got 0"),
    ("d_model not divisible by the heads", lambda: GPTConfig(vocab_size=5, d_model=10, n_head=3), ValueError,
     "not divisible by n_head=3"),
    ("dropout of 1", lambda: GPTConfig(vocab_size=5, dropout=1.0), ValueError, "dropout must lie in [0, 1)"),
    # sampling and generation
    ("NaN logits", lambda: generation.filter_logits(torch.full((1, 5), NAN)), ValueError, "5 NaN or +inf value(s)"),
    ("+inf logits", lambda: generation.filter_logits(torch.tensor([[INF, 0.0]])), ValueError,
     "first at index (0, 0)"),
    ("logits at -inf for every token", lambda: generation.filter_logits(torch.full((2, 3), -INF)), ValueError,
     "-inf for every token"),
    ("integer logits", lambda: generation.filter_logits(_ids(1, 3)), TypeError, "floating-point tensor"),
    ("0-d logits", lambda: generation.filter_logits(torch.tensor(1.0)), ValueError, "got shape ()"),
    ("temperature 0", lambda: generation.filter_logits(torch.zeros(1, 3), temperature=0), ValueError,
     "use greedy=True"),
    ("temperature NaN", lambda: generation.filter_logits(torch.zeros(1, 3), temperature=NAN), ValueError,
     "temperature must be a number > 0"),
    ("top_k 0", lambda: generation.filter_logits(torch.zeros(1, 3), top_k=0), ValueError, "top_k must be None or"),
    ("top_p 1.5", lambda: generation.filter_logits(torch.zeros(1, 3), top_p=1.5), ValueError, "(0, 1]"),
    ("a repetition penalty without the tokens so far",
     lambda: generation.filter_logits(torch.zeros(1, 3), repetition_penalty=1.2), ValueError, "needs previous="),
    ("an empty prompt", lambda: generation.generate(MODEL, _ids(1, 0), 3, block_size=16), ValueError,
     "empty prompt"),
    ("a float prompt", lambda: generation.generate(MODEL, torch.zeros(1, 2), 3, block_size=16), TypeError,
     "long tensor of token ids"),
    ("a prompt id outside the vocabulary", lambda: generation.generate(MODEL, torch.tensor([[99]]), 3, block_size=16),
     ValueError, "outside the model's vocabulary 0..7"),
    ("a negative number of new tokens", lambda: generation.generate(MODEL, _ids(1, 1), -1, block_size=16), ValueError,
     "max_new_tokens must be an int >= 0"),
    ("an empty text prompt", lambda: generation.sample_text(MODEL, TOKENIZER, "", 3, 16), ValueError,
     "prompt is empty"),
    ("a text prompt with unknown characters", lambda: generation.sample_text(MODEL, TOKENIZER, "zz", 3, 16),
     ValueError, "outside this tokenizer's vocabulary"),
    ("a text prompt longer than the context", lambda: generation.sample_text(MODEL, TOKENIZER, "hello " * 4, 3, 16),
     ValueError, "more than the model's block_size=16"),
    # training
    ("0 steps", lambda: presets.TrainConfig(steps=0), ValueError, "steps must be a positive int, got 0"),
    ("a NaN learning rate", lambda: presets.TrainConfig(lr=NAN), ValueError, "0 <= min_lr <= lr"),
    ("a negative learning rate", lambda: presets.TrainConfig(lr=-1.0, min_lr=-2.0), ValueError,
     "0 <= min_lr <= lr"),
    ("0 evaluation batches", lambda: presets.TrainConfig(eval_batches=0), ValueError, "eval_batches"),
    ("a negative time limit", lambda: presets.TrainConfig(time_limit_s=-1), ValueError,
     "time_limit_s must be None"),
    ("gradient clipping at 0", lambda: presets.TrainConfig(grad_clip=0), ValueError, "grad_clip > 0"),
    ("an unknown optimizer", lambda: presets.TrainConfig(optimizer="sgd"), ValueError,
     "TrainConfig.optimizer must be one of ('adamw', 'muon'), got 'sgd'"),
    ("Muon for a model without blocks", lambda: loop.make_optimizer(torch.nn.Linear(2, 2), presets.TrainConfig(
        optimizer="muon")), ValueError, "Linear has no `blocks`: use optimizer='adamw'"),
    ("a negative step", lambda: loop.lr_at(-5, presets.TrainConfig()), ValueError, "step must be an int >= 0"),
    # checkpoints and files
    ("a missing checkpoint", lambda: checkpoint.load_checkpoint("/nonexistent/run.safetensors"), FileNotFoundError,
     "no checkpoint at /nonexistent/run.safetensors"),
    ("a folder instead of a checkpoint", lambda: checkpoint.load_checkpoint("/"), FileNotFoundError,
     "no checkpoint at /"),
    ("a missing trained model", lambda: train.load_trained("/nonexistent/run.safetensors"), FileNotFoundError,
     "no checkpoint at"),
    # devices and seeds
    ("an unknown device", lambda: device.pick_device("tpu"), ValueError, "'tpu' is not one of cuda, mps, cpu"),
    ("a negative seed", lambda: device.set_seed(-1), ValueError, "seed must be a non-negative int"),
    ("a bool seed", lambda: device.set_seed(True), ValueError, "got True"),
    # numeric checks
    ("a NaN result", lambda: assert_close("x", torch.tensor([NAN]), torch.tensor([0.0])), AssertionError,
     "max |difference| = nan"),
    ("shapes that differ", lambda: assert_close("x", torch.zeros(2), torch.zeros(3)), AssertionError,
     "shapes differ: (2,) vs (3,)"),
    # datasets
    ("an unknown dataset", lambda: data.load_data("imdb"), ValueError, "got 'imdb'"),
    ("a path that does not hold the dataset", lambda: data.load_data("sst2", path="/nonexistent"),
     FileNotFoundError, "does not hold sst2"),
    # fine-tuning
    ("no scored position", lambda: finetune_metrics.accuracy([], []), ValueError, "holds no scored position"),
    ("predictions and labels of different lengths", lambda: finetune_metrics.accuracy([1, 0], [1]), ValueError,
     "shaped like labels"),
    ("a word without a label", lambda: finetune_data.align_labels([None, 0, 1, 2, None], [1, 2]), ValueError,
     "word id 2 has no label"),
    ("tag lists of different lengths", lambda: finetune_metrics.entity_scores([["O", "B-PER"]], [["O"]]), ValueError,
     "has 2 tags but predicted_tag_lists[0] has 1"),
    ("a tag that is not IOB2", lambda: finetune_metrics.entity_scores([["O", "X-PER"]], [["O", "O"]]), ValueError,
     "holds the tag 'X-PER'"),
    ("a predicted class beyond n_classes",
     lambda: finetune_metrics.confusion_matrix(torch.tensor([5]), torch.tensor([0]), 2), ValueError, "holds class 5"),
    # pretraining data
    ("float input ids to mask", lambda: pretraining_data.mask_tokens(torch.zeros(1, 4), _no_special(1, 4), mask_id=1,
                                                                    vocab_size=10), TypeError, "integer tensor"),
    ("a special-tokens mask of another shape",
     lambda: pretraining_data.mask_tokens(_ids(1, 4), _no_special(1, 3), mask_id=1, vocab_size=10), ValueError,
     "must have input_ids' shape (1, 4)"),
    ("a masking probability of 0",
     lambda: pretraining_data.mask_tokens(_ids(1, 4), _no_special(1, 4), mask_id=1, vocab_size=10, mask_prob=0),
     ValueError, "mask_prob must lie strictly between 0 and 1"),
    ("a [MASK] id outside the vocabulary",
     lambda: pretraining_data.mask_tokens(_ids(1, 4), _no_special(1, 4), mask_id=10, vocab_size=10), ValueError,
     "mask_id must be an int in 0..9"),
    ("no documents", lambda: pretraining_data.make_nsp_pairs([], seed=0), ValueError, "documents is empty"),
    ("one document", lambda: pretraining_data.make_nsp_pairs([["a.", "b."]], seed=0), ValueError,
     "at least 2 documents"),
    ("an empty document", lambda: pretraining_data.make_nsp_pairs([["a."], []], seed=0), ValueError,
     "documents[1] must be a non-empty list"),
    # views: bad values are refused where the view is built
    ("attention weights with NaN",
     lambda: AttentionHeatmapWidget(torch.full((1, 3, 3), NAN), list("abc")), ValueError, "9 NaN or inf"),
    ("tokens that do not match the weights",
     lambda: AttentionHeatmapWidget(torch.rand(2, 3, 3), ["a", "b"], list("abc")), ValueError,
     "2 query and 3 key tokens do not match"),
    ("a softmax demo with no keys", lambda: softmax_saturation(8, n_keys=0), ValueError, "n_keys must be a positive"),
    ("a softmax demo with d_k 0", lambda: softmax_saturation(0), ValueError, "d_k must be a positive int"),
    ("a confusion matrix with the wrong label count", lambda: confusion_figure(torch.zeros(2, 2), ["a"]), ValueError,
     "n = len(label_names) = 1"),
    ("an entity tag that is not a string", lambda: entity_html([("a", 5)]), TypeError, "got ('a', 5)"),
    ("a loss plot smoothed over 0 steps", lambda: LossPlot(smoothing=0), ValueError, "smoothing must be a positive"),
    ("a pretraining plot smoothed over -1 steps", lambda: PretrainingPlot(smoothing=-1), ValueError,
     "smoothing must be a positive"),
]


@pytest.mark.parametrize("what, call, error, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_clear_error(what: str, call: Callable[[], Any], error: type[BaseException],
                                        words: str) -> None:
    with pytest.raises(error) as caught:
        call()
    assert words in str(caught.value), f"{what}: the message {str(caught.value)!r} does not say {words!r}"


def test_a_malformed_data_file_is_named_with_its_line(tmp_path: Path) -> None:
    folder = tmp_path / "sst2"
    folder.mkdir()
    (folder / "train.tsv").write_text("sentence\tlabel\na fine film\tpositive\n")
    (folder / "dev.tsv").write_text("sentence\tlabel\na fine film\t1\n")
    with pytest.raises(ValueError, match=r"train\.tsv, line 2: label must be 0 \(negative\) or 1 \(positive\), "
                                         r"got 'positive'"):
        data.load_data("sst2", path=tmp_path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"\x08\x00\x00\x00\x00\x00\x00\x00{}"])
def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "run.safetensors"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a readable safetensors checkpoint"):
        checkpoint.load_checkpoint(path)


def test_a_loss_that_becomes_nan_stops_training_before_it_reaches_the_weights(tmp_path: Path) -> None:
    model = TinyGPT(GPTConfig(vocab_size=TEXT_CORPUS.tokenizer.vocab_size, block_size=8, n_layer=1, n_head=1,
                              d_model=8))
    config = presets.TrainConfig(steps=6, batch_size=2, eval_every=2, eval_batches=1, warmup_steps=0)
    calls = {"n": 0}
    original = model.lm_head.forward

    def head(x: torch.Tensor) -> torch.Tensor:
        # forward passes: steps 0-1, evaluation at step 2 (train + val), steps 2-3, evaluation at 4, then step 4:
        # the 9th pass, whose logits turn NaN
        calls["n"] += 1
        out = original(x)
        return out * NAN if calls["n"] == 9 else out

    model.lm_head.forward = head
    path = tmp_path / "run.safetensors"
    with pytest.raises(FloatingPointError, match=r"became nan at step 4 .* the checkpoint .* holds step 4"):
        train.train(model, TEXT_CORPUS, config, checkpoint=path, progress=False)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert checkpoint.load_checkpoint(path)["meta"]["history"]["step"] == 4
