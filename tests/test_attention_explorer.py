"""The attention explorer draws exactly the maps labkit.attention_stats computes, sends the browser each checkpoint
once as bytes that decode to the attention within one quantisation step, links its controls to the canvas, and shows
bad input instead of raising. (That the canvas's JavaScript slices those bytes into `current_map()` is checked in a
real browser: tests/test_browser.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from ipywidgets.widgets.widget_link import DirectionalLink

from labkit.attention_stats import aggregate_heads, head_statistics
from labkit.viz.attention_canvas import dequantised, from_float32_bytes, quantised_bytes
from labkit.viz.attention_explorer import AttentionExplorer
from labkit.viz.view import sent_bytes

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


STEP = 1 / 255  # one quantisation step of the bytes the canvas is sent


def drawn(view: AttentionExplorer) -> np.ndarray:
    return view.current_map()[0].numpy()


def sent(data: bytes, view: AttentionExplorer) -> np.ndarray:
    """A (layers, heads, queries, keys) buffer of the canvas, read as its JavaScript reads it."""
    return dequantised(data, view.canvas.shape)


def sent_statistic(view: AttentionExplorer, name: str, change: bool = False) -> np.ndarray:
    """(layers, heads): the statistic `name` as the canvas was sent it (its change from the reference if asked)."""
    shape = (len(view.statistic.options), view.n_layers, view.n_heads)
    data = view.canvas.statistics_change if change else view.canvas.statistics
    return from_float32_bytes(data, shape)[view.statistic.options.index(name)]


def test_the_heatmap_is_the_chosen_head(view, attn) -> None:
    view.layer.value, view.head.value = 1, 2
    np.testing.assert_allclose(drawn(view), attn[1, 2].numpy(), atol=1e-6)
    assert (view.canvas.layer, view.canvas.head) == (1, 2)
    assert view.canvas.tokens == view.canvas.key_tokens == TOKENS
    assert view.caption.value == "<b>layer 1, head 2</b>"


@pytest.mark.parametrize("how", ["mean", "max", "rollout"])
def test_combined_heads_are_aggregate_heads(view, attn, how) -> None:
    view.layer.value = 1
    view.combine.value = how
    assert view.head.disabled
    assert view.canvas.combinations[view.canvas.combine] == how
    np.testing.assert_allclose(drawn(view), aggregate_heads(attn, how)[1].numpy(), atol=1e-6)
    assert f"{how} of heads" in view.caption.value


def test_moving_a_slider_changes_the_map(view) -> None:
    before = drawn(view)
    view.head.value = 1
    assert not np.allclose(drawn(view), before)


def test_several_query_tokens_at_once(view, attn) -> None:
    view.queries.value = (2, 5)
    assert view.current_map()[1] == view.canvas.queries == [2, 5]
    assert [view.canvas.tokens[q] for q in view.canvas.queries] == ["cat", "then"]
    np.testing.assert_allclose(drawn(view), attn[0, 0, [2, 5]].numpy(), atol=1e-6)
    view.queries.value = ()
    assert drawn(view).shape == (SEQ, SEQ) and view.canvas.queries == []


def test_the_difference_to_the_reference(view, attn) -> None:
    reference = random_attention(1)
    view.difference.value = True
    assert view.canvas.difference
    np.testing.assert_allclose(drawn(view), (attn - reference)[0, 0].numpy(), atol=1e-6)
    assert view.caption.value == "<b>layer 0, head 0 minus the reference</b>"
    view.combine.value = "rollout"  # heads are combined first, then subtracted
    expected = aggregate_heads(attn, "rollout")[0] - aggregate_heads(reference, "rollout")[0]
    np.testing.assert_allclose(drawn(view), expected.numpy(), atol=1e-6)
    view.statistic.value = "entropy"
    expected = head_statistics(attn, TOKENS)["entropy"] - head_statistics(reference, TOKENS)["entropy"]
    np.testing.assert_allclose(view.statistics()["entropy"].numpy(), expected.numpy(), atol=1e-6)
    np.testing.assert_allclose(sent_statistic(view, "entropy", change=True), expected.numpy(), atol=1e-5)


def test_without_a_reference_the_difference_is_off(attn) -> None:
    view = AttentionExplorer(attn, TOKENS)
    assert view.difference.disabled
    assert view.canvas.reference == view.canvas.reference_rollout == view.canvas.statistics_change == b""


@pytest.mark.parametrize("name", ["entropy", "distance", "share on [CLS]", "share on [SEP]", "share on punctuation"])
def test_every_statistic_is_drawn(view, attn, name) -> None:
    view.statistic.value = name
    assert view.canvas.statistic_names[view.canvas.statistic] == name
    expected = head_statistics(attn, TOKENS)[name].numpy()
    np.testing.assert_allclose(sent_statistic(view, name), expected, atol=1e-5)


def test_a_checkpoint_slider_over_a_training_run() -> None:
    run = {"step 0": random_attention(3), "step 100": random_attention(4), "step 200": random_attention(5)}
    view = AttentionExplorer(run, TOKENS)
    assert view.checkpoint.layout.display == ""
    assert view.canvas.run == "step 0"
    view.checkpoint.value = "step 200"  # through the kernel: that checkpoint's bytes go to the canvas
    np.testing.assert_allclose(drawn(view), run["step 200"][0, 0].numpy(), atol=1e-6)
    np.testing.assert_allclose(sent(view.canvas.attention, view), run["step 200"].numpy(), atol=STEP / 2)
    expected = aggregate_heads(run["step 200"], "rollout").numpy()
    np.testing.assert_allclose(dequantised(view.canvas.rollout, (LAYERS, SEQ, SEQ)), expected, atol=STEP / 2)
    np.testing.assert_allclose(sent_statistic(view, "entropy"), head_statistics(run["step 200"], TOKENS)["entropy"],
                               atol=1e-5)
    assert view.canvas.run == "step 200" and view.caption.value.startswith("<b>step 200, ")
    single = AttentionExplorer(run["step 0"], TOKENS)
    assert single.checkpoint.layout.display == "none" and single.canvas.run == ""


def test_the_grid_shows_every_head_of_the_layer(view, attn) -> None:
    view.layer.value = 1
    view.grid_button.value = True
    assert view.canvas.grid and view.canvas.layer == 1
    np.testing.assert_allclose(view.layer_maps().numpy(), attn[1].numpy(), atol=1e-6)
    view.difference.value = True
    np.testing.assert_allclose(view.layer_maps().numpy(), (attn - random_attention(1))[1].numpy(), atol=1e-6)


def test_long_sequences_are_windowed_with_a_message() -> None:
    seq = 100
    attn = random_attention(6, seq)
    tokens = [f"t{i}" for i in range(seq)]
    view = AttentionExplorer(attn, tokens, max_tokens=40)
    assert drawn(view).shape == (40, 40) and view.canvas.window == 40
    assert "100 tokens are more than this view draws at once (40)" in view.message.value
    view.start.value = 60
    assert view.current_map()[2] == list(range(60, 100)) and view.canvas.start == 60
    np.testing.assert_allclose(drawn(view), attn[0, 0, 60:, 60:].numpy(), atol=1e-6)
    view.queries.value = (3, 70)
    assert view.current_map()[1] == [70] and "queries [3] are outside the window" in view.message.value
    assert view.canvas.queries == [3, 70]  # the canvas drops 3 itself, as current_map does
    assert view.layer_maps().shape == (HEADS, 40, 40)


def test_the_payload_is_one_byte_a_weight() -> None:
    """6 layers × 12 heads × 64 tokens: the whole attention goes once, one byte a weight: under 1 MB with every
    widget's state, less than a tenth of the same weights as JSON (as bertviz sends them)."""
    torch.manual_seed(0)
    attn = torch.randn(6, 12, 64, 64).softmax(-1)
    view = AttentionExplorer(attn, [f"w{i}" for i in range(64)])
    assert len(view.canvas.attention) == attn.numel() and len(view.canvas.rollout) == 6 * 64 * 64
    payload = sent_bytes(view.view, view.caption, *view.links)
    assert attn.numel() < payload < 1_000_000 and 10 * payload < len(json.dumps(attn.tolist()))


