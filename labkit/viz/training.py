"""A live loss plot for training runs: pass `LossPlot().update` as `train(..., on_eval=...)`."""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go

from labkit.viz.view import WidgetView

__all__ = ["LossPlot"]


class LossPlot(WidgetView):
    """Per-step training loss (faint), and the periodic train / validation estimates, redrawn in place."""

    def __init__(self, title: str = "loss", smoothing: int = 20) -> None:
        self.smoothing = smoothing
        self.figure = go.FigureWidget([
            go.Scatter(name="train (per step, smoothed)", mode="lines", line=dict(color="#90cdf4", width=1)),
            go.Scatter(name="train (estimate)", mode="lines+markers", line=dict(color="#2b6cb0")),
            go.Scatter(name="validation (estimate)", mode="lines+markers", line=dict(color="#c53030")),
        ])
        self.figure.update_layout(title=title, xaxis_title="step", yaxis_title="cross-entropy (nats/char)",
                                  height=380, margin=dict(l=60, r=20, t=50, b=50))
        self.view = widgets.VBox([self.figure])

    def update(self, history) -> None:
        """Redraw from a `labkit.train.History` (anything with train_loss, eval_steps, eval_train, eval_val)."""
        per_step = np.asarray(history.train_loss, dtype=float)
        k = max(1, min(self.smoothing, len(per_step)))
        smooth = np.convolve(per_step, np.ones(k) / k, mode="valid") if len(per_step) else per_step
        with self.figure.batch_update():
            self.figure.data[0].x, self.figure.data[0].y = np.arange(k, len(per_step) + 1), smooth
            self.figure.data[1].x, self.figure.data[1].y = history.eval_steps, history.eval_train
            self.figure.data[2].x, self.figure.data[2].y = history.eval_steps, history.eval_val
            if history.eval_val:
                self.figure.layout.title = (f"step {history.eval_steps[-1]}: train {history.eval_train[-1]:.3f}, "
                                            f"val {history.eval_val[-1]:.3f}")
