"""The base of the lab's interactive views: a view holds its widgets in `self.view` and displays as them."""

from __future__ import annotations

import html

import ipywidgets as widgets

__all__ = ["WidgetView", "error_html"]


def error_html(error: Exception) -> str:
    """An error as a red line for a view's message widget (bad input is shown, never raised, in a view)."""
    return f'<span style="color:#c53030">⚠ {html.escape(str(error), quote=False)}</span>'


class WidgetView:
    """Subclasses build `self.view` (an ipywidgets container); the view shows when left last in a cell."""

    view: widgets.Widget

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.view)
