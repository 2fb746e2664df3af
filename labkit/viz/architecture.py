"""The map of the lab: the transformer's three shapes side by side, drawn in code as one SVG.

Encoder-only (BERT), decoder-only (GPT) and encoder–decoder, bottom (tokens in) to top (predictions out). Every
box carries a tag with the notebook that builds it (`NOTEBOOKS` maps the tag to the notebook's file name), and
the SVG says so in data attributes: `<g class="column" data-column="...">` per shape, `<g class="box"
data-notebook="03-transformer-block" data-kind="attention">` per box. BERT's blocks are drawn post-LN, GPT's and
the encoder–decoder's pre-LN with a final LayerNorm, as the lab builds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from IPython.display import SVG

__all__ = ["NOTEBOOKS", "COLUMNS", "architecture_svg", "show_architecture"]

# Tag → notebook file (without .ipynb), for the notebooks that build a box.
NOTEBOOKS = {
    "01": "01-attention-step-by-step",
    "02": "02-positional-encoding",
    "03": "03-transformer-block",
    "04": "04-tiny-gpt",
    "05": "05-pretraining-objectives",
    "06": "06-fine-tuning-bert",
    "07": "07-generation",
    "08": "08-looking-inside",
    "09": "09-encoder-decoder",
    "10": "10-positional-workbench",
}
# What each notebook is about, in the legend under the three shapes.
_TOPICS = {"01": "attention", "02": "positions", "03": "the block", "04": "tiny GPT", "05": "BERT pretraining",
           "06": "fine-tuning", "07": "generation", "08": "inside the attention boxes", "09": "encoder–decoder",
           "10": "the positions boxes compared"}
COLUMNS = ("encoder-only", "decoder-only", "encoder-decoder")

# Fill and stroke per kind of box.
_KINDS = {
    "embedding": ("#fbe3ec", "#c2537c"),
    "positions": ("#ece5fb", "#7a5bc2"),
    "attention": ("#fde9d4", "#d9822b"),
    "norm": ("#fbf5cc", "#b8961b"),
    "feed-forward": ("#dceafc", "#4576b8"),
    "head": ("#dcf1e3", "#3b9160"),
    "decoding": ("#eceff3", "#687284"),
}
_FONT = "DejaVu Sans, Verdana, Arial, Helvetica, sans-serif"
_INK, _MUTED, _LINE, _TAG, _MEMORY = "#1f2933", "#52606d", "#52606d", "#3e4c59", "#c46f1c"

GAP = 16  # vertical space between two items, filled by an arrow
BOX_H, NORM_H, PAIR_H = 32, 26, 40  # heights: a sublayer, a LayerNorm, an embedding pair
PLUS_R = 9  # radius of a ⊕
RES_DX = 14  # how far right of its boxes a residual line runs
PAD_L, PAD_R, PAD_TOP, PAD_BOTTOM = 10, 12, 30, 12  # a block's frame around its boxes


def _text(x: float, y: float, s: str, size: float = 12, *, anchor: str = "middle", weight: str = "normal",
          fill: str = _INK, italic: bool = False) -> str:
    style = ' font-style="italic"' if italic else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}" '
            f'fill="{fill}"{style}>{escape(s)}</text>')


def _path(points: list[tuple[float, float]], arrow: bool = True, colour: str = _LINE) -> str:
    """A polyline through `points`, with an arrowhead at the last one unless arrow=False."""
    d = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(points))
    end = f' marker-end="url(#{"head" if colour == _LINE else "memory-head"})"' if arrow else ""
    return f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="1.4"{end}/>'


def _plus(cx: float, cy: float) -> str:
    """A ⊕: the residual stream's sum."""
    return (f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{PLUS_R}" fill="#ffffff" stroke="{_LINE}" stroke-width="1.4"/>'
            + _path([(cx - 5, cy), (cx + 5, cy)], arrow=False) + _path([(cx, cy - 5), (cx, cy + 5)], arrow=False))


