"""Notebook 12's race: the plain recipe against the same recipe with the switches you tick (`labkit.speedrun`)."""

from __future__ import annotations

import html
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence

import ipywidgets as widgets
import plotly.graph_objects as go
import torch

from labkit.corpus import CharCorpus
from labkit.presets import TrainConfig
from labkit.speedrun import (EVAL_TOKENS, PLAIN_SHAPE, SWITCHES, Run, arm_with, mean_time_to, train_arm,
                             welch_t_test)
from labkit.viz.view import WidgetView, error_html

__all__ = ["ARM_COLORS", "race_figure", "race_table", "SpeedrunRace"]

PLAIN, SWITCHED = "plain recipe", "with your switches"
ARM_COLORS = {PLAIN: "#718096", SWITCHED: "#c53030"}


def race_figure(runs: Mapping[str, Sequence[Run]], target: float) -> go.Figure:
    """Validation loss against training seconds: one line per run, one colour per arm, the target dashed."""
    fig = go.Figure()
    for name, arm_runs in runs.items():
        for i, run in enumerate(arm_runs):
            fig.add_trace(go.Scatter(x=run.clock, y=run.val, mode="lines+markers", marker_size=4,
                                     line=dict(color=ARM_COLORS.get(name, "#2b6cb0"), width=1.5), name=name,
                                     legendgroup=name, showlegend=i == 0,
                                     hovertemplate=f"{name}, seed {run.seed}: %{{y:.3f}} at %{{x:.1f}} s"
                                                   f"<extra></extra>"))
    fig.add_hline(y=target, line=dict(dash="dash", color="#2d3748", width=1), annotation_text=f"target {target:g}")
    fig.update_layout(height=380, margin=dict(l=60, r=20, t=30, b=50), xaxis_title="training seconds",
                      yaxis_title="validation loss (nats/char)")
    return fig


def _seconds(mean: float, std: float) -> str:
    return "—" if math.isnan(mean) else f"{mean:.1f}" + ("" if math.isnan(std) else f" ± {std:.1f}")


def race_table(runs: Mapping[str, Sequence[Run]], target: float) -> str:
    """HTML: each arm's time to `target` (mean ± std over seeds, and how many got there) and its loss when the
    budget ran out; then Welch's t-test of the two arms' times (where every run got there) and final losses."""
    runs = {name: arm_runs for name, arm_runs in runs.items() if arm_runs}
    rows = []
    for name, arm_runs in runs.items():
        mean, std, reached = mean_time_to(arm_runs, target)
        finals = [r.val[-1] for r in arm_runs]
        spread = f" ± {statistics.stdev(finals):.3f}" if len(finals) > 1 else ""
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{_seconds(mean, std)} ({reached}/{len(arm_runs)})</td>"
                    f"<td>{sum(finals) / len(finals):.3f}{spread}</td></tr>")
    lines = [f"<table><tr><th>arm</th><th>seconds to val ≤ {target:g} (reached)</th>"
             f"<th>val when the budget ran out</th></tr>{''.join(rows)}</table>"]
    if len(runs) == 2 and min(len(arm_runs) for arm_runs in runs.values()) >= 2:  # a spread needs two seeds
        (a_name, a), (b_name, b) = runs.items()
        times = [[r.time_to(target) for r in arm_runs] for arm_runs in (a, b)]
        for what, samples, unit in (("time to the target", times, " s"),
                                    ("final loss", [[r.val[-1] for r in a], [r.val[-1] for r in b]], "")):
            if any(None in s for s in samples):
                lines.append(f"{what}: not every run reached the target, so no test (raise the budget or the "
                             f"target)")
                continue
            try:
                test = welch_t_test(samples[1], samples[0])
            except ValueError as error:
                lines.append(f"{what}: {html.escape(str(error))}")
                continue
            verdict = ("a real difference at this scale (p < 0.05)" if test.p < 0.05 else
                       "within the noise between seeds (p ≥ 0.05): more seeds or a longer budget may tell")
            lines.append(f"{what}, {html.escape(b_name)} − {html.escape(a_name)}: {test.difference:+.3g}{unit}, "
                         f"Welch's t = {test.t:.2f}, df = {test.df:.1f}, p = {test.p:.2g}: {verdict}")
    return "<br>".join(lines)


