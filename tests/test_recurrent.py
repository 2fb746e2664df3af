"""labkit.recurrent: the GRU language model (shapes, causality, its parameter count by formula), sized like a GPT
within 10%, trained by labkit.train on the GPT's very batches, its loss at each position, and the step-time table."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from labkit.blocks import count_parameters
from labkit.corpus import CharCorpus
from labkit.device import one_cpu_thread
from labkit.models import GPTConfig, TinyGPT
from labkit.positional_workbench import loss_by_position
from labkit.presets import PRESETS, TrainConfig, get_preset
from labkit.recurrent import (MATCH_TOLERANCE, GRUConfig, GRULanguageModel, gru_matching, gru_parameter_count,
                              loss_by_position_range, recurrent_recipe, step_time_table)
from labkit.train import train

TEXT = "the quick brown fox jumps over the lazy dog; " * 60
GPT_SHAPES = [dict(PRESETS["tiny_gpt"][name].shape) for name in ("smoke", "cpu", "mps")] + [
    dict(block_size=32, n_layer=1, n_head=1, d_model=16),
    dict(block_size=64, n_layer=6, n_head=4, d_model=32, tie_head=False),
    dict(block_size=32, n_layer=2, n_head=4, d_model=64, attention_only=True, position="rope"),
]


@pytest.mark.parametrize("shape", GPT_SHAPES, ids=lambda s: f"{s['n_layer']}x{s['d_model']}")
@pytest.mark.parametrize("n_layer", [1, 2])
def test_gru_matching_is_within_ten_percent_of_the_gpts_count(shape: dict, n_layer: int) -> None:
    gpt_config = GPTConfig(vocab_size=65, **shape)
    config = gru_matching(gpt_config, n_layer=n_layer)
    gpt, gru = count_parameters(TinyGPT(gpt_config)), count_parameters(GRULanguageModel(config))
    assert abs(gru - gpt) <= MATCH_TOLERANCE * gpt, (gru, gpt)
    assert (config.vocab_size, config.block_size, config.d_embed, config.n_layer) == (65, shape["block_size"],
                                                                                     shape["d_model"], n_layer)
    # the nearest hidden size: one more or one fewer state unit is no nearer the GPT's count
    for other in (config.hidden - 1, config.hidden + 1):
        assert abs(gru_parameter_count(replace(config, hidden=other)) - gpt) >= abs(gru - gpt)


def test_the_cpu_presets_gru_matches_closely() -> None:
    gpt_config = GPTConfig(vocab_size=65, **get_preset("tiny_gpt", "cpu").shape)
    gpt = count_parameters(TinyGPT(gpt_config))
    gru = count_parameters(GRULanguageModel(gru_matching(gpt_config)))
    assert abs(gru / gpt - 1) < 0.01  # a hidden size step is about 900 parameters of 800,000


@pytest.mark.parametrize("config", [GRUConfig(11, 8, 5, 7, 1), GRUConfig(65, 16, 32, 20, 3), GRUConfig(3, 4, 1, 1, 2)],
                         ids=str)
def test_parameter_count_formula_is_count_parameters(config: GRUConfig) -> None:
    assert gru_parameter_count(config) == count_parameters(GRULanguageModel(config))


def test_gru_matching_refuses_what_cannot_match() -> None:
    small = GPTConfig(vocab_size=65, block_size=4, n_layer=1, n_head=1, d_model=8)
    with pytest.raises(ValueError, match=r"no GRU with n_layer=1 and d_embed=512 comes within 10%"):
        gru_matching(small, d_embed=512)  # the embedding alone holds 65 × 512 numbers, the whole GPT fewer
    with pytest.raises(ValueError, match="gpt_config must be a labkit.models.GPTConfig, got GRUConfig"):
        gru_matching(GRUConfig(65))
    with pytest.raises(ValueError, match="n_layer must be a positive int, got 0"):
        gru_matching(small, n_layer=0)
    with pytest.raises(ValueError, match="d_embed must be a positive int, got -3"):
        gru_matching(small, d_embed=-3)


@pytest.mark.parametrize("field, value", [("vocab_size", 0), ("block_size", 2.5), ("d_embed", None),
                                          ("hidden", -1), ("n_layer", True)])
def test_config_refuses_bad_sizes(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"GRUConfig.{field} must be a positive int, got {value!r}"):
        GRUConfig(**{"vocab_size": 10, field: value})


def test_forward_gives_next_token_logits_that_depend_on_the_past_only() -> None:
    torch.manual_seed(0)
    model = GRULanguageModel(GRUConfig(vocab_size=13, block_size=8, d_embed=6, hidden=10, n_layer=2)).eval()
    idx = torch.randint(13, (3, 9))
    logits = model(idx)
    assert logits.shape == (3, 9, 13) and model.states(idx).shape == (3, 9, 10)
    changed = idx.clone()
    changed[:, 5] = (idx[:, 5] + 1) % 13
    other = model(changed)
    torch.testing.assert_close(other[:, :5], logits[:, :5], rtol=0, atol=0)  # positions before 5 cannot see it
    assert (other[:, 5:] - logits[:, 5:]).abs().amax(-1).min() > 0  # every later position does
    torch.testing.assert_close(model(idx[:, :4]), logits[:, :4])  # a prefix gives the prefix's logits
    model.check_length(10_000)  # a recurrent model has no longest sequence
    with pytest.raises(ValueError, match="seq must be a positive int, got 0"):
        model.check_length(0)


def test_recurrent_recipe_trades_muon_for_adamw_and_keeps_the_rest() -> None:
    cpu = get_preset("tiny_gpt", "cpu").train
    assert cpu.optimizer == "muon"
    assert recurrent_recipe(cpu) == replace(cpu, optimizer="adamw")
    smoke = get_preset("tiny_gpt", "smoke").train
    assert recurrent_recipe(smoke) is smoke
    with pytest.raises(ValueError, match="config must be a labkit.presets.TrainConfig, got dict"):
        recurrent_recipe({"steps": 10})


def _recorded_batches(model: torch.nn.Module, corpus: CharCorpus, config: TrainConfig,
                      monkeypatch: pytest.MonkeyPatch) -> tuple[list[torch.Tensor], list[float]]:
    """The training batches `train` drew for `model`, and its validation estimates."""
    seen, original = [], CharCorpus.batch

    def batch(self, split, *args, **kwargs):
        x, y = original(self, split, *args, **kwargs)
        if split == "train" and kwargs.get("device") is None:  # training batches (estimates pass a device)
            seen.append(x.clone())
        return x, y

    monkeypatch.setattr(CharCorpus, "batch", batch)
    history = train(model, corpus, config, progress=False)
    monkeypatch.setattr(CharCorpus, "batch", original)
    return seen, history.eval_val


def test_the_gru_trains_on_the_gpts_batches_and_its_loss_falls(monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = CharCorpus.from_text(TEXT)
    gpt_config = GPTConfig(vocab_size=corpus.tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, d_model=32)
    config = TrainConfig(steps=60, batch_size=8, lr=1e-2, min_lr=1e-3, warmup_steps=5, eval_every=30,
                         eval_batches=2)
    with one_cpu_thread():  # tiny models: threads that wait on each other on busy cores cost 50× here
        torch.manual_seed(0)
        gpt_batches, _ = _recorded_batches(TinyGPT(gpt_config), corpus, config, monkeypatch)
        torch.manual_seed(0)
        gru_batches, val = _recorded_batches(GRULanguageModel(gru_matching(gpt_config)), corpus,
                                             recurrent_recipe(config), monkeypatch)
    assert len(gru_batches) == config.steps and all(torch.equal(a, b) for a, b in zip(gru_batches, gpt_batches))
    uniform = torch.log(torch.tensor(float(corpus.tokenizer.vocab_size)))
    assert val[-1] < 0.6 * uniform  # a repeated sentence: far below a uniform guess after 60 steps


def test_muon_is_refused_for_a_gru_with_what_to_use() -> None:
    corpus = CharCorpus.from_text(TEXT)
    model = GRULanguageModel(GRUConfig(vocab_size=corpus.tokenizer.vocab_size, block_size=8, d_embed=4, hidden=4))
    with pytest.raises(ValueError, match="use optimizer='adamw'"):
        train(model, corpus, TrainConfig(steps=2, batch_size=2, optimizer="muon"), progress=False)


def test_loss_by_position_of_a_gru_is_the_batch_mean_of_each_positions_cross_entropy() -> None:
    corpus = CharCorpus.from_text(TEXT)
    torch.manual_seed(1)
    model = GRULanguageModel(GRUConfig(vocab_size=corpus.tokenizer.vocab_size, block_size=8, d_embed=8, hidden=12))
    curve = loss_by_position(model, corpus, 12, 2, batch_size=4, seed=3)
    generator = torch.Generator().manual_seed(3)
    windows = [corpus.batch("val", 4, 12, generator=generator) for _ in range(2)]
    x, y = torch.cat([w[0] for w in windows]), torch.cat([w[1] for w in windows])
    with torch.no_grad():
        expected = F.cross_entropy(model(x).transpose(1, 2), y, reduction="none").mean(0)  # (seq,)
    assert curve.shape == (12,)
    torch.testing.assert_close(curve, expected)


def test_step_time_table_has_one_row_per_length_and_leaves_the_random_state_alone() -> None:
    gpt_config = GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=1, d_model=8)
    gru_config = GRUConfig(vocab_size=11, block_size=8, d_embed=8, hidden=8)
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    table = step_time_table(gpt_config, gru_config, [4, 16, 9], batch_size=2, repeats=2, progress=False)
    assert torch.equal(torch.rand(2), expected)
    assert list(table.columns) == ["seq_len", "gpt_ms", "gru_ms", "gru_over_gpt"]
    assert table["seq_len"].tolist() == [4, 16, 9]  # 16 > block_size 8: the GPT is built long enough
    assert (table[["gpt_ms", "gru_ms"]] > 0).all().all()
    torch.testing.assert_close(torch.tensor(table["gru_over_gpt"].values),
                               torch.tensor((table["gru_ms"] / table["gpt_ms"]).values))


@pytest.mark.parametrize("kwargs, message", [
    (dict(seq_lens=[]), r"seq_lens must be a non-empty list of positive ints, got \[\]"),
    (dict(seq_lens="64"), "seq_lens must be a non-empty list of positive ints, got '64'"),
    (dict(seq_lens=[8, 0]), r"seq_lens\[i\] must be a positive int, got 0"),
    (dict(repeats=0), "repeats must be a positive int, got 0"),
    (dict(batch_size=1.5), "batch_size must be a positive int, got 1.5"),
    (dict(gru_config=GRUConfig(vocab_size=12)), "gru_config.vocab_size=12 differs from gpt_config.vocab_size=11"),
    (dict(gpt_config=GRUConfig(vocab_size=11)), "gpt_config and gru_config must be a GPTConfig and a GRUConfig"),
])
def test_step_time_table_refuses_bad_inputs(kwargs: dict, message: str) -> None:
    arguments = dict(gpt_config=GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=1, d_model=8),
                     gru_config=GRUConfig(vocab_size=11), seq_lens=[8], progress=False)
    with pytest.raises(ValueError, match=message):
        step_time_table(**{**arguments, **kwargs})


def test_loss_by_position_range_averages_doubling_ranges() -> None:
    table = loss_by_position_range({"a": torch.arange(10.0), "b": [2.0] * 10})
    assert table["first"].tolist() == [0, 1, 2, 4, 8] and table["last"].tolist() == [0, 1, 3, 7, 9]
    assert table["a"].tolist() == [0.0, 1.0, 2.5, 5.5, 8.5]  # (2+3)/2, (4+…+7)/4, (8+9)/2: the last range is cut short
    assert table["b"].tolist() == [2.0] * 5
    assert loss_by_position_range({"one": [3.0]})["one"].tolist() == [3.0]
    full = loss_by_position_range({"c": torch.linspace(3, 1, 128)})
    assert full["last"].tolist() == [0, 1, 3, 7, 15, 31, 63, 127]


@pytest.mark.parametrize("curves, message", [
    ({}, "curves must be a non-empty dict"),
    ([1.0, 2.0], "curves must be a non-empty dict"),
    ({"a": [1.0, 2.0], "b": [1.0]}, r"of one length, got shapes \{'a': \(2,\), 'b': \(1,\)\}"),
    ({"a": torch.zeros(2, 3)}, "curves must all be 1-D"),
    ({"a": []}, "non-empty"),
])
def test_loss_by_position_range_refuses_bad_curves(curves: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        loss_by_position_range(curves)
