"""The positional-encoding workbench: same budget for every variant, losses by position, the comparison and its
figure."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from labkit.blocks import count_parameters
from labkit.corpus import CharCorpus
from labkit.models import POSITIONS
from labkit.positional_workbench import (
    VariantResult,
    compare_positions,
    evaluate_variant,
    loss_by_position,
    mean_loss_up_to,
    train_variant,
)
from labkit.presets import Preset, TrainConfig, get_preset, preset_for
from labkit.viz.positional_workbench import POSITION_COLORS, workbench_figure

CPU = torch.device("cpu")
# A few dozen steps of a one-layer model: enough for the loss to fall well below ln V, in about a second.
TINY = Preset("tiny", TrainConfig(steps=60, batch_size=8, lr=5e-3, min_lr=5e-4, warmup_steps=5, eval_every=30,
                                  eval_batches=2),
              dict(block_size=16, n_layer=1, n_head=2, d_model=32))


@pytest.fixture(scope="module")
def corpus(shakespeare: str) -> CharCorpus:
    return CharCorpus.from_text(shakespeare[:60_000])


@pytest.fixture(scope="module")
def runs(corpus: CharCorpus) -> dict:
    return {p: train_variant(p, corpus, TINY, device=CPU, progress=False) for p in POSITIONS}


def test_every_variant_learns_under_the_same_budget(runs: dict, corpus: CharCorpus) -> None:
    ln_v = math.log(corpus.tokenizer.vocab_size)
    for position, run in runs.items():
        assert run.position == run.model.config.position == position
        assert run.history.step == 60 and run.history.eval_steps == [30, 60]
        assert run.model.config.block_size == 16 and run.model.config.d_model == 32 and not run.model.training
        assert abs(run.history.train_loss[0] - ln_v) < 0.3  # starts near a uniform guess...
        assert run.val_loss < ln_v - 0.8, (position, run.val_loss)  # ...and learns


def test_every_variant_sees_the_same_batches(corpus: CharCorpus) -> None:
    class Recording(CharCorpus):
        seen: list

        def batch(self, split, *args, **kwargs):
            x, y = super().batch(split, *args, **kwargs)
            if split == "train":
                self.seen.append(x.clone())
            return x, y

    batches = {}
    for position in ("none", "alibi"):
        recording = Recording(corpus.tokenizer, corpus.train, corpus.val)
        recording.seen = []
        train_variant(position, recording, TINY, device=CPU, progress=False)
        batches[position] = torch.stack(recording.seen)
    assert batches["none"].shape == (64, 8, 16)  # 60 steps, and 2 evaluations of 2 train batches each
    assert torch.equal(batches["none"], batches["alibi"])


def test_a_variant_trained_twice_repeats_exactly(runs: dict, corpus: CharCorpus) -> None:
    again = train_variant("rope", corpus, TINY, device=CPU, progress=False)
    assert again.history.train_loss == runs["rope"].history.train_loss


def test_loss_by_position_matches_a_hand_computation(runs: dict, corpus: CharCorpus) -> None:
    model = runs["alibi"].model
    ours = loss_by_position(model, corpus, 40, batches=3, batch_size=4, seed=7)
    generator = torch.Generator().manual_seed(7)
    total = torch.zeros(40)
    with torch.no_grad():
        for _ in range(3):
            x, y = corpus.batch("val", 4, 40, generator=generator)
            for row in range(4):
                for t in range(40):
                    total[t] += F.cross_entropy(model(x[row:row + 1])[0, t], y[row, t])
    assert ours.shape == (40,)
    assert torch.allclose(ours, total / 12, atol=1e-5)


def test_a_long_window_starts_with_the_loss_of_a_short_one(runs: dict, corpus: CharCorpus) -> None:
    model = runs["none"].model
    long = loss_by_position(model, corpus, 48, batches=2, batch_size=4)
    generator = torch.Generator().manual_seed(0)  # the same windows, cropped to 16 tokens
    losses = []
    with torch.no_grad():
        for _ in range(2):
            x, y = corpus.batch("val", 4, 48, generator=generator)
            losses.append(F.cross_entropy(model(x[:, :16]).flatten(0, 1), y[:, :16].flatten()))
    assert abs(mean_loss_up_to(long, 16) - float(torch.stack(losses).mean())) < 1e-5
    assert mean_loss_up_to([1.0, 2.0, 6.0], 2) == 1.5


def test_evaluate_variant_marks_what_the_learned_table_cannot_reach(runs: dict, corpus: CharCorpus) -> None:
    learned = evaluate_variant(runs["learned"], corpus, (1, 2, 4), batches=2, batch_size=4)
    assert len(learned.loss_by_position) == 64
    assert all(math.isfinite(v) for v in learned.loss_by_position[:16])
    assert all(math.isnan(v) for v in learned.loss_by_position[16:])
    assert learned.loss_at[2] is None and learned.loss_at[4] is None
    assert learned.loss_at[1] == pytest.approx(mean_loss_up_to(learned.loss_by_position, 16))
    rope = evaluate_variant(runs["rope"], corpus, (4, 1, 2, 2), batches=2, batch_size=4)
    assert list(rope.loss_at) == [1, 2, 4] and all(math.isfinite(v) for v in rope.loss_by_position)
    assert rope.loss_at[4] == pytest.approx(float(np.mean(rope.loss_by_position)))
    assert rope.val_loss == runs["rope"].val_loss and rope.parameters == count_parameters(runs["rope"].model)


def test_compare_positions_returns_plain_numbers(corpus: CharCorpus) -> None:
    results = compare_positions(corpus, TINY, ("learned", "alibi"), (1, 3), device=CPU, batches=2,
                                batch_size=4, progress=False)
    assert list(results) == ["learned", "alibi"]
    for result in results.values():
        assert isinstance(result, VariantResult) and result.block_size == 16
        assert isinstance(result.val_loss, float) and isinstance(result.train_seconds, float)
        assert isinstance(result.loss_by_position, list) and len(result.loss_by_position) == 48
    assert results["learned"].loss_at[3] is None and results["alibi"].loss_at[3] > 0


def test_the_workbench_presets_are_smaller_than_tiny_gpts_and_fast_mode_picks_smoke(monkeypatch) -> None:
    def tokens_times_params(shape: dict, config: TrainConfig) -> float:
        return config.steps * config.batch_size * shape["block_size"] * shape["n_layer"] * shape["d_model"] ** 2

    workbench, gpt = get_preset("positional_workbench", "cpu"), get_preset("tiny_gpt", "cpu")
    assert tokens_times_params(workbench.shape, workbench.train) < tokens_times_params(gpt.shape, gpt.train) / 5
    monkeypatch.setenv("LABKIT_FAST", "1")
    assert preset_for(CPU, "positional_workbench").name == "smoke"
    monkeypatch.setenv("LABKIT_FAST", "0")
    assert preset_for(CPU, "positional_workbench").name == "cpu"


def test_bad_inputs_are_named(runs: dict, corpus: CharCorpus) -> None:
    with pytest.raises(ValueError, match=r"position must be one of 'none', 'sinusoidal', 'learned', 'rope', 'alibi', "
                                         r"got 'rotary'"):
        train_variant("rotary", corpus, TINY)
    with pytest.raises(TypeError, match=r"preset must be a labkit.presets.Preset .*, got str"):
        train_variant("rope", corpus, "huge")
    with pytest.raises(ValueError, match="got 'ROPE'"):  # checked before anything trains
        compare_positions(corpus, TINY, ("none", "ROPE"))
    model = runs["rope"].model
    with pytest.raises(ValueError, match="seq_len must be a positive int, got 0"):
        loss_by_position(model, corpus, 0, 2)
    with pytest.raises(ValueError, match="batches must be a positive int, got 0"):
        loss_by_position(model, corpus, 8, 0)
    with pytest.raises(ValueError, match=r"sequence length 17 exceeds the model's block_size=16.*'rope', 'alibi' run "
                                         r"on longer sequences"):
        loss_by_position(runs["learned"].model, corpus, 17, 1)
    with pytest.raises(ValueError, match=r"factors must be positive ints .*got \(1, 0\)"):
        evaluate_variant(runs["rope"], corpus, (1, 0))
    with pytest.raises(ValueError, match=r"per_position must be 1-D with at least length=4 entries, got shape \(3,\)"):
        mean_loss_up_to([1.0, 2.0, 3.0], 4)


# ----------------------------------------------------------------------------- the figure

def _result(position: str, val_loss: float, curve: list[float], block_size: int = 4) -> VariantResult:
    return VariantResult(position, block_size, 100, 1.0, val_loss, curve, {1: val_loss})


def test_workbench_figure_draws_a_bar_and_a_line_per_variant() -> None:
    results = {"learned": _result("learned", 2.0, [3.0, 2.0, 1.0, 2.0] + [math.nan] * 8),
               "alibi": _result("alibi", 1.5, [3.0, 2.5, 2.0, 1.5, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0])}
    fig = workbench_figure(results)
    bars = [t for t in fig.data if t.type == "bar"]
    lines = [t for t in fig.data if t.type == "scatter"]
    assert [b.x[0] for b in bars] == ["learned", "alibi"] and [b.y[0] for b in bars] == [2.0, 1.5]
    assert [line.name for line in lines] == ["learned", "alibi"]
    assert np.allclose(lines[1].y, results["alibi"].loss_by_position)
    assert np.isnan(lines[0].y[4:]).all()  # the learned line stops at the context
    assert lines[0].line.color == bars[0].marker.color == POSITION_COLORS["learned"]
    assert sorted(s.x0 for s in fig.layout.shapes) == [3.5, 7.5]  # the context and 2× it
    smooth = workbench_figure(results, smoothing=2).data[3].y
    assert np.allclose(smooth[:4], [3.0, 2.75, 2.25, 1.75])


def test_workbench_figure_rejects_what_it_cannot_draw() -> None:
    with pytest.raises(ValueError, match="results is empty"):
        workbench_figure({})
    with pytest.raises(ValueError, match=r"different training contexts \[4, 8\]"):
        workbench_figure({"none": _result("none", 1.0, [1.0] * 8), "rope": _result("rope", 1.0, [1.0] * 16, 8)})
    with pytest.raises(ValueError, match="smoothing must be a positive int, got 0"):
        workbench_figure({"none": _result("none", 1.0, [1.0] * 8)}, smoothing=0)
