"""labkit's attention explorer: one widget to look at every head of a model, with no JavaScript from a CDN.

`AttentionExplorer` takes one example's attention (layers, heads, seq, seq) and its tokens, or an encoder–decoder's
cross-attention (layers, heads, tgt, src) with the target's tokens and the source's as `key_tokens` (target tokens
down the side, source tokens along the top). It keeps the whole tensor in the kernel and sends the browser only
what is drawn, rounded: one (queries, keys) map for the heatmap, one layer's heads for the grid, a (layers, heads)
table for the statistics. So the payload follows what is on screen (tens of kB at 64 tokens), not the size of the
model (bertviz writes all of it: megabytes).

Controls: layer and head sliders; how to combine heads ("one head", "mean", "max" or "rollout"); which query tokens
to show (several at once, none = all); a difference to a reference attention (e.g. before fine-tuning); a slider over
checkpoints of a training run; a window over sequences longer than `max_tokens`; export of the heatmap to a
self-contained HTML file, a PNG or an SVG (by the name's ending). As in the other views, setting a
control from Python (`explorer.layer.value = 3`) redraws through plain methods, so tests need no browser, and bad
input is shown in `message`, never raised. Cross-attention is drawn whole (no window), its heads combine by mean or
max (rollout chains self-attention maps), and its statistics are `CROSS_STATISTICS` (no distance, no [CLS] / [SEP]).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from torch import Tensor

from labkit.attention_stats import (AGGREGATIONS, CROSS_AGGREGATIONS, CROSS_STATISTICS, STATISTICS,
                                    aggregate_heads, check_index, head_statistics, stack_attentions)
from labkit.validate import require_positive_int
from labkit.viz.figures import IMAGE_FORMATS, save_image
from labkit.viz.view import WidgetView, error_html

__all__ = ["AttentionExplorer"]

ONE_HEAD = "one head"


def _rounded(values: Tensor, decimals: int) -> np.ndarray:
    """A tensor as a float32 array rounded to `decimals`: what goes to the browser. A FigureWidget sends arrays as
    binary buffers, which the browser reads about 30 ms faster than the same numbers as JSON lists (6×12×64)."""
    return np.round(values.numpy().astype(np.float32), decimals)


class AttentionExplorer(WidgetView):
    """Every head of one example's attention, on demand.

    attentions: a model's `outputs.attentions` or a stacked (layers, heads, seq, seq) tensor; or, for a training
        run, a mapping {checkpoint name: attentions}, shown with a `checkpoint` slider (all the same shape).
    tokens: the example's tokens (special tokens included), one per position; for cross-attention, the target's.
    key_tokens: for cross-attention only, the source's tokens (the keys), one per source position.
    reference: attention of the same shape to subtract when `difference` is ticked (before vs after fine-tuning).
    max_tokens: the most positions drawn at once; a longer sequence gets a `start` slider over windows of this size.
    decimals: rounding of the values sent to the browser.
    """

    def __init__(self, attentions: Sequence[Tensor] | Tensor | Mapping[str, Sequence[Tensor] | Tensor],
                 tokens: Sequence[str], *, key_tokens: Sequence[str] | None = None,
                 reference: Sequence[Tensor] | Tensor | None = None, max_tokens: int = 64, decimals: int = 3,
                 title: str = "") -> None:
        require_positive_int("max_tokens", max_tokens)
        require_positive_int("decimals", decimals)
        runs = dict(attentions) if isinstance(attentions, Mapping) else {"": attentions}
        if not runs:
            raise ValueError("attentions is an empty mapping: give at least one checkpoint's attentions")
        self.cross = key_tokens is not None
        self.runs = {name: stack_attentions(a, tokens, key_tokens=key_tokens) for name, a in runs.items()}
        shapes = {tuple(a.shape) for a in self.runs.values()}
        if len(shapes) != 1:
            raise ValueError(f"every checkpoint's attention must have the same shape, got {sorted(shapes)}")
        shape = next(iter(shapes))
        self.reference = None if reference is None else stack_attentions(reference, tokens, key_tokens=key_tokens)
        if self.reference is not None and self.reference.shape != shape:
            raise ValueError(f"reference has shape {tuple(self.reference.shape)}, the attention "
                             f"{shape}: compare the same model on the same tokens")
        layers, heads, seq, n_keys = shape
        if self.cross and max(seq, n_keys) > max_tokens:
            raise ValueError(f"cross-attention is drawn whole, but this map is {seq} × {n_keys}, more than "
                             f"max_tokens={max_tokens}: pass a larger max_tokens")
        self.tokens, self.decimals, self.max_tokens, self.title = list(tokens), decimals, max_tokens, title
        self.key_tokens = list(key_tokens) if self.cross else self.tokens
        self.n_layers, self.n_heads, self.seq, self.n_keys = layers, heads, seq, n_keys

        wide = {"description_width": "initial"}
        self.checkpoint = widgets.SelectionSlider(options=list(self.runs), description="checkpoint", style=wide,
                                                  layout=widgets.Layout(display="" if len(self.runs) > 1 else
                                                                        "none"))
        self.layer = widgets.IntSlider(value=0, min=0, max=layers - 1, description="layer", style=wide)
        self.head = widgets.IntSlider(value=0, min=0, max=heads - 1, description="head", style=wide)
        self.combine = widgets.Dropdown(options=[ONE_HEAD, *(CROSS_AGGREGATIONS if self.cross else AGGREGATIONS)],
                                        value=ONE_HEAD, description="heads", style=wide)
        self.queries = widgets.SelectMultiple(options=[(f"{i}: {t}", i) for i, t in enumerate(self.tokens)],
                                              value=(), rows=6, description="queries (none = all)", style=wide)
        self.difference = widgets.Checkbox(value=False, description="minus the reference", indent=False,
                                           disabled=self.reference is None)
        self.start = widgets.IntSlider(value=0, min=0, max=max(0, seq - max_tokens), step=max(1, max_tokens // 2),
                                       description="window start", style=wide,
                                       layout=widgets.Layout(display="" if seq > max_tokens else "none"))
        self.statistic = widgets.Dropdown(options=CROSS_STATISTICS if self.cross else STATISTICS,
                                          description="statistic", style=wide)
        self.grid_button = widgets.ToggleButton(value=False, description="all heads of this layer", icon="th")
        self.path = widgets.Text(value="attention.html", description="export to", style=wide)
        self.export_button = widgets.Button(description="Export", icon="download")
        self.message = widgets.HTML()
        self.caption = widgets.HTML()
        self.shown_title = ""  # the heatmap's title, kept out of plotly (see redraw); also the export's title

        self.figure = go.FigureWidget(go.Heatmap(colorscale="Blues", zmin=0, zmax=1, x=[], y=[],
                                                 hovertemplate="query %{y} → key %{x}: %{z}<extra></extra>"))
        self.figure.update_yaxes(autorange="reversed", title="target token (query)" if self.cross else "query")
        self.figure.update_xaxes(title="source token (key)" if self.cross else "key", tickangle=-60)
        self.figure.update_layout(height=500, margin=dict(l=90, r=20, t=20, b=90))
        self.stats_figure = go.FigureWidget(go.Heatmap(colorscale="Viridis",
                                                       hovertemplate="layer %{y}, head %{x}: %{z}<extra></extra>"))
        self.stats_figure.update_layout(height=300, margin=dict(l=60, r=20, t=50, b=50),
                                        xaxis=dict(title="head", dtick=1), yaxis=dict(title="layer", dtick=1))
        self.grid = widgets.Output()

        for control in (self.checkpoint, self.layer, self.head, self.combine, self.queries, self.difference,
                        self.start):
            control.observe(lambda _: self.redraw(), names="value")
        for control in (self.checkpoint, self.difference, self.statistic):
            control.observe(lambda _: self.draw_statistics(), names="value")
        self.grid_button.observe(lambda _: self.draw_grid(), names="value")
        self.export_button.on_click(lambda _: self.export(self.path.value))
        self.view = widgets.VBox([
            widgets.HBox([widgets.VBox([self.checkpoint, self.layer, self.head, self.combine, self.difference,
                                        self.start]), self.queries]),
            self.message, self.caption, self.figure,
            widgets.HBox([self.statistic, self.grid_button, self.path, self.export_button]),
            self.stats_figure, self.grid,
        ])
        self.redraw()
        self.draw_statistics()

    # ------------------------------------------------------------------------------------------- what is drawn

    def _subtracting(self) -> bool:
        """Whether the view shows the difference to the reference (ticked, and there is one)."""
        return self.difference.value and self.reference is not None

    def _attention(self) -> Tensor:
        """(layers, heads, seq, seq): the checkpoint's attention, minus the reference when asked."""
        attn = self.runs[self.checkpoint.value]
        return attn - self.reference if self._subtracting() else attn

    def _windows(self) -> tuple[list[int], list[int]]:
        """(query positions, key positions) in view: the window over self-attention, everything for cross."""
        if self.cross:
            return list(range(self.seq)), list(range(self.n_keys))
        shown = list(range(self.start.value, min(self.seq, self.start.value + self.max_tokens)))
        return shown, shown

    def current_map(self) -> tuple[Tensor, list[int], list[int]]:
        """(the map drawn (queries, keys), query positions, key positions) for the current controls."""
        rows, keys = self._windows()
        queries = [q for q in self.queries.value if q in rows] or rows
        layer = check_index("layer", self.layer.value, self.n_layers)
        if self.combine.value == ONE_HEAD:
            full = self._attention()[layer, check_index("head", self.head.value, self.n_heads)]
        else:  # combine the checkpoint's heads first, then subtract the reference's combined heads
            full = aggregate_heads(self.runs[self.checkpoint.value], self.combine.value)[layer]
            if self._subtracting():
                full = full - aggregate_heads(self.reference, self.combine.value)[layer]
        return full[queries][:, keys], queries, keys

    def redraw(self) -> None:
        """Draw the heatmap for the current controls (and the grid, if it is open)."""
        self.head.disabled = self.combine.value != ONE_HEAD
        try:
            values, queries, keys = self.current_map()
        except (IndexError, ValueError) as error:
            self.message.value = error_html(error)
            return
        notes = []
        if self.seq > self.max_tokens:
            notes.append(f"{self.seq} tokens are more than this view draws at once ({self.max_tokens}): showing "
                         f"positions {keys[0]}..{keys[-1]}; move 'window start' for the rest")
        dropped = [q for q in self.queries.value if q not in queries]
        if dropped:
            notes.append(f"queries {dropped} are outside the window")
        self.message.value = "<br>".join(html.escape(n, quote=False) for n in notes)
        diverging = self._subtracting()
        limit = max(float(values.abs().max()), 1e-6) if diverging else 1.0
        which = f"head {self.head.value}" if self.combine.value == ONE_HEAD else f"{self.combine.value} of heads"
        run = f"{self.checkpoint.value}, " if len(self.runs) > 1 else ""
        self.shown_title = (f"{self.title + ': ' if self.title else ''}{run}layer {self.layer.value}, {which}"
                            f"{' minus the reference' if diverging else ''}")
        heat = self.figure.data[0]
        with self.figure.batch_update():  # only what changed goes to the browser
            heat.z = _rounded(values, self.decimals)
            if tuple(heat.x or ()) != tuple(keys) or tuple(heat.y or ()) != tuple(queries):
                heat.x, heat.y = keys, queries
                self.figure.layout.xaxis.update(tickvals=keys, ticktext=[self.key_tokens[k] for k in keys])
                self.figure.layout.yaxis.update(tickvals=queries, ticktext=[self.tokens[q] for q in queries])
            if diverging or heat.zmin != 0:  # a difference map, or back from one
                heat.colorscale = "RdBu_r" if diverging else "Blues"
                heat.zmin, heat.zmax = (-limit, limit) if diverging else (0, 1)
        # the title lives outside the figure: a new plotly title re-lays out the whole plot (about 40 ms)
        self.caption.value = f"<b>{html.escape(self.shown_title)}</b>"
        if self.grid_button.value:
            self.draw_grid()

    def statistics(self) -> dict[str, Tensor]:
        """`head_statistics` of the shown attention, each (layers, heads); with the reference ticked, the change."""
        stats = head_statistics(self.runs[self.checkpoint.value], self.key_tokens, cross=self.cross)
        if self._subtracting():
            before = head_statistics(self.reference, self.key_tokens, cross=self.cross)
            stats = {name: value - before[name] for name, value in stats.items()}
        return stats

    def draw_statistics(self) -> None:
        values = self.statistics()[self.statistic.value]
        with self.stats_figure.batch_update():
            heat = self.stats_figure.data[0]
            heat.z = _rounded(values, self.decimals)
            heat.x, heat.y = list(range(self.n_heads)), list(range(self.n_layers))
            change = " (change from the reference)" if self._subtracting() else ""
            self.stats_figure.layout.title = f"{self.statistic.value} of every head{change}"

    def grid_figure(self) -> go.Figure:
        """Every head of the current layer, side by side, in the current window."""
        rows, keys = self._windows()
        attn = self._attention()[self.layer.value][:, rows][:, :, keys]  # (heads, queries, keys)
        cols = min(self.n_heads, 6)
        rows = -(-self.n_heads // cols)
        fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"head {h}" for h in range(self.n_heads)],
                            horizontal_spacing=0.02, vertical_spacing=0.08)
        diverging = self._subtracting()
        limit = max(float(attn.abs().max()), 1e-6) if diverging else 1.0
        for h in range(self.n_heads):
            fig.add_trace(go.Heatmap(z=_rounded(attn[h], self.decimals), colorscale="RdBu_r" if diverging else
                                     "Blues", zmin=-limit if diverging else 0, zmax=limit, showscale=False,
                                     hovertemplate=f"head {h}: query %{{y}} → key %{{x}}: %{{z}}<extra></extra>"),
                          row=h // cols + 1, col=h % cols + 1)
        fig.update_xaxes(showticklabels=False)
        fig.update_yaxes(showticklabels=False, autorange="reversed")
        fig.update_layout(title=f"layer {self.layer.value}: all {self.n_heads} heads", height=180 * rows + 60,
                          margin=dict(l=20, r=20, t=70, b=20))
        return fig

    def draw_grid(self) -> None:
        self.grid.clear_output()
        if self.grid_button.value:
            with self.grid:
                self.grid_figure().show()

    # ------------------------------------------------------------------------------------------------- export

    def export(self, path: str | Path) -> Path | None:
        """Write the heatmap as it is now to `path`: an .html file that holds plotly.js and opens offline, or a .png
        or .svg image (`labkit.viz.figures.save_image`, kaleido). Returns the path; bad input is shown in `message`
        and returns None."""
        path = Path(path)
        try:
            suffix = path.suffix.lower()
            if suffix not in (".html", *IMAGE_FORMATS):
                raise ValueError(f"export to {path.name!r}: the file must end in .html, "
                                 f"{' or '.join(IMAGE_FORMATS)}")
            figure = go.Figure(self.figure)
            figure.update_layout(title=self.shown_title, margin_t=60)
            if suffix == ".html":
                figure.write_html(path, include_plotlyjs=True, full_html=True)
            else:
                save_image(figure, path)
        except (ValueError, OSError) as error:
            self.message.value = error_html(error)
            return None
        self.message.value = f"exported to {html.escape(str(path.resolve()), quote=False)}"
        return path
