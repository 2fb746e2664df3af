"""Training a TinyGPT on a character corpus, in a notebook or from the command line. The loop (AdamW, warm-up +
cosine decay, clipping, autocast, evaluation, atomic checkpoints, exact resumption) is `labkit.loop.run`; this module
adds the model's data, loss, memory check and evaluation, the checkpoint's tokenizer, and the command line.

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
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.blocks import count_parameters
from labkit.checkpoint import load_checkpoint, restore_model
from labkit.corpus import CharCorpus, CharTokenizer
from labkit.device import available_memory, bf16_is_fast, describe_device, pick_device, set_seed
from labkit.loop import History, autocast, batch_generator, distributed, fixed_batch_losses, run
from labkit.models import GPTConfig, TinyGPT
from labkit.presets import PRESETS, TrainConfig, get_preset, preset_for

__all__ = ["training_memory", "estimate_loss", "train", "load_trained", "load_or_train", "main"]


def training_memory(config: GPTConfig, batch_size: int, bf16: bool = False) -> int:
    """Rough bytes a training step needs: fp32 weights, gradients and AdamW's two moments (16 bytes per
    parameter), plus the activations autograd keeps (per layer and token 34·d_model + 5·heads·seq bytes in 16-bit
    precision, Korthikanti et al. 2022; twice that in fp32) and the logits with their gradient."""
    d, n, t = config.d_model, config.n_layer, config.block_size
    per_layer = 4 * d * d + 6 * d if config.attention_only else 12 * d * d + 13 * d
    params = config.vocab_size * d * (1 if config.tie_head else 2) + t * d + n * per_layer
    activations = n * batch_size * t * (34 * d + 5 * config.n_head * t) * (1 if bf16 else 2)
    logits = 3 * batch_size * t * config.vocab_size * 4
    return 16 * params + activations + logits


def _check_memory(config: GPTConfig, train_config: TrainConfig, device: torch.device, world: int) -> None:
    """Refuse, before allocating anything, a run that cannot fit in the device's free memory."""
    free = available_memory(device)
    bf16 = train_config.bf16 and bf16_is_fast(device)
    need = training_memory(config, train_config.batch_size // world, bf16)
    if free is not None and need > free:
        raise MemoryError(
            f"this run needs about {need / 2**30:.1f} GiB on {device} (model {config.n_layer}×{config.d_model}, "
            f"batch {train_config.batch_size}, block {config.block_size}) but only {free / 2**30:.1f} GiB is free; "
            f"choose a smaller preset or a smaller batch size (--batch-size)")


def _loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    logits = model(x)
    return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())


@torch.no_grad()
def estimate_loss(model: nn.Module, corpus: CharCorpus, block_size: int, batch_size: int, batches: int,
                  device: torch.device, seed: int = 0, bf16: bool = False) -> dict[str, float]:
    """Mean loss over `batches` random batches of each split (the same batches every call for a given seed), in
    eval mode."""

    def loss(split: str, generator: torch.Generator) -> Tensor:
        x, y = corpus.batch(split, batch_size, block_size, generator=generator, device=device)
        with autocast(device, bf16):
            return _loss(model, x, y)

    return fixed_batch_losses(model, loss, {"train": "train", "val": "val"}, batches, seed)


