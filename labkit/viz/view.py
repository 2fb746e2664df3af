"""The base of the lab's interactive views: a view holds its widgets in `self.view` and displays as them."""

from __future__ import annotations

import ipywidgets as widgets

__all__ = ["WidgetView"]


class WidgetView:
    """Subclasses build `self.view` (an ipywidgets container); the view shows when left last in a cell."""

    view: widgets.Widget

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.view)
