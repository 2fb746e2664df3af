"""The GPU check: on one CUDA GPU, in under 8 minutes and with no network, the lab's GPU path measured, one table.

    python3 lab.py gpu              # on a machine with a CUDA GPU
    python3 lab.py gpu --dry-run    # every step at smoke size on the CPU: checks the command itself

1. the CUDA-only tests (`pytest -m cuda`);
2. the tiny GPT on its `cuda` preset (bf16 autocast): training seconds until validation loss ≤ 1.47 (at most
   `--gpt-seconds`), tokens/s and the model FLOPs utilisation (MFU) against the GPU's dense bf16 peak;
3. attention forward + backward in bf16 at seq 256 with the causal mask: naive against fused;
4. fine-tuning the packaged encoder on SST-2 with the `sentiment` cuda preset for at most `--sst2-seconds`:
   examples/s and the dev accuracy it reached.
Target on the GPU: validation loss ≤ 1.47 within 60 s of training.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch

from labkit.corpus import CharCorpus
from labkit.data import SST2_LABELS, load_data
from labkit.device import describe_device, set_seed
from labkit.models import GPTConfig, TinyGPT
from labkit.presets import get_preset
from labkit.speedrun import train_arm

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from attention import time_case  # noqa: E402  (sibling scripts)
from finetune import MAX_LEN, fine_tune  # noqa: E402

GPT_TARGET = 1.47
# Dense bf16 peak FLOP/s by GPU name (NVIDIA's data sheets, SXM parts): Hopper H100 / H200 989 TFLOP/s, A100 312.
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def flops_per_token(config: GPTConfig, n_params: int) -> float:
    """Training FLOPs per token: 6 per parameter plus the attention matmuls, 12 · layers · d_model · context (the
    PaLM paper's appendix B estimate)."""
    return 6 * n_params + 12 * config.n_layer * config.d_model * config.block_size


def cuda_tests(dry_run: bool) -> dict:
    """Run the tests marked `cuda`: their pass / skip counts (on the CPU they all skip)."""
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
                           str(HERE.parent / "tests")], capture_output=True, text=True, cwd=HERE.parent)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr.strip()[-300:]
    ok = done.returncode == 0 or (dry_run and "skipped" in summary and "failed" not in summary)
    return dict(step="CUDA-only tests", result=summary.strip("= "), ok=ok)


def tiny_gpt(device: torch.device, dry_run: bool, seconds: float) -> dict:
    """The tiny GPT on the device's preset until val ≤ GPT_TARGET or `seconds` of training."""
    preset = get_preset("tiny_gpt", "smoke" if dry_run else "cuda")
    corpus = CharCorpus.from_text(load_data("tinyshakespeare"))
    result = train_arm(preset.shape, preset.train, corpus, 0, stop_at=GPT_TARGET, budget_s=seconds, eval_every=50,
                       device=device)
    config = GPTConfig(vocab_size=corpus.tokenizer.vocab_size, **preset.shape)
    n_params = sum(p.numel() for p in TinyGPT(config).parameters())
    peak = next((v for k, v in PEAK_BF16.items() if device.type == "cuda" and k in torch.cuda.get_device_name()),
                None)
    mfu = flops_per_token(config, n_params) * result.tokens_per_s / peak if peak else math.nan
    reached = result.time_to(GPT_TARGET)
    text = (f"val {result.val[-1]:.3f} at step {result.steps[-1]} after {result.clock[-1]:.0f} s; "
            + (f"≤ {GPT_TARGET} at {reached:.0f} s" if reached else f"{GPT_TARGET} not reached")
            + f"; {result.tokens_per_s:,.0f} tokens/s; MFU " + ("n/a" if math.isnan(mfu) else f"{mfu:.1%}"))
    return dict(step=f"tiny GPT, '{preset.name}' preset", result=text,
                ok=dry_run or (reached is not None and reached <= 60))