def _box(x: float, y: float, w: float, h: float, label: str, tag: str, kind: str) -> str:
    """A rounded box with its top left at (x, y): the label (one line, or two split at a newline), then the
    notebook's tag at the right end."""
    if tag not in NOTEBOOKS:
        raise ValueError(f"tag must be one of {sorted(NOTEBOOKS)}, got {tag!r}")
    fill, stroke = _KINDS[kind]
    lines = label.split("\n")
    tag_w = 22
    tx, ty = x + w - tag_w - 5, y + h / 2 - 8
    mid_x = (x + tx) / 2  # the label's centre, between the box's left edge and the tag
    size = 12.5 if len(lines) == 1 else 11.5
    first = y + h / 2 + 4 - 7 * (len(lines) - 1)
    texts = "".join(_text(mid_x, first + 14 * i, line, size) for i, line in enumerate(lines))
    return (f'<g class="box" data-notebook="{NOTEBOOKS[tag]}" data-kind="{kind}">'
            f'<title>{escape(label.replace(chr(10), " "))}: notebook {NOTEBOOKS[tag]}</title>'
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{w}" height="{h}" rx="6" fill="{fill}" stroke="{stroke}" '
            f'stroke-width="1.3"/>{texts}'
            f'<rect class="tag" x="{tx:.1f}" y="{ty:.1f}" width="{tag_w}" height="16" rx="8" fill="{_TAG}"/>'
            f'{_text(tx + tag_w / 2, ty + 12, tag, 10.5, weight="bold", fill="#ffffff")}</g>')


@dataclass
class _Stack:
    """One vertical stack of boxes drawn upwards from `y` (the top of the last thing drawn), centred on `cx`."""

    cx: float
    width: float
    y: float
    out: list[str] = field(default_factory=list)
    under: list[str] = field(default_factory=list)  # frames, drawn beneath everything else

    @property
    def left(self) -> float:
        return self.cx - self.width / 2

    @property
    def right(self) -> float:
        return self.cx + self.width / 2

    def words(self, s: str) -> None:
        """Text on the stream: the tokens going in, or what comes out."""
        self.out.append(_text(self.cx, self.y - 4, s, 12, fill=_MUTED, italic=True))
        self.y -= 18

    def box(self, label: str, tag: str, kind: str, h: float = BOX_H) -> tuple[float, float]:
        """A box above the stream, joined to it by an arrow; returns its (top, bottom)."""
        bottom = self.y - GAP
        self.out.append(_path([(self.cx, self.y), (self.cx, bottom)]))
        self.out.append(_box(self.left, bottom - h, self.width, h, label, tag, kind))
        self.y = bottom - h
        return self.y, bottom

    def plus(self) -> float:
        """A ⊕ above the stream; returns its centre's y."""
        cy = self.y - GAP - PLUS_R
        self.out.append(_path([(self.cx, self.y), (self.cx, cy + PLUS_R)]) + _plus(self.cx, cy))
        self.y = cy - PLUS_R
        return cy

    def embeddings(self, left: tuple[str, str], right: tuple[str, str]) -> None:
        """Two boxes side by side (the token embedding, the positions), summed by a ⊕ above them."""
        w = (self.width - 8) / 2
        top = self.y - PAIR_H
        for x, (label, tag), kind in ((self.left, left, "embedding"), (self.right - w, right, "positions")):
            self.out.append(_box(x, top, w, PAIR_H, label, tag, kind))
        cy = top - GAP - PLUS_R
        for x in (self.left + w / 2, self.right - w / 2):
            self.out.append(_path([(x, top), (x, cy), (self.cx + (PLUS_R if x > self.cx else -PLUS_R), cy)]))
        self.out.append(_plus(self.cx, cy))
        self.y = cy - PLUS_R

    def residual(self, from_y: float, to_y: float, to_x: float) -> None:
        """The skip connection: from the stream at from_y, right of the boxes, up, and back in at (to_x, to_y)."""
        x = self.right + RES_DX
        self.out.append(_path([(self.cx, from_y), (x, from_y), (x, to_y), (to_x, to_y)]))

    def pre_ln(self, label: str, tag: str, kind: str = "attention") -> dict[str, float]:
        """x + sublayer(LayerNorm(x)); returns the sublayer box's {top, bottom}."""
        branch = self.y - GAP / 2
        self.box("LayerNorm", "03", "norm", NORM_H)
        top, bottom = self.box(label, tag, kind)
        cy = self.plus()
        self.residual(branch, cy, self.cx + PLUS_R)
        return {"top": top, "bottom": bottom}

    def post_ln(self, label: str, tag: str, kind: str = "attention") -> None:
        """LayerNorm(x + sublayer(x)): the sum and the norm in one "add & norm" box."""
        branch = self.y - GAP / 2
        self.box(label, tag, kind)
        top, bottom = self.box("add & norm", "03", "norm", NORM_H)
        self.residual(branch, (top + bottom) / 2, self.right)

    def frame(self, bottom: float, caption: str, note: str) -> None:
        """The block's dashed frame from `bottom` up to the stream's current top: `caption` at its top left,
        `note` at its top right (clear of the stream, which runs up the middle)."""
        top = self.y - PAD_TOP
        x, w = self.left - PAD_L, self.width + PAD_L + RES_DX + PAD_R
        self.under.append(f'<rect x="{x:.1f}" y="{top:.1f}" width="{w:.1f}" height="{bottom - top:.1f}" rx="10" '
                          f'fill="#f5f7fa" stroke="#9aa5b1" stroke-width="1.2" stroke-dasharray="5 3"/>'
                          + _text(x + 9, top + 19, caption, 13, anchor="start", weight="bold")
                          + _text(x + w - 9, top + 19, note, 11.5, anchor="end", fill=_MUTED))
        self.y = top

    def open_frame(self) -> float:
        """Start a block: the stream enters its frame from below; returns the frame's bottom."""
        bottom = self.y - GAP
        inside = bottom - PAD_BOTTOM + GAP / 2  # so the first residual branches PAD_BOTTOM above the frame's edge
        self.out.append(_path([(self.cx, self.y), (self.cx, inside)], arrow=False))
        self.y = inside
        return bottom


