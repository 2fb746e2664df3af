"""Training a TinyGPT on a character corpus: AdamW, warmup + cosine decay, gradient clipping, bf16 autocast on
CUDA, evaluation, atomic safetensors checkpoints and exact resumption, in a notebook or from the command line.

    python -m labkit.train                      # the preset for this machine's device
    python -m labkit.train --preset cpu --steps 500 --out runs/gpt.safetensors
    torchrun --nproc_per_node 2 -m labkit.train --preset smoke   # data parallel (gloo on CPU, NCCL on GPUs)

Batches are drawn from a generator seeded by (seed, step), so a run resumed from a checkpoint sees the same
batches as one that never stopped, and every process of a data-parallel run draws the same global batch and
takes its own rows of it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from labkit.checkpoint import load_checkpoint, restore_model, save_checkpoint
from labkit.corpus import CharCorpus, CharTokenizer
from labkit.device import available_memory, describe_device, pick_device, set_seed
from labkit.models import GPTConfig, TinyGPT
from labkit.validate import check_positive_int

__all__ = ["TrainConfig", "History", "PRESETS", "preset_for", "lr_at", "make_optimizer", "autocast", "batch_generator",
           "optimizer_step", "interrupt_notice", "training_memory", "estimate_loss", "train", "load_trained", "main"]


@dataclass(frozen=True)
class TrainConfig:
    """How to train. The defaults are the CPU preset's."""

    steps: int = 1700  # with batch 32 × block 128: about 4.5 minutes on 2 CPU cores, val ≈ 1.57
    batch_size: int = 32
    lr: float = 6e-3
    min_lr: float = 3e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 250
    eval_batches: int = 20
    seed: int = 0
    compile: bool = False
    bf16: bool = True  # bf16 autocast on CUDA (CPUs and MPS always train in fp32)
    time_limit_s: float | None = None  # stop early (and evaluate) once this much wall time has passed

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "eval_batches"):
            check_positive_int(f"TrainConfig.{name}", getattr(self, name))
        if not 0 < self.min_lr <= self.lr:
            raise ValueError(f"TrainConfig needs 0 < min_lr <= lr, got min_lr={self.min_lr}, lr={self.lr}")
        if self.warmup_steps < 0 or self.grad_clip <= 0 or self.weight_decay < 0:
            raise ValueError("TrainConfig needs warmup_steps >= 0, grad_clip > 0 and weight_decay >= 0")
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise ValueError(f"TrainConfig.time_limit_s must be None (no limit) or a number of seconds > 0, "
                             f"got {self.time_limit_s!r}")


# name → (model shape without the vocabulary, training config). Each finishes in minutes on its device.
PRESETS: dict[str, tuple[dict, TrainConfig]] = {
    "cpu": (dict(block_size=128, n_layer=4, n_head=4, d_model=128), TrainConfig()),
    "mps": (dict(block_size=256, n_layer=6, n_head=6, d_model=192), TrainConfig(steps=3000, batch_size=64, lr=2e-3,
                                                                                min_lr=2e-4)),
    "cuda": (dict(block_size=256, n_layer=6, n_head=6, d_model=384, dropout=0.2),
             TrainConfig(steps=2500, batch_size=128, lr=1.5e-3, min_lr=1.5e-4, warmup_steps=100, eval_every=250)),
    # A few seconds anywhere: for tests and CI's fast mode. It trains for real, just not for long.
    "smoke": (dict(block_size=64, n_layer=2, n_head=2, d_model=64),
              TrainConfig(steps=200, batch_size=16, lr=3e-3, min_lr=3e-4, warmup_steps=20, eval_every=50,
                          eval_batches=4)),
}