def test_the_buffers_decode_to_the_attention_within_one_quantisation_step(view, attn) -> None:
    reference = random_attention(1)
    assert view.canvas.shape == [LAYERS, HEADS, SEQ, SEQ]
    np.testing.assert_allclose(sent(view.canvas.attention, view), attn.numpy(), atol=STEP / 2)
    np.testing.assert_allclose(sent(view.canvas.reference, view), reference.numpy(), atol=STEP / 2)
    for data, expected in ((view.canvas.rollout, attn), (view.canvas.reference_rollout, reference)):
        np.testing.assert_allclose(dequantised(data, (LAYERS, SEQ, SEQ)),
                                   aggregate_heads(expected, "rollout").numpy(), atol=STEP / 2)
    # "mean" and "max" are computed in the browser from these bytes: still within one step
    np.testing.assert_allclose(sent(view.canvas.attention, view).mean(1), attn.mean(1).numpy(), atol=STEP / 2)


def test_quantised_bytes_keep_zero_and_one_exact_and_round_to_the_nearest_step() -> None:
    weights = torch.tensor([0.0, 1.0, 0.5, 1 / 255, 0.4 / 255, 0.6 / 255, 1 + 1e-7])
    data = quantised_bytes(weights)
    assert list(data) == [0, 255, 128, 1, 0, 1, 255]
    assert dequantised(data, (7,))[:2].tolist() == [0.0, 1.0]


