"""Interactive views for notebook 01: why attention scales by √d_k, and attention weights per head and query.

Each view keeps its controls (`ipywidgets`) and figures (`go.FigureWidget`) as attributes and redraws in a
plain `update()` method, so tests can move a control in Python and check the figure's data.
Display a view by leaving it as the last expression of a cell (see `WidgetView`).
"""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
from torch import Tensor

from labkit.attention import softmax_saturation
from labkit.viz.figures import heatmap, to_numpy
from labkit.viz.view import WidgetView

__all__ = ["SoftmaxSaturationDemo", "AttentionHeatmapWidget"]


def _row_summary(p: np.ndarray) -> str:
    # The softmax Jacobian is diag(p) - p pᵀ; its largest entry, max p_i (1 - p_i), bounds how much gradient flows.
    return f"max weight {p.max():.2f}, largest gradient entry {np.max(p * (1 - p)):.3f}"


class SoftmaxSaturationDemo(WidgetView):
    """A d_k slider and two bar charts: softmax(q·k) saturates as d_k grows, softmax(q·k/√d_k) does not."""

    def __init__(self, n_keys: int = 8, seed: int = 0, max_log2_d_k: int = 10) -> None:
        self.n_keys, self.seed = n_keys, seed
        self.d_k = widgets.SelectionSlider(options=[2**i for i in range(max_log2_d_k + 1)], value=4,
                                           description="d_k", continuous_update=True)
        keys = [f"k{j}" for j in range(n_keys)]
        self.figure = go.FigureWidget([
            go.Bar(x=keys, y=np.zeros(n_keys), name="softmax(q·k)", marker_color="#c53030"),
            go.Bar(x=keys, y=np.zeros(n_keys), name="softmax(q·k / √d_k)", marker_color="#2b6cb0"),
        ])
        self.figure.update_layout(barmode="group", yaxis=dict(range=[0, 1], title="attention weight"),
                                  height=380, margin=dict(l=60, r=20, t=70, b=40))
        self.d_k.observe(lambda change: self.update(change["new"]), names="value")
        self.view = widgets.VBox([self.d_k, self.figure])
        self.update(self.d_k.value)

    def update(self, d_k: int) -> None:
        rows = {name: row.numpy() for name, row in softmax_saturation(d_k, self.n_keys, self.seed).items()}
        with self.figure.batch_update():
            self.figure.data[0].y = rows["unscaled"]
            self.figure.data[1].y = rows["scaled"]
            self.figure.layout.title = (f"d_k = {d_k}<br><sup>unscaled: {_row_summary(rows['unscaled'])} · "
                                        f"scaled: {_row_summary(rows['scaled'])}</sup>")


class AttentionHeatmapWidget(WidgetView):
    """Pick a head and a query token; see that head's weights as a heatmap and the query's row as bars.

    weights: (heads, seq_q, seq_k) or (seq_q, seq_k); rows are queries and sum to 1.
    """

    def __init__(self, weights: Tensor | np.ndarray, tokens_q: Sequence[str],
                 tokens_k: Sequence[str] | None = None) -> None:
        w = to_numpy(weights)
        if w.ndim == 2:
            w = w[None]
        if w.ndim != 3:
            raise ValueError(f"weights must be (heads, seq_q, seq_k) or (seq_q, seq_k), got shape {w.shape}")
        if not np.isfinite(w).all():
            raise ValueError(f"weights hold {int((~np.isfinite(w)).sum())} NaN or inf value(s): attention weights are "
                             f"probabilities (was a row fully masked?)")
        tokens_k = tokens_q if tokens_k is None else tokens_k
        if (len(tokens_q), len(tokens_k)) != w.shape[1:]:
            raise ValueError(f"{len(tokens_q)} query and {len(tokens_k)} key tokens do not match weights of "
                             f"shape {w.shape} = (heads, seq_q, seq_k)")
        self.weights, self.tokens_q, self.tokens_k = w, list(tokens_q), list(tokens_k)
        self.head = widgets.IntSlider(value=0, min=0, max=w.shape[0] - 1, description="head",
                                      continuous_update=True)
        self.query = widgets.Dropdown(options=[(f"{i}: {t}", i) for i, t in enumerate(self.tokens_q)], value=0,
                                      description="query")
        self.heatmap = go.FigureWidget(heatmap(w[0], self.tokens_k, self.tokens_q, x_title="key",
                                               y_title="query", zmin=0, zmax=1, height=380))
        self.bars = go.FigureWidget(go.Bar(x=list(range(len(self.tokens_k))), y=w[0, 0], marker_color="#2b6cb0",
                                           hovertemplate="%{y:.3f}<extra></extra>"))
        self.bars.update_xaxes(tickvals=list(range(len(self.tokens_k))), ticktext=self.tokens_k, title="key")
        self.bars.update_layout(yaxis=dict(range=[0, 1], title="weight"), height=380,
                                margin=dict(l=60, r=20, t=50, b=50))
        self.head.observe(lambda _: self.update(), names="value")
        self.query.observe(lambda _: self.update(), names="value")
        controls = widgets.HBox([self.head, self.query]) if w.shape[0] > 1 else self.query
        self.view = widgets.VBox([controls, widgets.HBox([self.heatmap, self.bars])])
        self.update()

    def update(self) -> None:
        h, i = self.head.value, self.query.value
        row = self.weights[h, i]
        with self.heatmap.batch_update():
            self.heatmap.data[0].z = self.weights[h]
            self.heatmap.layout.title = f"head {h}: every query's weights"
            self.heatmap.layout.shapes = [dict(type="rect", x0=-0.5, x1=len(self.tokens_k) - 0.5, y0=i - 0.5,
                                               y1=i + 0.5, line=dict(color="#e53e3e", width=3))]
        with self.bars.batch_update():
            self.bars.data[0].y = row
            self.bars.layout.title = f"head {h}, query '{self.tokens_q[i]}' attends to…"
