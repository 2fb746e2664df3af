"""Notebook 13's checkers: right answers written by hand pass, each reference agrees with what it stands for
(GPT-2's own attention layer, the text-classification pipeline, labkit's encoders, labkit's Trainer metrics), and
each plausible mistake gets its own message (WRONG_ANSWERS, run by test_exercises.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from labkit.data import NER_TAGS, SST2_LABELS
from labkit.exercises import check
from labkit.exercises.export import (_ID2LABEL, _SENTENCES, _TAGGED, _metric_cases,
                                     checker_tokenizer, reference_classification_scores, reference_compute_metrics,
                                     reference_fused_qkv_weight, reference_tokenize_and_align,
                                     reference_tokenize_batch)
from labkit.finetune_data import encode_sentences, encode_tagged
from labkit.finetune_metrics import trainer_metrics
from labkit.modules import IGNORE_INDEX

# --- fused_qkv_weight ---------------------------------------------------------------------------------------------


def test_fused_qkv_weight_written_by_hand_passes() -> None:
    assert check("fused_qkv_weight", lambda q, k, v: torch.cat([q.T, k.T, v.T], dim=1), quiet=True)
    assert check("fused_qkv_weight", lambda q, k, v: torch.stack([q, k, v]).flatten(0, 1).t().contiguous(),
                 quiet=True)


def test_fused_qkv_weight_is_what_gpt2_attention_reads() -> None:
    """A GPT2Attention given the reference's c_attn computes the same queries, keys and values as three Linears."""
    from transformers import GPT2Config
    from transformers.models.gpt2.modeling_gpt2 import GPT2Attention

    torch.manual_seed(0)
    d = 8
    q, k, v = (torch.nn.Linear(d, d) for _ in range(3))
    attention = GPT2Attention(GPT2Config(n_embd=d, n_head=2), layer_idx=0)
    with torch.no_grad():
        attention.c_attn.weight.copy_(reference_fused_qkv_weight(q.weight, k.weight, v.weight))
        attention.c_attn.bias.copy_(torch.cat([q.bias, k.bias, v.bias]))
        x = torch.randn(2, 5, d)
        split = attention.c_attn(x).split(d, dim=-1)
        for ours, theirs in zip(split, (q(x), k(x), v(x))):
            torch.testing.assert_close(ours, theirs)


def _in_place_qkv(q, k, v):
    q.mul_(1.0)
    k.add_(1.0)
    return torch.cat([q, k, v]).T


# --- classification_scores ----------------------------------------------------------------------------------------


def test_classification_scores_written_by_hand_passes() -> None:
    def scores(logits, id2label):
        answers = []
        for row in logits:
            probabilities = torch.exp(row - row.max()) / torch.exp(row - row.max()).sum()
            best = int(probabilities.argmax())
            answers.append({"label": id2label[best], "score": probabilities[best].item()})
        return answers

    assert check("classification_scores", scores, quiet=True)


def test_classification_scores_is_what_the_pipeline_answers(tmp_path) -> None:
    """The text-classification pipeline's answer for a tiny random classifier equals the reference on its logits."""
    from transformers import BertConfig, BertForSequenceClassification, pipeline

    torch.manual_seed(0)
    tokenizer = checker_tokenizer()
    model = BertForSequenceClassification(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=32, num_labels=3,
                                                     id2label=_ID2LABEL)).eval()
    texts = ["a gorgeous, witty movie.", "dull", "not bad"]
    with torch.no_grad():
        logits = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    classify = pipeline("text-classification", model=model, tokenizer=tokenizer, device="cpu")
    theirs = classify(texts)
    ours = reference_classification_scores(logits, model.config.id2label)
    assert [a["label"] for a in ours] == [a["label"] for a in theirs]
    np.testing.assert_allclose([a["score"] for a in ours], [a["score"] for a in theirs], atol=1e-6)


def _scores_with(logits, id2label, transform=lambda x: x.softmax(-1), pick=lambda p: p.argmax(-1), name=True,
                 as_float=True):
    probabilities = transform(logits)
    answers = []
    for row, i in zip(probabilities, pick(probabilities)):
        score = row[i].item() if as_float else row[i]
        answers.append({"label": id2label[int(i)] if name else int(i), "score": score})
    return answers


# --- tokenize_batch and tokenize_and_align -----------------------------------------------------------------------


