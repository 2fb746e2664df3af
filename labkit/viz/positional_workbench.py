"""Notebook 10's figure: the position schemes of `labkit.positional_workbench`, compared."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from labkit.loop import trailing_mean
from labkit.positional_workbench import VariantResult
from labkit.validate import require_positive_int

__all__ = ["POSITION_COLORS", "workbench_figure"]

# One colour per position scheme, the same in every panel.
POSITION_COLORS = {"none": "#718096", "sinusoidal": "#d69e2e", "learned": "#2b6cb0", "rope": "#c53030",
                   "alibi": "#2f855a"}


def workbench_figure(results: Mapping[str, VariantResult], smoothing: int = 1) -> go.Figure:
    """Two panels from `labkit.positional_workbench.compare_positions`' results: the validation loss of each variant
    (bars), and the loss at each position of windows longer than the training context (a line per variant,
    averaged over the last `smoothing` positions; the context and its multiples marked)."""
    if not results:
        raise ValueError("results is empty: pass compare_positions' dict of position → VariantResult")
    require_positive_int("smoothing", smoothing)
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
