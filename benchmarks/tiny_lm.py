"""What makes a tiny GPT train fast on this machine: two baselines, labkit's default, one switch at a time, and the
best combination, trained on Tiny Shakespeare in one run.

    .venv/bin/python benchmarks/tiny_lm.py                       # everything: about 45 minutes on 2 CPU cores
    .venv/bin/python benchmarks/tiny_lm.py --seeds 1 --five-minutes      # no 5-minute runs, one seed
    .venv/bin/python benchmarks/tiny_lm.py --arms "labkit default" "+ muon" --ablation-seeds 3

Arms (`arms()`; the nanoGPT recipe always runs, it sets the milestone):
- **nanoGPT's CPU recipe** for Tiny Shakespeare, written here in plain PyTorch (`NanoRecipeGPT`): 4 layers, 4 heads,
  128 dims, context 64, batch 12, AdamW lr 1e-3 (β2 0.99, weight decay 0.1), 100 warm-up steps then cosine to 1e-4
  over 2000 steps, no dropout, GELU, pre-LN, no biases, a tied output layer. Its final validation loss is the
  milestone every other arm is timed to.
- **the classic `nn.TransformerEncoder` language model** (post-LN, ReLU, sinusoidal positions, naive attention, an
  untied output layer), with labkit's default training recipe.
- **labkit's default**: `GPTConfig`'s and `TrainConfig`'s defaults (AdamW, float32, learned positions, GELU, tied).
- one row per recipe switch on top of the default (`labkit.speedrun.SWITCHES`): Muon, QK-norm, ReLU², an untied
  output layer, zero-initialised output projections, RoPE, a short warm-up, bf16 autocast;
- **labkit's best**: the `cpu` preset of `labkit.presets` (what `python -m labkit.train` runs on a CPU);
- one row per switch of the best taken back out (what the combination owes each).

Every arm is trained by `labkit.loop.run` on the same batches for a given seed and evaluated every `--eval-every`
steps on the same fixed held-out batches (about 41k tokens, each model at its own context length, as nanoGPT and
labkit report validation loss). The clock is training time only: evaluations are timed apart (`History.eval_s`)
and their cost printed in a column of their own. An arm stops once it reaches the milestone (or after
`--budget-s` seconds of training); then, for `--five-minutes` arms, one 5-minute run gives the validation loss
after 5 minutes of training. Means ± standard deviations are over `--seeds` seeds.

Targets on 2 CPU cores: the best arm reaches the milestone in ≤ 0.5× the nanoGPT recipe's wall time; val ≤ 1.50
after 5 minutes.
"""

from __future__ import annotations

import argparse
import math
import statistics
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.corpus import CharCorpus
from labkit.data import load_data
from labkit.device import bf16_is_fast, describe_device
from labkit.models import GPTConfig, TinyGPT
from labkit.positional import sinusoidal_table
from labkit.presets import TrainConfig, get_preset
from labkit.speedrun import (EVAL_TOKENS, PLAIN_SHAPE, SWITCHES, Run, arm_with, arm_without, switches_on, train_arm,
                             welch_t_test)

MAX_TIME_RATIO = 0.5
FIVE_MINUTES_TARGET = 1.50


class NanoRecipeAttention(nn.Module):
    """Causal self-attention with one fused q/k/v projection and no biases: (batch, seq, d) → (batch, seq, d)."""

    def __init__(self, d: int, n_head: int, n_layer: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        nn.init.normal_(self.qkv.weight, std=0.02)
        nn.init.normal_(self.proj.weight, std=0.02 / math.sqrt(2 * n_layer))

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.n_head, d // self.n_head).transpose(1, 2) for z in self.qkv(x).split(d, -1))
        return self.proj(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d))


class NanoRecipeBlock(nn.Module):
    """Pre-LN: x + attention(norm(x)), then x + MLP(norm(x)) with a GELU MLP four times as wide."""

    def __init__(self, d: int, n_head: int, n_layer: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d, bias=False), nn.LayerNorm(d, bias=False)
        self.attn = NanoRecipeAttention(d, n_head, n_layer)
        self.up, self.down = nn.Linear(d, 4 * d, bias=False), nn.Linear(4 * d, d, bias=False)
        nn.init.normal_(self.up.weight, std=0.02)
        nn.init.normal_(self.down.weight, std=0.02 / math.sqrt(2 * n_layer))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.down(F.gelu(self.up(self.norm2(x))))


