"""Hugging Face `Trainer` set up for the lab's fine-tuning runs: one recipe for notebooks 06 and 08 and the benchmark.

`training_arguments` turns a `labkit.loop.TrainConfig` (the "sentiment" and "ner" presets in `labkit.presets`) into
`TrainingArguments`: fused AdamW, the config's warm-up then linear (or cosine) decay to 0, gradient clipping,
length-grouped batches so that little of a batch is padding, bf16 autocast by the loop's rule, no checkpoints and
no logging services. `TimeLimit` stops a run when its wall-time budget is spent.
"""

from __future__ import annotations

import os
import time

from transformers import TrainerCallback, TrainingArguments

from labkit.device import bf16_is_fast, pick_device
from labkit.presets import TrainConfig

__all__ = ["training_arguments", "TimeLimit"]


def training_arguments(output_dir: str | os.PathLike, config: TrainConfig, *, logging_steps: int = 50,
                       progress: bool = True) -> TrainingArguments:
    """`config` as `TrainingArguments`: `steps` optimizer steps of `batch_size` examples, `warmup_steps` of warm-up
    to `lr`, then linear or cosine decay to 0 (`min_lr` must be 0: Hugging Face's schedules end there); fused AdamW
    (one kernel for all the weights: on a CPU ~5× faster than a loop over them) with the config's weight decay, the
    gradient norm clipped to `grad_clip`, batches of similar length, bf16 autocast when `config.bf16` and
    `labkit.device.bf16_is_fast` (the weights and optimizer stay float32). Nothing is saved or reported anywhere:
    `output_dir` stays empty."""
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a labkit.loop.TrainConfig (e.g. preset_for(device, 'sentiment').train), "
                        f"got {type(config).__name__}")
    if config.min_lr != 0:
        raise ValueError(f"Hugging Face's schedules decay to 0, so config.min_lr must be 0, got {config.min_lr}")
    if config.optimizer != "adamw":
        raise ValueError(f"Trainer runs fused AdamW; config.optimizer={config.optimizer!r} is for labkit's own loop "
                         f"(TinyGPT's blocks)")
    device = pick_device()  # Trainer's own choice, unless $LABKIT_DEVICE says "cpu"
    return TrainingArguments(
        output_dir=str(output_dir), max_steps=config.steps, per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=2 * config.batch_size, optim="adamw_torch_fused",
        bf16=config.bf16 and bf16_is_fast(device), use_cpu=device.type == "cpu", learning_rate=config.lr,
        lr_scheduler_type=config.schedule, warmup_steps=config.warmup_steps, weight_decay=config.weight_decay,
        max_grad_norm=config.grad_clip, train_sampling_strategy="group_by_length",
        dataloader_pin_memory=device.type == "cuda", seed=config.seed, logging_steps=min(logging_steps, config.steps),
        save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=not progress)


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
