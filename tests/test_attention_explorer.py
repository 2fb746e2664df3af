"""The attention explorer draws exactly the maps labkit.attention_stats computes, sends only what is shown, and
shows bad input instead of raising."""

from __future__ import annotations

import json

import numpy as np
import plotly.io
import pytest
import torch

from labkit.attention_stats import aggregate_heads, head_statistics
from labkit.viz.attention_explorer import AttentionExplorer

LAYERS, HEADS, SEQ = 2, 3, 8
TOKENS = ["[CLS]", "the", "cat", "sat", ",", "then", "ran", "[SEP]"]


def random_attention(seed: int, seq: int = SEQ) -> torch.Tensor:
    torch.manual_seed(seed)
    return (2 * torch.randn(LAYERS, HEADS, seq, seq)).softmax(-1)


@pytest.fixture
def attn() -> torch.Tensor:
    return random_attention(0)


@pytest.fixture
def view(attn) -> AttentionExplorer:
    return AttentionExplorer(attn, TOKENS, reference=random_attention(1))


def drawn(view: AttentionExplorer) -> np.ndarray:
    return np.asarray(view.figure.data[0].z, dtype=float)


def test_the_heatmap_is_the_chosen_head_rounded(view, attn) -> None:
    view.layer.value, view.head.value = 1, 2
    np.testing.assert_allclose(drawn(view), attn[1, 2].numpy(), atol=5e-4)
    assert list(view.figure.layout.xaxis.ticktext) == TOKENS
    assert view.caption.value == "<b>layer 1, head 2</b>"


@pytest.mark.parametrize("how", ["mean", "max", "rollout"])
def test_combined_heads_are_aggregate_heads(view, attn, how) -> None:
    view.layer.value = 1
    view.combine.value = how
    assert view.head.disabled
    np.testing.assert_allclose(drawn(view), aggregate_heads(attn, how)[1].numpy(), atol=5e-4)
    assert f"{how} of heads" in view.caption.value


def test_moving_a_slider_changes_the_map(view) -> None:
    before = drawn(view)
    view.head.value = 1
    assert not np.allclose(drawn(view), before)


def test_several_query_tokens_at_once(view, attn) -> None:
    view.queries.value = (2, 5)
    assert list(view.figure.data[0].y) == [2, 5]
    assert list(view.figure.layout.yaxis.ticktext) == ["cat", "then"]
    np.testing.assert_allclose(drawn(view), attn[0, 0, [2, 5]].numpy(), atol=5e-4)
    view.queries.value = ()
    assert drawn(view).shape == (SEQ, SEQ)


def test_the_difference_to_the_reference(view, attn) -> None:
    reference = random_attention(1)
    view.difference.value = True
    np.testing.assert_allclose(drawn(view), (attn - reference)[0, 0].numpy(), atol=5e-4)
    assert view.figure.data[0].colorscale[0][1] != view.figure.data[0].colorscale[-1][1]
    assert view.figure.data[0].zmin == -view.figure.data[0].zmax
    view.combine.value = "rollout"  # heads are combined first, then subtracted
    expected = aggregate_heads(attn, "rollout")[0] - aggregate_heads(reference, "rollout")[0]
    np.testing.assert_allclose(drawn(view), expected.numpy(), atol=5e-4)
    view.statistic.value = "entropy"
    expected = head_statistics(attn, TOKENS)["entropy"] - head_statistics(reference, TOKENS)["entropy"]
    np.testing.assert_allclose(np.asarray(view.stats_figure.data[0].z, dtype=float), expected.numpy(), atol=5e-4)


def test_without_a_reference_the_difference_is_off(attn) -> None:
    assert AttentionExplorer(attn, TOKENS).difference.disabled


@pytest.mark.parametrize("name", ["entropy", "distance", "share on [CLS]", "share on [SEP]", "share on punctuation"])
def test_every_statistic_is_drawn(view, attn, name) -> None:
    view.statistic.value = name
    expected = head_statistics(attn, TOKENS)[name].numpy()
    np.testing.assert_allclose(np.asarray(view.stats_figure.data[0].z, dtype=float), expected, atol=5e-4)


