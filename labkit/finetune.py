"""Fine-tuning models and what they predict: one encoder shared by two heads, a sentence typed in, a whole data set.

- `MultiTaskModel` puts a sentence head (on the first, [CLS] hidden state) and a token head (on every hidden state)
  on one shared encoder; `multitask_loss` sums the two heads' weighted losses for a mixed step, and
  `train_multitask` trains it through `labkit.loop.run`.
- `predict_sentence` / `predict_entities` run a model on a sentence the learner types; `score_dataset` on an
  encoded data set. A model gets the inputs its forward names, as Hugging Face `Trainer` does with a data set's
  columns: the word shapes reach a `labkit.word_shape.ShapeAwareTagger` and no other model.
- `load_or_finetune` gives notebook 13 notebook 06's sentiment classifier or NER tagger: the saved one, or one
  fine-tuned on the spot with the preset for the device.

The data are encoded by `labkit.finetune_data`, the scores computed by `labkit.finetune_metrics`. Single-task runs
train with Hugging Face `Trainer` (`labkit.trainer_setup`), or the notebook's own few lines.
"""

from __future__ import annotations

import inspect
import itertools
import math
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.finetune_data import _check_label_names, _check_task, _check_text, batches, encode_words
from labkit.finetune_metrics import accuracy, entity_scores, token_predictions_to_tags
from labkit.loop import History, run
from labkit.modules import IGNORE_INDEX, eval_mode
from labkit.presets import TrainConfig
from labkit.validate import require_positive_int

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["MultiTaskModel", "multitask_loss", "train_multitask", "predict_sentence", "predict_entities",
           "score_dataset", "FINETUNE_MAX_LEN", "load_or_finetune"]

FINETUNE_MAX_LEN = 128  # the longest input notebook 06 fine-tunes on, in tokens


# ---------------------------------------------------------------------------------------------- multi-task model


class MultiTaskModel(nn.Module):
    """One shared encoder, two heads: sentence logits (batch, n_sentence) and token logits (batch, seq, n_token).

    encoder: a Hugging Face base model (e.g. `labkit.assets.load_model(task="base")`) whose output has
    `last_hidden_state` (batch, seq, hidden). Both heads read the same encoder, so a step on either task trains it.
    """

    def __init__(self, encoder: nn.Module, num_sentence_labels: int, num_token_labels: int,
                 dropout: float = 0.1) -> None:
        super().__init__()
        hidden = getattr(getattr(encoder, "config", None), "hidden_size", None)
        if not isinstance(hidden, int):
            raise TypeError(f"encoder must be a Hugging Face model with config.hidden_size, got "
                            f"{type(encoder).__name__}")
        require_positive_int("num_sentence_labels", num_sentence_labels)
        require_positive_int("num_token_labels", num_token_labels)
        if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.sentence_head = nn.Linear(hidden, num_sentence_labels)
        self.token_head = nn.Linear(hidden, num_token_labels)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, task: str = "sentence",
                labels: Tensor | None = None, token_type_ids: Tensor | None = None) -> Any:
        """input_ids, attention_mask: (batch, seq); labels: (batch,) for "sentence", (batch, seq) for "token".

        Returns Hugging Face's `SequenceClassifierOutput` / `TokenClassifierOutput`: `.logits`, and `.loss`
        (cross-entropy, -100 labels ignored) when labels are given.
        """
        from transformers.modeling_outputs import SequenceClassifierOutput, TokenClassifierOutput

        _check_task(task)
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        hidden = self.dropout(hidden)
        if task == "sentence":
            logits = self.sentence_head(hidden[:, 0])  # (batch, n_sentence), from the first ([CLS]) position
            loss = None if labels is None else F.cross_entropy(logits, labels)
            return SequenceClassifierOutput(loss=loss, logits=logits)
        logits = self.token_head(hidden)  # (batch, seq, n_token)
        loss = None if labels is None else F.cross_entropy(logits.flatten(0, 1), labels.flatten(),
                                                            ignore_index=IGNORE_INDEX)
        return TokenClassifierOutput(loss=loss, logits=logits)


def multitask_loss(model: MultiTaskModel, sentence_batch: dict[str, Tensor], token_batch: dict[str, Tensor],
                   weights: tuple[float, float] = (1.0, 1.0)) -> dict[str, Tensor]:
    """{"loss": weights[0] * sentence loss + weights[1] * token loss, "sentence": ..., "token": ...}, scalars; each
    batch is a collated dict with labels."""
    if (len(weights) != 2 or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w)
                                     and w >= 0 for w in weights)):
        raise ValueError(f"weights must be two finite numbers >= 0 (sentence, token), got {weights!r}")
    for name, batch in (("sentence_batch", sentence_batch), ("token_batch", token_batch)):
        if "input_ids" not in batch or "labels" not in batch:
            raise ValueError(f"{name} must hold 'input_ids' and 'labels' (a collated batch), got keys {list(batch)}")
    sentence = model(**sentence_batch, task="sentence").loss
    token = model(**token_batch, task="token").loss
    return {"loss": weights[0] * sentence + weights[1] * token, "sentence": sentence, "token": token}


