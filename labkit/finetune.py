"""Fine-tuning plumbing: encode labelled data, share one encoder between two heads, score and predict.

- `encode_sentences` (SST-2 style: one label per text) and `encode_tagged` (CoNLL style: one tag per word) tokenize
  with a fast tokenizer and return a `datasets.Dataset` with input_ids, attention_mask (token_type_ids when the
  tokenizer makes them) and labels. It feeds Hugging Face `Trainer` as is, and a plain loop through
  `DataLoader(dataset, batch_size=..., collate_fn=data_collator(tokenizer, task))`.
- Word-level tags reach the word pieces through `align_labels`: the first piece of a word carries the word's tag,
  later pieces and special tokens carry -100, the index `F.cross_entropy` ignores.
  `encode_tagged(..., with_shapes=True)` also records each token's word shape, for `labkit.word_shape`'s tagger.
- `MultiTaskModel` puts a sentence head (on the first, [CLS] hidden state) and a token head (on every hidden state)
  on one shared encoder; `multitask_loss` sums the two heads' weighted losses for a mixed step.
- Metrics: `accuracy`, `confusion_matrix`, and entity-level precision / recall / F1 with seqeval (`entity_scores`,
  after `token_predictions_to_tags` turns token predictions back into word-level tag lists).
- `predict_sentence` / `predict_entities` run a model on a sentence the learner types.

The training loop lives elsewhere (Hugging Face `Trainer`, or the notebook's own few lines).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from numbers import Integral
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.loop import History, run
from labkit.modules import eval_mode
from labkit.presets import TrainConfig
from labkit.validate import check_positive_int
from labkit.word_shape import ShapeAwareTagger, shape_ids

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "IGNORE_INDEX",
    "TASKS",
    "align_labels",
    "encode_sentences",
    "encode_tagged",
    "data_collator",
    "MultiTaskModel",
    "multitask_loss",
    "accuracy",
    "confusion_matrix",
    "token_predictions_to_tags",
    "entity_scores",
    "trainer_metrics",
    "predict_sentence",
    "predict_entities",
    "score_dataset",
    "train_multitask",
]

IGNORE_INDEX = -100  # the label F.cross_entropy (and every Hugging Face model) leaves out of the loss
TASKS = ("sentence", "token")


# ---------------------------------------------------------------------------------------------- checks


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def _check_label_names(label_names: Sequence[str]) -> None:
    if isinstance(label_names, str) or len(label_names) == 0 or not all(isinstance(n, str) for n in label_names):
        raise ValueError(f"label_names must be a non-empty list of label names, got {label_names!r}")


def _check_label(where: str, label: Any, n_labels: int) -> None:
    if not _is_int(label) or not 0 <= label < n_labels:
        raise ValueError(f"{where} is {label!r}; expected an int in 0..{n_labels - 1} (label_names has "
                         f"{n_labels} names)")


def _check_text(where: str, text: Any) -> None:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where} is {text!r}; expected a non-empty, non-whitespace string")


def _check_same_length(name_a: str, a: Sequence, name_b: str, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"{name_a} has {len(a)} items but {name_b} has {len(b)}; expected one per example")


def _check_fast(tokenizer: PreTrainedTokenizerBase) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(f"tokenizer must be a fast (Rust-backed) tokenizer, which tracks word ids and truncation; "
                        f"got {type(tokenizer).__name__}. Load it with AutoTokenizer (use_fast=True, the default)")


def _check_max_len(tokenizer: PreTrainedTokenizerBase, max_len: int) -> None:
    check_positive_int("max_len", max_len)
    specials = tokenizer.num_special_tokens_to_add()
    if max_len <= specials:
        raise ValueError(f"max_len must leave room for text beside the tokenizer's {specials} special tokens, "
                         f"got {max_len}")


# ---------------------------------------------------------------------------------------------- encoding


def align_labels(word_ids: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    """One label per token: a word's first sub-token gets its label; later sub-tokens and specials get -100.

    word_ids: (seq,) from a fast tokenizer's `word_ids()`, None for special tokens; word_labels: (words,).
    """
    for i, label in enumerate(word_labels):
        if not _is_int(label) or label < 0:
            raise ValueError(f"word_labels[{i}] is {label!r}; expected an int >= 0 (a tag id)")
    labels, previous = [], None
    for word in word_ids:
        if word is None or word == previous:
            labels.append(IGNORE_INDEX)
        elif not 0 <= word < len(word_labels):
            raise ValueError(f"word id {word} has no label: word_labels has {len(word_labels)} labels, expected "
                             f"one per word")
        else:
            labels.append(int(word_labels[word]))
        previous = word
    return labels


def _warn_truncated(encoded: Any, max_len: int, what: str) -> None:
    """One warning for all the examples the tokenizer cut to max_len (a fast tokenizer keeps the cut-off part)."""
    cut = sum(1 for encoding in encoded.encodings if encoding.overflowing)
    if cut:
        warnings.warn(f"{cut} of {len(encoded.encodings)} examples were longer than max_len={max_len} tokens and "
                      f"were truncated; {what}", stacklevel=3)


def _to_dataset(encoded: Any, labels: list, label_feature: Any, extra: dict[str, list] | None = None) -> Dataset:
    from datasets import Dataset, Features, List, Value

    columns = {key: encoded[key] for key in ("input_ids", "token_type_ids", "attention_mask") if key in encoded}
    columns |= extra or {}
    features = Features({key: List(Value("int64")) for key in columns} | {"labels": label_feature})
    return Dataset.from_dict({**columns, "labels": labels}, features=features)


def encode_sentences(tokenizer: PreTrainedTokenizerBase, sentences: Sequence[str], labels: Sequence[int],
                     max_len: int, label_names: Sequence[str]) -> Dataset:
    """Tokenize one-label-per-text data (e.g. SST-2) into a Dataset: input_ids, attention_mask, labels.

    Texts longer than max_len tokens are truncated, with one warning counting them. labels (ClassLabel) are
    ints in 0..len(label_names)-1.
    """
    from datasets import ClassLabel

    if isinstance(sentences, str):
        raise ValueError(f"sentences must be a list of texts, got one str ({sentences[:40]!r}); wrap it in a list")
    sentences, labels = list(sentences), list(labels)
    _check_fast(tokenizer)
    _check_max_len(tokenizer, max_len)
    _check_label_names(label_names)
    _check_same_length("sentences", sentences, "labels", labels)
    for i, (text, label) in enumerate(zip(sentences, labels)):
        _check_text(f"sentences[{i}]", text)
        _check_label(f"labels[{i}]", label, len(label_names))
    encoded = tokenizer(sentences, truncation=True, max_length=max_len)
    _warn_truncated(encoded, max_len, "the model sees only their beginning")
    return _to_dataset(encoded, labels, ClassLabel(names=list(label_names)))


def encode_tagged(tokenizer: PreTrainedTokenizerBase, token_lists: Sequence[Sequence[str]],
                  tag_lists: Sequence[Sequence[int]], max_len: int, label_names: Sequence[str], *,
                  with_shapes: bool = False) -> Dataset:
    """Tokenize one-tag-per-word data (e.g. CoNLL-2003) into a Dataset: input_ids, attention_mask, labels.

    labels: (seq,) per example, aligned by `align_labels` (-100 on specials and on non-first sub-tokens).
    with_shapes: also a shape_ids column, each token's word shape (`labkit.word_shape`), for `ShapeAwareTagger`.
    Examples longer than max_len tokens are truncated, with one warning counting them; their cut words get no label.
    """
    from datasets import List, Value

    for i, words in enumerate(token_lists):
        if isinstance(words, str):
            raise ValueError(f"token_lists[{i}] is a str ({words[:40]!r}); expected a list of words per example")
    token_lists, tag_lists = [list(t) for t in token_lists], [list(t) for t in tag_lists]
    _check_fast(tokenizer)
    _check_max_len(tokenizer, max_len)
    _check_label_names(label_names)
    _check_same_length("token_lists", token_lists, "tag_lists", tag_lists)
    for i, (words, tags) in enumerate(zip(token_lists, tag_lists)):
        if not words:
            raise ValueError(f"token_lists[{i}] is empty; expected at least one word")
        if len(words) != len(tags):
            raise ValueError(f"token_lists[{i}] has {len(words)} words but tag_lists[{i}] has {len(tags)} tags; "
                             f"expected one tag per word")
        for j, (word, tag) in enumerate(zip(words, tags)):
            _check_text(f"token_lists[{i}][{j}]", word)
            _check_label(f"tag_lists[{i}][{j}]", tag, len(label_names))
    encoded = tokenizer(token_lists, is_split_into_words=True, truncation=True, max_length=max_len)
    _warn_truncated(encoded, max_len, "their words past the cut get no label")
    labels = [align_labels(encoded.word_ids(i), tags) for i, tags in enumerate(tag_lists)]
    extra = None
    if with_shapes:
        extra = {"shape_ids": [shape_ids(encoded.word_ids(i), words) for i, words in enumerate(token_lists)]}
    return _to_dataset(encoded, labels, List(Value("int64")), extra)


def data_collator(tokenizer: PreTrainedTokenizerBase, task: str) -> Callable[[list[dict]], dict[str, Tensor]]:
    """The Hugging Face collator that pads a list of encoded rows into a batch of tensors (batch, seq).

    task "sentence": `DataCollatorWithPadding`; task "token": `DataCollatorForTokenClassification` (pads labels
    with -100), and shape_ids, where the rows have them, with 0 ("special").
    """
    from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding

    _check_task(task)
    if task == "sentence":
        return DataCollatorWithPadding(tokenizer)
    pad_tokens = DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE_INDEX)

    def collate(rows: list[dict]) -> dict[str, Tensor]:
        if not rows or "shape_ids" not in rows[0]:
            return pad_tokens(rows)
        shapes = [torch.as_tensor(row["shape_ids"]) for row in rows]
        batch = pad_tokens([{k: v for k, v in row.items() if k != "shape_ids"} for row in rows])
        padded = torch.zeros_like(batch["input_ids"])
        for i, row_shapes in enumerate(shapes):  # padding on the tokenizer's side, as for the tokens
            if tokenizer.padding_side == "left":
                padded[i, padded.shape[1] - len(row_shapes):] = row_shapes
            else:
                padded[i, :len(row_shapes)] = row_shapes
        return batch | {"shape_ids": padded}

    return collate


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
        check_positive_int("num_sentence_labels", num_sentence_labels)
        check_positive_int("num_token_labels", num_token_labels)
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


# ---------------------------------------------------------------------------------------------- metrics


def _ids_and_labels(predictions: Any, labels: Any) -> tuple[Tensor, Tensor]:
    """Predicted ids and labels, flattened, without the -100 positions; predictions may be ids or logits (..., C)."""
    predictions, labels = torch.as_tensor(predictions), torch.as_tensor(labels)
    if predictions.dim() == labels.dim() + 1:
        predictions = predictions.argmax(-1)
    if predictions.shape != labels.shape:
        raise ValueError(f"predictions must be ids shaped like labels {tuple(labels.shape)} or logits with one more "
                         f"dim, got shape {tuple(predictions.shape)}")
    keep = labels != IGNORE_INDEX
    if not keep.any():
        raise ValueError("labels holds no scored position (all are -100 or it is empty)")
    return predictions[keep].long(), labels[keep].long()


def accuracy(predictions: Any, labels: Any) -> float:
    """Fraction of predictions equal to labels, -100 labels left out. predictions: ids (...) or logits (..., C)."""
    predicted, true = _ids_and_labels(predictions, labels)
    return (predicted == true).float().mean().item()


def confusion_matrix(predictions: Any, labels: Any, n_classes: int) -> Tensor:
    """Counts (n_classes, n_classes), rows = true class, columns = predicted; -100 labels left out."""
    check_positive_int("n_classes", n_classes)
    predicted, true = _ids_and_labels(predictions, labels)
    for name, ids in (("predictions", predicted), ("labels", true)):
        outside = ids[(ids < 0) | (ids >= n_classes)]
        if len(outside):
            raise ValueError(f"{name} holds class {int(outside[0])}; expected ids in 0..{n_classes - 1} "
                             f"(n_classes={n_classes})")
    counts = torch.bincount(true * n_classes + predicted, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes)


def token_predictions_to_tags(predictions: Any, labels: Any,
                              label_names: Sequence[str]) -> tuple[list[list[str]], list[list[str]]]:
    """(true tag lists, predicted tag lists), one tag per word: positions labelled -100 are dropped.

    predictions: ids (batch, seq) or logits (batch, seq, n_tags); labels: (batch, seq), as from `encode_tagged`.
    """
    _check_label_names(label_names)
    predictions, labels = torch.as_tensor(predictions), torch.as_tensor(labels)
    if predictions.dim() == 3:
        predictions = predictions.argmax(-1)
    if labels.dim() != 2 or predictions.shape != labels.shape:
        raise ValueError(f"predictions must be ids (batch, seq) or logits (batch, seq, n_tags) matching labels "
                         f"(batch, seq); got shapes {tuple(predictions.shape)} and {tuple(labels.shape)}")
    n = len(label_names)
    true_tags, predicted_tags = [], []
    for row_predictions, row_labels in zip(predictions.tolist(), labels.tolist()):
        kept = [(p, t) for p, t in zip(row_predictions, row_labels) if t != IGNORE_INDEX]
        outside = [i for pair in kept for i in pair if not 0 <= i < n]
        if outside:
            raise ValueError(f"tag id {outside[0]} is outside label_names; expected ids in 0..{n - 1}")
        true_tags.append([label_names[t] for _, t in kept])
        predicted_tags.append([label_names[p] for p, _ in kept])
    return true_tags, predicted_tags


def entity_scores(true_tag_lists: Sequence[Sequence[str]],
                  predicted_tag_lists: Sequence[Sequence[str]]) -> dict[str, dict[str, float]]:
    """Entity-level precision, recall, f1 and support per type and "overall" (micro average), with seqeval.

    An entity counts as right only when its type and both boundaries match (seqeval's default mode, the CoNLL
    conlleval convention for IOB tags). A type never predicted has precision 0; never true, recall 0.
    """
    from seqeval.metrics import classification_report

    true_tags, predicted_tags = [list(t) for t in true_tag_lists], [list(t) for t in predicted_tag_lists]
    _check_same_length("true_tag_lists", true_tags, "predicted_tag_lists", predicted_tags)
    for i, (true, predicted) in enumerate(zip(true_tags, predicted_tags)):
        if len(true) != len(predicted):
            raise ValueError(f"true_tag_lists[{i}] has {len(true)} tags but predicted_tag_lists[{i}] has "
                             f"{len(predicted)}; expected one tag per word in both")
        for name, tags in (("true_tag_lists", true), ("predicted_tag_lists", predicted)):
            bad = next((t for t in tags if not isinstance(t, str) or not (t == "O" or t[:2] in ("B-", "I-"))), None)
            if bad is not None:
                raise ValueError(f"{name}[{i}] holds the tag {bad!r}; IOB2 tags are 'O', 'B-<type>' or 'I-<type>'")
    with warnings.catch_warnings():  # the macro average of zero entity types warns; it is not used here
        warnings.simplefilter("ignore", RuntimeWarning)
        report = classification_report(true_tags, predicted_tags, output_dict=True, zero_division=0)
    return {"overall" if name == "micro avg" else name: {"precision": float(row["precision"]),
                                                         "recall": float(row["recall"]),
                                                         "f1": float(row["f1-score"]),
                                                         "support": int(row["support"])}
            for name, row in report.items() if name not in ("macro avg", "weighted avg")}


def trainer_metrics(task: str, label_names: Sequence[str] | None = None) -> Callable[[Any], dict[str, float]]:
    """A `compute_metrics` for Hugging Face `Trainer`: accuracy ("sentence"), or entity scores ("token").

    The returned function takes `(logits, labels)` (an `EvalPrediction`); "token" needs label_names to name tags.
    """
    _check_task(task)
    if task == "token":
        if label_names is None:
            raise ValueError("task='token' needs label_names (the tag names, e.g. labkit.data.NER_TAGS), got None")
        _check_label_names(label_names)

    def compute(eval_prediction: Any) -> dict[str, float]:
        logits, labels = eval_prediction[0], eval_prediction[1]
        if task == "sentence":
            return {"accuracy": accuracy(logits, labels)}
        overall = entity_scores(*token_predictions_to_tags(logits, labels, label_names))["overall"]
        return {"precision": overall["precision"], "recall": overall["recall"], "f1": overall["f1"],
                "accuracy": accuracy(logits, labels)}

    return compute


# ---------------------------------------------------------------------------------------------- prediction


def _logits(model: nn.Module, inputs: dict[str, Tensor], task: str | None) -> Tensor:
    """The model's logits for one tokenized input, in eval mode without gradients (the model's mode is restored)."""
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    inputs = {key: value.to(device) for key, value in inputs.items()}
    with eval_mode(model), torch.no_grad():
            output = model(**inputs) if task is None else model(**inputs, task=task)
    return getattr(output, "logits", output)


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

    model: logits (1, seq, n_tags), or `.logits`; task is passed on when given (task="token" for `MultiTaskModel`);
    a `ShapeAwareTagger` also gets the words' shapes.
    A word the tokenizer drops entirely (e.g. a lone control character) gets the tag None.
    """
    _check_text("text", text)
    _check_label_names(label_names)
    _check_fast(tokenizer)
    words = text.split()
    encoding = tokenizer(words, is_split_into_words=True, truncation=True, return_tensors="pt")
    if encoding.encodings[0].overflowing:
        raise ValueError(f"text is longer than the tokenizer's {tokenizer.model_max_length} tokens, so its last "
                         f"words would get no tag; expected a shorter text (split it into sentences)")
    word_ids, inputs = encoding.word_ids(0), dict(encoding)
    if isinstance(model, ShapeAwareTagger):  # it reads each word's case beside the (lower-cased) tokens
        inputs["shape_ids"] = torch.tensor([shape_ids(word_ids, words)])
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