def _encoder_only(cx: float, width: float, base: float) -> _Stack:
    s = _Stack(cx, width, base)
    s.words("[CLS] the cat sat … [SEP]")
    s.embeddings(("token +\nsegment", "05"), ("learned\npositions", "02"))
    bottom = s.open_frame()
    s.post_ln("multi-head attention", "01")
    s.post_ln("feed-forward", "03", "feed-forward")
    s.frame(bottom, "block × N", "post-LN")
    s.box("masked-LM head · NSP head", "05", "head")
    s.box("classifier · tagger heads", "06", "head")
    s.words("masked words · sentiment · entities")
    return s


def _decoder_only(cx: float, width: float, base: float) -> _Stack:
    s = _Stack(cx, width, base)
    s.words("t h e ␣ c a t")
    s.embeddings(("token\nembedding", "04"), ("learned\npositions", "02"))
    bottom = s.open_frame()
    s.pre_ln("causal self-attention", "01")
    s.pre_ln("feed-forward", "03", "feed-forward")
    s.frame(bottom, "block × N", "pre-LN")
    s.box("final LayerNorm", "04", "norm", NORM_H)
    s.box("linear → softmax", "04", "head")
    s.box("sample the next token", "07", "decoding")
    s.words("the next character")
    return s


def _encoder_decoder(cx_enc: float, cx_dec: float, width: float, base: float) -> tuple[_Stack, _Stack]:
    enc, dec = _Stack(cx_enc, width, base), _Stack(cx_dec, width, base)
    enc.words("the fourth of july nineteen ninety nine")
    enc.embeddings(("word\nembedding", "09"), ("sinusoidal\npositions", "02"))
    bottom = enc.open_frame()
    enc.pre_ln("self-attention", "01")
    enc.pre_ln("feed-forward", "03", "feed-forward")
    enc.frame(bottom, "block × N", "encoder · pre-LN")
    memory_top, _ = enc.box("final LayerNorm", "09", "norm", NORM_H)

    dec.words("<bos> 1 9 9 9 - 0 7 - 0")
    dec.embeddings(("char\nembedding", "09"), ("sinusoidal\npositions", "02"))
    bottom = dec.open_frame()
    dec.pre_ln("causal self-attention", "01")
    cross = dec.pre_ln("cross-attention", "03")
    dec.pre_ln("feed-forward", "03", "feed-forward")
    dec.frame(bottom, "block × N", "decoder · pre-LN")
    dec.box("final LayerNorm", "09", "norm", NORM_H)
    dec.box("linear → softmax", "09", "head")
    dec.box("greedy · beam search", "09", "decoding")
    dec.words("1999-07-04")

    # The encoder's output (memory) feeds every decoder block's cross-attention: keys and values.
    x_mid = (enc.right + RES_DX + PAD_R + dec.left - PAD_L) / 2
    y_in = (cross["top"] + cross["bottom"]) / 2
    enc.out.append(_path([(enc.cx, memory_top), (enc.cx, memory_top - 14), (x_mid, memory_top - 14), (x_mid, y_in),
                          (dec.left, y_in)], colour=_MEMORY))
    enc.out.append(_text(enc.cx + 8, memory_top - 20, "memory → keys, values", 11.5, anchor="start",
                         fill=_MEMORY, italic=True))
    return enc, dec