def test_tokenize_batch_written_by_hand_passes() -> None:
    def tokenize_batch(batch, tokenizer, max_len):
        encoded = tokenizer(batch["sentence"], truncation=True, max_length=max_len)
        encoded["labels"] = batch["label"]
        return encoded

    assert check("tokenize_batch", tokenize_batch, quiet=True)


@pytest.mark.filterwarnings("ignore:1 of . examples were longer than max_len")  # the long row, on purpose
def test_tokenize_batch_gives_what_encode_sentences_gives() -> None:
    from datasets import Dataset

    tokenizer = checker_tokenizer()
    rows = Dataset.from_dict(_SENTENCES)
    mapped = rows.map(reference_tokenize_batch, batched=True, fn_kwargs={"tokenizer": tokenizer, "max_len": 12},
                      remove_columns=rows.column_names)
    labkit = encode_sentences(tokenizer, _SENTENCES["sentence"], _SENTENCES["label"], 12, SST2_LABELS)
    for column in ("input_ids", "attention_mask", "labels"):
        assert mapped[column] == labkit[column]


def test_tokenize_and_align_written_by_hand_passes() -> None:
    from labkit.finetune_data import align_labels

    def tokenize_and_align(batch, tokenizer, max_len):
        encoded = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_len)
        encoded["labels"] = [align_labels(encoded.word_ids(i), tags) for i, tags in enumerate(batch["ner_tags"])]
        return encoded

    assert check("tokenize_and_align", tokenize_and_align, quiet=True)


@pytest.mark.filterwarnings("ignore:1 of . examples were longer than max_len")  # the long row, on purpose
def test_tokenize_and_align_gives_what_encode_tagged_gives() -> None:
    from datasets import Dataset

    tokenizer = checker_tokenizer()
    rows = Dataset.from_dict(_TAGGED)
    mapped = rows.map(reference_tokenize_and_align, batched=True, fn_kwargs={"tokenizer": tokenizer, "max_len": 12},
                      remove_columns=rows.column_names)
    labkit = encode_tagged(tokenizer, _TAGGED["tokens"], _TAGGED["ner_tags"], 12, NER_TAGS)
    for column in ("input_ids", "attention_mask", "labels"):
        assert mapped[column] == labkit[column]
    assert any(-100 in row[1:-1] for row in mapped["labels"])  # the batch has words cut into pieces


def _tokenize(batch, tokenizer, max_len, key="labels", **options):
    encoded = tokenizer(batch["sentence"], **({"truncation": True, "max_length": max_len} | options))
    return {**encoded, key: batch["label"]}


def _tagged(batch, tokenizer, max_len, *, special=IGNORE_INDEX, every_piece=False, row_zero=False, **options):
    encoded = tokenizer(batch["tokens"], is_split_into_words=True,
                        **({"truncation": True, "max_length": max_len} | options))
    labels = []
    for i, tags in enumerate(batch["ner_tags"]):
        row, previous = [], None
        for word in encoded.word_ids(0 if row_zero else i):
            if word is None:
                row.append(special)
            elif word == previous and not every_piece:
                row.append(IGNORE_INDEX)
            else:
                row.append(tags[word])
            previous = word
        labels.append(row)
    return {**encoded, "labels": labels}


# --- compute_metrics ----------------------------------------------------------------------------------------------


def test_compute_metrics_written_by_hand_passes() -> None:
    def compute_metrics(eval_pred):
        logits, labels = eval_pred
        predictions = np.argmax(logits, axis=-1).ravel()
        labels = labels.ravel()
        kept = [(p, t) for p, t in zip(predictions, labels) if t != -100]
        return {"accuracy": sum(p == t for p, t in kept) / len(kept)}

    assert check("compute_metrics", compute_metrics, quiet=True)


def test_compute_metrics_agrees_with_labkits_trainer_metrics() -> None:
    (_, sentences), (_, tags) = _metric_cases()
    assert reference_compute_metrics(sentences) == trainer_metrics("sentence")(sentences)
    assert reference_compute_metrics(tags)["accuracy"] == pytest.approx(
        trainer_metrics("token", NER_TAGS[:4])(tags)["accuracy"], abs=1e-6)


def _metrics(eval_pred, how="right"):
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    predictions = logits.argmax(-1)
    scored = labels != -100
    if how == "all":
        return {"accuracy": float((predictions == labels).mean())}
    if how == "per_row" and labels.ndim == 2:
        return {"accuracy": float(np.mean([(p[s] == t[s]).mean() for p, t, s in zip(predictions, labels, scored)]))}
    value = float((predictions[scored] == labels[scored]).mean())
    return {"float": value, "percent": {"accuracy": 100 * value}, "acc": {"acc": value},
            "tensor": {"accuracy": torch.tensor(value)}}.get(how, {"accuracy": value})