def test_controls_set_from_python_reach_the_canvas(view) -> None:
    view.layer.value, view.head.value, view.combine.value = 1, 2, "max"
    view.queries.value, view.difference.value, view.statistic.value = (4, 1), True, "distance"
    view.grid_button.value = True
    canvas = view.canvas
    assert (canvas.layer, canvas.head, canvas.queries, canvas.difference, canvas.grid) == (1, 2, [4, 1], True, True)
    assert canvas.combinations[canvas.combine] == "max"
    assert canvas.statistic_names[canvas.statistic] == "distance"


def test_the_controls_are_linked_to_the_canvas_in_the_browser(view) -> None:
    """Every control but the checkpoint reaches the canvas by a front-end link: no kernel round trip."""
    links = {(link.source[0], link.source[1], link.target[1]) for link in view.links
             if isinstance(link, DirectionalLink) and link.target[0] is view.canvas}
    assert links == {(view.layer, "value", "layer"), (view.head, "value", "head"),
                     (view.combine, "index", "combine"), (view.queries, "index", "queries"),
                     (view.start, "value", "start"), (view.difference, "value", "difference"),
                     (view.statistic, "index", "statistic"), (view.grid_button, "value", "grid")}


def test_a_control_moved_in_the_browser_is_not_copied_again_by_the_kernel(view) -> None:
    """The browser's link set the canvas already; a late copy from the kernel could undo a newer value."""
    view.layer.set_state({"value": 1})  # as the slider's message from the browser arrives
    assert view.canvas.layer == 0 and view.caption.value == "<b>layer 1, head 0</b>"
    view.canvas.set_state({"layer": 1})  # the canvas's own message, sent by the browser's link
    assert view.canvas.layer == 1


def test_the_canvas_script_ships_with_the_package_and_loads_nothing(view) -> None:
    """The JavaScript is package data (an installed labkit has it) and imports no module: it draws offline."""
    script = view.canvas._esm
    assert "export default { render }" in script and not re.search(r"^\s*import\b|import\(|https?:", script, re.M)
    pyproject = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    package_data = r'^\[tool\.setuptools\.package-data\]\n(?:.*\n)*?"labkit\.viz" = \[[^\]]*"\*\.js"'
    assert re.search(package_data, pyproject, re.M)


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
    (dict(decimals=0), ValueError, "decimals must be a positive int"),
    (dict(attentions=2 * random_attention(0)), ValueError,
     r"attentions must be attention weights in \[0, 1\] \(rows of a softmax\), got values from \S+ to 1\.98"),
    (dict(attentions={"step 0": random_attention(0), "step 9": -random_attention(0)}), ValueError,
     r"attentions\['step 9'\] must be attention weights in \[0, 1\]"),
    (dict(reference=torch.full((LAYERS, HEADS, SEQ, SEQ), float("nan"))), ValueError,
     r"reference must be attention weights in \[0, 1\] \(rows of a softmax\), got values from nan to nan"),
])
def test_bad_input_at_construction_is_one_clear_error(attn, kwargs, error, match) -> None:
    arguments = dict(attentions=attn, tokens=TOKENS) | kwargs
    with pytest.raises(error, match=match):
        AttentionExplorer(arguments.pop("attentions"), arguments.pop("tokens"), **arguments)


