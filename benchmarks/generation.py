"""How much faster does the KV cache make generation? Greedy tokens per second, with labkit's cache and without.

Run it with

    .venv/bin/python benchmarks/generation.py                        # 64, 256 and 1024 new tokens, batch 1
    .venv/bin/python benchmarks/generation.py --lengths 64 256 --repeats 1 --positions rope learned alibi

The model is notebook 04's (the `cpu` preset's shape: 4 layers × 4 heads, d_model 128, RoPE, block_size 128) with
random weights, since the time does not depend on them; `--positions` swaps RoPE for other schemes. Each scheme
runs with two contexts (generate's block_size):

* the whole text, where the scheme allows it (RoPE and sinusoidal to 16 × block_size positions, ALiBi and none
  without limit): without a cache step t runs the model on t tokens, with it on one;
* block_size: the cache serves until the text fills the 128 positions; from then on the window of the last 128
  tokens moves at every step and both loops recompute it. Learned positions have no row past block_size, so this is
  the only way they generate further.

Each figure is the best of --repeats runs, with torch's default number of threads. "same" says whether the two
loops wrote the same tokens. About a minute and a half on an idle 2-core CPU.
"""

from __future__ import annotations

import argparse
import time

import torch

from labkit.device import describe_device, pick_device, synchronize
from labkit.generation import generate
from labkit.models import POSITIONS, GPTConfig, TinyGPT
from labkit.presets import preset_for

VOCAB = 65  # Tiny Shakespeare's characters
PROMPT = 8


def tokens_per_second(model: TinyGPT, prompt: torch.Tensor, new: int, context: int, use_cache: bool,
                      repeats: int) -> tuple[float, torch.Tensor]:
    """Greedy tokens per second generating `new` tokens after `prompt` (the best of `repeats` runs), and the text."""
    best = float("inf")
    for _ in range(repeats):
        synchronize(prompt.device)
        start = time.perf_counter()
        out = generate(model, prompt, new, block_size=context, greedy=True, use_cache=use_cache)
        synchronize(prompt.device)
        best = min(best, time.perf_counter() - start)
    return new / best, out


def contexts(model: TinyGPT, longest: int) -> list[tuple[str, int]]:
    """(label, generate's block_size): the whole text where the model's positions reach that far, and block_size."""
    block = model.config.block_size
    whole = [("whole text", longest)] if model.max_len is None or model.max_len >= longest else []
    return whole + [(f"block_size {block}", block)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 1024], help="new tokens per run")
    parser.add_argument("--positions", nargs="+", choices=POSITIONS, default=["rope", "learned"])
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (the best is taken)")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: labkit.device.pick_device())")
    args = parser.parse_args()
    if args.repeats < 1 or min(args.lengths) < 1:
        parser.error("--repeats and every --lengths must be at least 1")

    device = pick_device(args.device)
    shape = preset_for("cpu", "tiny_gpt").shape
    print(f"device: {describe_device(device)}; torch {torch.__version__}; "
          f"model: {shape}, random weights; batch 1, prompt {PROMPT} tokens, greedy, best of {args.repeats}")
    header = (f"{'position':<10}{'context':<16}{'new tokens':>11}{'no cache tok/s':>16}{'cache tok/s':>13}"
              f"{'speed-up':>10}{'same':>6}")
    print(header)
    print("-" * len(header))
    started = time.perf_counter()
    for position in args.positions:
        torch.manual_seed(0)
        model = TinyGPT(GPTConfig(vocab_size=VOCAB, **{**shape, "position": position})).to(device).eval()
        prompt = torch.randint(VOCAB, (1, PROMPT), device=device)
        generate(model, prompt, 8, block_size=8, greedy=True)  # warm up
        for label, context in contexts(model, PROMPT + max(args.lengths)):
            for new in args.lengths:
                plain, plain_out = tokens_per_second(model, prompt, new, context, False, args.repeats)
                cached, cached_out = tokens_per_second(model, prompt, new, context, True, args.repeats)
                same = "yes" if torch.equal(plain_out, cached_out) else "NO"
                print(f"{position:<10}{label:<16}{new:>11}{plain:>16.0f}{cached:>13.0f}{cached / plain:>9.1f}×"
                      f"{same:>6}", flush=True)
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