class NanoRecipeGPT(nn.Module):
    """The GPT of nanoGPT's CPU recipe: idx (batch, seq) → logits (batch, seq, vocab); learned positions, a final
    LayerNorm, the output layer tied to the token embedding."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = c = config
        self.tok, self.pos = nn.Embedding(c.vocab_size, c.d_model), nn.Embedding(c.block_size, c.d_model)
        self.blocks = nn.ModuleList(NanoRecipeBlock(c.d_model, c.n_head, c.n_layer) for _ in range(c.n_layer))
        self.norm = nn.LayerNorm(c.d_model, bias=False)
        self.head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        for emb in (self.tok, self.pos):
            nn.init.normal_(emb.weight, std=0.02)
        self.head.weight = self.tok.weight

    def forward(self, idx: Tensor) -> Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


class NaiveCausalSelfAttention(nn.Module):
    """Multi-head causal self-attention spelled out: (batch, seq, d_model) → (batch, seq, d_model)."""

    def __init__(self, d_model: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.in_proj = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.n_head, d // self.n_head).transpose(1, 2)
                   for z in self.in_proj(x).chunk(3, dim=-1))  # each (batch, heads, seq, d_head)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (batch, heads, seq, seq)
        future = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        weights = scores.masked_fill(future, float("-inf")).softmax(dim=-1)
        return self.out_proj((weights @ v).transpose(1, 2).reshape(b, t, d))


class ClassicLayer(nn.Module):
    """`nn.TransformerEncoderLayer`'s defaults: post-LN, ReLU feed-forward (dropout off, as in labkit's presets)."""

    def __init__(self, d_model: int, n_head: int, d_ff: int) -> None:
        super().__init__()
        self.self_attn = NaiveCausalSelfAttention(d_model, n_head)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.ReLU(), nn.Linear(d_ff, d_model))
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm1(x + self.self_attn(x))
        return self.norm2(x + self.ff(x))


class ClassicTransformerLM(nn.Module):
    """The PyTorch word-language-model example's TransformerModel, causal: idx (batch, seq) → logits."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        self.register_buffer("pe", sinusoidal_table(c.block_size, c.d_model), persistent=False)
        self.layers = nn.ModuleList(ClassicLayer(c.d_model, c.n_head, 4 * c.d_model) for _ in range(c.n_layer))
        self.decoder = nn.Linear(c.d_model, c.vocab_size)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, idx: Tensor) -> Tensor:
        x = self.embed(idx) * math.sqrt(self.config.d_model) + self.pe[: idx.shape[1]]
        for layer in self.layers:
            x = layer(x)
        return self.decoder(x)


@dataclass(frozen=True)
class Arm:
    """One row: a model class, its shape (GPTConfig fields) and its training recipe."""

    model: type[nn.Module]
    shape: dict
    train: TrainConfig


NANO_RECIPE = TrainConfig(steps=2000, batch_size=12, lr=1e-3, min_lr=1e-4, warmup_steps=100, weight_decay=0.1)


NANO, DEFAULT, BEST = "nanoGPT recipe (plain PyTorch)", "labkit default", "labkit best (cpu preset)"


def arms() -> dict[str, Arm]:
    best = get_preset("tiny_gpt", "cpu")
    table = {NANO: Arm(NanoRecipeGPT, dict(PLAIN_SHAPE, block_size=64), NANO_RECIPE),
             "classic nn.Transformer LM": Arm(ClassicTransformerLM, PLAIN_SHAPE, TrainConfig()),
             DEFAULT: Arm(TinyGPT, PLAIN_SHAPE, TrainConfig())}
    for name in SWITCHES:
        table[name] = Arm(TinyGPT, *arm_with([name]))
    table[BEST] = Arm(TinyGPT, dict(best.shape), best.train)
    for name in switches_on(best.shape, best.train):  # the combination without each of its switches
        table[f"{BEST} − {name[2:]}"] = Arm(TinyGPT, *arm_without([name], best.shape, best.train))
    return table


def train_row(arm: Arm, corpus: CharCorpus, seed: int, **options) -> Run:
    return train_arm(arm.shape, arm.train, corpus, seed, model_class=arm.model, **options)


def mean_std(values: list[float]) -> str:
    if not values:
        return "—"
    return f"{statistics.mean(values):.1f}" + (f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else "")


