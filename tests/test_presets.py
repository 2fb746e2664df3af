"""labkit.presets: every family has a cpu and a smoke preset that build a model, the device and fast mode pick
one, unknown names are refused, and the doctor's estimates come from the presets' minutes."""

from __future__ import annotations

import pytest
import torch

from labkit.doctor import NOTEBOOK_TIMES
from labkit.encoder_decoder import EncoderDecoderConfig
from labkit.models import BertConfig, GPTConfig, TinyBERT, TinyGPT
from labkit.presets import FAMILIES, PRESETS, Preset, TrainConfig, get_preset, preset_for

MODELS = {"tiny_gpt": lambda shape: TinyGPT(GPTConfig(vocab_size=65, **shape)),
          "positional_workbench": lambda shape: TinyGPT(GPTConfig(vocab_size=65, **shape)),
          "induction": lambda shape: TinyGPT(GPTConfig(vocab_size=65, **shape)),
          "pretraining": lambda shape: TinyBERT(BertConfig(vocab_size=100, **shape)),
          "encoder_decoder": lambda shape: EncoderDecoderConfig(80, 15, **shape)}


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_has_a_measured_cpu_preset_and_a_smoke_preset_that_build(family: str) -> None:
    assert {"cpu", "smoke"} <= set(PRESETS[family])
    assert get_preset(family, "cpu").minutes > 0  # what the doctor adds up
    for name, preset in PRESETS[family].items():
        assert isinstance(preset, Preset) and preset.name == name and isinstance(preset.train, TrainConfig)
        assert preset.train.steps >= preset.train.eval_every or family in ("sentiment", "ner", "multitask")
        if family in MODELS:
            MODELS[family](dict(preset.shape))  # a valid model config
        else:
            assert preset.shape == {}  # fine-tuning: the pretrained encoder's own shape


def test_the_device_and_fast_mode_pick_the_preset(monkeypatch) -> None:
    monkeypatch.delenv("LABKIT_FAST", raising=False)
    assert preset_for(torch.device("cuda"), "pretraining").name == "cuda"
    assert preset_for("cuda:1", "tiny_gpt").name == "cuda"
    assert preset_for(torch.device("mps"), "pretraining").name == "cpu"  # no MPS preset: the CPU's
    assert preset_for(torch.device("cuda"), "encoder_decoder").name == "cpu"  # too small for a GPU to gain
    monkeypatch.setenv("LABKIT_FAST", "1")
    assert {preset_for(torch.device("cuda"), family).name for family in FAMILIES} == {"smoke"}


def test_bf16_is_asked_for_where_it_was_measured_to_pay() -> None:
    assert all(PRESETS[family]["cuda"].train.bf16 for family in FAMILIES if "cuda" in PRESETS[family])
    assert all(get_preset(task, "cpu").train.bf16 for task in ("sentiment", "ner", "multitask"))
    assert not any(get_preset(family, "cpu").train.bf16
                   for family in ("tiny_gpt", "pretraining", "encoder_decoder", "positional_workbench"))


def test_unknown_families_and_names_are_refused_with_what_there_is() -> None:
    with pytest.raises(ValueError, match=r"family must be one of 'tiny_gpt', .*, got 'gpt'"):
        get_preset("gpt", "cpu")
    with pytest.raises(ValueError, match=r"the 'encoder_decoder' presets are 'cpu', 'smoke', got 'cuda'"):
        get_preset("encoder_decoder", "cuda")


def test_the_doctor_reads_its_estimates_from_the_presets() -> None:
    times = {n.name: n for n in NOTEBOOK_TIMES}
    assert times["04-tiny-gpt"].training_s == 2 * 60 * get_preset("tiny_gpt", "cpu").minutes + 180
    assert times["10-positional-workbench"].training_s == 5 * 60 * get_preset("positional_workbench", "cpu").minutes
