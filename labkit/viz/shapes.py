"""Where each feature goes when attention splits a tensor into heads and merges it back, drawn in code as an SVG.

`head_split_svg(batch, seq, n_heads, d_head)` runs `labkit.attention.split_heads` and `merge_heads` on a tensor
that holds each feature's own index, and draws one batch element at every step:

    split_heads: x (batch, seq, d_model) → .view → (batch, seq, heads, d_head)
                 → .transpose(1, 2) → (batch, heads, seq, d_head)
    merge_heads: → .transpose(1, 2) → (batch, seq, heads, d_head) → .reshape → (batch, seq, d_model)

A cell is one number: its row is the token, the digit is the feature index, the colour the head that gets it.
The SVG says what it draws in data attributes: `<g class="stage" data-stage="view" data-dims="batch,seq,heads,d_head"
data-shape="2,6,4,4">` per step, `<rect class="cell" data-token="3" data-feature="5" data-head="1">` per number.
"""

from __future__ import annotations

from html import escape

import torch

from labkit.attention import merge_heads, split_heads
from labkit.validate import require_positive_int

__all__ = ["STAGES", "MAX_SEQ", "MAX_D_MODEL", "MAX_HEADS", "head_split_stages", "head_split_svg", "show_head_split"]

# name → (dimension names, what was done to the previous step)
STAGES = {
    "x": (("batch", "seq", "d_model"), "x"),
    "view": (("batch", "seq", "heads", "d_head"), "x.view(batch, seq, heads, d_head)"),
    "transpose": (("batch", "heads", "seq", "d_head"), ".transpose(1, 2)"),
    "transpose back": (("batch", "seq", "heads", "d_head"), ".transpose(1, 2)"),
    "reshape": (("batch", "seq", "d_model"), ".reshape(batch, seq, d_model)"),
}
MAX_SEQ, MAX_D_MODEL, MAX_HEADS = 8, 32, 4  # one cell per number: larger tensors would not be readable

_FONT = "DejaVu Sans, Verdana, Arial, Helvetica, sans-serif"
_MONO = "DejaVu Sans Mono, Menlo, Consolas, monospace"
_INK, _MUTED, _LINE = "#1f2933", "#52606d", "#52606d"
# (fill, stroke) per head, light enough for dark digits; colour-blind-safe hues (Okabe–Ito), repeated past 8 heads.
_HEAD_COLOURS = [("#fde0b8", "#e69f00"), ("#cfe6f7", "#3a8cc4"), ("#c8ecdf", "#009e73"), ("#f6d3e6", "#cc79a7"),
                 ("#fff6b8", "#c9b400"), ("#d3dcf0", "#0072b2"), ("#f9d4c2", "#d55e00"), ("#e2e2e2", "#7f7f7f")]
CELL, HEAD_GAP, ROW_GAP = 22, 8, 16  # a number's square; the space between heads in a row; between head blocks


def head_split_stages(batch: int, seq: int, n_heads: int, d_head: int) -> dict[str, torch.Tensor]:
    """Every step of split_heads and merge_heads, run on a (batch, seq, d_model) tensor whose entry [b, t, f] is
    the feature index f: name (one of `STAGES`) → the tensor after that step, in the shape `STAGES` names."""
    for name, value in (("batch", batch), ("seq", seq), ("n_heads", n_heads), ("d_head", d_head)):
        require_positive_int(name, value)
    d_model = n_heads * d_head
    x = torch.arange(d_model).expand(batch, seq, d_model).contiguous()
    split = split_heads(x, n_heads)
    merged = merge_heads(split)
    if not torch.equal(merged, x):
        raise AssertionError("merge_heads(split_heads(x)) is not x")
    return {"x": x, "view": x.view(batch, seq, n_heads, d_head), "transpose": split,
            "transpose back": split.transpose(1, 2), "reshape": merged}


def _text(x: float, y: float, s: str, size: float = 12, *, anchor: str = "start", fill: str = _INK,
          weight: str = "normal", mono: bool = False) -> str:
    family = f' font-family="{_MONO}"' if mono else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}" '
            f'fill="{fill}"{family}>{escape(s)}</text>')


def _arrow(points: list[tuple[float, float]]) -> str:
    d = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(points))
    return f'<path d="{d}" fill="none" stroke="{_LINE}" stroke-width="1.6" marker-end="url(#head)"/>'