# ---------------------------------------------------------------------------------------------- prediction


def _forward(model: nn.Module, inputs: dict[str, Tensor], task: str | None) -> Tensor:
    """The model's logits for encoded inputs: the columns its forward names (as Hugging Face `Trainer` picks a data
    set's columns), moved to its device; task passed on when given."""
    named = inspect.signature(model.forward).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in named.values()):
        inputs = {key: value for key, value in inputs.items() if key in named}
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    inputs = {key: value.to(device) for key, value in inputs.items()}
    output = model(**inputs) if task is None else model(**inputs, task=task)
    return getattr(output, "logits", output)


def _logits(model: nn.Module, inputs: dict[str, Tensor], task: str | None) -> Tensor:
    """The model's logits for one encoded input, in eval mode without gradients (the model's mode is restored)."""
    with eval_mode(model), torch.no_grad():
        return _forward(model, inputs, task)


def _check_n_labels(logits: Tensor, label_names: Sequence[str]) -> None:
    if logits.shape[-1] != len(label_names):
        raise ValueError(f"the model gives {logits.shape[-1]} logits per prediction but label_names has "
                         f"{len(label_names)} names; expected one name per output")


def predict_sentence(model: nn.Module, tokenizer: PreTrainedTokenizerBase, text: str, label_names: Sequence[str],
                     *, task: str | None = None) -> list[tuple[str, float]]:
    """(label, probability) for every label, most probable first. model: logits (1, n_labels), or `.logits`.

    task is passed on to the model's forward when given (e.g. task="sentence" for a `MultiTaskModel`).
    """
    _check_text("text", text)
    _check_label_names(label_names)
    inputs = tokenizer(text, truncation=True, return_tensors="pt")
    if any(encoding.overflowing for encoding in inputs.encodings or []):
        warnings.warn(f"text is longer than the tokenizer's {tokenizer.model_max_length} tokens; the model sees "
                      f"only its beginning", stacklevel=2)
    logits = _logits(model, dict(inputs), task)
    _check_n_labels(logits, label_names)
    probabilities = logits[0].float().softmax(-1).tolist()
    return sorted(zip(label_names, probabilities), key=lambda pair: pair[1], reverse=True)


def predict_entities(model: nn.Module, tokenizer: PreTrainedTokenizerBase, text: str, label_names: Sequence[str],
                     *, task: str | None = None) -> list[tuple[str, str | None]]:
    """(word, tag) for each whitespace-separated word, the tag read off the word's first sub-token.

    model: logits (1, seq, n_tags), or `.logits`; task is passed on when given (task="token" for `MultiTaskModel`).
    The words are encoded as `encode_tagged(..., with_shapes=True)` encodes training data (`encode_words`), so a
    model whose forward takes shape_ids (a `ShapeAwareTagger`) gets them. A word the tokenizer drops entirely (e.g.
    a lone control character) gets the tag None.
    """
    _check_text("text", text)
    _check_label_names(label_names)
    words = text.split()
    inputs, word_ids = encode_words(tokenizer, words)
    logits = _logits(model, inputs, task)
    _check_n_labels(logits, label_names)
    predicted = logits[0].argmax(-1).tolist()
    first_piece: dict[int, int] = {}
    for position, word in enumerate(word_ids):
        if word is not None:
            first_piece.setdefault(word, position)
    return [(word, label_names[predicted[first_piece[i]]] if i in first_piece else None)
            for i, word in enumerate(words)]


# ---------------------------------------------------------------------------------------------- whole data sets


@torch.no_grad()
def score_dataset(model: nn.Module, dataset: Dataset, tokenizer: PreTrainedTokenizerBase, task: str,
                  label_names: Sequence[str], *, batch_size: int = 64, model_task: str | None = None) -> dict:
    """Score `model` on an encoded data set (from `encode_sentences` / `encode_tagged`), in eval mode.

    task "sentence": {"accuracy", "predictions" (n,), "probabilities" (n, n_labels)}; task "token": {"accuracy"
    over the labelled tokens, "entities": `entity_scores` of the predicted tags ("overall" and per type)}.
    model_task is passed to the model's forward when given (a `MultiTaskModel`).
    """
    _check_task(task)
    require_positive_int("batch_size", batch_size)
    logits_list, labels_list = [], []
    with eval_mode(model):
        for batch in batches(dataset, tokenizer, task, batch_size):
            labels = batch.pop("labels")
            logits_list.append(_forward(model, batch, model_task).float().cpu())
            labels_list.append(labels)
    if task == "sentence":
        logits, labels = torch.cat(logits_list), torch.cat(labels_list)
        return {"accuracy": accuracy(logits, labels), "predictions": logits.argmax(-1),
                "probabilities": logits.softmax(-1)}
    true_tags, predicted_tags = [], []
    for logits, labels in zip(logits_list, labels_list):
        true, predicted = token_predictions_to_tags(logits, labels, label_names)
        true_tags += true
        predicted_tags += predicted
    flat_logits = torch.cat([logits.flatten(0, 1) for logits in logits_list])
    return {"accuracy": accuracy(flat_logits, torch.cat([labels.flatten() for labels in labels_list])),
            "entities": entity_scores(true_tags, predicted_tags)}


