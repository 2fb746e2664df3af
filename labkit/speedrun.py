"""A speedrun on your machine: which training ideas make the tiny GPT reach a loss sooner, measured over seeds.

An arm is a model shape and a training recipe. `SWITCHES` are the ideas of the GPT-2 speedrun records, each one
change on top of labkit's plain recipe (`PLAIN_SHAPE`, `TrainConfig()`); `arm_with(names)` turns several on at once,
`arm_without(names, shape, recipe)` turns them back to the plain recipe's values (what a combination loses without
one of them).
`train_arm` trains one arm with one seed and returns a `Run`: the validation loss at each evaluation against the
training clock (evaluations timed apart, `History.eval_s`), so that `Run.time_to(loss)` says when it got there.
`welch_t_test` says whether two arms' times differ by more than their seeds do.

    runs = {name: [train_arm(*arm_with([name]), corpus, seed, stop_at=2.0, budget_s=60) for seed in range(3)]
            for name in ("+ muon", "+ relu2")}
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import torch
from scipy import stats
from torch import nn

from labkit.corpus import CharCorpus
from labkit.device import set_seed
from labkit.loop import History
from labkit.models import GPTConfig, TinyGPT
from labkit.presets import TrainConfig
from labkit.train import train

__all__ = ["PLAIN_SHAPE", "SWITCHES", "EVAL_TOKENS", "arm_with", "arm_without", "switches_on", "Run", "train_arm",
           "mean_time_to", "WelchTest", "welch_t_test"]

PLAIN_SHAPE = dict(block_size=128, n_layer=4, n_head=4, d_model=128)  # the tiny GPT's cpu size
# name → (GPTConfig fields, TrainConfig fields): one idea each, on top of the plain recipe
SWITCHES: dict[str, tuple[dict, dict]] = {
    "+ muon": ({}, dict(optimizer="muon")),
    "+ qk_norm": (dict(qk_norm=True), {}),
    "+ relu2": (dict(activation="relu2"), {}),
    "+ untied head": (dict(tie_head=False), {}),
    "+ zero-init proj": (dict(zero_init_proj=True), {}),
    "+ rope": (dict(position="rope"), {}),
    "+ short warm-up": ({}, dict(warmup_steps=30)),
    "+ bf16": ({}, dict(bf16=True)),
}
EVAL_TOKENS = 40_960  # held-out tokens per evaluation, whatever an arm's batch and context: ±0.005 in the loss


def arm_with(names: Iterable[str], shape: Mapping | None = None,
             recipe: TrainConfig | None = None) -> tuple[dict, TrainConfig]:
    """(GPTConfig fields, TrainConfig) of the plain recipe (or `shape`, `recipe`) with the named switches on."""
    shape, recipe = dict(PLAIN_SHAPE if shape is None else shape), recipe or TrainConfig()
    for name in names:
        if name not in SWITCHES:
            raise ValueError(f"no switch named {name!r}; the switches are {', '.join(map(repr, SWITCHES))}")
        fields, training = SWITCHES[name]
        shape.update(fields)
        recipe = replace(recipe, **training)
    return shape, recipe


def _plain_values(name: str) -> tuple[dict, dict]:
    """The GPTConfig and TrainConfig values a switch replaces: the plain recipe's."""
    if name not in SWITCHES:
        raise ValueError(f"no switch named {name!r}; the switches are {', '.join(map(repr, SWITCHES))}")
    fields, training = SWITCHES[name]
    defaults = {f.name: f.default for f in dataclasses.fields(GPTConfig)}
    return {k: defaults[k] for k in fields}, {k: getattr(TrainConfig(), k) for k in training}


def arm_without(names: Iterable[str], shape: Mapping, recipe: TrainConfig) -> tuple[dict, TrainConfig]:
    """(GPTConfig fields, TrainConfig) of `shape` and `recipe` with the named switches back at the plain values."""
    shape = dict(shape)
    for name in names:
        fields, training = _plain_values(name)
        shape.update(fields)
        recipe = replace(recipe, **training)
    return shape, recipe


def switches_on(shape: Mapping, recipe: TrainConfig) -> list[str]:
    """The switches whose values `shape` and `recipe` hold (e.g. the ones a preset turned on)."""
    return [name for name, (fields, training) in SWITCHES.items()
            if all(shape.get(k) == v for k, v in fields.items())
            and all(getattr(recipe, k) == v for k, v in training.items())]