def attention(device: torch.device, dry_run: bool) -> dict:
    """Causal attention forward + backward at seq 256, naive against fused, in bf16."""
    shape = (8, 8, 256, 64) if not dry_run else (2, 2, 256, 16)
    t = time_case(shape, True, "forward+backward", device, torch.bfloat16, repeats=3 if dry_run else 15,
                  block_s=0.005 if dry_run else 0.05, warmup_s=0.02 if dry_run else 0.3)
    text = (f"batch {shape[0]}, heads {shape[1]}, d_head {shape[3]}: naive {t['naive'] * 1e3:.2f} ms, fused "
            f"{t['fast'] * 1e3:.2f} ms ({t['naive'] / t['fast']:.1f}×)")
    return dict(step="attention fwd+bwd, bf16, seq 256, causal", result=text, ok=True)


def sst2(dry_run: bool, seconds: float) -> dict:
    """Fine-tune the packaged encoder on SST-2 with the family's preset for at most `seconds`: examples/s, dev
    accuracy."""
    from labkit.assets import load_model, load_tokenizer
    from labkit.finetune import score_dataset
    from labkit.finetune_data import encode_sentences

    preset = get_preset("sentiment", "smoke" if dry_run else "cuda")
    data = load_data("sst2")
    n = preset.data.get("train_examples") or len(data["train"])
    dev = slice(0, 200) if dry_run else slice(None)
    tokenizer = load_tokenizer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train = encode_sentences(tokenizer, data["train"]["sentence"][:n], data["train"]["label"][:n], MAX_LEN,
                                 SST2_LABELS)
        validation = encode_sentences(tokenizer, data["validation"]["sentence"][dev],
                                      data["validation"]["label"][dev], MAX_LEN, SST2_LABELS)
    set_seed(0)
    model = load_model(task="sequence-classification", num_labels=2)
    recipe = preset.train
    options = SimpleNamespace(minutes=seconds / 60, batch_size=recipe.batch_size, lr=recipe.lr, seed=0, quiet=True)
    train_s, steps = fine_tune(model, train, tokenizer, "sentence", recipe.steps, options)
    accuracy = score_dataset(model, validation, tokenizer, "sentence", SST2_LABELS)["accuracy"]
    text = (f"{steps} steps of {recipe.batch_size} in {train_s:.0f} s: {steps * recipe.batch_size / train_s:,.0f} "
            f"examples/s; dev accuracy {accuracy:.1%}" + (" (200 dev sentences)" if dry_run else ""))
    return dict(step=f"SST-2 fine-tuning, '{preset.name}' preset", result=text, ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="every step at smoke size on the CPU")
    parser.add_argument("--gpt-seconds", type=float, default=90.0, help="most training seconds for the tiny GPT")
    parser.add_argument("--sst2-seconds", type=float, default=90.0, help="most training seconds for SST-2")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu check: torch sees no CUDA GPU here; run it on a machine with one, or add --dry-run to check the "
              "command itself on the CPU at smoke size", file=sys.stderr)
        return 2
    device = torch.device("cpu" if args.dry_run else "cuda")
    seconds = (10.0, 10.0) if args.dry_run else (args.gpt_seconds, args.sst2_seconds)
    print(f"gpu check{' (dry run)' if args.dry_run else ''} on {describe_device(device)}, torch {torch.__version__}",
          flush=True)
    started = time.perf_counter()
    rows = []
    for name, step in (("CUDA-only tests", lambda: cuda_tests(args.dry_run)),
                       ("tiny GPT", lambda: tiny_gpt(device, args.dry_run, seconds[0])),
                       ("attention", lambda: attention(device, args.dry_run)),
                       ("SST-2", lambda: sst2(args.dry_run, seconds[1]))):
        began = time.perf_counter()
        rows.append(step())
        rows[-1]["seconds"] = time.perf_counter() - began
        print(f"  {name}: done in {rows[-1]['seconds']:.0f} s", flush=True)
    width = max(len(r["step"]) for r in rows)
    print(f"\n{'step':{width}}  {'s':>4}  {'ok':3} result")
    for r in rows:
        print(f"{r['step']:{width}}  {r['seconds']:>4.0f}  {'yes' if r['ok'] else 'NO':3} {r['result']}")
    print(f"\nall steps: {time.perf_counter() - started:.0f} s on {describe_device(device)}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
