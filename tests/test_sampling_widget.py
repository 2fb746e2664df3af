"""The sampling explorer: its bars are `next_token_distribution`'s numbers, its text is seeded, bad input is shown."""

from __future__ import annotations

import html
import re

import numpy as np
import pytest

from labkit.corpus import CharTokenizer
from labkit.generation import next_token_distribution
from labkit.generation import visible_char
from labkit.models import TinyGPT
from labkit.viz.sampling import SamplingExplorer

BLOCK = 16  # the context of conftest's char_model


@pytest.fixture
def view(char_model: TinyGPT, char_tokenizer: CharTokenizer) -> SamplingExplorer:
    return SamplingExplorer(char_model, char_tokenizer, BLOCK, prompt="the boats", max_new_tokens=40)


def expected(view: SamplingExplorer, char_model: TinyGPT, char_tokenizer: CharTokenizer, **filters) -> np.ndarray:
    idx = char_tokenizer.encode(view.prompt.value)[None, :]
    return next_token_distribution(char_model, idx, block_size=BLOCK, **filters)[0].numpy()


def shown(view: SamplingExplorer) -> tuple[np.ndarray, np.ndarray]:
    """(ids, probabilities) of the filtered bars."""
    bars = view.figure.data[1]
    return np.asarray(bars.customdata), np.asarray(bars.y)


def sample_of(view: SamplingExplorer) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", view.text.value))


@pytest.mark.parametrize("setting, value, filters", [
    ("temperature", 0.4, dict(temperature=0.4)),
    ("temperature", 1.8, dict(temperature=1.8)),
    ("top_k", 5, dict(top_k=5)),
    ("top_p", 0.5, dict(top_p=0.5)),
    ("penalty", 1.6, dict(repetition_penalty=1.6)),
])
def test_bars_are_the_filtered_distribution(view, char_model, char_tokenizer, setting, value, filters) -> None:
    before = shown(view)[1].copy()
    getattr(view, setting).value = value
    ids, heights = shown(view)
    probs = expected(view, char_model, char_tokenizer, **filters)
    assert not np.allclose(heights, before)
    np.testing.assert_allclose(heights, probs[ids], atol=1e-6)
    # the bars are the 20 most probable characters, most probable first
    np.testing.assert_allclose(heights, np.sort(probs)[::-1][:20], atol=1e-6)
    # the faint bars are the model's own distribution for the same characters
    np.testing.assert_allclose(view.figure.data[0].y, expected(view, char_model, char_tokenizer)[ids], atol=1e-6)
    assert list(view.figure.data[1].x) == [visible_char(char_tokenizer.chars[i]) for i in ids]


def test_filters_combine_as_next_token_distribution_does(view, char_model, char_tokenizer) -> None:
    view.temperature.value, view.top_k.value, view.top_p.value = 0.7, 8, 0.6
    ids, heights = shown(view)
    reference = expected(view, char_model, char_tokenizer, temperature=0.7, top_k=8, top_p=0.6)
    np.testing.assert_allclose(heights, reference[ids], atol=1e-6)


def test_top_k_three_leaves_three_bars(view) -> None:
    view.top_k.value = 3
    ids, heights = shown(view)
    assert (heights > 0).sum() == 3
    assert heights[:3].sum() == pytest.approx(1.0, abs=1e-6)
    assert "3 of" in view.figure.layout.title.text
    view.top_k.value = 0  # off again: every character can be drawn
    assert (shown(view)[1] > 0).sum() == len(shown(view)[1])


def test_invisible_characters_get_visible_labels() -> None:
    assert [visible_char(c) for c in "\n a"] == ["⏎", "␣", "a"]
    assert visible_char("\x07") == "'\\x07'"


def test_same_seed_same_text_and_another_seed_another(view) -> None:
    first = view.generate()
    assert view.generate() == first
    assert sample_of(view) == first
    view.seed.value = 1
    assert view.generate() != first
    view.seed.value = 0
    view.button.click()
    assert sample_of(view) == first


def test_the_text_starts_with_the_prompt_in_bold(view, char_tokenizer) -> None:
    view.prompt.value = "a dog"
    view.length.value = 25
    text = view.generate()
    assert text.startswith("a dog") and len(text) == len("a dog") + 25
    assert set(text) <= set(char_tokenizer.chars)
    assert view.text.value.startswith('<pre style="white-space: pre-wrap"><b>a dog</b>')


def test_filters_reach_the_sampler(view) -> None:
    view.top_k.value = 1  # top-k 1 is greedy: every seed writes the same text
    view.seed.value = 3
    greedy = view.generate()
    view.seed.value = 4
    assert view.generate() == greedy


@pytest.mark.parametrize("prompt, word", [
    ("the boatz", "vocabulary"),
    ("", "empty"),
    ("the boats lean on", "block_size"),  # 17 characters > 16
])
def test_bad_prompts_show_a_message_and_do_not_raise(view, prompt, word) -> None:
    figure_before = (list(view.figure.data[1].x), list(view.figure.data[1].y))
    text_before = view.text.value
    assert view.message.value == ""
    view.prompt.value = prompt  # the observer runs update(), which must not raise
    assert word in view.message.value and "color:#c53030" in view.message.value
    assert (list(view.figure.data[1].x), list(view.figure.data[1].y)) == figure_before
    view.message.value = ""
    assert view.generate() is None
    assert word in view.message.value
    assert view.text.value == text_before
    view.prompt.value = "the mud"  # fine again: the message goes, the bars follow the new prompt
    assert view.message.value == ""
    assert list(view.figure.data[1].y) != figure_before[1]


def test_a_bad_prompt_at_construction_is_shown_not_raised(char_model, char_tokenizer) -> None:
    view = SamplingExplorer(char_model, char_tokenizer, BLOCK, prompt="xyz#")
    assert "vocabulary" in view.message.value
    assert view.text.value == ""
    view.prompt.value = "wind"
    assert view.message.value == "" and len(view.figure.data[1].y) == 20


def test_a_bad_seed_shows_a_message(view) -> None:
    view.seed.value = -1
    assert view.generate() is None
    assert "seed" in view.message.value


def test_settings_are_checked_when_the_view_is_built(char_model, char_tokenizer) -> None:
    with pytest.raises(ValueError, match="block_size must be a positive int, got 0"):
        SamplingExplorer(char_model, char_tokenizer, 0)
    with pytest.raises(ValueError, match="max_new_tokens must be a positive int"):
        SamplingExplorer(char_model, char_tokenizer, BLOCK, max_new_tokens=0)