def main() -> None:
    table = arms()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arms", nargs="+", choices=list(table), default=list(table), metavar="ARM",
                        help=f"which rows (default: all): {', '.join(map(repr, table))}")
    parser.add_argument("--seeds", type=int, default=3, help="seeds for the nanoGPT recipe and labkit's best")
    parser.add_argument("--ablation-seeds", type=int, default=1, help="seeds for every other arm")
    parser.add_argument("--budget-s", type=float, default=150.0, help="most training seconds to reach the milestone")
    parser.add_argument("--eval-every", type=int, default=25, help="steps between validation estimates")
    parser.add_argument("--five-minutes", nargs="*", default=[DEFAULT, BEST],
                        help="arms that also train for 5 minutes, for their loss then (none: leave it empty)")
    args = parser.parse_args()

    corpus = CharCorpus.from_text(load_data("tinyshakespeare"))
    device = torch.device("cpu")
    print(f"device {describe_device(device)}; bf16 fast here: {bf16_is_fast(device)}; eval every {args.eval_every} "
          f"steps on ~{EVAL_TOKENS:,} held-out tokens, the clock paused", flush=True)
    runs: dict[str, list[Run]] = {NANO: []}
    for seed in range(args.seeds):  # the milestone is where the nanoGPT recipe ends its 2000 steps
        runs[NANO].append(train_row(table[NANO], corpus, seed, eval_every=250))
        print(f"  {NANO}, seed {seed}: val {runs[NANO][-1].val[-1]:.4f} after {runs[NANO][-1].clock[-1]:.1f} s",
              flush=True)
    milestone = statistics.mean(r.val[-1] for r in runs[NANO])
    print(f"milestone: the nanoGPT recipe's mean final val, {milestone:.4f}", flush=True)
    for name in (n for n in args.arms if n != NANO):
        runs[name] = []
        for seed in range(args.seeds if name == BEST else args.ablation_seeds):
            run = train_row(table[name], corpus, seed, stop_at=milestone, budget_s=args.budget_s,
                            eval_every=args.eval_every)
            runs[name].append(run)
            reached = run.time_to(milestone)
            print(f"  {name}, seed {seed}: " + (f"{milestone:.3f} at {reached:.1f} s (step {run.steps[-1]})"
                                                 if reached else f"not reached in {run.clock[-1]:.0f} s"), flush=True)
    five = {name: train_row(table[name], corpus, 0, budget_s=300.0, eval_every=100)
            for name in args.five_minutes if name in table}

    base = [r.clock[-1] for r in runs[NANO]]  # its training time for 2000 steps: its time to its final loss
    print(f"\n{'arm':44} {'seeds':>5} {'tokens/s':>9} {f't(val ≤ {milestone:.3f}) s':>19} {'× nanoGPT':>9} "
          f"{'eval s':>7} {'val @ 5 min':>11}")
    for name, arm_runs in runs.items():
        times = base if name == NANO else [t for t in (r.time_to(milestone) for r in arm_runs) if t is not None]
        all_reached = len(times) == len(arm_runs)
        ratio = statistics.mean(times) / statistics.mean(base) if all_reached else math.nan
        missed = "" if all_reached else f" ({len(arm_runs) - len(times)} missed)"
        at_five = f"{five[name].val[-1]:.4f}" if name in five else ""
        print(f"{name:44} {len(arm_runs):>5} {statistics.mean(r.tokens_per_s for r in arm_runs):>9,.0f} "
              f"{mean_std(times) + missed:>19} {ratio:>9.2f} "
              f"{statistics.mean(r.eval_s for r in arm_runs):>7.1f} {at_five:>11}")
    best = [r.time_to(milestone) for r in runs.get(BEST, [])]
    if best and None not in best:
        ratio = statistics.mean(best) / statistics.mean(base)
        print(f"\ntime to the nanoGPT recipe's final loss: best / nanoGPT = {ratio:.2f} (target ≤ {MAX_TIME_RATIO}: "
              f"{'met' if ratio <= MAX_TIME_RATIO else 'NOT met'})")
        if len(best) > 1 and len(base) > 1:
            test = welch_t_test(best, base)
            print(f"Welch's t-test, best − nanoGPT: {test.difference:+.1f} s, t = {test.t:.2f}, df = {test.df:.1f}, "
                  f"p = {test.p:.2g}")
    for name, run in five.items():
        print(f"{name}: val {run.val[-1]:.4f} after {run.clock[-1]:.0f} s of training, step {run.steps[-1]} (target "
              f"≤ {FIVE_MINUTES_TARGET}: {'met' if run.val[-1] <= FIVE_MINUTES_TARGET else 'NOT met'})")


if __name__ == "__main__":
    main()