def test_an_index_out_of_range_is_shown_not_raised(view) -> None:
    view.head.max = 10
    view.head.value = 7  # a slider set beyond the model from Python
    assert "head 7 is out of range: this model has 3 heads, numbered 0..2" in view.message.value
    assert view.canvas.head == 7  # the canvas says the same in its title line


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


def test_cross_attention_puts_target_tokens_down_the_side_and_source_tokens_along_the_top(cross_view, cross,
                                                                                         tmp_path) -> None:
    cross_view.layer.value, cross_view.head.value = 1, 2
    canvas = cross_view.canvas
    assert canvas.shape == [LAYERS, HEADS, 11, 7] and canvas.cross
    np.testing.assert_allclose(sent(canvas.attention, cross_view), cross.numpy(), atol=STEP / 2)
    assert canvas.rollout == b""  # rollout chains self-attention only: not offered, not sent
    np.testing.assert_allclose(drawn(cross_view), cross[1, 2].numpy(), atol=1e-6)
    assert (canvas.tokens, canvas.key_tokens) == (TARGET, SOURCE)  # down the side, along the top
    assert cross_view.caption.value == "<b>dates: layer 1, head 2</b>"
    exported = cross_view.export(tmp_path / "cross.html").read_text()
    assert '"source token (key)"' in exported and '"target token (query)"' in exported and '"fifth"' in exported
    assert cross_view.start.layout.display == "none"  # drawn whole: no window


def test_cross_attention_offers_only_what_makes_sense_for_it(cross_view, cross) -> None:
    assert "rollout" not in cross_view.combine.options and "max" in cross_view.combine.options
    assert tuple(cross_view.statistic.options) == ("entropy", "share on punctuation")
    cross_view.combine.value = "max"
    np.testing.assert_allclose(drawn(cross_view), cross.amax(1)[0].numpy(), atol=1e-6)
    cross_view.statistic.value = "share on punctuation"
    expected = head_statistics(cross, SOURCE, cross=True)["share on punctuation"].numpy()
    np.testing.assert_allclose(sent_statistic(cross_view, "share on punctuation"), expected, atol=1e-5)


def test_cross_attention_queries_grid_and_difference(cross, cross_view) -> None:
    cross_view.queries.value = (0, 3)
    assert [cross_view.canvas.tokens[q] for q in cross_view.canvas.queries] == ["1", "1"]
    np.testing.assert_allclose(drawn(cross_view), cross[0, 0, [0, 3]].numpy(), atol=1e-6)
    assert cross_view.layer_maps().shape == (HEADS, 11, 7)
    reference = cross.flip(-1)
    view = AttentionExplorer(cross, TARGET, key_tokens=SOURCE, reference=reference)
    np.testing.assert_allclose(sent(view.canvas.reference, view), reference.numpy(), atol=STEP / 2)
    assert view.canvas.reference_rollout == b""
    view.difference.value = True
    np.testing.assert_allclose(drawn(view), (cross - reference)[0, 0].numpy(), atol=1e-6)


def test_bad_cross_attention_input_is_one_clear_error(cross) -> None:
    with pytest.raises(ValueError, match="6 key tokens but the attention covers 7 positions"):
        AttentionExplorer(cross, TARGET, key_tokens=SOURCE[:-1])
    with pytest.raises(ValueError, match=r"square \(seq, seq\), got \(11, 7\); for cross-attention"):
        AttentionExplorer(cross, TARGET)
    with pytest.raises(ValueError, match="cross-attention is drawn whole, but this map is 11 × 7, more than "
                                         "max_tokens=8"):
        AttentionExplorer(cross, TARGET, key_tokens=SOURCE, max_tokens=8)
