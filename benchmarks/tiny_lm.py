"""Tiny GPT vs a plain-PyTorch baseline of the same size, trained on Tiny Shakespeare in one run.

    .venv/bin/python benchmarks/tiny_lm.py                 # the preset for this device, 5 minutes per model
    .venv/bin/python benchmarks/tiny_lm.py --minutes 1 --preset smoke
    .venv/bin/python benchmarks/tiny_lm.py --positions learned rope   # one labkit row per position scheme

(1) labkit's TinyGPT on its fast path: pre-LN blocks, fused SDPA attention, bf16 autocast on CUDA.
(2) The baseline: the classic `nn.TransformerEncoder` language model (post-LN, ReLU, sinusoidal positions, an
    untied output layer, the square causal mask), written out in plain PyTorch with naive attention (matmul,
    masked_fill, softmax, matmul) and run in fp32 everywhere. Same width, depth, heads and feed-forward size.
Both see the same batches (the trainer seeds each step's batch by step number) with the same optimizer, schedule
and step budget, and each stops after `--minutes` of wall time if it has not finished. Validation loss is
estimated every `--eval-every` steps; the clock includes those evaluations.

Printed: tokens/s, the wall time at which validation loss first reached 1.89, the validation loss at the end of
the time budget, and on CUDA the model FLOPs utilisation (MFU). Targets on 2 CPU cores: val ≤ 1.60 within
5 minutes, and 1.89 reached in ≤ 0.5× the baseline's time. The two runs take up to 2 × `--minutes` together.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace

import torch
from torch import Tensor, nn

from labkit.corpus import CharCorpus
from labkit.data import load_data
from labkit.device import describe_device, pick_device, set_seed
from labkit.models import POSITIONS, GPTConfig, TinyGPT
from labkit.positional import sinusoidal_table
from labkit.presets import PRESETS, TrainConfig, get_preset, preset_for
from labkit.train import train

TARGET_VAL = 1.60
MILESTONE_VAL = 1.89
MAX_TIME_RATIO = 0.5
# Dense bf16 peak FLOP/s by GPU name, for MFU. Hopper H100/H200 SXM: 989 TFLOP/s; A100: 312 TFLOP/s.
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


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


def flops_per_token(model: nn.Module, config: GPTConfig) -> float:
    """Training FLOPs per token: 6 per parameter plus the attention matmuls (the PaLM appendix estimate)."""
    n = sum(p.numel() for p in model.parameters())
    return 6 * n + 12 * config.n_layer * config.d_model * config.block_size


def run(name: str, model: nn.Module, corpus: CharCorpus, config: TrainConfig, device: torch.device) -> dict:
    """Train one model; return its figures. The clock starts at the first step and includes evaluations."""
    evals: list[tuple[float, int, float]] = []  # (seconds since start, step, val loss)
    start = time.perf_counter()
    history = train(model, corpus, config, device=device, progress=False,
                    on_eval=lambda h: evals.append((time.perf_counter() - start, h.step, h.eval_val[-1])))
    wall = time.perf_counter() - start
    reached = next(((t, s) for t, s, v in evals if v <= MILESTONE_VAL), None)
    tokens = history.step * config.batch_size * model.config.block_size
    figures = dict(name=name, steps=history.step, wall=wall, tokens_per_s=tokens / wall, val=evals[-1][2],
                   reached=reached, mfu=None)
    if device.type == "cuda" and config.bf16:
        peak = next((v for k, v in PEAK_BF16.items() if k in torch.cuda.get_device_name(device)), None)
        if peak:
            figures["mfu"] = flops_per_token(model, model.config) * tokens / wall / peak
    print(f"  {name}: {history.step} steps in {wall:.1f} s, val {figures['val']:.4f}, "
          + (f"1.89 at {reached[0]:.1f} s (step {reached[1]})" if reached else "never reached 1.89"), flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS["tiny_gpt"]), help="default: the one for the device")
    parser.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    parser.add_argument("--minutes", type=float, default=5.0, help="wall-time budget per model")
    parser.add_argument("--eval-every", type=int, default=100, help="steps between validation estimates")
    parser.add_argument("--skip-baseline", action="store_true", help="train labkit's model only")
    parser.add_argument("--positions", nargs="+", choices=POSITIONS, default=["learned"],
                        help="labkit's position scheme(s), one row each (default: learned, the presets')")
    args = parser.parse_args()

    device = pick_device(args.device)
    preset = get_preset("tiny_gpt", args.preset) if args.preset else preset_for(device, "tiny_gpt")
    shape, config = preset.shape, preset.train
    config = replace(config, eval_every=args.eval_every, eval_batches=10, time_limit_s=60 * args.minutes)
    corpus = CharCorpus.from_text(load_data("tinyshakespeare"))
    gpt_config = GPTConfig(vocab_size=corpus.tokenizer.vocab_size, **shape)
    print(f"device {describe_device(device)}; preset {preset.name}: {gpt_config.n_layer} layers, d_model "
          f"{gpt_config.d_model}, {gpt_config.n_head} heads, block {gpt_config.block_size}; {config.steps} steps of "
          f"batch {config.batch_size}, lr {config.lr:g}; at most {args.minutes:g} min per model; "
          f"{torch.get_num_threads()} CPU threads", flush=True)

    results = []
    for position in args.positions:
        set_seed(config.seed)
        results.append(run(f"labkit TinyGPT, {position} (fast path)", TinyGPT(replace(gpt_config, position=position)),
                           corpus, config, device))
    if not args.skip_baseline:
        set_seed(config.seed)
        baseline = ClassicTransformerLM(replace(gpt_config, dropout=0.0))
        results.append(run("baseline (classic, naive, fp32)", baseline, corpus, replace(config, bf16=False),
                           device))

    print(f"\n{'model':40} {'steps':>6} {'tokens/s':>10} {'t(val≤1.89)':>12} {'val at end':>11} {'wall s':>8}"
          f"{'  MFU' if device.type == 'cuda' else ''}")
    for r in results:
        reached = f"{r['reached'][0]:.1f} s" if r["reached"] else "—"
        mfu = f"  {r['mfu']:.1%}" if r["mfu"] is not None else ""
        print(f"{r['name']:40} {r['steps']:>6} {r['tokens_per_s']:>10,.0f} {reached:>12} {r['val']:>11.4f} "
              f"{r['wall']:>8.1f}{mfu}")
    base = None if args.skip_baseline else results[-1]
    for ours in results[:len(args.positions)]:
        print(f"\n{ours['name']}: target val ≤ {TARGET_VAL} within {args.minutes:g} min: "
              f"{'met' if ours['val'] <= TARGET_VAL else 'NOT met'} ({ours['val']:.4f} after {ours['wall']:.0f} s)")
        if base is None:
            continue
        if ours["reached"] and base["reached"]:
            ratio = ours["reached"][0] / base["reached"][0]
            print(f"time to {MILESTONE_VAL}: labkit / baseline = {ratio:.2f} (target ≤ {MAX_TIME_RATIO}: "
                  f"{'met' if ratio <= MAX_TIME_RATIO else 'NOT met'})")
        else:
            print(f"time to {MILESTONE_VAL}: not reached by " + " and ".join(
                r["name"] for r in (ours, base) if not r["reached"]))


if __name__ == "__main__":
    main()