def preset_for(device: torch.device, presets: Mapping[str, Any] = PRESETS) -> str:
    """The name in `presets` for a device: its type (cuda, mps) when `presets` has it, else cpu; LABKIT_FAST=1
    picks smoke."""
    if os.environ.get("LABKIT_FAST", "").lower() in {"1", "true", "yes"}:
        return "smoke"
    return device.type if device.type in presets else "cpu"


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warmup to `lr`, then cosine decay to `min_lr` at the last step (steps count from 0)."""
    if not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an int >= 0, got {step!r}")
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * min(progress, 1.0)))


def training_memory(config: GPTConfig, batch_size: int, bf16: bool = False) -> int:
    """Rough bytes a training step needs: fp32 weights, gradients and AdamW's two moments (16 bytes per
    parameter), plus the activations autograd keeps (per layer and token 34·d_model + 5·heads·seq bytes in 16-bit
    precision, Korthikanti et al. 2022; twice that in fp32) and the logits with their gradient."""
    d, n, t = config.d_model, config.n_layer, config.block_size
    params = config.vocab_size * d * (1 if config.tie_head else 2) + t * d + n * (12 * d * d + 13 * d)
    activations = n * batch_size * t * (34 * d + 5 * config.n_head * t) * (1 if bf16 else 2)
    logits = 3 * batch_size * t * config.vocab_size * 4
    return 16 * params + activations + logits


def _check_memory(config: GPTConfig, train_config: TrainConfig, device: torch.device, world: int) -> None:
    """Refuse, before allocating anything, a run that cannot fit in the device's free memory."""
    free = available_memory(device)
    bf16 = train_config.bf16 and device.type == "cuda"
    need = training_memory(config, train_config.batch_size // world, bf16)
    if free is not None and need > free:
        raise MemoryError(
            f"this run needs about {need / 2**30:.1f} GiB on {device} (model {config.n_layer}×{config.d_model}, "
            f"batch {train_config.batch_size}, block {config.block_size}) but only {free / 2**30:.1f} GiB is free; "
            f"choose a smaller preset or a smaller batch size (--batch-size)")


@dataclass
class History:
    """What a run measured: per-step train loss, periodic train/val estimates, speed."""

    step: int = 0  # steps done
    train_loss: list[float] = field(default_factory=list)  # one per step
    eval_steps: list[int] = field(default_factory=list)
    eval_train: list[float] = field(default_factory=list)
    eval_val: list[float] = field(default_factory=list)
    tokens_per_s: float = 0.0
    elapsed_s: float = 0.0
    interrupted: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def batch_generator(seed: int, step: int) -> torch.Generator:
    """The generator that draws step `step`'s batch: the same for a run resumed there as for one that never stopped."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def autocast(device: torch.device, bf16: bool = True):
    """bf16 autocast on CUDA when `bf16`; a no-op context on CPUs and MPS (they train in fp32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda")


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on the matrices (≥ 2-D: linear weights, embeddings) and none on biases and norms.

    Parameters with requires_grad=False (a frozen encoder) are left out.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{type(model).__name__} has no parameter with requires_grad=True: nothing to train")
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, betas=(0.9, 0.99))


def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, lr: float, grad_clip: float) -> None:
    """After loss.backward(): clip the gradients' global norm to `grad_clip`, step at `lr`, clear the gradients."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def interrupt_notice(step: int, eval_steps: list[int], checkpoint: str | os.PathLike | None) -> str:
    """What an interrupted run says: where it stopped, and which checkpoint (written at evaluations) survives."""
    kept = f"the checkpoint {checkpoint} (step {eval_steps[-1]}) is intact" if (
        checkpoint is not None and eval_steps) else "no checkpoint was written"
    return f"interrupted at step {step}; {kept}"


def _check_finite_loss(loss: float, step: int, config: TrainConfig, checkpoint: str | os.PathLike | None,
                       history: History) -> None:
    """Stop before a NaN or inf loss reaches the weights, saying where the last good state is."""
    if math.isfinite(loss):
        return
    kept = (f"the checkpoint {checkpoint} holds step {history.eval_steps[-1]}" if checkpoint and history.eval_steps
            else "no checkpoint was written yet")
    raise FloatingPointError(f"the training loss became {loss} at step {step} (lr {lr_at(step, config):.2g}); the "
                             f"weights were not updated with it and {kept}. Lower TrainConfig.lr or grad_clip, or "
                             f"train in fp32 (bf16=False)")


def _loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    logits = model(x)
    return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())


@torch.no_grad()
def estimate_loss(model: nn.Module, corpus: CharCorpus, block_size: int, batch_size: int, batches: int,
                  device: torch.device, seed: int = 0, bf16: bool = True) -> dict[str, float]:
    """Mean loss over `batches` random batches of each split (the same batches every call for a given seed)."""
    was_training = model.training
    model.eval()
    out = {}
    for split in ("train", "val"):
        gen = torch.Generator().manual_seed(seed + 12345)
        losses = []
        for _ in range(batches):
            x, y = corpus.batch(split, batch_size, block_size, generator=gen, device=device)
            with autocast(device, bf16):
                losses.append(_loss(model, x, y).item())
        out[split] = sum(losses) / len(losses)
    model.train(was_training)
    return out


def _describes(saved_config: object, config: GPTConfig) -> bool:
    """Whether a checkpoint's model_config is `config`; fields added since it was saved take their defaults."""
    try:
        return type(config)(**saved_config) == config
    except (TypeError, ValueError):
        return False