def train_multitask(model: MultiTaskModel, sentence_data: Dataset, token_data: Dataset,
                    tokenizer: PreTrainedTokenizerBase, config: TrainConfig, *,
                    weights: tuple[float, float] = (1.0, 1.0), progress: bool = True) -> History:
    """Train both heads and the shared encoder together through `labkit.loop.run`: each step takes one batch of
    `config.batch_size` of each task (shuffled anew every epoch from `config.seed`) and steps fused AdamW on
    `multitask_loss` (the "multitask" preset: warm-up, then linear decay to 0, bf16 autocast where `bf16_is_fast`).
    Returns the History: losses "loss", "sentence" and "token", one per step."""

    def endless(dataset: Dataset, task: str, offset: int) -> Any:
        for epoch in itertools.count():
            yield from batches(dataset, tokenizer, task, config.batch_size,
                               shuffle_seed=config.seed + 1000 * epoch + offset)

    if config.optimizer != "adamw":
        raise ValueError(f"the multi-task model trains with fused AdamW; config.optimizer={config.optimizer!r} is for "
                         f"TinyGPT's blocks")
    sentences, tokens = endless(sentence_data, "sentence", 0), endless(token_data, "token", 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)
    return run(model, config, batch=lambda step: (next(sentences), next(tokens)),
               loss=lambda net, both: multitask_loss(net, *both, weights), optimizer=optimizer,
               tokens=lambda both: sum(int(b["attention_mask"].sum()) for b in both), progress=progress,
               desc="multi-task")


# ---------------------------------------------------------------------------------------------- saved models


def load_or_finetune(folder: str | os.PathLike, task: str,
                     device: torch.device | None = None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Notebook 06's model for `task`: "sentence", the SST-2 sentiment classifier, or "token", the CoNLL-2003 NER
    tagger; (model in eval mode on `device`, its tokenizer), loaded from `folder` (written by `save_pretrained`).

    If `folder` holds no config.json, the lab's encoder (`labkit.assets.load_model`) is first fine-tuned there with
    notebook 06's preset for the device (`preset_for(device, "sentiment" / "ner")`: "smoke", on a subset of the
    training set, in fast mode) through `Trainer` and `training_arguments` (with a progress bar), then saved with its
    tokenizer and label names. Prints which happened.
    """
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

    _check_task(task)
    folder = Path(folder)
    what = "sentiment classifier" if task == "sentence" else "NER tagger"
    if not (folder / "config.json").is_file():
        _finetune_and_save(folder, task, device, what)
    else:
        print(f"notebook 06's {what} from {folder}")
    auto = AutoModelForSequenceClassification if task == "sentence" else AutoModelForTokenClassification
    model = auto.from_pretrained(folder, local_files_only=True)
    return model.to(device or "cpu").eval(), AutoTokenizer.from_pretrained(folder, local_files_only=True)


def _finetune_and_save(folder: Path, task: str, device: torch.device | None, what: str) -> None:
    """Fine-tune notebook 06's model for `task` with the preset for the device, and save it with its tokenizer."""
    from transformers import Trainer

    from labkit.assets import load_model, load_tokenizer
    from labkit.data import NER_TAGS, SST2_LABELS, load_data
    from labkit.device import set_seed
    from labkit.finetune_data import data_collator, encode_sentences, encode_tagged
    from labkit.presets import preset_for
    from labkit.trainer_setup import training_arguments

    family, dataset, names = (("sentiment", "sst2", SST2_LABELS) if task == "sentence"
                              else ("ner", "conll2003", NER_TAGS))
    preset = preset_for(device or "cpu", family)
    print(f"{folder} holds no model: fine-tuning notebook 06's {what} with the '{preset.name}' preset now")
    rows = load_data(dataset)["train"]
    examples = preset.data.get("train_examples")  # None: all of them
    if examples is not None:
        rows = rows.shuffle(seed=0).select(range(examples))
    tokenizer = load_tokenizer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a handful of long examples are cut to FINETUNE_MAX_LEN
        if task == "sentence":
            encoded = encode_sentences(tokenizer, rows["sentence"], rows["label"], FINETUNE_MAX_LEN, names)
        else:
            encoded = encode_tagged(tokenizer, rows["tokens"], rows["ner_tags"], FINETUNE_MAX_LEN, names)
    set_seed(preset.train.seed)
    model = load_model(task="sequence-classification" if task == "sentence" else "token-classification",
                       num_labels=len(names), id2label=dict(enumerate(names)),
                       label2id={name: i for i, name in enumerate(names)})
    with tempfile.TemporaryDirectory(prefix="labkit-finetune-") as runs:  # Trainer wants a folder; nothing lands in it
        Trainer(model=model, args=training_arguments(runs, preset.train), train_dataset=encoded,
                data_collator=data_collator(tokenizer, task)).train()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
