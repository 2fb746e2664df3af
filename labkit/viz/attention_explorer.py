"""labkit's attention explorer: one widget to look at every head of a model, with no JavaScript from a CDN.

`AttentionExplorer` takes one example's attention (layers, heads, seq, seq) and its tokens, or an encoder–decoder's
cross-attention (layers, heads, tgt, src) with the target's tokens and the source's as `key_tokens` (target tokens
down the side, source tokens along the top). It sends the browser the whole attention of a checkpoint once, as one
byte per weight (`labkit.viz.attention_canvas`: 1.3 MB in all at 6 layers × 12 heads × 128 tokens, where bertviz's
views write 50 MB; benchmarks/attention_view.py), and the browser slices and draws it on a canvas itself: moving a
slider redraws in a few milliseconds, with no round trip through the kernel. Only a checkpoint change goes through
the kernel (that checkpoint's bytes).

Controls: layer and head sliders; how to combine heads ("one head", "mean", "max" or "rollout"); which query tokens
to show (several at once, none = all); a difference to a reference attention (e.g. before fine-tuning); a slider over
checkpoints of a training run; a window over sequences longer than `max_tokens`; the statistics of every head; all
heads of a layer side by side; export of the map to a self-contained HTML file, a PNG or an SVG (by the name's
ending). The controls are ipywidgets linked to the canvas in the browser; setting one from Python
(`explorer.layer.value = 3`) reaches the canvas too, and `current_map()`, `layer_maps()` and `statistics()` say in
Python what it draws, so tests need no browser. Bad input to a control is shown in `message`, never raised.
Cross-attention is drawn whole (no window), its heads combine by mean or max (rollout chains self-attention maps), and
its statistics are `CROSS_STATISTICS` (no distance, no [CLS] / [SEP]).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path

import ipywidgets as widgets
import torch
from torch import Tensor

from labkit.attention_stats import (AGGREGATIONS, CROSS_AGGREGATIONS, CROSS_STATISTICS, STATISTICS,
                                    aggregate_heads, check_index, head_statistics, stack_attentions)
from labkit.validate import require_positive_int
from labkit.viz.attention_canvas import AttentionCanvas
from labkit.viz.figures import IMAGE_FORMATS, heatmap, save_image
from labkit.viz.view import WidgetView, error_html, link_in_browser

__all__ = ["AttentionExplorer"]

ONE_HEAD = "one head"


def _check_weights(name: str, attn: Tensor) -> Tensor:
    """`attn` if every value is an attention weight in [0, 1] (up to float rounding), else a ValueError."""
    low, high = float(attn.min()), float(attn.max())
    if not (low >= -1e-3 and high <= 1 + 1e-3):  # also false for NaN
        raise ValueError(f"{name} must be attention weights in [0, 1] (rows of a softmax), got values from {low:.4g} "
                         f"to {high:.4g}")
    return attn


class AttentionExplorer(WidgetView):
    """Every head of one example's attention, on demand.

    attentions: a model's `outputs.attentions` or a stacked (layers, heads, seq, seq) tensor of weights in [0, 1]; or,
        for a training run, a mapping {checkpoint name: attentions}, shown with a `checkpoint` slider (all the same
        shape).
    tokens: the example's tokens (special tokens included), one per position; for cross-attention, the target's.
    key_tokens: for cross-attention only, the source's tokens (the keys), one per source position.
    reference: attention of the same shape to subtract when `difference` is ticked (before vs after fine-tuning).
    max_tokens: the most positions drawn at once; a longer sequence gets a `start` slider over windows of this size.
    decimals: digits of the values in the readout and on the colour scales.
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
        self.runs = {name: _check_weights("attentions" + (f"[{name!r}]" if name else ""),
                                          stack_attentions(a, tokens, key_tokens=key_tokens))
                     for name, a in runs.items()}
        shapes = {tuple(a.shape) for a in self.runs.values()}
        if len(shapes) != 1:
            raise ValueError(f"every checkpoint's attention must have the same shape, got {sorted(shapes)}")
        shape = next(iter(shapes))
        self.reference = None if reference is None else _check_weights(
            "reference", stack_attentions(reference, tokens, key_tokens=key_tokens))
        if self.reference is not None and self.reference.shape != shape:
            raise ValueError(f"reference has shape {tuple(self.reference.shape)}, the attention "
                             f"{shape}: compare the same model on the same tokens")
        layers, heads, seq, n_keys = shape
        if self.cross and max(seq, n_keys) > max_tokens:
            raise ValueError(f"cross-attention is drawn whole, but this map is {seq} × {n_keys}, more than "
                             f"max_tokens={max_tokens}: pass a larger max_tokens")
        self.tokens, self.max_tokens, self.title = list(tokens), max_tokens, title
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
        self.caption = widgets.HTML()  # the title line, for Python; the canvas draws the same line in the browser
        self.shown_title = ""  # the same, as text: the export's title

        self.canvas = AttentionCanvas(tokens=self.tokens, key_tokens=self.key_tokens, cross=self.cross,
                                      combinations=list(self.combine.options),
                                      statistic_names=list(self.statistic.options), window=max_tokens, title=title,
                                      decimals=decimals)
        self._reference_statistics = None
        if self.reference is not None:
            self.canvas.load_reference(self.reference, self._rollout(self.reference))
            self._reference_statistics = self._statistics_of(self.reference)
        self.load_checkpoint()
        self.links = [link_in_browser((control, name), (self.canvas, trait)) for control, name, trait in (
            (self.layer, "value", "layer"), (self.head, "value", "head"), (self.combine, "index", "combine"),
            (self.queries, "index", "queries"), (self.start, "value", "start"),
            (self.difference, "value", "difference"), (self.statistic, "index", "statistic"),
            (self.grid_button, "value", "grid"))]

        self.checkpoint.observe(lambda _: self.load_checkpoint(), names="value")
        for control in (self.checkpoint, self.layer, self.head, self.combine, self.queries, self.difference,
                        self.start):
            control.observe(lambda _: self.redraw(), names="value")
        self.export_button.on_click(lambda _: self.export(self.path.value))
        self.view = widgets.VBox([
            widgets.HBox([widgets.VBox([self.checkpoint, self.layer, self.head, self.combine, self.difference,
                                        self.start]), self.queries]),
            widgets.HBox([self.statistic, self.grid_button, self.path, self.export_button]),
            self.message, self.canvas,
        ])
        self.redraw()

    # ------------------------------------------------------------------------------------------- what is drawn

    def _rollout(self, attn: Tensor) -> Tensor | None:
        """(layers, seq, seq): rollout up to each layer, for the canvas; None for cross-attention (not offered)."""
        return None if self.cross else aggregate_heads(attn, "rollout")

    def _statistics_of(self, attn: Tensor) -> Tensor:
        """(statistics, layers, heads): every statistic the `statistic` control offers, in its order."""
        stats = head_statistics(attn, self.key_tokens, cross=self.cross)
        return torch.stack([stats[name] for name in self.statistic.options])

    def load_checkpoint(self) -> None:
        """Send the chosen checkpoint's attention, rollout and statistics to the canvas (the one kernel round trip)."""
        attn = self.runs[self.checkpoint.value]
        stats = self._statistics_of(attn)
        change = None if self._reference_statistics is None else stats - self._reference_statistics
        self.canvas.load(attn, self._rollout(attn), stats, change, self.checkpoint.value if len(self.runs) > 1 else "")

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
        """(the map drawn (queries, keys), query positions, key positions) for the current controls. The canvas
        draws the same map from the bytes it was sent: within 1/255 of these values."""
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

    def layer_maps(self) -> Tensor:
        """(heads, queries, keys): every head of the current layer in the current window, minus the reference when
        asked: what the grid ("all heads of this layer") draws."""
        rows, keys = self._windows()
        layer = check_index("layer", self.layer.value, self.n_layers)
        return self._attention()[layer][:, rows][:, :, keys]

    def redraw(self) -> None:
        """The kernel's part of a redraw (the canvas draws the map itself, in the browser): the notes in `message`,
        the title line in `caption`, and the head slider off while heads are combined."""
        self.head.disabled = self.combine.value != ONE_HEAD
        try:
            _, queries, keys = self.current_map()
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
        which = f"head {self.head.value}" if self.combine.value == ONE_HEAD else f"{self.combine.value} of heads"
        run = f"{self.checkpoint.value}, " if len(self.runs) > 1 else ""
        self.shown_title = (f"{self.title + ': ' if self.title else ''}{run}layer {self.layer.value}, {which}"
                            f"{' minus the reference' if self._subtracting() else ''}")
        self.caption.value = f"<b>{html.escape(self.shown_title)}</b>"

    def statistics(self) -> dict[str, Tensor]:
        """`head_statistics` of the shown attention, each (layers, heads); with the reference ticked, the change."""
        stats = head_statistics(self.runs[self.checkpoint.value], self.key_tokens, cross=self.cross)
        if self._subtracting():
            before = head_statistics(self.reference, self.key_tokens, cross=self.cross)
            stats = {name: value - before[name] for name, value in stats.items()}
        return stats

    # ------------------------------------------------------------------------------------------------- export

    def export(self, path: str | Path) -> Path | None:
        """Write the map as it is now to `path`: an .html file that holds plotly.js and opens offline, or a .png or
        .svg image (`labkit.viz.figures.save_image`, kaleido). Returns the path; bad input is shown in `message` and
        returns None."""
        path = Path(path)
        try:
            suffix = path.suffix.lower()
            if suffix not in (".html", *IMAGE_FORMATS):
                raise ValueError(f"export to {path.name!r}: the file must end in .html, "
                                 f"{' or '.join(IMAGE_FORMATS)}")
            values, queries, keys = self.current_map()
            limit = max(float(values.abs().max()), 1e-6) if self._subtracting() else 1.0
            figure = heatmap(values, [self.key_tokens[k] for k in keys], [self.tokens[q] for q in queries],
                             title=self.shown_title, x_title="source token (key)" if self.cross else "key",
                             y_title="target token (query)" if self.cross else "query",
                             colorscale="RdBu_r" if self._subtracting() else "Blues",
                             zmin=-limit if self._subtracting() else 0, zmax=limit, height=500)
            if suffix == ".html":
                figure.write_html(path, include_plotlyjs=True, full_html=True)
            else:
                save_image(figure, path)
        except (ValueError, IndexError, OSError) as error:
            self.message.value = error_html(error)
            return None
        self.message.value = f"exported to {html.escape(str(path.resolve()), quote=False)}"
        return path
