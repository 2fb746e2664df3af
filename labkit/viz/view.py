"""The base of the lab's interactive views: a view holds its widgets in `self.view` and displays as them; a text-box
view runs a model on the sentence typed in its box. `link_in_browser` ties a control to a widget that draws in the
browser without a round trip through the kernel; `sent_bytes` says what widgets cost on the wire."""

from __future__ import annotations

import html
import json
from typing import Any

import ipywidgets as widgets
import plotly.graph_objects as go

__all__ = ["WidgetView", "TextBoxView", "error_html", "probability_bars", "link_in_browser", "sent_bytes"]


def error_html(error: Exception) -> str:
    """An error as a red line for a view's message widget (bad input is shown, never raised, in a view)."""
    return f'<span style="color:#c53030">⚠ {html.escape(str(error), quote=False)}</span>'


class WidgetView:
    """Subclasses build `self.view` (an ipywidgets container); the view shows when left last in a cell."""

    view: widgets.Widget

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.view)


class TextBoxView(WidgetView):
    """A text box (`text`) whose every change runs `predict` on the sentence and hands the result to `draw`. Bad
    input (a ValueError from `predict`) shows its error in `message` instead of raising. Subclasses write
    `predict` and `draw`, and build `self.view` with `self.text` and `self.message` in it."""

    def __init__(self, text: str) -> None:
        self.text = widgets.Text(value=text, description="your sentence", continuous_update=False,
                                 layout=widgets.Layout(width="70%"), style={"description_width": "initial"})
        self.message = widgets.HTML()
        self.text.observe(lambda _: self.update(), names="value")

    def predict(self, text: str) -> Any:
        raise NotImplementedError

    def draw(self, result: Any) -> None:
        raise NotImplementedError

    def update(self) -> Any:
        """Run `predict` on the current text, draw the result and return it; bad input returns None."""
        try:
            result = self.predict(self.text.value)
        except ValueError as error:
            self.message.value = error_html(error)
            return None
        self.message.value = ""
        self.draw(result)
        return result


def probability_bars(height: int, left_margin: int, best_first: bool = False) -> go.FigureWidget:
    """An empty horizontal bar chart of probabilities (0 to 1), for a `TextBoxView` to fill: labels on the y axis,
    the best at the top when `best_first`."""
    figure = go.FigureWidget([go.Bar(orientation="h", marker_color="#2b6cb0")])
    figure.update_layout(xaxis=dict(range=[0, 1], title="probability"), height=height,
                         margin=dict(l=left_margin, r=20, t=50, b=50))
    if best_first:
        figure.update_layout(yaxis=dict(autorange="reversed"))
    return figure


def link_in_browser(source: tuple[widgets.Widget, str], target: tuple[widgets.Widget, str]) -> widgets.Widget:
    """Copy the trait `source` = (widget, name) to `target` as it changes: in the browser by `ipywidgets.jsdlink`, with
    no round trip through the kernel, and in the kernel when Python sets it, so the view works (and is tested)
    without a browser. A change made in the browser is not copied again by the kernel: the browser's link has set
    the target there already (and syncs it back), and a late copy from the kernel could undo a newer value. Returns
    the browser's link."""
    (widget, name), (other, trait) = source, target
    link = widgets.jsdlink(source, target)

    def copy(change: dict[str, Any]) -> None:
        if name not in widget._property_lock:  # ipywidgets locks the names it is setting from a browser message
            setattr(other, trait, change["new"])

    setattr(other, trait, getattr(widget, name))
    widget.observe(copy, names=name)
    return link


def _held_widgets(value: Any) -> list[widgets.Widget]:
    if isinstance(value, widgets.Widget):
        return [value]
    if isinstance(value, (list, tuple)):
        return [w for item in value for w in _held_widgets(item)]
    if isinstance(value, dict):
        return [w for item in value.values() for w in _held_widgets(item)]
    return []


def sent_bytes(*roots: widgets.Widget) -> int:
    """The bytes the widgets `roots`, and every widget they hold (children, layouts, styles, links' ends), send to
    the browser when they open: each one's state as JSON plus its binary buffers, counted once."""
    total, seen, todo = 0, set(), list(roots)
    while todo:
        widget = todo.pop()
        if widget.model_id in seen:
            continue
        seen.add(widget.model_id)
        buffers: list[int] = []

        def buffer(value: Any) -> None:
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise TypeError(f"{type(widget).__name__}.get_state() holds a {type(value).__name__}: not JSON")
            buffers.append(memoryview(value).nbytes)  # sent as a binary buffer, a null in the JSON

        total += len(json.dumps(widget.get_state(), default=buffer).encode()) + sum(buffers)
        todo += [held for name in widget.keys for held in _held_widgets(getattr(widget, name))]
    return total
