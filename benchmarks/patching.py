"""How long notebook 11's activation-patching sweeps take on notebook 04's tiny GPT (the `cpu` preset's shape: 4
layers × 4 heads, d_model 128), on this machine's CPU threads.

    .venv/bin/python benchmarks/patching.py

For a clean and a corrupted text of each length (differing in one character), times `patch_residual_sweep`
((layers + 1) × positions patched runs) and `patch_head_sweep` (layers × heads runs), the median of 3. Target: the
full sweep (both) at most 10 s at the model's full context on 2 cores. Timing does not depend on the weights, so
the model is a seeded untrained one.
"""

from __future__ import annotations

import statistics
import time

import torch

from labkit.circuits import logit_difference, patch_head_sweep, patch_residual_sweep
from labkit.models import GPTConfig, TinyGPT
from labkit.presets import get_preset


def seconds(fn) -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    torch.manual_seed(0)
    shape = get_preset("tiny_gpt", "cpu").shape
    model = TinyGPT(GPTConfig(vocab_size=65, **shape)).eval()
    print(f"tiny GPT {shape}, {torch.get_num_threads()} CPU threads")
    print(f"{'positions':>9} {'residual runs':>13} {'residual s':>10} {'head runs':>9} {'heads s':>7} {'full s':>6}")
    for seq in (32, 64, shape["block_size"]):
        clean = torch.randint(0, 65, (1, seq), generator=torch.Generator().manual_seed(seq))
        corrupted = clean.clone()
        corrupted[0, seq // 2] = (clean[0, seq // 2] + 1) % 65
        right, wrong = int(clean[0, seq // 2]), int(corrupted[0, seq // 2])

        def metric(logits: torch.Tensor) -> torch.Tensor:
            return logit_difference(logits, right, wrong)

        residual = seconds(lambda: patch_residual_sweep(model, clean, corrupted, metric))
        heads = seconds(lambda: patch_head_sweep(model, clean, corrupted, metric))
        print(f"{seq:>9} {(shape['n_layer'] + 1) * seq:>13} {residual:>10.2f} {shape['n_layer'] * shape['n_head']:>9} "
              f"{heads:>7.2f} {residual + heads:>6.2f}")


if __name__ == "__main__":
    main()
