"""The base of the lab's interactive views: a view holds its widgets in `self.view` and displays as them; a text-box
view runs a model on the sentence typed in its box."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets
import plotly.graph_objects as go

__all__ = ["WidgetView", "TextBoxView", "error_html", "probability_bars"]


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