def _cell(x: float, y: float, token: int, feature: int, head: int) -> str:
    fill, stroke = _HEAD_COLOURS[head % len(_HEAD_COLOURS)]
    return (f'<rect class="cell" data-token="{token}" data-feature="{feature}" data-head="{head}" x="{x:.1f}" '
            f'y="{y:.1f}" width="{CELL - 2}" height="{CELL - 2}" rx="2" fill="{fill}" stroke="{stroke}"/>'
            + _text(x + CELL / 2 - 1, y + CELL / 2 + 3, str(feature), 10, anchor="middle"))


def _shadows(x: float, y: float, w: float, h: float, batch: int) -> str:
    """Dashed sheets behind a panel, one per further batch element (two at most): they are split the same way."""
    return "".join(f'<rect x="{x + 6 * i - 3:.1f}" y="{y - 6 * i - 3:.1f}" width="{w + 4:.1f}" height="{h + 4:.1f}" '
                   f'rx="3" fill="#f3f5f7" stroke="#9aa5b1" stroke-dasharray="4 3"/>'
                   for i in range(min(batch - 1, 2), 0, -1))


def _rows(x0: float, y0: float, values: torch.Tensor, d_head: int, split: bool) -> tuple[str, float, float]:
    """A (seq, d_model) or (seq, heads, d_head) panel at (x0, y0): one row per token, the heads' features side by
    side, with a gap between heads when `split`. Returns (svg, width, height)."""
    rows = values.reshape(values.shape[0], -1)
    gap = HEAD_GAP if split else 0
    parts = []
    for t, row in enumerate(rows.tolist()):
        y = y0 + t * CELL
        parts.append(_text(x0 - 6, y + CELL / 2 + 3, f"t{t}", 10, anchor="end", fill=_MUTED))
        for j, feature in enumerate(row):
            head = j // d_head
            parts.append(_cell(x0 + j * CELL + head * gap, y, t, feature, head))
    n_heads = rows.shape[1] // d_head
    return "".join(parts), rows.shape[1] * CELL + (n_heads - 1) * gap, rows.shape[0] * CELL


def _stage(name: str, shape: tuple[int, ...], body: str, title_x: float, title_y: float, anchor: str) -> str:
    dims, operation = STAGES[name]
    shape_line = f"({', '.join(dims)}) = ({', '.join(map(str, shape))})"
    return (f'<g class="stage" data-stage="{name}" data-dims="{",".join(dims)}" '
            f'data-shape="{",".join(map(str, shape))}"><title>{escape(operation)}: {escape(shape_line)}</title>'
            + _text(title_x, title_y - 18, operation, 13, anchor=anchor, weight="bold", mono=True)
            + _text(title_x, title_y - 3, shape_line, 12, anchor=anchor, fill=_MUTED, mono=True)
            + body + "</g>")