WRONG_ANSWERS = {
    "fused_qkv_weight": [
        (lambda q, k, v: torch.cat([q, k, v]), "has shape (18, 6): that is nn.Linear's (out, in) layout"),
        (lambda q, k, v: torch.cat([q.T, k.T, v.T]), "has shape (18, 6): that is nn.Linear's (out, in) layout"),
        (lambda q, k, v: torch.cat([q, k, v], dim=1), "laid side by side but not transposed"),
        (lambda q, k, v: torch.cat([k, q, v]).T, "the blocks are in the order k, q, v"),
        (lambda q, k, v: torch.cat([v, k, q]).T, "the blocks are in the order v, k, q"),
        (_in_place_qkv, "changed its inputs in place"),
    ],
    "classification_scores": [
        (lambda logits, id2label: _scores_with(logits, id2label, transform=lambda x: x), "the raw logits"),
        (lambda logits, id2label: _scores_with(logits, id2label, transform=torch.sigmoid), "each logit's sigmoid"),
        (lambda logits, id2label: _scores_with(logits, id2label, transform=lambda x: x.softmax(0)),
         "the softmax ran over the sentences (dim 0)"),
        (lambda logits, id2label: _scores_with(logits, id2label, pick=lambda p: p.argmin(-1)),
         "you picked the least likely label (argmin)"),
        (lambda logits, id2label: _scores_with(logits, id2label, name=False), "answer 0's label is 0, an id"),
        (lambda logits, id2label: _scores_with(logits, id2label, as_float=False), "score is a tensor"),
        (lambda logits, id2label: _scores_with(logits[:1], id2label), "returned 1 answers for 4 sentences"),
    ],
    "tokenize_batch": [
        (lambda batch, tok, n: _tokenize(batch, tok, n, truncation=False, max_length=None),
         "row 2 has 22 tokens, more than max_len=12"),
        (lambda batch, tok, n: _tokenize(batch, tok, n, max_length=None), "row 2 has 22 tokens"),
        (lambda batch, tok, n: _tokenize(batch, tok, n, padding="max_length"), "row 0 is padded with [PAD] to 12"),
        (lambda batch, tok, n: _tokenize(batch, tok, n, padding="longest", truncation=False, max_length=None),
         "row 0 is padded with [PAD] to 22 tokens"),
        (lambda batch, tok, n: _tokenize(batch, tok, n, padding=True, return_tensors="pt"),
         "leave return_tensors out and return lists"),
        (lambda batch, tok, n: _tokenize(batch, tok, n, add_special_tokens=False),
         "does not start with [CLS] and end with [SEP]"),
        (lambda batch, tok, n: dict(tok(batch["sentence"], truncation=True, max_length=n)), "has no 'labels' column"),
        (lambda batch, tok, n: _tokenize(batch, tok, n, key="label"), "it is named 'label'"),
        (lambda batch, tok, n: {**tok(batch["sentence"][0], truncation=True, max_length=n), "labels": batch["label"]},
         "is a single row of ids"),
    ],
    "tokenize_and_align": [
        (lambda batch, tok, n: _tagged(batch, tok, n, special=0), "[CLS] and [SEP] got label 0"),
        (lambda batch, tok, n: _tagged(batch, tok, n, every_piece=True), "every piece of a word carries"),
        (lambda batch, tok, n: _tagged(batch, tok, n, row_zero=True), "follow row 0's word ids"),
        (lambda batch, tok, n: _tagged(batch, tok, n, truncation=False, max_length=None),
         "row 1 has 15 tokens, more than max_len=12"),
        (lambda batch, tok, n: _tagged(batch, tok, n, padding="max_length"), "is padded with [PAD]"),
        (lambda batch, tok, n: {**tok(batch["tokens"], is_split_into_words=True, truncation=True, max_length=n)},
         "has no 'labels' column"),
    ],
    "compute_metrics": [
        (lambda p: _metrics(p, "all"), "counts the −100 positions too"),
        (lambda p: _metrics(p, "per_row"), "averages each sentence's accuracy"),
        (lambda p: _metrics(p, "float"), "a bare number"),
        (lambda p: _metrics(p, "percent"), "a percentage"),
        (lambda p: _metrics(p, "acc"), "name the metric 'accuracy'"),
        (lambda p: _metrics(p, "tensor"), "accuracy is a Tensor"),
    ],
}