class SpeedrunRace(WidgetView):
    """Tick switches, press Race: the plain recipe and the plain recipe with your switches each train on `corpus`
    for `budget_s` seconds of training (or until `target`), once per seed, the two arms taking turns so that a slower
    moment of the machine hits both alike. Draws every run's validation loss against training seconds and a table
    with the times to the target and Welch's t-test. `race()` does the same from Python and returns the runs."""

    def __init__(self, corpus: CharCorpus, *, shape: Mapping | None = None, recipe: TrainConfig | None = None,
                 ticked: Iterable[str] = ("+ muon",), budget_s: float = 60.0, seeds: int = 3, target: float = 2.0,
                 eval_every: int = 25, eval_tokens: int = EVAL_TOKENS, device: torch.device | None = None) -> None:
        ticked = list(ticked)
        arm_with(ticked)  # unknown names fail here, with the list of switches
        self.corpus, self.shape, self.recipe = corpus, dict(shape or PLAIN_SHAPE), recipe or TrainConfig()
        self.eval_every, self.eval_tokens, self.device = eval_every, eval_tokens, device
        self.switches = {name: widgets.Checkbox(value=name in ticked, description=name, indent=False,
                                                layout=widgets.Layout(width="160px")) for name in SWITCHES}
        wide = {"description_width": "initial"}
        self.seeds = widgets.IntSlider(value=seeds, min=2, max=6, description="seeds", style=wide)
        self.budget = widgets.FloatText(value=budget_s, description="budget (training s)", style=wide,
                                        layout=widgets.Layout(width="220px"))
        self.target = widgets.FloatText(value=target, description="target loss", style=wide,
                                        layout=widgets.Layout(width="180px"))
        self.button = widgets.Button(description="Race", icon="flag-checkered", button_style="primary")
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="runs", style=wide)
        self.message = widgets.HTML()
        self.figure = go.FigureWidget(race_figure({}, target))
        self.table = widgets.HTML()
        self.runs: dict[str, list[Run]] = {}
        self.button.on_click(lambda _: self.race())
        self.view = widgets.VBox([widgets.HBox(list(self.switches.values()), layout=widgets.Layout(flex_flow="wrap")),
                                  widgets.HBox([self.seeds, self.budget, self.target]),
                                  widgets.HBox([self.button, self.progress]), self.message, self.figure, self.table])

    def ticked(self) -> list[str]:
        return [name for name, box in self.switches.items() if box.value]

    def race(self) -> dict[str, list[Run]] | None:
        """Train both arms over the seeds, redrawing after each run; bad settings are shown in `message`."""
        try:
            if not self.ticked():
                raise ValueError("tick at least one switch: with none, both arms are the same recipe")
            if not self.budget.value > 0:
                raise ValueError(f"the budget must be a number of seconds > 0, got {self.budget.value}")
        except ValueError as error:
            self.message.value = error_html(error)
            return None
        arms = {PLAIN: (self.shape, self.recipe), SWITCHED: arm_with(self.ticked(), self.shape, self.recipe)}
        target = self.target.value
        self.runs = {name: [] for name in arms}
        self.progress.max, self.progress.value = len(arms) * self.seeds.value, 0
        self.button.disabled = True
        self.message.value = f"racing {PLAIN} against {html.escape(', '.join(self.ticked()))}"
        try:
            for seed in range(self.seeds.value):
                for name, (shape, recipe) in arms.items():
                    self.runs[name].append(train_arm(shape, recipe, self.corpus, seed, stop_at=target,
                                                     budget_s=self.budget.value, eval_every=self.eval_every,
                                                     eval_tokens=self.eval_tokens, device=self.device))
                    self.progress.value += 1
                    self.draw()
        finally:
            self.button.disabled = False
        return self.runs

    def draw(self) -> None:
        fresh = race_figure(self.runs, self.target.value)
        with self.figure.batch_update():
            self.figure.data = []
            self.figure.add_traces(list(fresh.data))
            self.figure.layout.shapes, self.figure.layout.annotations = fresh.layout.shapes, fresh.layout.annotations
        self.table.value = race_table(self.runs, self.target.value)
