"""Hugging Face `Trainer` set up for the lab's fine-tuning runs: one recipe for notebook 06 and the benchmark.

`training_arguments` fills `TrainingArguments` with the recipe (fused AdamW, linear warm-up then linear decay to 0,
gradient clipping, length-grouped batches so that little of a batch is padding, bf16 autocast wherever the hardware
multiplies bf16, no checkpoints and no logging services), and `TimeLimit` stops a run when its wall-time budget is
spent. `FINETUNE_PRESETS` says how long each task trains on each device; pick one with
`labkit.train.preset_for(device, FINETUNE_PRESETS)`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from transformers import TrainerCallback, TrainingArguments

from labkit.device import bf16_is_fast, pick_device
from labkit.validate import check_positive_int

__all__ = ["FinetunePreset", "FINETUNE_PRESETS", "training_arguments", "TimeLimit"]


@dataclass(frozen=True)
class FinetunePreset:
    """How long to fine-tune: optimizer steps per task, batch size, peak learning rate, and how many training
    examples to use (None: all of them)."""

    sentence_steps: int
    token_steps: int
    batch_size: int = 32
    lr: float = 1e-4
    train_examples: int | None = None


FINETUNE_PRESETS: dict[str, FinetunePreset] = {
    # a few minutes per task on 2 CPU cores: about 0.12 s a step for SST-2 and 0.15 s for CoNLL-2003 in bf16
    # autocast (a CPU with AVX-512 BF16 or AMX), about 0.2 s and 0.3 s in float32 elsewhere
    "cpu": FinetunePreset(sentence_steps=600, token_steps=450),
    # three epochs of each training set
    "cuda": FinetunePreset(sentence_steps=3 * 67349 // 32, token_steps=3 * 14041 // 32),
    # seconds anywhere: for tests and CI's fast mode (LABKIT_FAST=1); a real subset of the data, briefly
    "smoke": FinetunePreset(sentence_steps=30, token_steps=30, batch_size=16, lr=2e-4, train_examples=480),
}


def training_arguments(output_dir: str | os.PathLike, steps: int, *, batch_size: int = 32, lr: float = 1e-4,
                       seed: int = 0, logging_steps: int = 50, progress: bool = True) -> TrainingArguments:
    """The lab's fine-tuning recipe as `TrainingArguments`: `steps` optimizer steps of `batch_size` examples,
    warm-up over the first 6% of them to `lr`, then linear decay to 0; fused AdamW (one kernel for all the weights:
    on a CPU ~5× faster than a loop over them), weight decay 0.01, gradient norm clipped to 1, batches of similar
    length, bf16 autocast where `labkit.device.bf16_is_fast` (the weights and optimizer stay float32). Nothing is
    saved or reported anywhere: `output_dir` stays empty."""
    check_positive_int("steps", steps)
    check_positive_int("batch_size", batch_size)
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not 0 < lr < 1:
        raise ValueError(f"lr must be a learning rate in (0, 1), got {lr!r}")
    device = pick_device()  # Trainer's own choice, unless $LABKIT_DEVICE says "cpu"
    return TrainingArguments(
        output_dir=str(output_dir), max_steps=steps, per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=2 * batch_size, optim="adamw_torch_fused",
        bf16=bf16_is_fast(device), use_cpu=device.type == "cpu", learning_rate=lr, lr_scheduler_type="linear",
        warmup_steps=max(1, round(0.06 * steps)), weight_decay=0.01, max_grad_norm=1.0,
        train_sampling_strategy="group_by_length", dataloader_pin_memory=device.type == "cuda", seed=seed,
        logging_steps=min(logging_steps, steps), save_strategy="no", eval_strategy="no", report_to="none",
        disable_tqdm=not progress)


class TimeLimit(TrainerCallback):
    """Stop training once `seconds` of wall time have passed since it began (checked after every step)."""

    def __init__(self, seconds: float) -> None:
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds <= 0:
            raise ValueError(f"seconds must be a positive number, got {seconds!r}")
        self.seconds = seconds
        self.start: float | None = None
        self.stopped_at: int | None = None  # the step at which the limit stopped training, if it did

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.start is not None and time.perf_counter() - self.start >= self.seconds:
            control.should_training_stop = True
            self.stopped_at = state.global_step
        return control
