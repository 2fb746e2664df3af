"""Figures and the attention views: the data they draw, and what moving a control changes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from labkit.attention import softmax_saturation
from labkit.viz.attention_widgets import AttentionHeatmapWidget, SoftmaxSaturationDemo
from labkit.viz.figures import heatmap, line_plot, mask_heatmap, to_numpy

TOKENS = "the cat sat on the mat".split()


def test_heatmap_keeps_repeated_labels_apart_and_puts_row_zero_on_top() -> None:
    z = np.arange(12.0).reshape(3, 4)
    fig = heatmap(z, ["a", "b", "a", "c"], ["x", "y", "x"])
    assert np.array_equal(fig.data[0].z, z)
    assert list(fig.layout.xaxis.ticktext) == ["a", "b", "a", "c"]
    assert fig.layout.yaxis.autorange == "reversed"
    assert fig.data[0].customdata[1][2] == "y → a"


def test_heatmap_rejects_labels_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="2 row and 4 column labels"):
        heatmap(np.zeros((3, 4)), list("abcd"), ["x", "y"])
    with pytest.raises(ValueError, match="2-D"):
        heatmap(np.zeros(3))


def test_mask_heatmap_and_line_plot_draw_the_values() -> None:
    mask = torch.ones(3, 3, dtype=torch.bool).tril()
    assert np.array_equal(mask_heatmap(mask).data[0].z, mask.numpy().astype(float))
    fig = line_plot(torch.arange(4), {"a": torch.ones(4), "b": np.zeros(4)})
    assert [t.name for t in fig.data] == ["a", "b"]
    assert to_numpy(torch.ones(2, requires_grad=True)).tolist() == [1.0, 1.0]


@pytest.mark.parametrize("d_k", [1, 16, 1024])
def test_softmax_saturation_matches_the_definition(d_k: int) -> None:
    rows = softmax_saturation(d_k, n_keys=5, seed=3)
    raw = rows["scores"]
    assert torch.allclose(rows["unscaled"], torch.softmax(raw, 0), atol=1e-6)
    assert torch.allclose(rows["scaled"], torch.softmax(raw / d_k**0.5, 0), atol=1e-6)


def test_unscaled_softmax_saturates_as_d_k_grows() -> None:
    # Averaged over seeds, the largest unscaled weight climbs towards 1 while the scaled one stays put.
    def mean_max(d_k: int, key: str) -> float:
        return float(np.mean([softmax_saturation(d_k, seed=s)[key].max() for s in range(20)]))

    assert mean_max(1024, "unscaled") > 0.95
    assert mean_max(1024, "scaled") < 0.8
    assert mean_max(1024, "unscaled") > mean_max(4, "unscaled") + 0.2


def test_saturation_demo_redraws_when_the_slider_moves() -> None:
    demo = SoftmaxSaturationDemo(seed=1)
    before = np.array(demo.figure.data[0].y)
    demo.d_k.value = 1024
    after = np.array(demo.figure.data[0].y)
    assert not np.allclose(before, after)
    assert np.allclose(after, softmax_saturation(1024, seed=1)["unscaled"])
    assert demo.figure.layout.title.text.startswith("d_k = 1024")
    with pytest.raises(ValueError, match="d_k must be a positive int"):
        softmax_saturation(0)


def test_heatmap_widget_follows_head_and_query() -> None:
    weights = torch.softmax(torch.randn(3, 6, 6, generator=torch.Generator().manual_seed(0)), dim=-1)
    view = AttentionHeatmapWidget(weights, TOKENS)
    assert np.allclose(view.heatmap.data[0].z, weights[0].numpy())
    view.head.value = 2
    assert np.allclose(view.heatmap.data[0].z, weights[2].numpy())
    view.query.value = 4
    assert np.allclose(view.bars.data[0].y, weights[2, 4].numpy())
    assert view.heatmap.layout.shapes[0].y0 == 3.5
    assert "query 'the'" in view.bars.layout.title.text


def test_heatmap_widget_rejects_mismatched_tokens() -> None:
    with pytest.raises(ValueError, match="5 query and 5 key tokens do not match"):
        AttentionHeatmapWidget(torch.rand(2, 6, 6), TOKENS[:5])
    with pytest.raises(ValueError, match="heads, seq_q, seq_k"):
        AttentionHeatmapWidget(torch.rand(1, 2, 6, 6), TOKENS)


def test_loss_plot_draws_the_history() -> None:
    from labkit.loop import History
    from labkit.viz.training import LossPlot

    plot = LossPlot(smoothing=2)
    history = History(step=4, losses={"loss": [4.0, 3.0, 2.0, 1.0]}, eval_steps=[2, 4],
                      evals={"train": [3.5, 1.5], "val": [3.6, 1.7]})
    plot.update(history)
    assert list(plot.figure.data[0].x) == [1, 2, 3, 4]
    assert np.allclose(plot.figure.data[0].y, [4.0, 3.5, 2.5, 1.5])  # trailing mean over 2 steps
    assert list(plot.figure.data[2].x) == [2, 4] and np.allclose(plot.figure.data[2].y, [3.6, 1.7])
    assert plot.figure.layout.title.text == "step 4: train 1.500, val 1.700"
