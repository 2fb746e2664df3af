"""Notebook 07's views: the explorer draws `generation_trace`'s numbers, its controls reach the generator, labels
are readable for characters and for word pieces, and bad input is shown, never raised."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from labkit.generation import generation_trace, seeded_generator, token_label, token_pieces
from labkit.viz.generation_widgets import CHOSEN_COLOUR, GenerationExplorer, trace_heatmap

BLOCK = 16  # the context of conftest's char_model


@pytest.fixture
def view(char_model, char_tokenizer) -> GenerationExplorer:
    return GenerationExplorer(char_model, char_tokenizer, BLOCK, prompt="the boats", max_new_tokens=12, seed=3,
                              n_bars=6)


def reference(char_model, char_tokenizer, view: GenerationExplorer, **settings):
    """generation_trace called directly with the view's prompt, length, seed and number of bars."""
    idx = char_tokenizer.encode(view.prompt.value)[None, :]
    return generation_trace(char_model, idx, view.length.value, block_size=BLOCK, n_candidates=view.n_bars,
                            generator=seeded_generator(view.seed.value), **settings)


def test_the_bars_are_the_traced_step(view, char_model, char_tokenizer) -> None:
    trace = reference(char_model, char_tokenizer, view, greedy=False, temperature=1.0, top_k=None, top_p=None,
                      repetition_penalty=1.0)
    assert torch.equal(view.trace.ids, trace.ids)
    for step in (1, 5, 12):
        view.step.value = step
        raw, filtered = view.figure.data
        np.testing.assert_array_equal(np.asarray(filtered.customdata), trace.candidates[step - 1].numpy())
        np.testing.assert_allclose(np.asarray(raw.y), trace.raw[step - 1].numpy())
        np.testing.assert_allclose(np.asarray(filtered.y), trace.filtered[step - 1].numpy())
        chosen = int(trace.tokens[step - 1])
        colours = [CHOSEN_COLOUR if i == chosen else c for i, c in
                   zip(filtered.customdata, filtered.marker.color)]
        assert list(filtered.marker.color) == colours
        assert f"step {step} of 12" in view.figure.layout.title.text


@pytest.mark.parametrize("control, value, settings", [
    ("temperature", 0.5, dict(temperature=0.5)),
    ("top_k", 3, dict(top_k=3)),
    ("top_p", 0.6, dict(top_p=0.6)),
    ("penalty", 1.7, dict(repetition_penalty=1.7)),
])
def test_each_slider_reaches_the_generator(view, char_model, char_tokenizer, control, value, settings) -> None:
    getattr(view, control).value = value
    full = dict(greedy=False, temperature=1.0, top_k=None, top_p=None, repetition_penalty=1.0) | settings
    trace = reference(char_model, char_tokenizer, view, **full)
    assert torch.equal(view.trace.ids, trace.ids)
    torch.testing.assert_close(view.trace.filtered, trace.filtered)


def test_top_k_leaves_k_candidates_with_probability(view) -> None:
    view.top_k.value = 2
    assert (view.trace.kept == 2).all()
    assert (np.asarray(view.figure.data[1].y)[2:] == 0).all()


def test_greedy_switches_off_the_sampling_sliders_and_picks_the_argmax(view, char_model, char_tokenizer) -> None:
    view.temperature.value = 1.6
    view.greedy.value = True
    assert view.temperature.disabled and view.top_k.disabled and view.top_p.disabled
    assert not view.penalty.disabled
    assert (view.trace.ranks == 0).all()
    assert torch.equal(view.trace.ids, reference(char_model, char_tokenizer, view, greedy=True).ids)
    view.greedy.value = False
    assert not view.temperature.disabled


def test_the_seed_repeats_a_generation_and_another_seed_changes_it(view) -> None:
    first = view.trace.ids.clone()
    view.seed.value = 4
    assert not torch.equal(view.trace.ids, first)
    view.seed.value = 3
    assert torch.equal(view.trace.ids, first)


