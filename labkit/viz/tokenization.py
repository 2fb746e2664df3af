"""Notebook 04b's views: a text cut into its tokens, and what the vocabulary size buys and costs. They only draw; the
tokenizers and the measurements are `labkit.tokenization`'s."""

from __future__ import annotations

import html
from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from labkit.tokenization import VocabRow, visible_text

__all__ = ["tokens_html", "vocab_size_figure"]

_COLOURS = ("#dbeafe", "#fde68a", "#bbf7d0", "#fbcfe8")


def tokens_html(pieces: Sequence[str]) -> str:
    """HTML of a text cut into `pieces` (each token's text), each piece on a colour of its own so that the cuts
    show; spaces, newlines and tabs are drawn (␣ ⏎ ⇥) and a newline also breaks the line."""
    spans = []
    for i, piece in enumerate(pieces):
        shown = visible_text(piece)
        brk = "<br>" if piece.endswith("\n") else ""
        spans.append(f'<span style="background:{_COLOURS[i % len(_COLOURS)]};padding:1px 0;border-radius:3px;'
                     f'font-family:monospace;white-space:pre" title="token {i}">{html.escape(shown)}</span>{brk}')
    return f'<div style="line-height:1.9">{"".join(spans)}</div>'


def vocab_size_figure(rows: Sequence[VocabRow], *, d_model: int | None = None) -> go.Figure:
    """Two panels over the vocabulary size (log scale): the characters each token spells on average, and the
    parameters of the embedding and output layer (at `d_model`, named in the title when given)."""
    sizes = [row.vocab_size for row in rows]
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "characters per token (longer tokens, shorter sequences)",
        "embedding + output parameters" + (f" at d_model = {d_model}" if d_model else "")))
    fig.add_trace(go.Scatter(x=sizes, y=[row.characters_per_token for row in rows], mode="lines+markers",
                             name="characters per token"), row=1, col=1)
    fig.add_trace(go.Scatter(x=sizes, y=[row.embedding_parameters for row in rows], mode="lines+markers",
                             name="parameters"), row=1, col=2)
    fig.update_xaxes(type="log", title="vocabulary size", tickvals=sizes)
    fig.update_layout(height=360, showlegend=False, margin=dict(l=60, r=20, t=60, b=50))
    return fig
