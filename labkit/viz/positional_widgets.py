"""Views of positional encodings for notebook 02: the explorer of the sinusoidal encoding.

As in `attention_widgets`, a view keeps its controls (`ipywidgets`) and figures (`go.FigureWidget`) as attributes
and redraws in a plain `update()` method; moving a control in Python (`slider.value = ...`) calls it.
The numbers come from `labkit.positional`.
"""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go

from labkit.positional import sinusoidal_table
from labkit.viz.figures import table_heatmap, to_numpy
from labkit.viz.view import WidgetView

__all__ = ["SinusoidalExplorer"]


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
