"""Views for notebook 06: a confusion matrix, and text boxes that run a fine-tuned model on the learner's sentence.

The predictions come from `labkit.finetune`; the views only draw them. As in the other views, the logic runs
through plain methods (`update`), so tests drive it without a browser. Bad input shows its error in `message`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets
import plotly.graph_objects as go
from torch import Tensor, nn

from labkit.finetune import predict_entities, predict_sentence
from labkit.finetune_metrics import entity_spans
from labkit.viz.view import TextBoxView, probability_bars

__all__ = ["confusion_figure", "entity_html", "SentimentBox", "EntityBox"]

ENTITY_COLOURS = {"PER": "#fed7d7", "ORG": "#c6f6d5", "LOC": "#bee3f8", "MISC": "#faf089"}


def confusion_figure(matrix: Tensor, label_names: Sequence[str], title: str = "confusion matrix") -> go.Figure:
    """A heatmap of counts (n, n): rows the true class, columns the predicted one, each cell labelled."""
    n = len(label_names)
    if tuple(matrix.shape) != (n, n):
        raise ValueError(f"matrix must be (n, n) with n = len(label_names) = {n}, got shape {tuple(matrix.shape)}")
    counts = matrix.tolist()
    fig = go.Figure(go.Heatmap(z=counts, x=list(label_names), y=list(label_names), colorscale="Blues",
                               text=counts, texttemplate="%{text}", showscale=False,
                               hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed",
                      height=360, width=420, margin=dict(l=80, r=20, t=50, b=60))
    return fig


def entity_html(tagged: Sequence[tuple[str, str | None]]) -> str:
    """The words of a sentence with each entity shaded by type and labelled."""
    parts = []
    for text, kind in entity_spans(tagged):
        text = html.escape(text, quote=False)
        if kind is None:
            parts.append(text)
        else:
            colour = ENTITY_COLOURS.get(kind, "#e2e8f0")
            parts.append(f'<mark style="background:{colour};padding:1px 4px;border-radius:4px">{text} '
                         f'<b style="font-size:0.75em">{html.escape(kind)}</b></mark>')
    return f'<div style="line-height:2">{" ".join(parts)}</div>'


class SentimentBox(TextBoxView):
    """The classifier's probability for each label of the sentence typed in the box (`predict_sentence`)."""

    def __init__(self, model: nn.Module, tokenizer: Any, label_names: Sequence[str],
                 text: str = "a gorgeous, witty, seductive movie.", task: str | None = None) -> None:
        super().__init__(text)
        self.model, self.tokenizer, self.label_names, self.task = model, tokenizer, list(label_names), task
        self.figure = probability_bars(height=220, left_margin=100)
        self.view = widgets.VBox([self.text, self.message, self.figure])
        self.update()

    def predict(self, text: str) -> list[tuple[str, float]]:
        """(label, probability) pairs for `text`, likeliest first."""
        return predict_sentence(self.model, self.tokenizer, text, self.label_names, task=self.task)

    def draw(self, scores: list[tuple[str, float]]) -> None:
        with self.figure.batch_update():
            self.figure.data[0].y = [label for label, _ in scores]
            self.figure.data[0].x = [p for _, p in scores]
            self.figure.layout.title = f"{scores[0][0]} ({scores[0][1]:.1%})"


class EntityBox(TextBoxView):
    """The named entities the tagger finds in the sentence typed in the box (`predict_entities`), shaded by type."""

    def __init__(self, model: nn.Module, tokenizer: Any, label_names: Sequence[str],
                 text: str = "Angela Merkel met Microsoft executives in Seattle on Tuesday .",
                 task: str | None = None) -> None:
        super().__init__(text)
        self.model, self.tokenizer, self.label_names, self.task = model, tokenizer, list(label_names), task
        legend = " ".join(f'<mark style="background:{c};padding:1px 4px">{k}</mark>'
                          for k, c in ENTITY_COLOURS.items())
        self.output = widgets.HTML()
        self.view = widgets.VBox([self.text, self.message, self.output, widgets.HTML(legend)])
        self.update()

    def predict(self, text: str) -> list[tuple[str, str | None]]:
        """`text`'s (word, tag) pairs."""
        return predict_entities(self.model, self.tokenizer, text, self.label_names, task=self.task)

    def draw(self, tagged: list[tuple[str, str | None]]) -> None:
        self.output.value = entity_html(tagged)
