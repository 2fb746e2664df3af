"""Views of positional encodings: notebook 02's explorer for the sinusoidal encoding, and notebook 10's figure of
the position-scheme comparison.

As in `attention_widgets`, a view keeps its controls (`ipywidgets`) and figures (`go.FigureWidget`) as attributes
and redraws in a plain `update()` method; moving a control in Python (`slider.value = ...`) calls it.
The numbers come from `labkit.positional` and `labkit.pe_workbench`.
"""

from __future__ import annotations

from collections.abc import Mapping

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from labkit.loop import trailing_mean
from labkit.pe_workbench import VariantResult
from labkit.positional import sinusoidal_table
from labkit.validate import check_positive_int
from labkit.viz.figures import table_heatmap, to_numpy
from labkit.viz.view import WidgetView

__all__ = ["SinusoidalExplorer", "POSITION_COLORS", "workbench_figure"]

# One colour per position scheme, the same in every panel.
POSITION_COLORS = {"none": "#718096", "sinusoidal": "#d69e2e", "learned": "#2b6cb0", "rope": "#c53030",
                   "alibi": "#2f855a"}


class SinusoidalExplorer(WidgetView):
    """Sliders for d_model, base and a position; the table PE (max_len, d_model) as a heatmap with the chosen
    position outlined, and that position's encoding, sin dims and cos dims, as curves over the pair index."""

    def __init__(self, max_len: int = 100, d_model: int = 64, base: float = 10000.0, position: int = 10) -> None:
        self.max_len = max_len
        self.d_model = widgets.IntSlider(value=d_model, min=2, max=256, step=2, description="d_model",
                                         continuous_update=False)
        self.base = widgets.FloatLogSlider(value=base, base=10, min=2, max=5, step=0.25, description="base",
                                           readout_format=".3g", continuous_update=False)
        self.position = widgets.IntSlider(value=position, min=0, max=max_len - 1, description="position",
                                          continuous_update=True)
        self.table = go.FigureWidget(table_heatmap(np.zeros((max_len, d_model)), height=400))
        self.curve = go.FigureWidget([
            go.Scatter(mode="lines+markers", name="sin dims (2i)", marker_color="#2b6cb0"),
            go.Scatter(mode="lines+markers", name="cos dims (2i+1)", marker_color="#c53030"),
        ])
        self.curve.update_layout(xaxis_title="pair i (frequency ω_i = base^(-2i/d_model))", height=320,
                                 yaxis=dict(range=[-1.1, 1.1], title="value"), margin=dict(l=60, r=20, t=50, b=50))
        for control in (self.d_model, self.base, self.position):
            control.observe(lambda _: self.update(), names="value")
        self.view = widgets.VBox([widgets.HBox([self.d_model, self.base, self.position]), self.table, self.curve])
        self.update()

    def update(self) -> None:
        d, base, pos = self.d_model.value, self.base.value, self.position.value
        pe = to_numpy(sinusoidal_table(self.max_len, d, base))  # (max_len, d)
        with self.table.batch_update():
            self.table.data[0].z = pe
            self.table.data[0].x = np.arange(d)
            self.table.data[0].y = np.arange(self.max_len)
            self.table.layout.title = f"sinusoidal table: {self.max_len} positions × {d} dims, base {base:.3g}"
            self.table.layout.shapes = [dict(type="rect", x0=-0.5, x1=d - 0.5, y0=pos - 0.5, y1=pos + 0.5,
                                             line=dict(color="black", width=2))]
        pairs = np.arange(d // 2)
        with self.curve.batch_update():
            self.curve.data[0].x, self.curve.data[0].y = pairs, pe[pos, 0::2]
            self.curve.data[1].x, self.curve.data[1].y = pairs, pe[pos, 1::2]
            self.curve.layout.title = f"PE[{pos}]: the fast pairs on the left turn, the slow ones stay near (0, 1)"


def workbench_figure(results: Mapping[str, VariantResult], smoothing: int = 1) -> go.Figure:
    """Two panels from `labkit.pe_workbench.compare_positions`' results: the validation loss of each variant
    (bars), and the loss at each position of windows longer than the training context (a line per variant,
    averaged over the last `smoothing` positions; the context and its multiples marked)."""
    if not results:
        raise ValueError("results is empty: pass compare_positions' dict of position → VariantResult")
    check_positive_int("smoothing", smoothing)
    block_sizes = {r.block_size for r in results.values()}
    if len(block_sizes) != 1:
        raise ValueError(f"results come from different training contexts {sorted(block_sizes)}; compare variants "
                         f"trained under one preset")
    block_size = block_sizes.pop()
    fig = make_subplots(rows=1, cols=2, column_widths=[0.3, 0.7], horizontal_spacing=0.1,
                        subplot_titles=(f"validation loss at the training context ({block_size} tokens)",
                                        "loss at each position of longer windows"))
    for name, result in results.items():
        color = POSITION_COLORS.get(name, "#000000")
        fig.add_trace(go.Bar(x=[name], y=[result.val_loss], marker_color=color, name=name, legendgroup=name,
                             showlegend=False, text=[f"{result.val_loss:.3f}"], textposition="outside",
                             hovertemplate=f"{name}: %{{y:.3f}}<extra></extra>"), row=1, col=1)
        curve = trailing_mean(result.loss_by_position, smoothing)
        fig.add_trace(go.Scatter(x=np.arange(len(curve)), y=curve, mode="lines", name=name, legendgroup=name,
                                 line=dict(color=color), hovertemplate=f"{name}, position %{{x}}: %{{y:.3f}}"
                                                                       f"<extra></extra>"), row=1, col=2)
    longest = max(len(r.loss_by_position) for r in results.values())
    for multiple in range(1, longest // block_size):
        fig.add_vline(x=multiple * block_size - 0.5, line=dict(dash="dash", color="#4a5568", width=1), row=1, col=2,
                      annotation_text="training context" if multiple == 1 else f"{multiple}×",
                      annotation_position="top left" if multiple == 1 else "top right")
    losses = [r.val_loss for r in results.values()]
    fig.update_yaxes(title_text="cross-entropy (nats/char)", range=[min(losses) - 0.3, max(losses) + 0.15], row=1,
                     col=1)
    fig.update_yaxes(title_text="cross-entropy (nats/char)", row=1, col=2)
    fig.update_xaxes(title_text="position in the window", row=1, col=2)
    fig.update_layout(height=430, margin=dict(l=60, r=20, t=60, b=50), legend_title_text="position scheme")
    return fig
