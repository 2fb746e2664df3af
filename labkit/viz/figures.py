"""Plotly figures for the lab. These only draw: they take tensors or arrays and return `go.Figure`s."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import torch

__all__ = ["to_numpy", "heatmap", "table_heatmap", "mask_heatmap", "line_plot", "IMAGE_FORMATS", "save_image"]

ArrayLike = torch.Tensor | np.ndarray | Sequence


def to_numpy(values: ArrayLike) -> np.ndarray:
    """A float or bool NumPy array from a tensor (any device, grad or not), an array or nested lists."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
        return values.numpy() if values.dtype == torch.bool else values.float().numpy()
    return np.asarray(values)


def heatmap(
    z: ArrayLike,
    x_labels: Sequence[str] | None = None,
    y_labels: Sequence[str] | None = None,
    *,
    title: str = "",
    x_title: str = "",
    y_title: str = "",
    colorscale: str = "Viridis",
    zmin: float | None = None,
    zmax: float | None = None,
    zmid: float | None = None,
    height: int = 420,
) -> go.Figure:
    """A labelled heatmap of a 2-D array (rows × columns), first row on top, values on hover."""
    z = to_numpy(z)
    if z.ndim != 2:
        raise ValueError(f"heatmap needs a 2-D array, got shape {z.shape}")
    rows, cols = z.shape
    x = list(x_labels) if x_labels is not None else list(range(cols))
    y = list(y_labels) if y_labels is not None else list(range(rows))
    if len(x) != cols or len(y) != rows:
        raise ValueError(f"labels do not match the array: {len(y)} row and {len(x)} column labels "
                         f"for shape {z.shape}")
    # Category axes merge repeated labels ("the" twice), so plot on positions and label the ticks.
    trace = go.Heatmap(
        z=z, x=list(range(cols)), y=list(range(rows)), colorscale=colorscale, zmin=zmin, zmax=zmax, zmid=zmid,
        customdata=[[f"{yl} → {xl}" for xl in x] for yl in y],
        hovertemplate="%{customdata}<br>%{z:.3f}<extra></extra>",
    )
    fig = go.Figure(trace)
    fig.update_xaxes(title=x_title, tickvals=list(range(cols)), ticktext=[str(v) for v in x])
    fig.update_yaxes(title=y_title, tickvals=list(range(rows)), ticktext=[str(v) for v in y], autorange="reversed")
    fig.update_layout(title=title, height=height, margin=dict(l=60, r=20, t=50, b=50))
    return fig


def table_heatmap(table: ArrayLike, *, title: str = "", height: int = 420) -> go.Figure:
    """A (positions, dims) table drawn with position 0 on top, dims left to right, and a diverging colour scale.

    Tables are too large for a label on every row and column, so the axes keep plotly's automatic ticks.
    """
    fig = heatmap(table, title=title, x_title="dimension", y_title="position", colorscale="RdBu_r",
                  zmid=0, height=height)
    fig.update_traces(customdata=None, hovertemplate="position %{y}, dim %{x}<br>%{z:.3f}<extra></extra>")
    fig.update_xaxes(tickmode="auto")
    fig.update_yaxes(tickmode="auto")
    return fig


def mask_heatmap(mask: ArrayLike, labels: Sequence[str] | None = None, *, title: str = "mask") -> go.Figure:
    """A (seq_q, seq_k) bool mask drawn as keep (1) / hidden (0)."""
    m = to_numpy(mask).astype(float)
    fig = heatmap(m, labels, labels, title=title, x_title="key", y_title="query",
                  colorscale=[[0, "#f1f1f1"], [1, "#2b6cb0"]], zmin=0, zmax=1, height=360)
    fig.update_traces(showscale=False)
    return fig


def line_plot(
    x: ArrayLike,
    ys: dict[str, ArrayLike],
    *,
    title: str = "",
    x_title: str = "",
    y_title: str = "",
    height: int = 380,
) -> go.Figure:
    """One line per entry of `ys` (name → values), all over the same x."""
    x = to_numpy(x)
    fig = go.Figure([go.Scatter(x=x, y=to_numpy(y), mode="lines", name=name) for name, y in ys.items()])
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, height=height,
                      margin=dict(l=60, r=20, t=50, b=50))
    return fig


IMAGE_FORMATS = (".png", ".svg")
# Kaleido draws static images in a headless Chrome or Chromium; where it has none of its own, it takes the one named by
# BROWSER_PATH. labkit points that at Debian's chromium (or LABKIT_CHROMIUM), the browser the lab's tests use.
_CHROMIUM = os.environ.get("LABKIT_CHROMIUM", "/usr/bin/chromium")


def save_image(figure: go.Figure, path: str | os.PathLike) -> Path:
    """Write `figure` to a .png (at twice its size, for sharp text) or an .svg file, with kaleido."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_FORMATS:
        raise ValueError(f"an image must end in {' or '.join(IMAGE_FORMATS)}, got {path.name!r}")
    try:
        import kaleido  # noqa: F401  (plotly's write_image needs it)
    except ImportError as err:
        raise ValueError("PNG and SVG export need the kaleido package (pip install kaleido); .html works "
                         "without it") from err
    if not os.environ.get("BROWSER_PATH") and Path(_CHROMIUM).exists():
        os.environ["BROWSER_PATH"] = _CHROMIUM
    try:
        figure.write_image(path, format=path.suffix[1:].lower(), scale=2 if path.suffix.lower() == ".png" else 1)
    except (RuntimeError, OSError) as err:  # kaleido found no browser, or it failed to start
        raise ValueError(f"kaleido could not draw {path.name} ({type(err).__name__}: {err}); it needs Chrome or "
                         f"Chromium: install one, or set LABKIT_CHROMIUM to its path. .html export works without "
                         f"it") from err
    return path
