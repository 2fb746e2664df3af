"""Live plots for training runs: pass `LossPlot().update` as `train(..., on_eval=...)`, and
`PretrainingPlot().update` as `pretrain(..., on_eval=...)`."""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from labkit.loop import trailing_mean
from labkit.validate import require_positive_int
from labkit.viz.view import WidgetView

__all__ = ["smoothed", "LossPlot", "PretrainingPlot"]


def smoothed(values: list[float], k: int) -> tuple[np.ndarray, np.ndarray]:
    """(steps from 1, the trailing mean over k steps) of a per-step curve, for a trace drawn over its nan gaps."""
    return np.arange(1, len(values) + 1), trailing_mean(values, k)


class LossPlot(WidgetView):
    """Per-step training loss (faint), and the periodic train / validation estimates, redrawn in place."""

    def __init__(self, title: str = "loss", smoothing: int = 20) -> None:
        require_positive_int("smoothing", smoothing)
        self.smoothing = smoothing
        self.figure = go.FigureWidget([
            go.Scatter(name="train (per step, smoothed)", mode="lines", line=dict(color="#90cdf4", width=1),
                       connectgaps=True),
            go.Scatter(name="train (estimate)", mode="lines+markers", line=dict(color="#2b6cb0")),
            go.Scatter(name="validation (estimate)", mode="lines+markers", line=dict(color="#c53030")),
        ])
        self.figure.update_layout(title=title, xaxis_title="step", yaxis_title="cross-entropy (nats/char)",
                                  height=380, margin=dict(l=60, r=20, t=50, b=50))
        self.view = widgets.VBox([self.figure])

    def update(self, history) -> None:
        """Redraw from a `labkit.loop.History` (anything with train_loss, eval_steps, eval_train, eval_val)."""
        with self.figure.batch_update():
            self.figure.data[0].x, self.figure.data[0].y = smoothed(history.train_loss, self.smoothing)
            self.figure.data[1].x, self.figure.data[1].y = history.eval_steps, history.eval_train
            self.figure.data[2].x, self.figure.data[2].y = history.eval_steps, history.eval_val
            if history.eval_val:
                self.figure.layout.title = (f"step {history.eval_steps[-1]}: train {history.eval_train[-1]:.3f}, "
                                            f"val {history.eval_val[-1]:.3f}")


class PretrainingPlot(WidgetView):
    """Two panels, redrawn in place: masked-LM (per-step loss, smoothed; held-out top-1 and top-5 accuracy) and
    next-sentence prediction (per-step loss, smoothed; held-out accuracy). Losses on the left axis, accuracies on
    the right. `unigram_top1` draws the frequency baseline's top-1 as a dashed line; NSP's chance (0.5) always is.
    """

    def __init__(self, title: str = "pretraining", smoothing: int = 20, unigram_top1: float | None = None) -> None:
        require_positive_int("smoothing", smoothing)
        self.smoothing = smoothing
        fig = make_subplots(rows=1, cols=2, subplot_titles=("masked LM", "next sentence"),
                            specs=[[{"secondary_y": True}, {"secondary_y": True}]])
        loss, acc = dict(secondary_y=False), dict(secondary_y=True)
        fig.add_trace(go.Scatter(name="MLM loss (per step, smoothed)", mode="lines", connectgaps=True,
                                 line=dict(color="#90cdf4", width=1)), row=1, col=1, **loss)
        fig.add_trace(go.Scatter(name="held-out top-1", mode="lines+markers", line=dict(color="#2b6cb0")),
                      row=1, col=1, **acc)
        fig.add_trace(go.Scatter(name="held-out top-5", mode="lines+markers", line=dict(color="#2c7a7b")),
                      row=1, col=1, **acc)
        fig.add_trace(go.Scatter(name="NSP loss (per step, smoothed; steps without sentence pairs skipped)",
                                 mode="lines", connectgaps=True, line=dict(color="#fbb6ce", width=1)), row=1, col=2,
                      **loss)
        fig.add_trace(go.Scatter(name="held-out NSP accuracy", mode="lines+markers", line=dict(color="#c53030")),
                      row=1, col=2, **acc)
        if unigram_top1 is not None:
            fig.add_hline(y=unigram_top1, line=dict(dash="dash", color="#2b6cb0", width=1), row=1, col=1,
                          secondary_y=True, annotation_text="unigram top-1")
        fig.add_hline(y=0.5, line=dict(dash="dash", color="#c53030", width=1), row=1, col=2, secondary_y=True,
                      annotation_text="chance")
        for col in (1, 2):
            fig.update_yaxes(title_text="cross-entropy (nats)", row=1, col=col, secondary_y=False)
            fig.update_yaxes(title_text="accuracy", range=[0, 1], row=1, col=col, secondary_y=True)
            fig.update_xaxes(title_text="step", row=1, col=col)
        fig.update_layout(title=title, height=400, margin=dict(l=60, r=60, t=70, b=50))
        self.figure = go.FigureWidget(fig)
        self.view = widgets.VBox([self.figure])

    def update(self, history) -> None:
        """Redraw from a `labkit.pretraining.PretrainHistory` (mlm_loss, nsp_loss, eval_steps, eval_top1,
        eval_top5, eval_nsp_accuracy)."""
        d = self.figure.data
        with self.figure.batch_update():
            d[0].x, d[0].y = smoothed(history.mlm_loss, self.smoothing)
            d[1].x, d[1].y = history.eval_steps, history.eval_top1
            d[2].x, d[2].y = history.eval_steps, history.eval_top5
            d[3].x, d[3].y = smoothed(history.nsp_loss, self.smoothing)
            d[4].x, d[4].y = history.eval_steps, history.eval_nsp_accuracy
            if history.eval_steps:
                self.figure.layout.title = (f"step {history.eval_steps[-1]}: masked top-1 "
                                            f"{history.eval_top1[-1]:.1%}, top-5 {history.eval_top5[-1]:.1%}, "
                                            f"NSP {history.eval_nsp_accuracy[-1]:.1%}")
