"""Views for notebook 05: pretraining examples token by token, and fill-mask on the learner's own sentence.

As in the other views, controls and figures are attributes, and the logic runs through plain methods (`draw`,
`update`), so tests drive them without a browser. The numbers come from `labkit.pretraining_data` and
`labkit.pretraining.fill_mask`.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

import ipywidgets as widgets
import torch
from torch import Tensor, nn

from labkit.modules import IGNORE_INDEX
from labkit.pretraining import fill_mask
from labkit.pretraining_data import PretrainingData, show_example
from labkit.validate import require_positive_int
from labkit.viz.view import TextBoxView, WidgetView, probability_bars

__all__ = ["example_table", "ExampleExplorer", "FillMaskBox"]

_NSP_NAMES = {0: "IsNext: B follows A", 1: "NotNext: B is a random sentence", IGNORE_INDEX: "a lone sentence (no NSP)"}
_SEGMENT_COLOURS = ("#ebf8ff", "#fefcbf")  # segment A, segment B


def _cell(text: str, style: str = "") -> str:
    return f'<td style="padding:2px 6px;text-align:center;{style}">{html.escape(text, quote=False)}</td>'


def example_table(tokenizer: Any, example: Mapping[str, Tensor]) -> str:
    """One example as an HTML table, one column per token: the text, its segment (A or B, coloured), what the
    model sees where a token was chosen for prediction ([MASK], a random token, or the token kept), and the
    NSP label when the example has `nsp_labels`. example: one row of a batch, `{k: v[i] for k, v in batch.items()}`.
    """
    rows = show_example(tokenizer, example)
    shade = [f"background:{_SEGMENT_COLOURS[segment]}" for _, segment, _, _ in rows]
    chosen = [label != IGNORE_INDEX for *_, label in rows]

    def line(name: str, cells: list[str]) -> str:
        return f"<tr><th style='text-align:right;padding-right:8px'>{name}</th>{''.join(cells)}</tr>"

    token_line = line("token", [_cell(token, s) for (token, *_), s in zip(rows, shade)])
    segment_line = line("segment", [_cell("AB"[segment], s) for (_, segment, *_), s in zip(rows, shade)])
    seen_line = line("model sees", [
        _cell(seen if hit else "", "font-weight:bold;color:#c53030" if hit and seen != token else
              "font-weight:bold;color:#2f855a" if hit else "")
        for (token, _, seen, _), hit in zip(rows, chosen)])
    caption = f"{sum(chosen)} of {len(rows)} tokens to predict (red: replaced, green: kept as it is)"
    if "nsp_labels" in example:
        caption += f" · {_NSP_NAMES[int(example['nsp_labels'])]}"
    return (f"<table style='border-collapse:collapse;font-family:monospace'>{token_line}{segment_line}{seen_line}"
            f"</table><div style='margin-top:4px'>{html.escape(caption)}</div>")


class ExampleExplorer(WidgetView):
    """A freshly masked training example at each press of the button (or each `draw()`), shown token by token."""

    def __init__(self, data: PretrainingData, tokenizer: Any, seed: int = 0) -> None:
        self.data, self.tokenizer = data, tokenizer
        self.generator = torch.Generator().manual_seed(seed)
        self.button = widgets.Button(description="Draw another", icon="refresh", button_style="primary")
        self.button.on_click(lambda _: self.draw())
        self.table = widgets.HTML()
        self.view = widgets.VBox([self.button, self.table])
        self.draw()

    def draw(self) -> dict[str, Tensor]:
        """Draw one train example (masked now), show it, and return it."""
        batch = self.data.batch("train", 1, generator=self.generator)
        example = {k: v[0] for k, v in batch.items()}
        self.table.value = example_table(self.tokenizer, example)
        return example


class FillMaskBox(TextBoxView):
    """A text box for a sentence with one [MASK]; the bars show the model's `top_k` guesses and their
    probabilities (`labkit.pretraining.fill_mask`). Bad input shows its error in `message` instead of raising."""

    def __init__(self, model: nn.Module, tokenizer: Any, text: str = "the king is [MASK] .", top_k: int = 8,
                 title: str = "fill-mask") -> None:
        require_positive_int("top_k", top_k)
        super().__init__(text)
        self.model, self.tokenizer, self.top_k, self.title = model, tokenizer, top_k, title
        self.figure = probability_bars(height=320, left_margin=120, best_first=True)
        self.view = widgets.VBox([self.text, self.message, self.figure])
        self.update()

    def predict(self, text: str) -> list[tuple[str, float]]:
        """The `top_k` guesses for the mask in `text`, with their probabilities, likeliest first."""
        return fill_mask(self.model, self.tokenizer, text, top_k=self.top_k)

    def draw(self, guesses: list[tuple[str, float]]) -> None:
        with self.figure.batch_update():
            self.figure.data[0].y = [token for token, _ in guesses]
            self.figure.data[0].x = [p for _, p in guesses]
            self.figure.layout.title = f"{self.title}: {guesses[0][0]!r} at {guesses[0][1]:.1%}"
