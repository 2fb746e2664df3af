"""A view for notebook 04: how temperature, top-k, top-p and the repetition penalty shape what a model writes.

As in the other views, the controls (`ipywidgets`) and the figure (`go.FigureWidget`) are attributes, and moving
a control in Python (`slider.value = ...`) redraws through plain methods, so tests need no browser. The numbers
come from `labkit.generation`.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
from torch import Tensor, nn

from labkit.corpus import CharTokenizer
from labkit.generation import next_token_distribution, sample_text, seeded_generator, visible_char
from labkit.validate import require_positive_int
from labkit.viz.view import WidgetView, error_html

__all__ = ["SamplingControls", "SamplingExplorer"]


class SamplingControls(WidgetView):
    """The control panel the sampling and generation explorers share, built onto the explorer by `_add_controls`:
    a prompt, temperature, top-k (0 = off), top-p (1 = off) and repetition-penalty sliders, a length slider, a seed
    and a Generate button, with `message` (errors) and `text` (the output) below. `filters()` reads the sliders as
    `filter_logits` keywords; `_panel(*first)` lays the controls out, `first` above the sliders."""

    def _add_controls(self, prompt: str, top_k_max: int, length: widgets.IntSlider, seed: int,
                      continuous_update: bool) -> None:
        require_positive_int("top_k_max", top_k_max)
        common = dict(style={"description_width": "initial"}, continuous_update=continuous_update)
        self.prompt = widgets.Text(value=prompt, description="prompt", **common)
        # temperature divides the logits, so it stays > 0 (its limit at 0 is greedy decoding)
        self.temperature = widgets.FloatSlider(value=1.0, min=0.1, max=2.0, step=0.05, description="temperature",
                                               **common)
        self.top_k = widgets.IntSlider(value=0, min=0, max=top_k_max, description="top-k (0 = off)", **common)
        self.top_p = widgets.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.05, description="top-p (1 = off)",
                                         **common)
        self.penalty = widgets.FloatSlider(value=1.0, min=1.0, max=2.0, step=0.05, description="repetition penalty",
                                           **common)
        self.length = length
        self.seed = widgets.IntText(value=seed, description="seed", style=common["style"])
        self.button = widgets.Button(description="Generate", button_style="primary", icon="play")
        self.message = widgets.HTML()
        self.text = widgets.HTML()

    def _panel(self, *first: widgets.Widget) -> widgets.VBox:
        return widgets.VBox([self.prompt, widgets.HBox([
            widgets.VBox([*first, self.temperature, self.top_k, self.top_p, self.penalty]),
            widgets.VBox([self.length, self.seed, self.button])])])

    def filters(self) -> dict[str, float | int | None]:
        """The sliders as `filter_logits` keywords; top-k 0 and top-p 1 mean off (None)."""
        return dict(temperature=self.temperature.value, top_k=self.top_k.value or None,
                    top_p=self.top_p.value if self.top_p.value < 1.0 else None,
                    repetition_penalty=self.penalty.value)


class SamplingExplorer(SamplingControls):
    """Sampling controls for a trained character model, the next-character distribution they give, and a sample.

    The figure shows the `n_bars` most likely next characters after the prompt: `figure.data[0]` the model's own
    distribution, `figure.data[1]` the one after the filters (what sampling draws from); each trace's
    `customdata` holds the token ids. The text below is `sample_text` with a generator seeded by `seed`, so the
    same settings give the same text. Bad input shows its error in `message` instead of raising.
    """

    def __init__(self, model: nn.Module, tokenizer: CharTokenizer, block_size: int, prompt: str = "ROMEO:",
                 max_new_tokens: int = 200, seed: int = 0, n_bars: int = 20) -> None:
        require_positive_int("block_size", block_size)
        require_positive_int("max_new_tokens", max_new_tokens)
        require_positive_int("n_bars", n_bars)
        self.model, self.tokenizer, self.block_size = model, tokenizer, block_size
        self.n_bars = min(n_bars, tokenizer.vocab_size)
        length = widgets.IntSlider(value=max_new_tokens, min=0, max=max(1000, max_new_tokens), step=10,
                                   description="new characters", style={"description_width": "initial"})
        self._add_controls(prompt, tokenizer.vocab_size, length, seed, continuous_update=True)
        self.figure = go.FigureWidget([
            go.Bar(name="model (T = 1, no filters)", marker_color="#cbd5e0", width=0.8),
            go.Bar(name="after your settings", marker_color="#2b6cb0", width=0.45),
        ])
        self.figure.update_traces(hovertemplate="%{x} (id %{customdata}): %{y:.3f}<extra></extra>")
        self.figure.update_layout(barmode="overlay", xaxis=dict(type="category", title="next character"),
                                  yaxis=dict(range=[0, 1], title="probability"), height=360,
                                  margin=dict(l=60, r=20, t=60, b=50))
        for control in (self.prompt, self.temperature, self.top_k, self.top_p, self.penalty):
            control.observe(lambda _: self.update(), names="value")
        self.button.on_click(lambda _: self.generate())
        self.view = widgets.VBox([self._panel(), self.message, self.figure, self.text])
        self.update()
        self.generate()

    def _encode(self) -> Tensor:
        """The prompt as ids (1, seq); an empty, unknown-character or too-long prompt raises ValueError."""
        prompt = self.prompt.value
        if not prompt:
            raise ValueError("prompt is empty: type at least one character")
        if len(prompt) > self.block_size:
            raise ValueError(f"prompt has {len(prompt)} characters, more than the model's block_size="
                             f"{self.block_size}: shorten it")
        return self.tokenizer.encode(prompt)[None, :]  # unknown characters raise here

    def _show_error(self, error: ValueError | None) -> None:
        self.message.value = "" if error is None else error_html(error)

    def update(self) -> None:
        """Redraw the bars for the current prompt and filters; bad input leaves them as they were."""
        try:
            idx = self._encode()
            raw = next_token_distribution(self.model, idx, block_size=self.block_size)[0].cpu().numpy()
            probs = next_token_distribution(self.model, idx, block_size=self.block_size,
                                            **self.filters())[0].cpu().numpy()
        except ValueError as error:
            self._show_error(error)
            return
        self._show_error(None)
        shown = np.lexsort((-raw, -probs))[:self.n_bars]  # by filtered probability, ties by the model's own
        labels = [visible_char(self.tokenizer.chars[i]) for i in shown]
        with self.figure.batch_update():
            for trace, values in zip(self.figure.data, (raw, probs)):
                trace.x, trace.y, trace.customdata = labels, values[shown], shown
            context = html.escape("".join(visible_char(c) for c in self.prompt.value[-12:]), quote=False)
            self.figure.layout.title = (f"after '{context}': {int((probs > 0).sum())} of {len(probs)} "
                                        f"characters can be drawn")

    def generate(self) -> str | None:
        """Sample `length` new characters after the prompt with the current settings, show them and return the
        text (prompt included); bad input shows its error and returns None."""
        try:
            self._encode()
            text = sample_text(self.model, self.tokenizer, self.prompt.value, self.length.value, self.block_size,
                               generator=seeded_generator(self.seed.value), **self.filters())
        except ValueError as error:
            self._show_error(error)
            return None
        self._show_error(None)
        prompt, rest = text[:len(self.prompt.value)], text[len(self.prompt.value):]
        self.text.value = (f'<pre style="white-space: pre-wrap"><b>{html.escape(prompt, quote=False)}</b>'
                           f"{html.escape(rest, quote=False)}</pre>")
        return text
