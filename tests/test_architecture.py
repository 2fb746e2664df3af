"""labkit.viz.architecture: the map of the lab is valid SVG, has its three shapes, and every box's tag names a
notebook that exists."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from labkit.viz.architecture import COLUMNS, NOTEBOOKS, architecture_svg, show_architecture

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def root() -> ET.Element:
    return ET.fromstring(architecture_svg())


def _columns(root: ET.Element) -> dict[str, ET.Element]:
    return {g.get("data-column"): g for g in root.iter(f"{SVG}g") if g.get("class") == "column"}


def _boxes(element: ET.Element) -> list[ET.Element]:
    return [g for g in element.iter(f"{SVG}g") if g.get("class") == "box"]


def _labels(element: ET.Element) -> list[str]:
    return [" ".join(t.text for t in box.iter(f"{SVG}text"))  # the label's lines, then the tag
            for box in _boxes(element)]


def test_it_is_an_svg_with_the_three_shapes_in_order(root: ET.Element) -> None:
    assert root.tag == f"{SVG}svg"
    assert list(_columns(root)) == list(COLUMNS) == ["encoder-only", "decoder-only", "encoder-decoder"]


def test_every_tag_names_a_notebook_that_exists(root: ET.Element) -> None:
    boxes = _boxes(root)
    assert len(boxes) > 30
    for box in boxes:
        stem = box.get("data-notebook")
        assert (NOTEBOOK_DIR / f"{stem}.ipynb").is_file(), f"box {box.findtext(f'{SVG}title')!r} names {stem!r}"
        shown = [t.text for t in box.iter(f"{SVG}text")][-1]  # the tag drawn on the box
        assert NOTEBOOKS[shown] == stem
    for tag, stem in NOTEBOOKS.items():
        assert stem.startswith(tag + "-") and (NOTEBOOK_DIR / f"{stem}.ipynb").is_file()


def test_each_shape_has_the_parts_that_make_it(root: ET.Element) -> None:
    columns = _columns(root)
    kinds = {name: {box.get("data-kind") for box in _boxes(g)} for name, g in columns.items()}
    for name in COLUMNS:
        assert {"embedding", "positions", "attention", "norm", "feed-forward", "head"} <= kinds[name]
    encoder, gpt, seq2seq = (" | ".join(_labels(columns[name])) for name in COLUMNS)
    assert "add & norm" in encoder and "causal" not in encoder and "final LayerNorm" not in encoder  # post-LN
    assert "causal self-attention" in gpt and "cross-attention" not in gpt and "final LayerNorm" in gpt
    assert "cross-attention" in seq2seq and "causal self-attention" in seq2seq
    # the decoder's cross-attention is fed by the encoder's memory
    assert any(p.get("marker-end") == "url(#memory-head)" for p in columns["encoder-decoder"].iter(f"{SVG}path"))


def test_the_width_scales_the_drawing_and_a_bad_width_is_refused() -> None:
    small = ET.fromstring(architecture_svg(600))
    assert small.get("width") == "600" and small.get("viewBox") == ET.fromstring(architecture_svg()).get("viewBox")
    natural = ET.fromstring(architecture_svg())
    assert natural.get("width") == natural.get("viewBox").split()[2]
    with pytest.raises(ValueError, match=r"width must be None \(the natural size\) or an int of at least 200 "
                                         r"pixels, got 50"):
        architecture_svg(50)


def test_show_architecture_is_an_ipython_svg() -> None:
    shown = show_architecture()
    assert type(shown).__name__ == "SVG" and "encoder-decoder" in shown._repr_svg_()
