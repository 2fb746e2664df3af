"""labkit.viz.shapes: the split/merge diagram is valid SVG, names the right shape at every step, and puts each
feature in the head that split_heads gives it."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import torch

from labkit.attention import split_heads
from labkit.viz.shapes import STAGES, head_split_stages, head_split_svg, show_head_split

SVG = "{http://www.w3.org/2000/svg}"


def _stages(svg: str) -> dict[str, ET.Element]:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return {g.get("data-stage"): g for g in root.iter(f"{SVG}g") if g.get("class") == "stage"}


@pytest.mark.parametrize("batch, seq, n_heads, d_head", [(2, 6, 4, 4), (1, 3, 2, 8), (3, 8, 4, 2)])
def test_each_step_names_its_dims_and_shape(batch: int, seq: int, n_heads: int, d_head: int) -> None:
    stages = _stages(head_split_svg(batch, seq, n_heads, d_head))
    d_model = n_heads * d_head
    expected = {"x": ("batch,seq,d_model", (batch, seq, d_model)),
                "view": ("batch,seq,heads,d_head", (batch, seq, n_heads, d_head)),
                "transpose": ("batch,heads,seq,d_head", (batch, n_heads, seq, d_head)),
                "transpose back": ("batch,seq,heads,d_head", (batch, seq, n_heads, d_head)),
                "reshape": ("batch,seq,d_model", (batch, seq, d_model))}
    assert list(stages) == list(STAGES) == list(expected)
    for name, (dims, shape) in expected.items():
        g = stages[name]
        assert g.get("data-dims") == dims
        assert g.get("data-shape") == ",".join(map(str, shape))
        shown = " ".join(t.text for t in g.iter(f"{SVG}text"))
        assert f"= ({', '.join(map(str, shape))})" in shown  # the shape is written out, not only in the data
        assert len([r for r in g.iter(f"{SVG}rect") if r.get("class") == "cell"]) == seq * d_model  # one batch element


def test_each_head_holds_its_own_slice_of_every_token() -> None:
    n_heads, d_head, seq = 4, 4, 6
    transposed = _stages(head_split_svg(2, seq, n_heads, d_head))["transpose"]
    cells = [r for r in transposed.iter(f"{SVG}rect") if r.get("class") == "cell"]
    for h in range(n_heads):
        mine = [c for c in cells if c.get("data-head") == str(h)]
        assert {int(c.get("data-token")) for c in mine} == set(range(seq))
        assert {int(c.get("data-feature")) for c in mine} == set(range(h * d_head, (h + 1) * d_head))
    # the colour (head) of a feature is the same at every step
    for g in _stages(head_split_svg(2, seq, n_heads, d_head)).values():
        for c in (r for r in g.iter(f"{SVG}rect") if r.get("class") == "cell"):
            assert int(c.get("data-feature")) // d_head == int(c.get("data-head"))


def test_the_stages_are_split_heads_and_merge_heads() -> None:
    stages = head_split_stages(2, 5, 3, 4)
    x = stages["x"]
    assert torch.equal(stages["transpose"], split_heads(x, 3))
    assert torch.equal(stages["reshape"], x)
    assert tuple(stages["transpose back"].shape) == tuple(stages["view"].shape) == (2, 5, 3, 4)


def test_bad_sizes_are_named() -> None:
    with pytest.raises(ValueError, match="n_heads must be a positive int, got 0"):
        head_split_svg(2, 6, 0, 4)
    with pytest.raises(ValueError, match="seq=40"):
        head_split_svg(1, 40, 4, 4)
    with pytest.raises(ValueError, match="d_model=64"):
        head_split_svg(1, 4, 4, 16)


def test_show_head_split_is_an_ipython_svg() -> None:
    assert "split_heads" in show_head_split().data