def test_a_checkpoint_slider_over_a_training_run() -> None:
    run = {"step 0": random_attention(3), "step 100": random_attention(4), "step 200": random_attention(5)}
    view = AttentionExplorer(run, TOKENS)
    assert view.checkpoint.layout.display == ""
    view.checkpoint.value = "step 200"
    np.testing.assert_allclose(drawn(view), run["step 200"][0, 0].numpy(), atol=5e-4)
    assert view.caption.value.startswith("<b>step 200, ")
    assert AttentionExplorer(run["step 0"], TOKENS).checkpoint.layout.display == "none"


def test_the_grid_shows_every_head_of_the_layer(view, attn) -> None:
    view.layer.value = 1
    fig = view.grid_figure()
    assert len(fig.data) == HEADS
    for h in range(HEADS):
        np.testing.assert_allclose(np.asarray(fig.data[h].z, dtype=float), attn[1, h].numpy(), atol=5e-4)


def test_long_sequences_are_windowed_with_a_message() -> None:
    seq = 100
    attn = random_attention(6, seq)
    tokens = [f"t{i}" for i in range(seq)]
    view = AttentionExplorer(attn, tokens, max_tokens=40)
    assert drawn(view).shape == (40, 40)
    assert "100 tokens are more than this view draws at once (40)" in view.message.value
    view.start.value = 60
    assert list(view.figure.data[0].x) == list(range(60, 100))
    np.testing.assert_allclose(drawn(view), attn[0, 0, 60:, 60:].numpy(), atol=5e-4)
    view.queries.value = (3, 70)
    assert list(view.figure.data[0].y) == [70] and "queries [3] are outside the window" in view.message.value


def test_the_payload_follows_what_is_shown() -> None:
    """6 layers × 12 heads × 64 tokens: the heatmap sends one 64 × 64 float32 map, far under 1 MB."""
    torch.manual_seed(0)
    attn = torch.randn(6, 12, 64, 64).softmax(-1)
    view = AttentionExplorer(attn, [f"w{i}" for i in range(64)])
    z = view.figure.data[0].z
    assert isinstance(z, np.ndarray) and z.dtype == np.float32 and z.shape == (64, 64)  # sent as a binary buffer
    payload = len(plotly.io.to_json(view.figure)) + len(plotly.io.to_json(view.stats_figure))  # as JSON: more
    everything = len(json.dumps(attn.tolist()))
    assert payload < 100_000 < everything / 10


def test_export_writes_a_self_contained_html_file(view, tmp_path) -> None:
    path = view.export(tmp_path / "head.html")
    text = path.read_text()
    assert "plotly" in text and "cdn.plot.ly" not in text.split("<body>")[1][:2000]
    assert "layer 0, head 0" in text  # the caption becomes the exported figure's title
    assert "exported to" in view.message.value
    assert view.export(tmp_path / "head.gif") is None
    assert "must end in .html, .png or .svg" in view.message.value


def test_export_draws_png_and_svg_images(view, tmp_path) -> None:
    png = view.export(tmp_path / "head.png")
    assert png is not None, view.message.value
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1400, 1000)  # plotly's default 700 × the figure's 500, at scale 2
    svg = view.export(tmp_path / "head.svg").read_text()
    assert svg.startswith("<svg") and "layer 0, head 0" in svg and ">cat<" in svg  # title and token labels drawn


def test_image_export_without_a_browser_says_what_is_missing(view, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-such-chromium"))
    assert view.export(tmp_path / "head.png") is None
    assert "needs Chrome or Chromium" in view.message.value and ".html export works without it" in view.message.value


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(attentions=None), ValueError, "the model returned no attentions"),
    (dict(tokens=TOKENS[:-1]), ValueError, "7 tokens but the attention covers 8 positions"),
    (dict(reference=torch.rand(1, 1, SEQ, SEQ)), ValueError, r"reference has shape \(1, 1, 8, 8\)"),
    (dict(attentions={}), ValueError, "attentions is an empty mapping"),
    (dict(max_tokens=0), ValueError, "max_tokens must be a positive int"),
])
def test_bad_input_at_construction_is_one_clear_error(attn, kwargs, error, match) -> None:
    arguments = dict(attentions=attn, tokens=TOKENS) | kwargs
    with pytest.raises(error, match=match):
        AttentionExplorer(arguments.pop("attentions"), arguments.pop("tokens"), **arguments)


