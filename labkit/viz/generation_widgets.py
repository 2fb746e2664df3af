"""Views for notebook 07: a generation step by step: the tokens the model proposed at each step, how the settings
reshaped their probabilities, and which one was chosen.

The numbers come from `labkit.generation.generation_trace`; the views only draw them. They work with labkit's
CharTokenizer and with Hugging Face tokenizers (anything with `encode` and `decode`). As in the other views,
moving a control in Python (`slider.value = ...`) redraws through plain methods, so tests need no browser.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets
import plotly.graph_objects as go
from torch import nn

from labkit.generation import (GenerationTrace, encode_prompt, generation_trace, seeded_generator, token_label,
                               token_pieces)
from labkit.validate import require_positive_int
from labkit.viz.sampling import SamplingControls
from labkit.viz.view import error_html

__all__ = ["trace_heatmap", "GenerationExplorer"]

RAW_COLOUR, FILTERED_COLOUR, CHOSEN_COLOUR = "#cbd5e0", "#2b6cb0", "#dd6b20"


def trace_heatmap(trace: GenerationTrace, tokenizer: Any, title: str = "") -> go.Figure:
    """A whole generation at a glance: one row per step, its candidates by rank left to right, coloured by their
    probability after the filters; the chosen token is in [brackets] and labels its row."""
    steps, n = trace.candidates.shape
    text = [[f"[{token_label(tokenizer, i)}]" if i == chosen else token_label(tokenizer, i) for i in row]
            for row, chosen in zip(trace.candidates.tolist(), trace.tokens.tolist())]
    fig = go.Figure(go.Heatmap(
        z=trace.filtered.numpy(), x=list(range(1, n + 1)), y=list(range(steps)), text=text, texttemplate="%{text}",
        customdata=trace.raw.numpy(), colorscale="Blues", zmin=0, zmax=1, colorbar=dict(title="p"),
        hovertemplate="%{text}: %{z:.3f} after the settings, %{customdata:.3f} under the model<extra></extra>"))
    # category axes merge repeated labels, so rows sit on positions and the ticks carry the labels
    fig.update_yaxes(title="step: chosen token", tickvals=list(range(steps)), autorange="reversed",
                     ticktext=[f"{s + 1}: {token_label(tokenizer, t)}" for s, t in enumerate(trace.tokens.tolist())])
    fig.update_xaxes(title="rank after the settings", tickvals=list(range(1, n + 1)))
    fig.update_layout(title=title, height=120 + 24 * steps, margin=dict(l=110, r=20, t=50, b=50))
    return fig


class GenerationExplorer(SamplingControls):
    """Generation settings on sliders, and the generation they give, one step at a time.

    Every change of a setting generates again (seeded by `seed`, so the same settings give the same text);
    `step` picks which step is drawn. The figure shows that step's `n_bars` best candidates: `figure.data[0]` their
    probabilities under the model (T = 1, no filters), `figure.data[1]` after the settings, the chosen token's bar
    in orange. Bars sit at x = 0..n_bars-1 with the tokens as the x axis' tick labels and their ids in
    `customdata`. `trace` holds the last `generation_trace`. With greedy on, temperature, top-k and top-p cannot
    change the argmax, so they are switched off (only the repetition penalty acts). Bad input shows its error in
    `message` instead of raising, and leaves the last generation in place.
    """

    def __init__(self, model: nn.Module, tokenizer: Any, block_size: int, prompt: str = "ROMEO:",
                 max_new_tokens: int = 40, seed: int = 0, n_bars: int = 10) -> None:
        for name, value in (("block_size", block_size), ("max_new_tokens", max_new_tokens), ("n_bars", n_bars)):
            require_positive_int(name, value)
        self.model, self.tokenizer, self.block_size, self.n_bars = model, tokenizer, block_size, n_bars
        self.trace: GenerationTrace | None = None
        wide = {"description_width": "initial"}
        length = widgets.IntSlider(value=max_new_tokens, min=1, max=max(200, max_new_tokens),
                                   description="new tokens", style=wide, continuous_update=False)
        # one generation per release of a slider, not one per pixel dragged
        self._add_controls(prompt, min(tokenizer.vocab_size, 100), length, seed, continuous_update=False)
        self.greedy = widgets.Checkbox(value=False, description="greedy: always the most probable token",
                                       indent=False)
        self.step = widgets.IntSlider(value=1, min=1, max=max_new_tokens, description="step", style=wide)
        self.figure = go.FigureWidget([
            go.Bar(name="model (T = 1, no filters)", marker_color=RAW_COLOUR, width=0.8),
            go.Bar(name="after your settings", marker_color=FILTERED_COLOUR, width=0.45),
        ])
        self.figure.update_traces(hovertemplate="%{hovertext} (id %{customdata}): %{y:.3f}<extra></extra>")
        self.figure.update_layout(barmode="overlay", xaxis=dict(title="candidate token"),
                                  yaxis=dict(range=[0, 1], title="probability"), height=360,
                                  margin=dict(l=60, r=20, t=60, b=50))
        for control in (self.prompt, self.greedy, self.temperature, self.top_k, self.top_p, self.penalty,
                        self.length, self.seed):
            control.observe(lambda _: self.generate(), names="value")
        self.step.observe(lambda _: self.show_step(), names="value")
        self.button.on_click(lambda _: self.generate())
        self.view = widgets.VBox([self._panel(self.greedy), self.message, self.step, self.figure, self.text])
        self.generate()

    def settings(self) -> dict[str, Any]:
        """The controls as `generation_trace` keywords (top-k 0 and top-p 1 mean off; greedy keeps the penalty)."""
        if self.greedy.value:
            return dict(greedy=True, repetition_penalty=self.penalty.value)
        return dict(greedy=False, **self.filters())

    def generate(self) -> GenerationTrace | None:
        """Generate `length` tokens after the prompt with the current settings and draw the chosen step; return
        the trace. Bad input shows its error and returns None."""
        for slider in (self.temperature, self.top_k, self.top_p):
            slider.disabled = self.greedy.value
        try:
            idx = encode_prompt(self.tokenizer, self.prompt.value, self.block_size)
            trace = generation_trace(self.model, idx, self.length.value, block_size=self.block_size,
                                     generator=seeded_generator(self.seed.value), n_candidates=self.n_bars,
                                     **self.settings())
        except ValueError as error:
            self.message.value = error_html(error)
            return None
        self.message.value = ""
        self.trace = trace
        self.step.max = len(trace.tokens)  # a shorter generation pulls the step back inside it (and redraws)
        self.show_step()
        return trace

    def show_step(self) -> None:
        """Draw step `step` of the last generation: its candidates' bars, and the text with that token marked."""
        if self.trace is None:
            return
        trace, s = self.trace, self.step.value - 1
        ids = trace.candidates[s].tolist()
        labels = [token_label(self.tokenizer, i) for i in ids]
        token, rank, chosen = int(trace.tokens[s]), int(trace.ranks[s]), float(trace.chosen[s])
        where = f"rank {rank + 1}" if rank < len(ids) else f"rank {rank + 1}, not among the {len(ids)} shown"
        title = (f"step {s + 1} of {len(trace.tokens)}: chose '{token_label(self.tokenizer, token)}' ({where}, "
                 f"p = {chosen:.3g}); {int(trace.kept[s])} tokens could be drawn")
        with self.figure.batch_update():
            for bar, values in zip(self.figure.data, (trace.raw[s], trace.filtered[s])):
                bar.x, bar.y, bar.customdata, bar.hovertext = list(range(len(ids))), values.numpy(), ids, labels
            self.figure.data[1].marker.color = [CHOSEN_COLOUR if i == token else FILTERED_COLOUR for i in ids]
            self.figure.layout.xaxis.update(tickvals=list(range(len(ids))), ticktext=labels)
            self.figure.layout.title = html.escape(title, quote=False)
        self.text.value = self._text_html(s)

    def _text_html(self, step: int) -> str:
        """The prompt in bold, then the generated tokens with the one of `step` marked."""
        ids, start = self.trace.ids[0].tolist(), self.trace.prompt_length
        parts = [f"<b>{html.escape(self.tokenizer.decode(ids[:start]), quote=False)}</b>"]
        for s, piece in enumerate(token_pieces(self.tokenizer, ids, start)):
            if s == step:  # a space or newline is marked by its visible label, then written as itself
                shown = piece if piece.strip() else token_label(self.tokenizer, ids[start + s]) + piece
                parts.append(f'<mark style="background:#fbd38d">{html.escape(shown, quote=False)}</mark>')
            else:
                parts.append(html.escape(piece, quote=False))
        return f'<pre style="white-space: pre-wrap">{"".join(parts)}</pre>'