def train(model: nn.Module, corpus: CharCorpus, config: TrainConfig, *, device: torch.device | None = None,
          checkpoint: str | os.PathLike | None = None, resume: bool = False,
          on_eval: Callable[[History], None] | None = None, progress: bool = True) -> History:
    """Train `model` on `corpus` with `labkit.loop.run` and return its History (losses["loss"] per step; evals
    "train" and "val": the mean loss on fixed batches of each split). `model` is a TinyGPT, or another model of
    token ids → logits (batch, seq, vocab) whose `config` has vocab_size, block_size and to_dict() (such as
    `labkit.recurrent.GRULanguageModel`): with the same TrainConfig and block_size it sees the same batches
    (`load_trained` rebuilds TinyGPTs only).

    checkpoint: a .safetensors path written after every evaluation (atomically), with the tokenizer, so that
    `load_trained` can rebuild the model; with resume=True an existing one is loaded first and training continues
    from its step. KeyboardInterrupt stops cleanly: the last checkpoint stays intact and the History so far is
    returned with `interrupted=True`. on_eval: called with the History after every evaluation (live plots).
    """
    device = device or next(model.parameters()).device
    if corpus.tokenizer.vocab_size > model.config.vocab_size:
        raise ValueError(f"the corpus has {corpus.tokenizer.vocab_size} characters but the model's vocabulary only "
                         f"{model.config.vocab_size}: build the model with GPTConfig(vocab_size="
                         f"corpus.tokenizer.vocab_size, ...)")
    _, world = distributed()
    if isinstance(model.config, GPTConfig):  # the memory estimate is a transformer's
        _check_memory(model.config, config, device, world)
    block_size = model.config.block_size

    def batch(step: int) -> tuple[Tensor, Tensor]:
        return corpus.batch("train", config.batch_size, block_size, generator=batch_generator(config.seed, step))

    def evaluate() -> dict[str, float]:
        return estimate_loss(model, corpus, block_size, config.batch_size, config.eval_batches, device, config.seed,
                             config.bf16)

    return run(model, config, batch=batch, loss=lambda net, xy: _loss(net, *xy), evaluate=evaluate, device=device,
               checkpoint=checkpoint, resume=resume, model_config=model.config,
               meta={"tokenizer": corpus.tokenizer.to_dict()}, on_eval=on_eval, progress=progress)


def load_trained(path: str | os.PathLike, device: torch.device | None = None) -> tuple[TinyGPT, CharTokenizer]:
    """The model and tokenizer of a checkpoint written by `train`, in eval mode."""
    saved = load_checkpoint(path)
    meta = saved["meta"]
    if "model_config" not in meta or "tokenizer" not in meta:
        raise ValueError(f"{path} is a labkit checkpoint but not of a TinyGPT training run")
    model = TinyGPT(GPTConfig(**meta["model_config"]))
    restore_model(model, saved)
    return model.to(device or "cpu").eval(), CharTokenizer.from_dict(meta["tokenizer"])


def load_or_train(checkpoint: str | os.PathLike, device: torch.device | None = None,
                  on_eval: Callable[[History], None] | None = None) -> tuple[TinyGPT, CharTokenizer]:
    """Notebook 04's tiny GPT from `checkpoint`; if the file is missing, first train it there with notebook 04's
    preset for the device on Tiny Shakespeare (on_eval as in `train`, e.g. a live loss plot)."""
    if not Path(checkpoint).exists():
        from labkit.data import load_data

        preset = preset_for(device or "cpu", "tiny_gpt")
        print(f"{checkpoint} not found: training the '{preset.name}' preset of notebook 04 now")
        corpus = CharCorpus.from_text(load_data("tinyshakespeare"))
        model = TinyGPT(GPTConfig(vocab_size=corpus.tokenizer.vocab_size, **preset.shape))
        train(model, corpus, preset.train, device=device, checkpoint=checkpoint, on_eval=on_eval)
    return load_trained(checkpoint, device)


def main(argv: list[str] | None = None) -> History:
    """The command-line trainer; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m labkit.train", description="Train a TinyGPT on Tiny Shakespeare.")
    parser.add_argument("--preset", choices=sorted(PRESETS["tiny_gpt"]), help="default: the one for the device")
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
    rank, world = distributed()
    device = pick_device(args.device) if world == 1 or not torch.cuda.is_available() else torch.device(
        "cuda", int(os.environ["LOCAL_RANK"]))
    preset = get_preset("tiny_gpt", args.preset) if args.preset else preset_for(device, "tiny_gpt")
    config = preset.train
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
    model = TinyGPT(GPTConfig(vocab_size=corpus.tokenizer.vocab_size, **preset.shape))
    if rank == 0:
        print(f"device {describe_device(device)}, {world} process(es); preset {preset.name}: "
              f"{count_parameters(model) / 1e6:.2f}M parameters, {config.steps} steps of "
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