def _distributed() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def train(model: TinyGPT, corpus: CharCorpus, config: TrainConfig, *, device: torch.device | None = None,
          checkpoint: str | os.PathLike | None = None, resume: bool = False,
          on_eval: Callable[[History], None] | None = None, progress: bool = True) -> History:
    """Train `model` on `corpus` and return its History.

    checkpoint: a .safetensors path written after every evaluation (atomically); with resume=True an existing
    one is loaded first and training continues from its step. KeyboardInterrupt stops cleanly: the last
    checkpoint stays intact and the History so far is returned with `interrupted=True`.
    on_eval: called with the History after every evaluation (live plots).
    """
    device = device or next(model.parameters()).device
    rank, world = _distributed()
    if config.batch_size % world:
        raise ValueError(f"batch_size={config.batch_size} must be divisible by the number of processes ({world})")
    block_size = model.config.block_size
    _check_memory(model.config, config, device, world)
    model.to(device)
    optimizer = make_optimizer(model, config)
    history = History()
    if resume and checkpoint is not None and Path(checkpoint).exists():
        saved = load_checkpoint(checkpoint)
        if not _describes(saved["meta"].get("model_config"), model.config):
            raise ValueError(f"{checkpoint} holds a model with config {saved['meta'].get('model_config')}, "
                             f"not {model.config.to_dict()}")
        restore_model(model, saved)
        optimizer.load_state_dict(saved["optim"])
        torch.set_rng_state(saved["rng"])
        history = History(**saved["meta"]["history"])
        history.interrupted = False
        if rank == 0:
            print(f"resumed from {checkpoint} at step {history.step}")
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        net = torch.compile(net)

    def evaluate_and_save() -> None:
        losses = estimate_loss(model, corpus, block_size, config.batch_size, config.eval_batches, device, config.seed,
                               config.bf16)
        history.eval_steps.append(history.step)
        history.eval_train.append(losses["train"])
        history.eval_val.append(losses["val"])
        if checkpoint is not None and rank == 0:
            save_checkpoint(checkpoint, model, optimizer, model_config=model.config.to_dict(),
                            train_config=asdict(config), tokenizer=corpus.tokenizer.to_dict(),
                            history=history.to_dict(), processes=world)
        if on_eval is not None and rank == 0:
            on_eval(history)

    model.train()
    bar = tqdm(total=config.steps, initial=history.step, desc="training", disable=not progress or rank != 0)
    start, start_step, earlier_s = time.perf_counter(), history.step, history.elapsed_s
    try:
        while history.step < config.steps:
            step = history.step
            x, y = corpus.batch("train", config.batch_size, block_size, generator=batch_generator(config.seed, step))
            x, y = x[rank::world].to(device), y[rank::world].to(device)  # this process's rows of the global batch
            with autocast(device, config.bf16):
                loss = _loss(net, x, y)
            loss.backward()
            step_loss = loss.detach()
            if world > 1:
                dist.all_reduce(step_loss, op=dist.ReduceOp.AVG)
            step_value = step_loss.item()
            _check_finite_loss(step_value, step, config, checkpoint, history)
            optimizer_step(model, optimizer, lr_at(step, config), config.grad_clip)
            history.train_loss.append(step_value)
            history.step += 1
            elapsed = time.perf_counter() - start
            history.tokens_per_s = (history.step - start_step) * config.batch_size * block_size / elapsed
            bar.update(1)
            bar.set_postfix(loss=f"{history.train_loss[-1]:.3f}", lr=f"{lr_at(step, config):.1e}")
            out_of_time = config.time_limit_s is not None and elapsed >= config.time_limit_s
            history.elapsed_s = earlier_s + elapsed
            if history.step % config.eval_every == 0 or history.step == config.steps or out_of_time:
                evaluate_and_save()
            if out_of_time:
                if rank == 0:
                    print(f"time limit of {config.time_limit_s:g} s reached at step {history.step}")
                break
    except KeyboardInterrupt:
        history.interrupted = True
        if rank == 0:
            print(interrupt_notice(history.step, history.eval_steps, checkpoint))
    finally:
        bar.close()
    return history


