"""Interactive views for notebook 11 (circuits): the logit lens of a tiny GPT on text you type, and heads you knock
out with checkboxes while the loss and a sample follow. The measurements are `labkit.hooks`'; these views draw.

Each view keeps its controls and figures as attributes and redraws in `update()`, so tests can move a control in
Python and read the figure's data.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import plotly.graph_objects as go
import torch
from torch import Tensor, nn

from labkit.corpus import CharTokenizer
from labkit.generation import generate, visible_char
from labkit.circuits import ablated_loss, mean_head_outputs
from labkit.hooks import ablating_heads, attention_layers, logit_lens
from labkit.viz.view import TextBoxView, WidgetView

__all__ = ["LogitLensExplorer", "HeadAblationExplorer"]


class LogitLensExplorer(TextBoxView):
    """Type a text; the grid shows, for the residual stream after the embedding and after every block (rows) at every
    position (columns), the character the model would predict from there (the cell's label) and the probability it
    gives the true next character (the colour). The position slider picks a column; the bars show that column's
    probability of the true next character, layer by layer, and the table its top guesses."""

    def __init__(self, model: nn.Module, tokenizer: CharTokenizer, text: str, top: int = 3) -> None:
        super().__init__(text)
        self.model, self.tokenizer, self.top = model, tokenizer, top
        self.rows = ["embedding", *(f"block {i}" for i in range(len(model.blocks)))]
        self.position = widgets.IntSlider(description="position", min=0, max=1, continuous_update=False)
        self.grid = go.FigureWidget([go.Heatmap(colorscale="Viridis", zmin=0, zmax=1, texttemplate="%{text}",
                                                colorbar=dict(title="p(true next)"))])
        self.grid.update_layout(height=120 + 40 * len(self.rows), margin=dict(l=90, r=20, t=50, b=40),
                                yaxis=dict(autorange="reversed", tickvals=list(range(len(self.rows))),
                                           ticktext=self.rows))
        self.bars = go.FigureWidget([go.Bar(x=self.rows, marker_color="#2b6cb0")])
        self.bars.update_layout(height=280, yaxis=dict(range=[0, 1], title="p(true next)"),
                                margin=dict(l=60, r=20, t=50, b=40))
        self.table = widgets.HTML()
        self.probs: Tensor | None = None  # (layers + 1, seq, vocab) for the current text
        self.position.observe(lambda _: self.show_position(), names="value")
        self.view = widgets.VBox([self.text, self.message, self.grid, self.position,
                                  widgets.HBox([self.bars, self.table])])
        self.update()

    def predict(self, text: str) -> tuple[Tensor, Tensor]:
        if len(text) < 2:
            raise ValueError("type at least two characters: each position is scored on the character after it")
        idx = self.tokenizer.encode(text[-self.model.config.block_size:])[None].to(next(self.model.parameters()).device)
        return idx[0].cpu(), logit_lens(self.model, idx)[:, 0].float().softmax(-1).cpu()  # (layers + 1, seq, vocab)

    def draw(self, result: tuple[Tensor, Tensor]) -> None:
        self.ids, self.probs = result
        seq = len(self.ids)
        truth = torch.full((len(self.rows), seq), float("nan"))
        truth[:, :-1] = self.probs[:, torch.arange(seq - 1), self.ids[1:]]  # position t is scored on token t + 1
        best = self.probs.argmax(-1)  # (layers + 1, seq)
        chars = [visible_char(c) for c in self.tokenizer.decode(self.ids)]
        with self.grid.batch_update():
            trace = self.grid.data[0]
            trace.z = [[None if v != v else v for v in row] for row in truth.tolist()]  # NaN is not JSON: a gap
            trace.x, trace.y = list(range(seq)), list(range(len(self.rows)))
            trace.text = [[visible_char(self.tokenizer.decode(best[r, t:t + 1])) for t in range(seq)]
                          for r in range(len(self.rows))]
            self.grid.layout.xaxis = dict(tickvals=list(range(seq)), ticktext=chars, title="input character")
            self.grid.layout.title = "what each layer would predict next (label) and p(true next) (colour)"
        self.position.max = seq - 2
        self.position.value = min(self.position.value, seq - 2)
        self.show_position()

    def show_position(self) -> None:
        if self.probs is None:
            return
        t = self.position.value
        now, after = (visible_char(c) for c in self.tokenizer.decode(self.ids[t:t + 2]))
        self.bars.data[0].y = self.probs[:, t, self.ids[t + 1]].numpy()
        self.bars.layout.title = f"position {t} ({now!r}): p({after!r}) by layer"
        top = self.probs[:, t].topk(self.top)
        rows = "".join(
            f"<tr><td>{name}</td>" + "".join(
                f"<td>{html.escape(visible_char(self.tokenizer.decode(i[None])))} {p:.2f}</td>"
                for p, i in zip(top.values[r].tolist(), top.indices[r]))
            + "</tr>" for r, name in enumerate(self.rows))
        self.table.value = f"<b>top {self.top} guesses at position {t}</b><table>{rows}</table>"


class HeadAblationExplorer(WidgetView):
    """A checkbox per head (rows: layers); the heads ticked are ablated (zero: they write nothing; mean: they write
    their mean output on the batch) while the loss on the batch x → y (batch, seq) and a greedy sample from `prompt`
    follow."""

    def __init__(self, model: nn.Module, tokenizer: CharTokenizer, x: Tensor, y: Tensor, prompt: str,
                 new_tokens: int = 80) -> None:
        self.model, self.tokenizer, self.x, self.y = model, tokenizer, x, y
        self.prompt, self.new_tokens = tokenizer.encode(prompt)[None], new_tokens
        layers = attention_layers(model)
        self.means = mean_head_outputs(model, x)  # layer → (heads, d_head)
        self.boxes = [[widgets.Checkbox(value=False, description=f"L{i}H{h}", indent=False,
                                        layout=widgets.Layout(width="80px")) for h in range(layer.n_heads)]
                      for i, layer in enumerate(layers)]
        self.kind = widgets.ToggleButtons(options=["zero", "mean"], description="ablation")
        self.loss = widgets.HTML()
        self.sample = widgets.HTML()
        for box in (b for row in self.boxes for b in row):
            box.observe(lambda _: self.update(), names="value")
        self.kind.observe(lambda _: self.update(), names="value")
        self.clean_loss = ablated_loss(model, x, y)
        self.view = widgets.VBox([self.kind, *(widgets.HBox(row) for row in self.boxes), self.loss, self.sample])
        self.update()

    @property
    def ablated(self) -> list[tuple[int, int]]:
        return [(i, h) for i, row in enumerate(self.boxes) for h, box in enumerate(row) if box.value]

    def update(self) -> float:
        """Redraw for the ticked heads; returns the loss."""
        heads = self.ablated
        means = self.means if self.kind.value == "mean" else None
        loss = ablated_loss(self.model, self.x, self.y, heads, means)
        with ablating_heads(self.model, heads, means):
            out = generate(self.model, self.prompt.to(self.x.device), self.new_tokens,
                           block_size=self.model.config.block_size, greedy=True)
        names = ", ".join(f"L{i}H{h}" for i, h in heads) or "none"
        self.loss.value = (f"heads ablated ({self.kind.value}): <b>{names}</b> · loss {loss:.3f} "
                           f"(no head ablated: {self.clean_loss:.3f}, change {loss - self.clean_loss:+.3f})")
        text = self.tokenizer.decode(out[0].cpu())
        self.sample.value = f"<pre>{html.escape(text)}</pre>"
        return loss

