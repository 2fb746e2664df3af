"""labkit.speedrun and notebook 12's race: the switches, the training clock, the time to a loss, Welch's t-test
against scipy, and the race widget driven from Python."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from scipy import stats

from labkit.corpus import CharCorpus
from labkit.models import GPTConfig
from labkit.presets import TrainConfig, get_preset
from labkit.speedrun import (PLAIN_SHAPE, SWITCHES, Run, arm_with, arm_without, mean_time_to, switches_on,
                             train_arm, welch_t_test)
from labkit.viz.speedrun_widgets import PLAIN, SWITCHED, SpeedrunRace, race_figure, race_table

SHAPE = dict(block_size=16, n_layer=1, n_head=2, d_model=16)
RECIPE = TrainConfig(steps=60, batch_size=8, lr=3e-3, min_lr=3e-4, warmup_steps=5)


@pytest.fixture(scope="module")
def corpus(shakespeare: str) -> CharCorpus:
    return CharCorpus.from_text(shakespeare[:20000])


def test_every_switch_changes_the_plain_recipe_and_only_what_it_names() -> None:
    plain_shape, plain_recipe = arm_with([])
    assert plain_shape == PLAIN_SHAPE and plain_recipe == TrainConfig()
    for name, (fields, training) in SWITCHES.items():
        shape, recipe = arm_with([name])
        assert {k: v for k, v in shape.items() if PLAIN_SHAPE.get(k) != v} == fields, name
        changed = {k: v for k, v in vars(recipe).items() if getattr(TrainConfig(), k) != v}
        assert changed == training, name
        GPTConfig(vocab_size=65, **shape)  # every arm is a valid model
    both = arm_with(["+ muon", "+ rope"])
    assert both[0]["position"] == "rope" and both[1].optimizer == "muon"
    assert arm_with(["+ muon"], SHAPE, RECIPE) == (SHAPE, replace(RECIPE, optimizer="muon"))
    with pytest.raises(ValueError, match="no switch named 'adam'; the switches are '\\+ muon'"):
        arm_with(["adam"])
    everything = list(SWITCHES)
    assert switches_on(*arm_with(everything)) == everything and switches_on(PLAIN_SHAPE, TrainConfig()) == []
    shape, recipe = arm_without(everything, *arm_with(everything))  # all the way back to the plain recipe
    assert GPTConfig(vocab_size=65, **shape) == GPTConfig(vocab_size=65, **PLAIN_SHAPE) and recipe == TrainConfig()
    preset = get_preset("tiny_gpt", "cpu")
    on = switches_on(preset.shape, preset.train)
    assert "+ muon" in on and "+ bf16" not in on  # the preset's measured combination
    for name in on:
        shape, recipe = arm_without([name], preset.shape, preset.train)
        assert switches_on(shape, recipe) == [n for n in on if n != name]
    with pytest.raises(ValueError, match="no switch named 'adam'"):
        arm_without(["adam"], PLAIN_SHAPE, TrainConfig())


def test_time_to_interpolates_between_the_evaluations_around_the_first_crossing() -> None:
    run = Run(seed=0, clock=[1.0, 2.0, 3.0, 4.0], val=[3.0, 2.5, 1.5, 1.0])
    assert run.time_to(2.0) == pytest.approx(2.5)  # halfway from 2.5 (at 2 s) to 1.5 (at 3 s)
    assert run.time_to(1.5) == pytest.approx(3.0)  # reached exactly at an evaluation
    assert run.time_to(3.5) == 1.0  # already below at the first evaluation
    assert run.time_to(0.5) is None
    bumpy = Run(seed=0, clock=[1.0, 2.0, 3.0, 4.0], val=[3.0, 1.9, 2.2, 1.5])
    assert bumpy.time_to(2.0) == pytest.approx(1 + 1.0 / 1.1)  # the first crossing, not a later one
    runs = [Run(seed, clock=[1.0, 2.0], val=[3.0, last]) for seed, last in enumerate([1.0, 2.0, 2.5])]
    mean, std, reached = mean_time_to(runs, 2.0)
    assert (mean, reached) == (pytest.approx(1.75), 2) and std == pytest.approx(math.sqrt(0.125))


def test_welch_t_test_agrees_with_scipy_and_refuses_what_it_cannot_test() -> None:
    a, b = [41.2, 39.8, 43.0], [30.5, 33.9, 29.1, 31.7, 30.0]
    test, reference = welch_t_test(a, b), stats.ttest_ind(a, b, equal_var=False)
    assert test.t == pytest.approx(reference.statistic, rel=1e-9)
    assert test.p == pytest.approx(reference.pvalue, rel=1e-9)
    assert test.df == pytest.approx(reference.df, rel=1e-9)
    assert test.difference == pytest.approx(sum(a) / 3 - sum(b) / 5)
    assert welch_t_test(b, a).t == pytest.approx(-test.t)
    student = stats.ttest_ind(a, b, equal_var=True)
    assert abs(student.statistic - test.t) > 0.1  # unequal sizes and spreads: Welch is not Student
    with pytest.raises(ValueError, match="at least 2 values"):
        welch_t_test([1.0], [2.0, 3.0])
    with pytest.raises(ValueError, match="nan or infinite"):
        welch_t_test([1.0, math.nan], [2.0, 3.0])
    with pytest.raises(ValueError, match="no spread"):
        welch_t_test([1.0, 1.0], [2.0, 2.0])


def test_train_arm_stops_at_the_target_and_its_clock_leaves_evaluations_out(corpus: CharCorpus) -> None:
    full = train_arm(SHAPE, RECIPE, corpus, seed=0, eval_every=10, eval_tokens=1024)
    assert full.steps == [10, 20, 30, 40, 50, 60] and full.val[-1] < full.val[0]
    assert all(t1 > t0 for t0, t1 in zip(full.clock, full.clock[1:])) and full.eval_s > 0
    target = full.val[2] + 1e-6
    stopped = train_arm(SHAPE, RECIPE, corpus, seed=0, eval_every=10, eval_tokens=1024, stop_at=target)
    assert stopped.steps == [10, 20, 30] and stopped.val == pytest.approx(full.val[:3], abs=1e-6)  # same seed
    seen = []
    other = train_arm(SHAPE, RECIPE, corpus, seed=1, eval_every=10, eval_tokens=1024,
                      on_eval=lambda run: seen.append(run.steps[-1]))
    assert seen == other.steps and other.val != full.val
    slow = train_arm(SHAPE, RECIPE, corpus, seed=0, eval_every=10, eval_tokens=1024, budget_s=1e-3)
    assert slow.steps == [1]  # the budget counts training seconds: it ran out after the first step


def test_the_race_trains_both_arms_over_the_seeds_and_tests_the_difference(corpus: CharCorpus) -> None:
    race = SpeedrunRace(corpus, shape=SHAPE, recipe=RECIPE, ticked=["+ muon"], budget_s=30, seeds=2, target=3.3,
                        eval_every=10, eval_tokens=1024)
    assert [name for name, box in race.switches.items() if box.value] == ["+ muon"]
    runs = race.race()
    assert set(runs) == {PLAIN, SWITCHED} and all(len(r) == 2 for r in runs.values())
    assert [r.seed for r in runs[SWITCHED]] == [0, 1] and race.progress.value == race.progress.max == 4
    assert runs[SWITCHED][0].val != runs[PLAIN][0].val  # Muon changed the run
    assert len(race.figure.data) == 4 and {t.name for t in race.figure.data} == {PLAIN, SWITCHED}
    assert "seconds to val ≤ 3.3" in race.table.value and "Welch's t" in race.table.value
    for box in race.switches.values():
        box.value = False
    assert race.race() is None and "tick at least one switch" in race.message.value
    race.switches["+ rope"].value, race.budget.value = True, 0
    assert race.race() is None and "budget must be a number of seconds &gt; 0" in race.message.value
    with pytest.raises(ValueError, match="no switch named 'fast'"):
        SpeedrunRace(corpus, ticked=["fast"])


def test_the_table_says_when_a_test_is_impossible_and_the_figure_marks_the_target() -> None:
    reached = [Run(s, clock=[1.0, 2.0], val=[3.0, 1.5 + 0.1 * s]) for s in range(3)]
    missed = [Run(s, clock=[1.0, 2.0], val=[3.0, 2.5]) for s in range(3)]
    table = race_table({PLAIN: missed, SWITCHED: reached}, 2.0)
    assert "(0/3)" in table and "(3/3)" in table
    assert "time to the target: not every run reached the target" in table
    assert "final loss, with your switches − plain recipe: -0.9" in table and "p = " in table
    figure = race_figure({PLAIN: missed}, 2.0)
    assert len(figure.data) == 3 and figure.layout.shapes[0].y0 == 2.0
    assert torch.tensor(figure.data[0].y).tolist() == [3.0, 2.5]
