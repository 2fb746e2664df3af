"""How fast is each attention path? labkit's naive_attention, labkit's fast_attention and plain PyTorch SDPA.

Run it with

    python3 lab.py bench
    .venv/bin/python benchmarks/attention.py                      # batch 8, heads 8, d_head 64, float32
    .venv/bin/python benchmarks/attention.py --device cuda --repeats 30 --dtype bfloat16

It times forward only (under no_grad) and forward+backward (autograd.grad of q, k, v) for seq 64, 128 and 256,
without a mask and with the causal mask a language model trains with.
In every round the three implementations run one after another in a rotating order, so slow drift
(other processes, CPU clocks) hits each of them alike; each figure is the median over the rounds.
Targets: fast/SDPA ≤ 1.10 (the wrapper adds almost nothing) and naive/fast ≥ 1.5 for forward+backward
(the fused kernel is worth having). About a minute on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from labkit.attention import fast_attention, naive_attention
from labkit.device import describe_device, pick_device, synchronize

SEQS = (64, 128, 256)
FAST_OVER_SDPA_MAX = 1.10
NAIVE_OVER_FAST_MIN = 1.5
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}

IMPLEMENTATIONS = {
    "naive": lambda q, k, v, causal: naive_attention(q, k, v, is_causal=causal)[0],
    "fast": lambda q, k, v, causal: fast_attention(q, k, v, is_causal=causal),
    "sdpa": lambda q, k, v, causal: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
}


def make_call(fn, q, k, v, mode: str, causal: bool):
    """A no-argument function running one forward (or forward+backward) pass of `fn`."""
    if mode == "forward":
        def call():
            with torch.no_grad():
                fn(q, k, v, causal)
        return call
    qg, kg, vg = (t.detach().requires_grad_() for t in (q, k, v))
    grad_out = torch.randn(*q.shape[:-1], v.shape[-1], device=q.device, dtype=q.dtype)

    def call():
        torch.autograd.grad(fn(qg, kg, vg, causal), (qg, kg, vg), grad_out)
    return call


def time_block(call, number: int, device: torch.device) -> float:
    """Seconds per call, averaged over `number` back-to-back calls."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(number):
        call()
    synchronize(device)
    return (time.perf_counter() - start) / number


def measure(calls: dict, repeats: int, device: torch.device, block_s: float, warmup_s: float) -> dict[str, float]:
    """Median seconds per call of each implementation, the implementations interleaved round by round."""
    for call in calls.values():  # warm up (threads, allocator, autograd) for at least `warmup_s` each
        start = time.perf_counter()
        while time.perf_counter() - start < warmup_s:
            call()
    slowest = max(time_block(call, 1, device) for call in calls.values())
    number = max(1, round(block_s / max(slowest, 1e-6)))
    names = list(calls)
    samples = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]  # rotate who goes first
        for name in order:
            samples[name].append(time_block(calls[name], number, device))
    return {name: statistics.median(times) for name, times in samples.items()}


def time_case(shape: tuple[int, int, int, int], causal: bool, mode: str, device: torch.device, dtype: torch.dtype,
              repeats: int, block_s: float, warmup_s: float) -> dict[str, float]:
    """Median seconds per call of each implementation on random q, k, v of `shape` (batch, heads, seq, d_head)."""
    q, k, v = (torch.randn(shape, device=device, dtype=dtype) for _ in range(3))
    calls = {name: make_call(fn, q, k, v, mode, causal) for name, fn in IMPLEMENTATIONS.items()}
    return measure(calls, repeats, device, block_s, warmup_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--d-head", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=21, help="rounds per measurement (median taken)")
    parser.add_argument("--block-ms", type=float, default=50.0, help="rough length of one timed block")
    parser.add_argument("--warmup-ms", type=float, default=300.0, help="warmup per implementation and case")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: labkit.device.pick_device())")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="of q, k and v")
    args = parser.parse_args()
    for name in ("batch", "heads", "d_head", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")

    device = pick_device(args.device)
    torch.manual_seed(0)
    print(f"device: {describe_device(device)}; torch {torch.__version__}; batch {args.batch}, heads {args.heads}, "
          f"d_head {args.d_head}, {args.dtype}, median of {args.repeats} rounds")
    header = f"{'seq':>5}  {'mask':<7}{'mode':<17}{'naive ms':>10}{'fast ms':>10}{'SDPA ms':>10}{'fast/SDPA':>11}{'naive/fast':>12}"
    print(header)
    print("-" * len(header))

    worst_fast_over_sdpa, worst_naive_over_fast = 0.0, float("inf")
    started = time.perf_counter()
    for seq in SEQS:
        shape = (args.batch, args.heads, seq, args.d_head)
        for causal, mode in [(c, m) for c in (False, True) for m in ("forward", "forward+backward")]:
            t = time_case(shape, causal, mode, device, DTYPES[args.dtype], args.repeats, args.block_ms / 1e3,
                          args.warmup_ms / 1e3)
            fast_over_sdpa, naive_over_fast = t["fast"] / t["sdpa"], t["naive"] / t["fast"]
            worst_fast_over_sdpa = max(worst_fast_over_sdpa, fast_over_sdpa)
            if mode == "forward+backward":
                worst_naive_over_fast = min(worst_naive_over_fast, naive_over_fast)
            print(f"{seq:>5}  {'causal' if causal else 'none':<7}{mode:<17}{t['naive'] * 1e3:>10.3f}{t['fast'] * 1e3:>10.3f}{t['sdpa'] * 1e3:>10.3f}"
                  f"{fast_over_sdpa:>11.3f}{naive_over_fast:>12.2f}", flush=True)

    met_overhead = worst_fast_over_sdpa <= FAST_OVER_SDPA_MAX
    met_speedup = worst_naive_over_fast >= NAIVE_OVER_FAST_MIN
    print(f"\n({time.perf_counter() - started:.0f} s)")
    print(f"targets: fast/SDPA <= {FAST_OVER_SDPA_MAX} everywhere: {'met' if met_overhead else 'NOT met'} "
          f"(worst {worst_fast_over_sdpa:.3f}); naive/fast >= {NAIVE_OVER_FAST_MIN} for forward+backward: "
          f"{'met' if met_speedup else 'NOT met'} (worst {worst_naive_over_fast:.2f})")


if __name__ == "__main__":
    main()