@dataclass
class Run:
    """One training run: validation loss at each evaluation against the training clock, and the throughput."""

    seed: int
    clock: list[float] = field(default_factory=list)  # training seconds at each evaluation
    steps: list[int] = field(default_factory=list)
    val: list[float] = field(default_factory=list)
    eval_s: float = 0.0  # seconds spent evaluating, not on the clock
    tokens_per_s: float = 0.0

    def time_to(self, loss: float) -> float | None:
        """Training seconds at which val first reached `loss`, interpolated linearly between the evaluations on
        either side; None if it never did."""
        for i, v in enumerate(self.val):
            if v <= loss:
                if i == 0:
                    return self.clock[0]
                t0, t1, v0 = self.clock[i - 1], self.clock[i], self.val[i - 1]
                return t0 + (t1 - t0) * (v0 - loss) / (v0 - v)
        return None


class _Reached(Exception):
    """Raised from on_eval to end a run at its target loss."""


def train_arm(shape: Mapping, recipe: TrainConfig, corpus: CharCorpus, seed: int, *, stop_at: float | None = None,
              budget_s: float | None = None, eval_every: int = 25, eval_tokens: int = EVAL_TOKENS,
              model_class: type[nn.Module] = TinyGPT, device: torch.device | None = None,
              on_eval: Callable[[Run], None] | None = None) -> Run:
    """Train `model_class(GPTConfig(shape))` with `recipe` and `seed` (the weights' and the batches') until the
    validation loss is ≤ stop_at, `budget_s` seconds of training pass, or the recipe's steps end. Evaluations every
    `eval_every` steps on fixed held-out batches of about `eval_tokens` tokens; on_eval(run) after each one."""
    set_seed(seed)
    model = model_class(GPTConfig(vocab_size=corpus.tokenizer.vocab_size, **shape))
    batches = max(1, round(eval_tokens / (recipe.batch_size * shape["block_size"])))
    config = replace(recipe, seed=seed, eval_every=eval_every, eval_batches=batches, time_limit_s=budget_s)
    run, seen = Run(seed), []

    def record(history: History) -> None:
        seen[:] = [history]
        run.clock.append(history.elapsed_s - history.eval_s)  # this evaluation is not in eval_s yet
        run.steps.append(history.step)
        run.val.append(history.eval_val[-1])
        run.eval_s, run.tokens_per_s = history.eval_s, history.tokens_per_s
        if on_eval is not None:
            on_eval(run)
        if stop_at is not None and history.eval_val[-1] <= stop_at:
            raise _Reached

    try:
        train(model.to(device or "cpu"), corpus, config, device=device, progress=False, on_eval=record)
    except _Reached:
        pass
    run.eval_s = seen[0].eval_s if seen else 0.0  # the last evaluation too, when the run ended by itself
    return run


def mean_time_to(runs: Sequence[Run], loss: float) -> tuple[float, float, int]:
    """(mean, standard deviation, how many reached it) of the runs' times to `loss`; nan where none (or one)
    reached it."""
    times = [t for t in (r.time_to(loss) for r in runs) if t is not None]
    mean = statistics.mean(times) if times else math.nan
    return mean, statistics.stdev(times) if len(times) > 1 else math.nan, len(times)


@dataclass(frozen=True)
class WelchTest:
    """Welch's t-test of two samples' means: the difference (a − b), t, the degrees of freedom, the two-sided p."""

    difference: float
    t: float
    df: float
    p: float


def welch_t_test(a: Sequence[float], b: Sequence[float]) -> WelchTest:
    """Do the means of `a` and `b` differ by more than their spread explains? Welch's t-test, which does not assume
    the two have the same variance: t = (mean a − mean b) / √(var a / n_a + var b / n_b), with the
    Welch–Satterthwaite degrees of freedom. Each sample needs at least two values, and they may not all be equal."""
    a, b = [float(x) for x in a], [float(x) for x in b]
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"each sample needs at least 2 values (seeds) to estimate its spread, got {len(a)} and "
                         f"{len(b)}")
    if not all(map(math.isfinite, a + b)):
        raise ValueError("the samples hold a nan or infinite value (an arm that never reached the loss?)")
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:
        raise ValueError("both samples have no spread at all: the test is undefined")
    difference = statistics.mean(a) - statistics.mean(b)
    t = difference / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return WelchTest(difference, t, df, float(2 * stats.t.sf(abs(t), df)))
