"""Pretraining a BERT: the masked-LM and next-sentence objectives, their training loop, and what they measure.

A batch is a dict of tensors (what `labkit.pretraining_data` yields):

* `input_ids`, `token_type_ids`: (batch, seq) long; `attention_mask`: (batch, seq) bool, True = real token;
* `mlm_labels`: (batch, seq) long, the original token where the input was masked, -100 everywhere else;
* `nsp_labels`: (batch,) long, 0 = B follows A (IsNext), 1 = B is random (NotNext), -100 = no sentence pair.

The models: `labkit.models.TinyBERT`, or `EncoderWithMLMHead` (a pretrained Hugging Face encoder, frozen, with a new
masked-LM head). Both map (input_ids, token_type_ids, attention_mask) to hidden states (batch, seq, d_model) and
carry `mlm_head` and `nsp_head`, so `pretrain`, `evaluate` and `fill_mask` take either.
"""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.checkpoint import load_checkpoint, restore_model
from labkit.loop import History, autocast, batch_generator, run
from labkit.models import BertConfig, MaskedLMHead, NSPHead, TinyBERT
from labkit.modules import IGNORE_INDEX, eval_mode
from labkit.presets import TrainConfig, preset_for

__all__ = ["NSP_CHANCE", "BERT_SPECIAL_IDS", "pretraining_loss", "evaluate", "unigram_baseline",
           "PretrainHistory", "pretrain", "load_pretrained", "load_or_pretrain", "fill_mask", "EncoderWithMLMHead"]

NSP_CHANCE = 0.5  # NSP accuracy of a coin flip (pairs are IsNext or NotNext half the time each)
BERT_SPECIAL_IDS = (0, 100, 101, 102, 103)  # [PAD] [UNK] [CLS] [SEP] [MASK] in the uncased WordPiece vocabulary


