"""bertviz offline: the pinned JavaScript libraries, the rewritten views, and bad input. (That the views really draw
on the first run is tests/test_browser.py's job.)"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re

import pytest
import torch
from transformers import BertConfig, BertModel

from labkit import js_assets
from labkit.js_assets import LIBRARIES, library_source
from labkit.viz.bertviz_views import (CDN_REQUIRE, head_view, model_attention, model_view, neuron_model, neuron_view,
                                      offline_html)

TOKENS = ["[CLS]", "the", "cat", "sat", "[SEP]"]


@pytest.fixture(scope="module")
def attention() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(2, 3, 5, 5).softmax(-1)  # (layers, heads, seq, seq)


def test_the_libraries_are_on_disk_with_their_licences() -> None:
    for name, library in LIBRARIES.items():
        source = library_source(name)
        assert len(source) > 50_000 and library.version in source
        assert library.licence_path.read_text().strip()


def test_a_tarball_that_does_not_match_its_pin_is_refused() -> None:
    library = LIBRARIES["d3"]
    data = b"not the d3 tarball"
    with pytest.raises(ValueError, match="does not match the pinned"):
        js_assets._check_integrity(library, data)
    pinned = dataclasses.replace(library,
                                 integrity="sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode())
    js_assets._check_integrity(pinned, data)  # the same check passes for the bytes it was made from


def test_a_missing_library_says_how_to_fetch_it(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(js_assets, "JS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"run `python -m labkit.js_assets` once"):
        library_source("jquery")
    with pytest.raises(ValueError, match=r"name must be one of \['d3', 'jquery'\]"):
        library_source("react")


@pytest.mark.parametrize("view", [head_view, model_view])
def test_the_views_load_no_script_from_a_cdn(view, attention) -> None:
    html = view(attention, TOKENS, html_action="return").data
    assert CDN_REQUIRE not in html
    assert not re.search(r"<script[^>]+src=", html)  # every script is inline
    assert html.index(library_source("d3")[:200]) < html.index("window.requirejs = window.require") < \
        html.index("requirejs(['jquery', 'd3']")  # libraries, then the stand-in, then bertviz's own script


def test_weights_are_rounded_before_bertviz_writes_them(attention) -> None:
    html = head_view(attention, TOKENS, html_action="return", decimals=2).data
    numbers = re.findall(r"0\.\d+", html.split('"attn": ')[1][:2000])
    assert numbers and all(len(n) <= 4 for n in numbers)
    exact = head_view(attention, TOKENS, html_action="return", decimals=6).data
    assert len(html) < len(exact)


def test_view_mode_displays_and_returns_nothing(attention, monkeypatch) -> None:
    shown = []
    monkeypatch.setattr("labkit.viz.bertviz_views.display", shown.append)
    assert head_view(attention, TOKENS) is None
    assert len(shown) == 1 and "d3" in shown[0].data


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(attention=None), ValueError, "the model returned no attentions"),
    (dict(tokens=TOKENS[:3]), ValueError, "3 tokens but the attention covers 5 positions"),
    (dict(max_tokens=4), ValueError, r"5 tokens are more than bertviz's views handle well \(4"),
    (dict(html_action="show"), ValueError, "html_action must be 'view' or 'return'"),
    (dict(decimals=0), ValueError, "decimals must be a positive int"),
])
def test_bad_input_gets_one_clear_error(attention, kwargs, error, match) -> None:
    arguments = dict(attention=attention, tokens=TOKENS) | kwargs
    with pytest.raises(error, match=match):
        head_view(arguments.pop("attention"), arguments.pop("tokens"), **arguments)


def test_html_from_another_bertviz_version_is_refused() -> None:
    with pytest.raises(ValueError, match="does not know this bertviz version"):
        offline_html("<div>no require.js here</div>")


@pytest.fixture(scope="module")
def tiny_bert():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, attn_implementation="sdpa")
    return BertModel(config).eval()


class CharTokenizerStub:
    """Enough of a Hugging Face tokenizer for model_attention: one id per character, [CLS]=1 and [SEP]=2."""

    def __call__(self, text, text_b=None, return_tensors="pt"):
        from transformers import BatchEncoding

        ids = [1, *(3 + ord(c) % 30 for c in text), 2]
        segments = [0] * len(ids)
        if text_b is not None:
            ids += [*(3 + ord(c) % 30 for c in text_b), 2]
            segments += [1] * (len(text_b) + 1)
        return BatchEncoding({"input_ids": torch.tensor([ids]), "token_type_ids": torch.tensor([segments]),
                              "attention_mask": torch.ones(1, len(ids), dtype=torch.long)})

    def convert_ids_to_tokens(self, ids):
        return [{1: "[CLS]", 2: "[SEP]"}.get(int(i), f"#{int(i)}") for i in ids]


def test_model_attention_switches_sdpa_to_eager_and_says_so(tiny_bert, capsys) -> None:
    attn, tokens = model_attention(tiny_bert, CharTokenizerStub(), "abc", "de")
    assert "switching BertModel from 'sdpa' to eager attention" in capsys.readouterr().out
    assert attn.shape == (2, 2, 8, 8) and tokens[0] == "[CLS]" and tokens.count("[SEP]") == 2
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 2, 8))
    model_attention(tiny_bert, CharTokenizerStub(), "abc")
    assert "switching" not in capsys.readouterr().out  # eager now: nothing to say


@pytest.mark.parametrize("text, text_b", [("", None), ("   ", None), ("fine", " ")])
def test_model_attention_refuses_empty_text(tiny_bert, text, text_b) -> None:
    with pytest.raises(ValueError, match="is empty: give a sentence to look at"):
        model_attention(tiny_bert, CharTokenizerStub(), text, text_b)


def test_the_neuron_model_computes_the_attention_hugging_face_computes() -> None:
    from labkit.assets import load_model, load_tokenizer

    neuron, neuron_tokenizer = neuron_model()  # offline: the packaged all-MiniLM-L6-v2
    reference, tokenizer = load_model(attentions=True), load_tokenizer()
    inputs = tokenizer("the cat sat on the mat", "it was tired", return_tensors="pt")
    with torch.no_grad():
        ours = neuron(inputs["input_ids"], token_type_ids=inputs["token_type_ids"])[-1]
        theirs = reference(**inputs).attentions
    assert len(ours) == len(theirs) == 6
    for layer, expected in zip(ours, theirs):
        torch.testing.assert_close(layer["attn"], expected, atol=1e-5, rtol=0)
        assert layer["queries"].shape == layer["keys"].shape == (1, 12, inputs["input_ids"].shape[1], 32)
    assert neuron_tokenizer.tokenize("The cat's mat") == tokenizer.tokenize("The cat's mat")


def test_the_neuron_view_is_offline_too() -> None:
    html = neuron_view("the cat sat on the mat", "it was tired", html_action="return").data
    assert CDN_REQUIRE not in html and not re.search(r"<script[^>]+src=", html)
    assert "window.bertviz_params" in html
    with pytest.raises(ValueError, match="text_b is empty"):
        neuron_view("fine", "  ")


def test_a_checkpoint_without_safetensors_is_refused(tmp_path) -> None:
    from labkit.assets import packaged_encoder_dir

    for name in ("config.json", "vocab.txt"):
        (tmp_path / name).write_bytes((packaged_encoder_dir() / name).read_bytes())
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ValueError, match=r"lacks model.safetensors"):
        neuron_model(path=tmp_path)
