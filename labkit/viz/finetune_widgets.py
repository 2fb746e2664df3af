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
from labkit.viz.view import WidgetView, error_html

__all__ = ["confusion_figure", "entity_spans", "entity_html", "SentimentBox", "EntityBox"]

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


def entity_spans(tagged: Sequence[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    """(word, IOB2 tag) pairs → (text, entity type or None) spans: B-X starts an X entity, I-X continues one of the
    same type (an I-X after anything else starts one, as seqeval reads it), O and None are plain text."""
    spans: list[tuple[str, str | None]] = []
    inside = None
    for word, tag in tagged:
        if not isinstance(word, str) or not (tag is None or isinstance(tag, str)):
            raise TypeError(f"tagged must hold (word, tag) pairs of strings (tag None for plain text), got "
                            f"{(word, tag)!r}")
        kind = tag[2:] if tag and tag[:2] in ("B-", "I-") else None
        if kind is not None and tag.startswith("I-") and kind == inside:
            spans[-1] = (f"{spans[-1][0]} {word}", kind)
        else:
            spans.append((word, kind))
        inside = kind
    return spans


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


class _TextBoxView(WidgetView):
    """A text box whose every change calls `update`; subclasses draw the prediction."""

    def __init__(self, text: str) -> None:
        self.text = widgets.Text(value=text, description="your sentence", continuous_update=False,
                                 layout=widgets.Layout(width="70%"), style={"description_width": "initial"})
        self.message = widgets.HTML()
        self.text.observe(lambda _: self.update(), names="value")

    def update(self) -> Any:
        raise NotImplementedError


class SentimentBox(_TextBoxView):
    """The classifier's probability for each label of the sentence typed in the box (`predict_sentence`)."""

    def __init__(self, model: nn.Module, tokenizer: Any, label_names: Sequence[str],
                 text: str = "a gorgeous, witty, seductive movie.", task: str | None = None) -> None:
        super().__init__(text)
        self.model, self.tokenizer, self.label_names, self.task = model, tokenizer, list(label_names), task
        self.figure = go.FigureWidget([go.Bar(orientation="h", marker_color="#2b6cb0")])
        self.figure.update_layout(xaxis=dict(range=[0, 1], title="probability"), height=220,
                                  margin=dict(l=100, r=20, t=50, b=50))
        self.view = widgets.VBox([self.text, self.message, self.figure])
        self.update()

    def update(self) -> list[tuple[str, float]] | None:
        """Classify the current text, redraw, and return (label, probability) pairs; bad input returns None."""
        try:
            scores = predict_sentence(self.model, self.tokenizer, self.text.value, self.label_names, task=self.task)
        except ValueError as error:
            self.message.value = error_html(error)
            return None
        self.message.value = ""
        with self.figure.batch_update():
            self.figure.data[0].y = [label for label, _ in scores]
            self.figure.data[0].x = [p for _, p in scores]
            self.figure.layout.title = f"{scores[0][0]} ({scores[0][1]:.1%})"
        return scores


class EntityBox(_TextBoxView):
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

    def update(self) -> list[tuple[str, str | None]] | None:
        """Tag the current text, redraw, and return its (word, tag) pairs; bad input returns None."""
        try:
            tagged = predict_entities(self.model, self.tokenizer, self.text.value, self.label_names, task=self.task)
        except ValueError as error:
            self.message.value = error_html(error)
            return None
        self.message.value = ""
        self.output.value = entity_html(tagged)
        return tagged