def _batches(dataset: Dataset, tokenizer: PreTrainedTokenizerBase, task: str, batch_size: int,
             shuffle_seed: int | None = None) -> Any:
    from torch.utils.data import DataLoader

    generator = None if shuffle_seed is None else torch.Generator().manual_seed(shuffle_seed)
    return DataLoader(dataset.with_format("torch"), batch_size=batch_size, shuffle=shuffle_seed is not None,
                      generator=generator, collate_fn=data_collator(tokenizer, task))


@torch.no_grad()
def score_dataset(model: nn.Module, dataset: Dataset, tokenizer: PreTrainedTokenizerBase, task: str,
                  label_names: Sequence[str], *, batch_size: int = 64, model_task: str | None = None) -> dict:
    """Score `model` on an encoded data set (from `encode_sentences` / `encode_tagged`), in eval mode.

    task "sentence": {"accuracy", "predictions" (n,), "probabilities" (n, n_labels)}; task "token": {"accuracy"
    over the labelled tokens, "entities": `entity_scores` of the predicted tags ("overall" and per type)}.
    model_task is passed to the model's forward when given (a `MultiTaskModel`).
    """
    _check_task(task)
    check_positive_int("batch_size", batch_size)
    device = next(model.parameters()).device
    logits_list, labels_list = [], []
    with eval_mode(model):
        for batch in _batches(dataset, tokenizer, task, batch_size):
            labels = batch.pop("labels")
            batch = {k: v.to(device) for k, v in batch.items()}
            output = model(**batch) if model_task is None else model(**batch, task=model_task)
            logits_list.append(getattr(output, "logits", output).float().cpu())
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
            yield from _batches(dataset, tokenizer, task, config.batch_size,
                                shuffle_seed=config.seed + 1000 * epoch + offset)

    sentences, tokens = endless(sentence_data, "sentence", 0), endless(token_data, "token", 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)
    return run(model, config, batch=lambda step: (next(sentences), next(tokens)),
               loss=lambda net, both: multitask_loss(net, *both, weights), optimizer=optimizer,
               tokens=lambda both: sum(int(b["attention_mask"].sum()) for b in both), progress=progress,
               desc="multi-task")