def test_a_shorter_generation_pulls_the_step_back(view) -> None:
    view.step.value = 12
    view.length.value = 4
    assert view.step.max == 4 and view.step.value == 4 and len(view.trace.tokens) == 4
    assert "step 4 of 4" in view.figure.layout.title.text


def test_the_text_marks_the_step_token_after_the_bold_prompt(view, char_tokenizer) -> None:
    view.step.value = 2
    ids = view.trace.ids[0].tolist()
    assert view.text.value.startswith('<pre style="white-space: pre-wrap"><b>the boats</b>')
    assert "<mark" in view.text.value and view.text.value.count("<mark") == 1
    before_mark = view.text.value.split("<mark")[0]
    assert char_tokenizer.decode(ids[9:10]) in before_mark.split("</b>")[1]  # step 1's text comes before the mark


@pytest.mark.parametrize("prompt, words", [
    ("", "prompt is empty"),
    ("the boats ZZ", "outside this tokenizer's vocabulary"),
    ("the mud " * 5, "more than the model's block_size=16"),
])
def test_bad_prompts_are_shown_and_keep_the_last_generation(view, prompt, words) -> None:
    before = view.trace
    view.prompt.value = prompt
    assert words in view.message.value and "color:#c53030" in view.message.value
    assert view.trace is before
    view.prompt.value = "the mud"
    assert view.message.value == "" and view.trace is not before


def test_a_bad_seed_is_shown(view) -> None:
    view.seed.value = -1
    assert "seed must be an int" in view.message.value


def test_the_view_checks_its_sizes(char_model, char_tokenizer) -> None:
    for name in ("block_size", "max_new_tokens", "n_bars"):
        sizes = dict(block_size=BLOCK, max_new_tokens=5, n_bars=4) | {name: 0}
        with pytest.raises(ValueError, match=f"{name} must be a positive int"):
            GenerationExplorer(char_model, char_tokenizer, sizes.pop("block_size"), **sizes)


def test_labels_show_spaces_and_newlines(char_tokenizer) -> None:
    space, newline = char_tokenizer.encode(" ")[0].item(), char_tokenizer.encode("\n")[0].item()
    assert token_label(char_tokenizer, space) == "␣" and token_label(char_tokenizer, newline) == "⏎"

    class Empty:
        def decode(self, ids):
            return ""

    assert token_label(Empty(), 42) == "#42"


def test_pieces_are_what_each_token_adds_to_the_text(char_tokenizer) -> None:
    ids = char_tokenizer.encode("the boats lean").tolist()
    assert token_pieces(char_tokenizer, ids, 4) == list("boats lean")


def test_pieces_of_word_piece_tokens_carry_their_spaces() -> None:
    from labkit.assets import load_tokenizer

    char_tokenizer = load_tokenizer()  # a WordPiece tokenizer: pieces decode without the space between words
    ids = char_tokenizer.encode("the quick brown fox", add_special_tokens=False)
    pieces = token_pieces(char_tokenizer, ids, 1)
    assert "".join(pieces) == " quick brown fox" and pieces[-1] == " fox"


def test_the_heatmap_has_a_row_per_step_and_brackets_the_chosen_token(view, char_tokenizer) -> None:
    fig = trace_heatmap(view.trace, char_tokenizer, title="t")
    heatmap = fig.data[0]
    assert np.asarray(heatmap.z).shape == (12, 6)
    np.testing.assert_allclose(np.asarray(heatmap.z), view.trace.filtered.numpy())
    for row, chosen, rank in zip(heatmap.text, view.trace.tokens.tolist(), view.trace.ranks.tolist()):
        if rank < 6:
            assert row[rank] == f"[{token_label(char_tokenizer, chosen)}]"
        assert sum(label.startswith("[") for label in row) == (1 if rank < 6 else 0)
    assert len(fig.layout.yaxis.ticktext) == 12
