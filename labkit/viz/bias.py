"""The bias probes' chart: each gap with its bootstrap interval, one panel per model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from labkit.bias import GapEstimate

__all__ = ["gap_figure"]

CLEAR, UNCLEAR = "#2b6cb0", "#a0aec0"  # the interval lies on one side of 0 / the interval holds 0


def gap_figure(panels: Mapping[str, Sequence[GapEstimate]], *, title: str, x_title: str,
               first: str | None = None) -> go.Figure:
    """One panel per model (panel title → its estimates, the same names in each), side by side with the rows shared:
    each mean gap as a dot and its interval as a bar, a line at 0. Rows are sorted by the first panel's mean gap,
    largest on top; the row named `first` (e.g. the mean over all rows) is kept on top as a diamond. Dark: the
    interval lies on one side of 0; light: it holds 0."""
    if not panels:
        raise ValueError("panels is empty: give at least one panel title → gap estimates")
    lists = {panel: list(estimates) for panel, estimates in panels.items()}
    names = [e.name for e in next(iter(lists.values()))]
    if not names:
        raise ValueError("the first panel has no estimates")
    for panel, estimates in lists.items():
        if sorted(e.name for e in estimates) != sorted(names):
            raise ValueError(f"panel {panel!r} has rows {[e.name for e in estimates]}, expected the first panel's "
                             f"{names}")
    if first is not None and first not in names:
        raise ValueError(f"first={first!r} is not one of the rows {names}")
    by_first_panel = {e.name: e.mean for e in next(iter(lists.values()))}
    order = sorted((n for n in names if n != first), key=by_first_panel.__getitem__)  # bottom to top
    order += [first] if first is not None else []
    fig = make_subplots(rows=1, cols=len(lists), shared_yaxes=True, subplot_titles=list(lists),
                        horizontal_spacing=0.04)
    for col, estimates in enumerate(lists.values(), start=1):
        row = {e.name: e for e in estimates}
        shown = [row[n] for n in order]
        fig.add_trace(go.Scatter(
            x=[e.mean for e in shown], y=order, mode="markers", showlegend=False,
            marker=dict(size=[11 if e.name == first else 8 for e in shown],
                        symbol=["diamond" if e.name == first else "circle" for e in shown],
                        color=[CLEAR if e.excludes_zero else UNCLEAR for e in shown]),
            error_x=dict(type="data", symmetric=False, array=[e.high - e.mean for e in shown],
                         arrayminus=[e.mean - e.low for e in shown], color="#4a5568", thickness=1.5),
            customdata=[[e.low, e.high, e.n] for e in shown],
            hovertemplate="%{y}: %{x:.3f}<br>interval [%{customdata[0]:.3f}, %{customdata[1]:.3f}] over "
                          "%{customdata[2]} templates<extra></extra>"), row=1, col=col)
        fig.add_vline(x=0, line=dict(color="#718096", dash="dash", width=1), row=1, col=col)
        fig.update_xaxes(title_text=x_title, row=1, col=col)
    fig.update_layout(title=title, height=140 + 22 * len(order), margin=dict(l=140, r=20, t=80, b=60))
    return fig