def _outputs(model: nn.Module, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """One forward pass, heads on the labelled places only: MLM logits (n_masked, vocab) with their targets
    (n_masked,), NSP logits (n_pairs, 2) with theirs (n_pairs,)."""
    hidden = model(batch["input_ids"], batch.get("token_type_ids"), batch.get("attention_mask"))
    mlm_labels = batch["mlm_labels"]
    masked = mlm_labels != IGNORE_INDEX  # (batch, seq)
    out = {"mlm_logits": model.mlm_head(hidden[masked]).float(), "mlm_targets": mlm_labels[masked]}
    nsp_labels = batch.get("nsp_labels")
    nsp_head = getattr(model, "nsp_head", None)
    if nsp_labels is not None and nsp_head is not None:
        pairs = nsp_labels != IGNORE_INDEX  # (batch,)
        out["nsp_logits"] = nsp_head(hidden[pairs]).float()
        out["nsp_targets"] = nsp_labels[pairs]
    return out


def _cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy; 0 when there is nothing to score (the mean of nothing would be nan)."""
    return F.cross_entropy(logits, targets) if targets.numel() else logits.new_zeros(())


def _step_losses(model: nn.Module, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The training step's losses: the sum to train on, the MLM part, and the NSP part only when the batch has
    sentence pairs (the loop records a part left out as nan, and the progress bar skips it)."""
    out = _outputs(model, batch)
    mlm = _cross_entropy(out["mlm_logits"], out["mlm_targets"])
    if "nsp_logits" not in out or not out["nsp_targets"].numel():
        return {"loss": mlm, "mlm": mlm}
    nsp = _cross_entropy(out["nsp_logits"], out["nsp_targets"])
    return {"loss": mlm + nsp, "mlm": mlm, "nsp": nsp}


def pretraining_loss(model: nn.Module, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """{"loss": mlm + nsp, "mlm": cross-entropy over the masked positions, "nsp": cross-entropy over the sentence
    pairs (0 when the batch has none, or the model no NSP head)}; each a scalar tensor."""
    losses = _step_losses(model, batch)
    return {**losses, "nsp": losses.get("nsp", losses["mlm"].new_zeros(()))}


def _to(batch: Mapping[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[Mapping[str, Tensor]], *, device: torch.device | None = None,
             bf16: bool = True) -> dict[str, float]:
    """Masked-token top-1 / top-5 accuracy and NSP accuracy over fixed held-out batches, in eval mode.

    Returns top1, top5, nsp_accuracy, mlm_loss, nsp_loss (means over all masked tokens / sentence pairs of all
    batches, so batches of different sizes weigh by their content) and the counts masked, pairs. With no sentence
    pairs, nsp_accuracy and nsp_loss are nan.
    """
    device = device or next(model.parameters()).device
    top1 = top5 = masked = 0
    nsp_correct = pairs = 0
    mlm_sum = nsp_sum = 0.0
    with eval_mode(model):
        for batch in batches:
            with autocast(device, bf16):
                out = _outputs(model, _to(batch, device))
            logits, targets = out["mlm_logits"], out["mlm_targets"]
            if targets.numel():
                best = logits.topk(min(5, logits.shape[-1]), dim=-1).indices  # (n_masked, 5), best first
                top1 += (best[:, 0] == targets).sum().item()
                top5 += (best == targets[:, None]).any(-1).sum().item()
                mlm_sum += F.cross_entropy(logits, targets, reduction="sum").item()
                masked += targets.numel()
            if "nsp_logits" in out and out["nsp_targets"].numel():
                nsp_correct += (out["nsp_logits"].argmax(-1) == out["nsp_targets"]).sum().item()
                nsp_sum += F.cross_entropy(out["nsp_logits"], out["nsp_targets"], reduction="sum").item()
                pairs += out["nsp_targets"].numel()
    if not masked:
        raise ValueError("the held-out batches have no masked token (every mlm_labels is -100): nothing to score")
    nan = float("nan")
    return {"top1": top1 / masked, "top5": top5 / masked, "nsp_accuracy": nsp_correct / pairs if pairs else nan,
            "mlm_loss": mlm_sum / masked, "nsp_loss": nsp_sum / pairs if pairs else nan, "masked": masked,
            "pairs": pairs}


def unigram_baseline(token_counts: Tensor | Sequence[int] | Mapping[int, int],
                     batches: Iterable[Mapping[str, Tensor]],
                     special_ids: Iterable[int] = BERT_SPECIAL_IDS) -> dict[str, float]:
    """The accuracy of always guessing the most frequent training tokens, context ignored: top1 (the most frequent
    one), top5 (the five most frequent), over the masked positions of `batches`. Special tokens are never guessed.

    token_counts: counts indexed by token id (a tensor or list), or a mapping id → count. The NSP counterpart is a
    coin flip: `NSP_CHANCE`.
    """
    if isinstance(token_counts, Mapping):
        size = max(token_counts, default=-1) + 1
        counts = torch.zeros(size, dtype=torch.float64)
        for token, n in token_counts.items():
            counts[token] = n
    else:
        counts = torch.as_tensor(token_counts, dtype=torch.float64).clone()
    if counts.dim() != 1 or counts.numel() == 0:
        raise ValueError(f"token_counts must be counts indexed by token id (1-D), got shape {tuple(counts.shape)}")
    for token in special_ids:
        if token < counts.numel():
            counts[token] = -1.0  # below every real count: never guessed
    guesses = counts.topk(min(5, counts.numel())).indices  # most frequent first
    top1 = top5 = masked = 0
    for batch in batches:
        labels = batch["mlm_labels"]
        targets = labels[labels != IGNORE_INDEX]
        top1 += (targets == guesses[0]).sum().item()
        top5 += torch.isin(targets, guesses).sum().item()
        masked += targets.numel()
    if not masked:
        raise ValueError("the batches have no masked token (every mlm_labels is -100): nothing to score")
    return {"top1": top1 / masked, "top5": top5 / masked}


class PretrainHistory(History):
    """What a pretraining run measured (`labkit.loop.History`), under the names notebook 05 reads: per step the MLM
    and NSP losses (NSP nan on a step without sentence pairs), per evaluation the held-out scores of `evaluate`."""

    mlm_loss = property(lambda self: self.losses.get("mlm", []), doc="masked-LM loss, one per step")
    nsp_loss = property(lambda self: self.losses.get("nsp", []), doc="NSP loss, one per step (nan: no pairs)")
    eval_top1 = property(lambda self: self.evals.get("top1", []), doc="held-out masked-token accuracy")
    eval_top5 = property(lambda self: self.evals.get("top5", []), doc="held-out top-5 masked-token accuracy")
    eval_nsp_accuracy = property(lambda self: self.evals.get("nsp_accuracy", []), doc="held-out NSP accuracy")
    eval_mlm_loss = property(lambda self: self.evals.get("mlm_loss", []), doc="held-out masked-LM loss")
    eval_nsp_loss = property(lambda self: self.evals.get("nsp_loss", []), doc="held-out NSP loss")


def _real_tokens(batch: Mapping[str, Tensor]) -> int:
    mask = batch.get("attention_mask")
    return int(mask.sum()) if mask is not None else batch["input_ids"].numel()


def pretrain(model: nn.Module, data, config: TrainConfig, *, device: torch.device | None = None,
             on_eval: Callable[[PretrainHistory], None] | None = None, progress: bool = True,
             checkpoint: str | os.PathLike | None = None, resume: bool = False) -> PretrainHistory:
    """Train `model` on MLM + NSP from `data` (a `labkit.pretraining_data.PretrainingData`: `batch(split,
    batch_size, generator)` and `heldout_batches(batch_size)`) with `labkit.loop.run`; return its PretrainHistory.

    Batch `step` is drawn from a generator seeded by (seed, step). Every `eval_every` steps, at the end, and when
    `time_limit_s` runs out: `evaluate` on the first `eval_batches` held-out batches, a checkpoint (safetensors,
    atomic) when `checkpoint` is given, then `on_eval(history)`. resume=True continues from the checkpoint exactly.
    KeyboardInterrupt stops cleanly and returns the History so far with `interrupted=True`.
    """
    device = device or next(model.parameters()).device
    heldout = list(itertools.islice(data.heldout_batches(config.batch_size), config.eval_batches))
    config_of = getattr(model, "config", None)
    return run(model, config, batch=lambda step: data.batch("train", config.batch_size,
                                                            generator=batch_generator(config.seed, step)),
               loss=_step_losses, tokens=_real_tokens,
               evaluate=lambda: evaluate(model, heldout, device=device, bf16=config.bf16), device=device,
               checkpoint=checkpoint, resume=resume,
               model_config=config_of if isinstance(config_of, BertConfig) else None,
               history_type=PretrainHistory, on_eval=on_eval, progress=progress, desc="pretraining")


def load_pretrained(path: str | os.PathLike, device: torch.device | str | None = None) -> TinyBERT:
    """The TinyBERT of a checkpoint written by `pretrain`, in eval mode."""
    saved = load_checkpoint(path)
    config = saved["meta"].get("model_config")
    if not config or "type_vocab_size" not in config:
        raise ValueError(f"{path} is a labkit checkpoint but not of a TinyBERT pretraining run")
    model = TinyBERT(BertConfig(**config))
    restore_model(model, saved)
    return model.to(device or "cpu").eval()


def load_or_pretrain(checkpoint: str | os.PathLike, tokenizer, device: torch.device | None = None,
                     on_eval: Callable[[PretrainHistory], None] | None = None) -> TinyBERT:
    """Notebook 05's tiny BERT from `checkpoint`, in eval mode; if the file is missing, first pretrain it there with
    notebook 05's preset for the device (`preset_for(device, "pretraining")`: "smoke" in fast mode) on
    `PretrainingData` built with `tokenizer` (the lab's WordPiece, `labkit.assets.load_tokenizer()`), with a progress
    bar. Prints which happened. ValueError when the checkpoint's vocabulary is not the tokenizer's."""
    if not Path(checkpoint).exists():
        from labkit.device import set_seed
        from labkit.pretraining_data import PretrainingData

        preset = preset_for(device or "cpu", "pretraining")
        print(f"{checkpoint} not found: pretraining the '{preset.name}' preset of notebook 05 now")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a few CoNLL pairs are longer than max_len and get cut
            data = PretrainingData.build(tokenizer, max_len=preset.shape["max_len"], seed=preset.train.seed)
        set_seed(preset.train.seed)
        model = TinyBERT(BertConfig(vocab_size=len(tokenizer), **preset.shape)).to(device or "cpu")
        pretrain(model, data, preset.train, device=device, on_eval=on_eval, checkpoint=checkpoint)
    else:
        print(f"notebook 05's tiny BERT from {checkpoint}")
    model = load_pretrained(checkpoint, device)
    if model.config.vocab_size != len(tokenizer):
        raise ValueError(f"{checkpoint} holds a tiny BERT over {model.config.vocab_size} tokens, but the tokenizer has "
                         f"{len(tokenizer)}: pass the tokenizer it was pretrained with (notebook 05: load_tokenizer())")
    return model


def mask_logits(model: nn.Module, encoded: Mapping[str, Tensor], at_mask: Tensor, caller: str) -> Tensor:
    """The masked-LM scores at the positions `at_mask` (batch, seq) marks, in its row order: (n_marked, vocab).

    model: a TinyBERT or EncoderWithMLMHead (anything with `mlm_head`: the head runs on the marked positions only),
    or a Hugging Face masked LM (anything with output embeddings, whose output has `.logits`); a TypeError naming
    `caller` otherwise. encoded: the tokenizer's tensors, on the model's device.
    """
    if hasattr(model, "mlm_head"):
        hidden = model(encoded["input_ids"], encoded.get("token_type_ids"), encoded.get("attention_mask"))
        return model.mlm_head(hidden[at_mask])
    if hasattr(model, "get_output_embeddings") and model.get_output_embeddings() is not None:
        return model(**encoded).logits[at_mask]
    raise TypeError(f"{caller} needs a model with a masked-LM head (TinyBERT, EncoderWithMLMHead or a Hugging Face "
                    f"*ForMaskedLM), got {type(model).__name__}")


@torch.no_grad()
def fill_mask(model: nn.Module, tokenizer, text: str, top_k: int = 5) -> list[tuple[str, float]]:
    """The `top_k` likeliest tokens for the one `[MASK]` (tokenizer.mask_token) in `text`, with their
    probabilities, likeliest first.

    model: a TinyBERT or EncoderWithMLMHead (anything with `mlm_head`), or a Hugging Face masked-LM such as
    `AutoModelForMaskedLM.from_pretrained("bert-base-uncased")` (anything whose output has `.logits`).
    """
    mask_token = tokenizer.mask_token
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive int, got {top_k!r}")
    found = text.count(mask_token)
    if found != 1:
        raise ValueError(f"text must contain exactly one {mask_token} token to fill, found {found} in {text!r}")
    device = next(model.parameters()).device
    enc = tokenizer(text, return_tensors="pt")
    ids = enc["input_ids"].to(device)
    at_mask = ids == tokenizer.mask_token_id  # (1, seq)
    if int(at_mask.sum()) != 1:
        raise ValueError(f"the tokenizer turned {mask_token} in {text!r} into {int(at_mask.sum())} mask tokens, "
                         f"not 1")
    enc = {k: v.to(device) for k, v in enc.items()}
    with eval_mode(model):
        logits = mask_logits(model, enc, at_mask, "fill_mask")[0]  # (vocab,)
    probs = logits.float().softmax(-1)
    best = probs.topk(min(top_k, probs.numel()))
    tokens = tokenizer.convert_ids_to_tokens(best.indices.tolist())
    return [(token, p) for token, p in zip(tokens, best.values.tolist())]


class EncoderWithMLMHead(nn.Module):
    """A pretrained Hugging Face encoder (a `BertModel`, e.g. the packaged all-MiniLM-L6-v2, which ships no MLM
    head) with a new `MaskedLMHead` and `NSPHead` on top; forward and outputs as TinyBERT's.

    freeze=True freezes the whole encoder except its last `unfreeze_last` layers; the heads always train. The MLM
    decoder is tied to `encoder.embeddings.word_embeddings`, and that matrix stays frozen with the encoder: the head's
    dense, LayerNorm and output bias learn to map the frozen hidden states onto the frozen token vectors. Frozen
    parts stay in eval mode (no dropout) even while the model trains, so the features they give are fixed.
    """

    def __init__(self, encoder: nn.Module, freeze: bool = True, unfreeze_last: int = 0) -> None:
        super().__init__()
        layers = encoder.encoder.layer
        if isinstance(unfreeze_last, bool) or not isinstance(unfreeze_last, int) or not (
                0 <= unfreeze_last <= len(layers)):
            raise ValueError(f"unfreeze_last must be an int in 0..{len(layers)} (the encoder's layers), "
                             f"got {unfreeze_last!r}")
        self.encoder, self.freeze, self.unfreeze_last = encoder, freeze, unfreeze_last
        embedding = encoder.embeddings.word_embeddings
        d_model = encoder.config.hidden_size
        eps = getattr(encoder.config, "layer_norm_eps", 1e-12)
        self.mlm_head = MaskedLMHead(d_model, embedding.num_embeddings, embedding, layer_norm_eps=eps)
        self.nsp_head = NSPHead(d_model)
        if freeze:
            encoder.requires_grad_(False)  # the tied embedding (and so the decoder's matrix) included
            for layer in layers[len(layers) - unfreeze_last:]:
                layer.requires_grad_(True)
        self.train()

    def train(self, mode: bool = True) -> EncoderWithMLMHead:
        super().train(mode)
        if self.freeze:
            self.encoder.eval()
            layers = self.encoder.encoder.layer
            for layer in layers[len(layers) - self.unfreeze_last:]:
                layer.train(mode)
        return self

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None,
                attention_mask: Tensor | None = None) -> Tensor:
        """(batch, seq) ids → hidden (batch, seq, hidden_size): the encoder's last hidden states."""
        if attention_mask is not None:
            attention_mask = attention_mask.long()
        out = self.encoder(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask)
        return out.last_hidden_state
