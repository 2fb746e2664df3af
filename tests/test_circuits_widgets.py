"""Notebook 11's views, driven from Python: the logit lens grid is the model's own lens, the position slider moves
the bars, bad text is shown not raised; ticking heads ablates them, with the loss labkit's ablation gives."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from labkit.corpus import CharCorpus
from labkit.hooks import ablating_heads, logit_lens
from labkit.models import GPTConfig, TinyGPT
from labkit.viz.circuits_widgets import HeadAblationExplorer, LogitLensExplorer

TEXT = "to be or not to be, that is the question. "


@pytest.fixture(scope="module")
def gpt() -> tuple[TinyGPT, CharCorpus]:
    corpus = CharCorpus.from_text(TEXT * 20)
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(vocab_size=corpus.tokenizer.vocab_size, block_size=32, n_layer=2, n_head=2,
                              d_model=16))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return model.eval(), corpus


def test_the_logit_lens_grid_is_the_models_lens(gpt) -> None:
    model, corpus = gpt
    view = LogitLensExplorer(model, corpus.tokenizer, "to be or not")
    ids = corpus.tokenizer.encode("to be or not")
    probs = logit_lens(model, ids[None])[:, 0].softmax(-1)  # (3, 12, vocab)
    grid = view.grid.data[0]
    assert len(grid.z) == 3 and len(grid.z[0]) == 12 and grid.z[0][-1] is None  # nothing to score at the end
    assert grid.z[2][4] == pytest.approx(float(probs[2, 4, ids[5]]), abs=1e-6)
    assert grid.text[2][4] == corpus.tokenizer.decode(probs[2, 4].argmax()[None]).replace(" ", "␣")
    view.position.value = 6
    assert list(view.bars.data[0].y) == pytest.approx(probs[:, 6, ids[7]].tolist(), abs=1e-6)
    assert "position 6" in view.table.value and view.position.max == 10


def test_the_logit_lens_shows_bad_text_instead_of_raising(gpt) -> None:
    model, corpus = gpt
    view = LogitLensExplorer(model, corpus.tokenizer, "to be")
    view.text.value = "to be €"
    assert "outside this tokenizer's vocabulary" in view.message.value
    view.text.value = "t"
    assert "at least two characters" in view.message.value
    view.text.value = "not to be"
    assert view.message.value == "" and len(view.grid.data[0].z[0]) == 9


def test_ticking_heads_ablates_them(gpt) -> None:
    model, corpus = gpt
    x, y = corpus.batch("val", 4, 32, torch.Generator().manual_seed(0))
    view = HeadAblationExplorer(model, corpus.tokenizer, x, y, prompt="to be", new_tokens=10)
    clean = view.update()
    view.boxes[0][1].value = True
    view.boxes[1][0].value = True
    with torch.no_grad(), ablating_heads(model, [(0, 1), (1, 0)]):
        expected = F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()
    assert view.ablated == [(0, 1), (1, 0)] and view.update() == pytest.approx(expected, abs=1e-6)
    assert "L0H1, L1H0" in view.loss.value and f"{clean:.3f}" in view.loss.value
    assert view.sample.value.startswith("<pre>to be") and len(view.sample.value) > len("<pre>to be</pre>")
    view.kind.value = "mean"
    assert view.update() != pytest.approx(expected, abs=1e-4)  # the mean is not zero
    for row in view.boxes:
        for box in row:
            box.value = False
    assert view.update() == pytest.approx(clean, abs=1e-6)