def load_trained(path: str | os.PathLike, device: torch.device | None = None) -> tuple[TinyGPT, CharTokenizer]:
    """The model and tokenizer of a checkpoint written by `train`, in eval mode."""
    saved = load_checkpoint(path)
    meta = saved["meta"]
    if "model_config" not in meta or "tokenizer" not in meta:
        raise ValueError(f"{path} is a labkit checkpoint but not of a TinyGPT training run")
    model = TinyGPT(GPTConfig(**meta["model_config"]))
    restore_model(model, saved)
    return model.to(device or "cpu").eval(), CharTokenizer.from_dict(meta["tokenizer"])


def main(argv: list[str] | None = None) -> History:
    """The command-line trainer; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m labkit.train", description="Train a TinyGPT on Tiny Shakespeare.")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="default: the one for the device")
    parser.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    parser.add_argument("--data", help="a folder or file with Tiny Shakespeare (default: LABKIT_DATA, then the hub)")
    parser.add_argument("--out", default="runs/tiny-gpt.safetensors", help="checkpoint path")
    parser.add_argument("--resume", action="store_true", help="continue from --out if it exists")
    for name, kind in (("steps", int), ("batch-size", int), ("lr", float), ("eval-every", int), ("seed", int),
                       ("time-limit", float)):
        parser.add_argument(f"--{name}", type=kind)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (worth it on GPUs)")
    args = parser.parse_args(argv)

    from labkit.data import load_data

    if "RANK" in os.environ and not dist.is_initialized():  # launched by torchrun
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    rank, world = _distributed()
    device = pick_device(args.device) if world == 1 or not torch.cuda.is_available() else torch.device(
        "cuda", int(os.environ["LOCAL_RANK"]))
    preset = args.preset or preset_for(device)
    shape, config = PRESETS[preset]
    overrides = {k: v for k, v in (("steps", args.steps), ("batch_size", args.batch_size), ("lr", args.lr),
                                   ("eval_every", args.eval_every), ("seed", args.seed),
                                   ("time_limit_s", args.time_limit)) if v is not None}
    if args.compile:
        overrides["compile"] = True
    if "lr" in overrides:
        overrides["min_lr"] = min(config.min_lr, overrides["lr"])
    config = replace(config, **overrides)
    set_seed(config.seed)
    corpus = CharCorpus.from_text(load_data("tinyshakespeare", args.data))
    model = TinyGPT(GPTConfig(vocab_size=corpus.tokenizer.vocab_size, **shape))
    if rank == 0:
        print(f"device {describe_device(device)}, {world} process(es); preset {preset}: "
              f"{model.num_parameters() / 1e6:.2f}M parameters, {config.steps} steps of "
              f"{config.batch_size}×{model.config.block_size} tokens; seed {config.seed}")
    history = train(model, corpus, config, device=device, checkpoint=args.out, resume=args.resume)
    if rank == 0 and history.eval_val:
        print(f"step {history.step}: train {history.eval_train[-1]:.4f}, val {history.eval_val[-1]:.4f} "
              f"(perplexity {math.exp(history.eval_val[-1]):.2f}); {history.tokens_per_s:,.0f} tokens/s, "
              f"{history.elapsed_s:.0f} s; checkpoint {args.out}")
    if world > 1:
        dist.destroy_process_group()
    return history


def cli() -> None:
    """`python -m labkit.train`: main(), with a bad input reported in one line instead of a traceback."""
    try:
        main()
    except (ValueError, FileNotFoundError, MemoryError, FloatingPointError) as error:
        sys.exit(f"labkit.train: error: {error}")


if __name__ == "__main__":
    cli()