def head_split_svg(batch: int = 2, seq: int = 6, n_heads: int = 4, d_head: int = 4, *, width: int = 1100) -> str:
    """The SVG: split_heads (top row, then down the right) and merge_heads (bottom row, back to the left), for a
    tensor of shape (batch, seq, n_heads · d_head). One batch element is drawn; the others are dashed sheets."""
    stages = head_split_stages(batch, seq, n_heads, d_head)
    d_model = n_heads * d_head
    if seq > MAX_SEQ or d_model > MAX_D_MODEL or n_heads > MAX_HEADS:
        raise ValueError(f"the diagram draws one square per number: it needs seq ≤ {MAX_SEQ}, n_heads · d_head ≤ "
                         f"{MAX_D_MODEL} and n_heads ≤ {MAX_HEADS}, got seq={seq}, n_heads={n_heads}, "
                         f"d_head={d_head} (d_model={d_model}); the shapes work the same at any size")
    lift = 10 + 6 * min(batch - 1, 2)  # a panel's title sits above its dashed sheets
    left, top, arrow_gap = 40, 106 + lift, 96
    flat_w, panel_h = d_model * CELL, seq * CELL
    split_w = flat_w + (n_heads - 1) * HEAD_GAP
    block_h = n_heads * panel_h + (n_heads - 1) * ROW_GAP  # the heads stacked one under the other
    x_a, x_b = left, left + flat_w + arrow_gap
    x_c = x_b + split_w + arrow_gap + 90
    bottom = top + max(block_h, 3 * panel_h + 110) - panel_h  # the top of the bottom row
    x_d, x_e = x_b, x_a
    full_w = max(x_c + d_head * CELL + 70, 700)
    full_h = bottom + panel_h + 24

    def sheet(name: str, x: float, y: float, split: bool, title_anchor: str = "start") -> str:
        values = stages[name][0]  # batch element 0: (seq, d_model) or (seq, heads, d_head)
        body, w, h = _rows(x, y, values, d_head, split)
        tx = x if title_anchor == "start" else x + w
        return _stage(name, tuple(stages[name].shape), _shadows(x, y, w, h, batch) + body, tx, y - lift,
                      title_anchor)

    parts = [sheet("x", x_a, top, False), sheet("view", x_b, top, True)]
    # the heads, one (seq, d_head) block under the other: attention runs on each block by itself
    blocks = []
    for h, block in enumerate(stages["transpose"][0].tolist()):  # (heads, seq, d_head) of batch element 0
        y0 = top + h * (panel_h + ROW_GAP)
        blocks.append(_shadows(x_c, y0, d_head * CELL, panel_h, batch))
        for t, row in enumerate(block):
            blocks.append(_text(x_c - 6, y0 + t * CELL + CELL / 2 + 3, f"t{t}", 10, anchor="end", fill=_MUTED))
            for j, feature in enumerate(row):
                blocks.append(_cell(x_c + j * CELL, y0 + t * CELL, t, feature, h))
        colour = _HEAD_COLOURS[h % len(_HEAD_COLOURS)][1]
        blocks.append(_text(x_c + d_head * CELL + 14, y0 + panel_h / 2 + 4, f"head {h}", 12, fill=colour,
                            weight="bold"))
    parts.append(_stage("transpose", tuple(stages["transpose"].shape), "".join(blocks),
                        x_c + d_head * CELL + 60, top - lift, "end"))
    parts += [sheet("transpose back", x_d, bottom, True), sheet("reshape", x_e, bottom, False)]

    mid_top, mid_bottom = top + panel_h / 2, bottom + panel_h / 2
    arrows = [_arrow([(x_a + flat_w + 12, mid_top), (x_b - 30, mid_top)]),
              _arrow([(x_b + split_w + 12, mid_top), (x_c - 30, mid_top)]),
              _arrow([(x_c - 30, mid_bottom), (x_d + split_w + 12, mid_bottom)]),
              _arrow([(x_d - 30, mid_bottom), (x_e + flat_w + 12, mid_bottom)])]
    # what the two functions are made of, in the middle of the loop
    note_y = top + panel_h + 48
    note = [_text(x_a, note_y, "split_heads = .view, then .transpose(1, 2)   (top row, then down)", 13, mono=True),
            _text(x_a, note_y + 20, "merge_heads = .transpose(1, 2), then .reshape   (bottom row, right to left)",
                  13, mono=True),
            _text(x_a, note_y + 46, "view and transpose copy nothing: they only change how the same numbers are "
                  "indexed.", 12, fill=_MUTED),
            _text(x_a, note_y + 64, "After transpose the numbers are no longer in order in memory, so merging "
                  "needs reshape (a copy),", 12, fill=_MUTED),
            _text(x_a, note_y + 82, "not view. Each head gets every token, and only its own slice of the "
                  "features.", 12, fill=_MUTED)]
    more = ("" if batch == 1 else "; the dashed sheet behind is the other batch element" if batch == 2 else
            f"; the dashed sheets behind stand for the other {batch - 1} batch elements")
    header = [_text(left - 24, 28, f"Splitting into heads and merging back: batch {batch}, seq {seq}, {n_heads} "
                    f"heads of d_head {d_head}, so d_model {d_model}", 16, weight="bold"),
              _text(left - 24, 50, f"Each square is one number of batch element 0: its row is the token (t0, t1, "
                    f"…), the digit its feature index, the colour the head it goes to{more}.", 12, fill=_MUTED)]
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {full_w:.0f} {full_h:.0f}" width="{width}" '
            f'height="{width * full_h / full_w:.0f}" font-family="{_FONT}" role="img" '
            f'aria-label="split_heads and merge_heads: the shapes of each step">'
            f'<defs><marker id="head" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{_LINE}"/></marker></defs>'
            f'<rect width="100%" height="100%" fill="#ffffff"/>'
            + "".join(header + arrows + parts + note) + "</svg>")


def show_head_split(batch: int = 2, seq: int = 6, n_heads: int = 4, d_head: int = 4, *, width: int = 1100):
    """`head_split_svg` as an IPython SVG object: the last line of a notebook cell draws it."""
    from IPython.display import SVG

    return SVG(data=head_split_svg(batch, seq, n_heads, d_head, width=width))