def _legend(x: float, y: float, width: float) -> str:
    per_row = 5
    col_w = width / per_row
    parts = []
    for i, (tag, topic) in enumerate(_TOPICS.items()):
        cx, cy = x + (i % per_row) * col_w, y + (i // per_row) * 22
        parts.append(f'<rect x="{cx:.1f}" y="{cy - 12:.1f}" width="24" height="16" rx="8" fill="{_TAG}"/>'
                     + _text(cx + 12, cy, tag, 10.5, weight="bold", fill="#ffffff")
                     + _text(cx + 30, cy, topic, 12, anchor="start"))
    return "".join(parts)


def architecture_svg(width: int | None = None) -> str:
    """The three shapes side by side as an SVG document (a str): about 1170 × 860 pixels, or `width` pixels wide
    with the drawing scaled to fit."""
    if width is not None and (not isinstance(width, int) or isinstance(width, bool) or width < 200):
        raise ValueError(f"width must be None (the natural size) or an int of at least 200 pixels, got {width!r}")
    box_ab, box_c = 228, 220  # box widths: the two single stacks, the encoder–decoder's two stacks
    frame = PAD_L + RES_DX + PAD_R  # a frame's width beyond its boxes
    margin, between = 16, 24
    x = margin + PAD_L
    cx_a = x + box_ab / 2
    x += box_ab + frame + between
    cx_b = x + box_ab / 2
    x += box_ab + frame + between
    cx_enc = x + box_c / 2
    x += box_c + frame + 54
    cx_dec = x + box_c / 2
    full_w = x + box_c + RES_DX + PAD_R + margin
    base = 700  # the bottom of every stack
    a = _encoder_only(cx_a, box_ab, base)
    b = _decoder_only(cx_b, box_ab, base)
    enc, dec = _encoder_decoder(cx_enc, cx_dec, box_c, base)
    top = min(s.y for s in (a, b, enc, dec))
    shift = 96 - top  # the headings take the space above the tallest stack
    legend_y = base + shift + 38
    full_h = legend_y + 52
    width = round(full_w) if width is None else width

    heads = {
        "encoder-only": (cx_a + RES_DX / 2, "encoder-only · BERT", "reads the whole text at once"),
        "decoder-only": (cx_b + RES_DX / 2, "decoder-only · GPT", "predicts the next token, left to right"),
        "encoder-decoder": ((cx_enc + cx_dec) / 2, "encoder–decoder · the 2017 Transformer",
                            "reads a source, writes a target"),
    }
    stacks = {"encoder-only": [a], "decoder-only": [b], "encoder-decoder": [enc, dec]}
    body = []
    for name in COLUMNS:
        hx, title, subtitle = heads[name]
        inner = "".join("".join(s.under) for s in stacks[name]) + "".join("".join(s.out) for s in stacks[name])
        body.append(f'<g class="column" data-column="{name}">'
                    + _text(hx, 58, title, 15.5, weight="bold") + _text(hx, 77, subtitle, 12, fill=_MUTED)
                    + f'<g transform="translate(0 {shift:.1f})">{inner}</g></g>')
    legend = (_text(margin, legend_y - 14, "each tag names the notebook that builds the part:", 12, anchor="start",
                    fill=_MUTED)
              + _legend(margin + 4, legend_y + 10, full_w - 2 * margin))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {full_w:.0f} {full_h:.0f}" width="{width}" '
            f'height="{width * full_h / full_w:.0f}" font-family="{_FONT}" role="img" '
            f'aria-label="encoder-only, decoder-only and encoder-decoder transformers, tagged by notebook">'
            f'<defs><marker id="head" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{_LINE}"/></marker>'
            f'<marker id="memory-head" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{_MEMORY}"/></marker></defs>'
            f'<rect width="100%" height="100%" fill="#ffffff"/>'
            + _text(margin, 26, "The transformer's three shapes, and where the lab builds each part", 17,
                    anchor="start", weight="bold")
            + "".join(body) + legend + "</svg>")


def show_architecture(width: int | None = None) -> SVG:
    """`architecture_svg` as an IPython SVG object: the last line of a notebook cell draws it."""
    from IPython.display import SVG

    return SVG(data=architecture_svg(width))
