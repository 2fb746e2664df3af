"""The ladder of notebook 04 in one figure: every rung's training curve, and its validation loss."""

from __future__ import annotations

from collections.abc import Mapping

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from labkit.ladder import Rung
from labkit.validate import require_positive_int
from labkit.viz.training import smoothed

__all__ = ["ladder_figure"]


def ladder_figure(rungs: Mapping[str, Rung], smoothing: int = 25) -> go.Figure:
    """Left: each rung's per-step training loss (trailing mean over `smoothing` steps). Right: each rung's
    validation loss, as bars in the order climbed."""
    if not rungs:
        raise ValueError("rungs is empty: train at least one rung first")
    require_positive_int("smoothing", smoothing)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.6, 0.4], horizontal_spacing=0.1,
                        subplot_titles=("training loss, every rung on the same batches",
                                        "validation loss after the same steps"))
    for name, rung in rungs.items():
        steps, smooth = smoothed(rung.curve, smoothing)
        fig.add_trace(go.Scatter(x=steps, y=smooth, mode="lines", name=name, legendgroup=name), row=1, col=1)
    names = list(rungs)
    vals = [rungs[n].val for n in names]
    fig.add_trace(go.Bar(x=names, y=vals, text=[f"{v:.3f}" for v in vals], textposition="outside",
                         marker_color="#2b6cb0", showlegend=False), row=1, col=2)
    fig.update_xaxes(title_text="step", row=1, col=1)
    fig.update_yaxes(title_text="cross-entropy (nats/char)", row=1, col=1)
    fig.update_yaxes(range=[min(vals) - 0.3, max(vals) + 0.2], row=1, col=2)
    fig.update_layout(height=420, margin=dict(l=60, r=20, t=60, b=90), legend_title_text="rung")
    return fig
