"""The attention explorer's picture, drawn in the browser: an anywidget that slices attention and draws it on a canvas.

`AttentionCanvas` receives one checkpoint's attention once, as bytes, and draws from it in JavaScript
(attention_canvas.js, beside this file): the (queries × keys) map its controls ask for, with the tokens along the
axes, a colour scale (blues for attention, blue–white–red around 0 for a difference) and a readout under the pointer
("query i (token) → key j (token): value"); its title line; the statistics of every head; all heads of a layer. The
controls are traits (`layer`, `head`, `combine`, `queries`, `start`, `difference`, `statistic`, `grid`) that
ipywidgets' front-end links set in the browser (`labkit.viz.view.link_in_browser`): a slider moved there redraws
with no round trip through the kernel.

What goes to the browser, once per checkpoint (row-major buffers, no JSON lists):
- `attention`: (layers, heads, queries, keys), a weight w in [0, 1] sent as the byte round(255·w)
  (`quantised_bytes`); the browser reads byte / 255, as `dequantised` does here: within 1/510 of the weight. "mean"
  and "max" over heads are computed there.
- `rollout`: (layers, seq, seq) the same way. Rollout chains the layers, so it is computed here, per layer, not
  there; empty for cross-attention.
- `reference`, `reference_rollout`: the reference attention likewise, sent only when there is one (empty otherwise).
- `statistics`, `statistics_change`: (statistics, layers, heads) float32 (`float32_bytes`), and their change from the
  reference.
6 layers × 12 heads × 128 tokens is 1.2 MB of attention and 0.1 MB of rollout, once; a control moved in the browser
sends nothing through the kernel.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anywidget
import numpy as np
import torch
import traitlets
from torch import Tensor

__all__ = ["AttentionCanvas", "quantised_bytes", "dequantised", "float32_bytes", "from_float32_bytes"]


def quantised_bytes(weights: Tensor) -> bytes:
    """Weights in [0, 1] (any shape) as bytes, row-major, w → round(255·w)."""
    return weights.clamp(0, 1).mul(255).round().to(torch.uint8).numpy().tobytes()


def dequantised(data: bytes, shape: Sequence[int]) -> np.ndarray:
    """`quantised_bytes` read back as the browser reads them: float32 of `shape`, byte / 255."""
    return (np.frombuffer(data, dtype=np.uint8).reshape(tuple(shape)) / np.float32(255)).astype(np.float32)


def float32_bytes(values: Tensor) -> bytes:
    """Values (any shape) as little-endian float32 bytes, row-major."""
    return values.numpy().astype("<f4").tobytes()


def from_float32_bytes(data: bytes, shape: Sequence[int]) -> np.ndarray:
    """`float32_bytes` read back: a float32 array of `shape`."""
    return np.frombuffer(data, dtype="<f4").reshape(tuple(shape))


class AttentionCanvas(anywidget.AnyWidget):
    """Draws attention in the browser: `load` a checkpoint (and `load_reference`), then set the control traits.

    tokens: the queries' tokens; key_tokens: the keys' (the same for self-attention); cross: cross-attention, drawn
    whole (no window) with target tokens down the side and source tokens along the top; combinations: the names the
    `combine` index picks from ("one head", "mean", "max", "rollout"); statistic_names: likewise for `statistic`;
    window: the most positions drawn at once (self-attention); title: the start of the title line; decimals: digits
    of the readout and the colour scales.
    """

    _esm = Path(__file__).with_name("attention_canvas.js")

    attention = traitlets.Bytes(b"").tag(sync=True)
    rollout = traitlets.Bytes(b"").tag(sync=True)
    reference = traitlets.Bytes(b"").tag(sync=True)
    reference_rollout = traitlets.Bytes(b"").tag(sync=True)
    statistics = traitlets.Bytes(b"").tag(sync=True)
    statistics_change = traitlets.Bytes(b"").tag(sync=True)
    shape = traitlets.List(traitlets.Int(), [0, 0, 0, 0]).tag(sync=True)  # (layers, heads, queries, keys)

    tokens = traitlets.List(traitlets.Unicode()).tag(sync=True)
    key_tokens = traitlets.List(traitlets.Unicode()).tag(sync=True)
    cross = traitlets.Bool(False).tag(sync=True)
    combinations = traitlets.List(traitlets.Unicode()).tag(sync=True)
    statistic_names = traitlets.List(traitlets.Unicode()).tag(sync=True)
    window = traitlets.Int(64).tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)
    run = traitlets.Unicode("").tag(sync=True)  # the checkpoint's name in the title line ("" for one checkpoint)
    decimals = traitlets.Int(3).tag(sync=True)

    layer = traitlets.Int(0).tag(sync=True)
    head = traitlets.Int(0).tag(sync=True)
    combine = traitlets.Int(0).tag(sync=True)  # index into combinations
    queries = traitlets.List(traitlets.Int()).tag(sync=True)  # query positions shown; empty = all
    start = traitlets.Int(0).tag(sync=True)  # the window's first position
    difference = traitlets.Bool(False).tag(sync=True)  # minus the reference (when there is one)
    statistic = traitlets.Int(0).tag(sync=True)  # index into statistic_names
    grid = traitlets.Bool(False).tag(sync=True)  # all heads of the layer, side by side

    def load(self, attention: Tensor, rollout: Tensor | None, statistics: Tensor, change: Tensor | None,
             run: str) -> None:
        """Send one checkpoint in one message: attention (layers, heads, queries, keys) in [0, 1]; its rollout
        (layers, seq, seq), None for cross-attention; statistics (statistics, layers, heads) and their change from
        the reference (None without one); `run` names it in the title line."""
        with self.hold_sync():
            self.shape = list(attention.shape)
            self.attention = quantised_bytes(attention)
            self.rollout = b"" if rollout is None else quantised_bytes(rollout)
            self.statistics = float32_bytes(statistics)
            self.statistics_change = b"" if change is None else float32_bytes(change)
            self.run = run

    def load_reference(self, reference: Tensor, rollout: Tensor | None) -> None:
        """Send the reference attention (the checkpoints' shape, in [0, 1]) and its rollout (None for cross)."""
        with self.hold_sync():
            self.reference = quantised_bytes(reference)
            self.reference_rollout = b"" if rollout is None else quantised_bytes(rollout)