def test_an_index_out_of_range_is_shown_not_raised(view) -> None:
    view.head.max = 10
    view.head.value = 7  # a slider set beyond the model from Python
    assert "head 7 is out of range: this model has 3 heads, numbered 0..2" in view.message.value


# ----------------------------------------------------------------------------- cross-attention (target × source)

TARGET = list("1991-03-05") + ["<eos>"]
SOURCE = ["march", "the", "fifth", ",", "nineteen", "ninety", "one"]


@pytest.fixture
def cross() -> torch.Tensor:
    torch.manual_seed(7)
    return (2 * torch.randn(LAYERS, HEADS, len(TARGET), len(SOURCE))).softmax(-1)


@pytest.fixture
def cross_view(cross) -> AttentionExplorer:
    return AttentionExplorer(cross, TARGET, key_tokens=SOURCE, title="dates")


def test_cross_attention_puts_target_tokens_down_the_side_and_source_tokens_along_the_top(cross_view, cross):
    cross_view.layer.value, cross_view.head.value = 1, 2
    z = cross_view.figure.data[0].z
    assert isinstance(z, np.ndarray) and z.dtype == np.float32 and z.shape == (11, 7)  # still a binary buffer
    np.testing.assert_allclose(drawn(cross_view), cross[1, 2].numpy(), atol=5e-4)
    assert list(cross_view.figure.layout.xaxis.ticktext) == SOURCE
    assert list(cross_view.figure.layout.yaxis.ticktext) == TARGET
    assert cross_view.figure.layout.xaxis.title.text == "source token (key)"
    assert cross_view.figure.layout.yaxis.title.text == "target token (query)"
    assert cross_view.caption.value == "<b>dates: layer 1, head 2</b>"
    assert cross_view.start.layout.display == "none"  # drawn whole: no window


def test_cross_attention_offers_only_what_makes_sense_for_it(cross_view, cross) -> None:
    assert "rollout" not in cross_view.combine.options and "max" in cross_view.combine.options
    assert tuple(cross_view.statistic.options) == ("entropy", "share on punctuation")
    cross_view.combine.value = "max"
    np.testing.assert_allclose(drawn(cross_view), cross.amax(1)[0].numpy(), atol=5e-4)
    cross_view.statistic.value = "share on punctuation"
    expected = head_statistics(cross, SOURCE, cross=True)["share on punctuation"].numpy()
    np.testing.assert_allclose(np.asarray(cross_view.stats_figure.data[0].z, dtype=float), expected, atol=5e-4)


def test_cross_attention_queries_grid_and_difference(cross, cross_view) -> None:
    cross_view.queries.value = (0, 3)
    assert list(cross_view.figure.layout.yaxis.ticktext) == ["1", "1"]
    np.testing.assert_allclose(drawn(cross_view), cross[0, 0, [0, 3]].numpy(), atol=5e-4)
    fig = cross_view.grid_figure()
    assert np.asarray(fig.data[0].z).shape == (11, 7)
    reference = cross.flip(-1)
    view = AttentionExplorer(cross, TARGET, key_tokens=SOURCE, reference=reference)
    view.difference.value = True
    np.testing.assert_allclose(drawn(view), (cross - reference)[0, 0].numpy(), atol=5e-4)


def test_bad_cross_attention_input_is_one_clear_error(cross) -> None:
    with pytest.raises(ValueError, match="6 key tokens but the attention covers 7 positions"):
        AttentionExplorer(cross, TARGET, key_tokens=SOURCE[:-1])
    with pytest.raises(ValueError, match=r"square \(seq, seq\), got \(11, 7\); for cross-attention"):
        AttentionExplorer(cross, TARGET)
    with pytest.raises(ValueError, match="cross-attention is drawn whole, but this map is 11 × 7, more than "
                                         "max_tokens=8"):
        AttentionExplorer(cross, TARGET, key_tokens=SOURCE, max_tokens=8)
