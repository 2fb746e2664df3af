"""How big and how long, for every trainer on every device, in one place: `TrainConfig` and the presets.

A family is one thing the lab trains; each has a preset per device it was sized for, plus `smoke` (seconds
anywhere: the tests and fast mode). `preset_for(device, family)` picks one; `get_preset(family, name)` names one.

    preset = preset_for(device, "tiny_gpt")
    model = TinyGPT(GPTConfig(vocab_size=65, **preset.shape)); train(model, corpus, preset.train)

`minutes` is what a run took on the reference machine (2 CPU cores, otherwise idle) for the `cpu` presets; the
doctor's time estimates are read from it. bf16 autocast is on (`TrainConfig.bf16`) where it was measured to pay:
on GPUs, and for fine-tuning the pretrained encoder on CPUs that multiply bf16 in hardware.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from labkit.validate import require_positive_int

__all__ = ["SCHEDULES", "OPTIMIZERS", "TrainConfig", "Preset", "PRESETS", "FAMILIES", "fast_mode", "finetune_recipe",
           "preset_for", "get_preset"]


SCHEDULES = ("cosine", "linear")  # how the learning rate falls from `lr` to `min_lr` after the warm-up
OPTIMIZERS = ("adamw", "muon")  # `labkit.loop.make_optimizer`


@dataclass(frozen=True)
class TrainConfig:
    """How to train: steps, batch size, the learning-rate schedule, AdamW's weight decay, clipping, evaluation.
    The defaults are the tiny GPT's plain recipe (AdamW, float32); its `cpu` preset adds the measured switches."""

    steps: int = 1700  # with batch 32 × block 128: 4.5 minutes on 2 CPU cores, val ≈ 1.55
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
    bf16: bool = False  # bf16 autocast where the device multiplies bf16 in hardware (`bf16_is_fast`); the presets
    # turn it on where it was measured to pay
    time_limit_s: float | None = None  # stop early (and evaluate) after this many seconds of training (the time
    # spent evaluating not counted)
    schedule: str = "cosine"  # after the warm-up: "cosine" or "linear" decay to min_lr at the last step
    optimizer: str = "adamw"  # "muon": Muon orthogonalises each update of the blocks' weight matrices (AdamW keeps
    # the embeddings, the output layer, norms and biases), so every direction of a matrix learns at the same pace

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "eval_batches"):
            require_positive_int(f"TrainConfig.{name}", getattr(self, name))
        if not (self.lr > 0 and 0 <= self.min_lr <= self.lr):
            raise ValueError(f"TrainConfig needs 0 <= min_lr <= lr and lr > 0, got min_lr={self.min_lr}, "
                             f"lr={self.lr}")
        if self.warmup_steps < 0 or self.grad_clip <= 0 or self.weight_decay < 0:
            raise ValueError("TrainConfig needs warmup_steps >= 0, grad_clip > 0 and weight_decay >= 0")
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise ValueError(f"TrainConfig.time_limit_s must be None (no limit) or a number of seconds > 0, "
                             f"got {self.time_limit_s!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"TrainConfig.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"TrainConfig.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")


@dataclass(frozen=True)
class Preset:
    """One family's preset for one device: the model's shape (its config fields without the vocabulary; empty for a
    pretrained model), how to train it, how much data (family-specific counts), and the minutes a run took on the
    reference machine (None where not measured)."""

    name: str
    train: TrainConfig
    shape: Mapping[str, object] = field(default_factory=dict)
    data: Mapping[str, int | None] = field(default_factory=dict)
    minutes: float | None = None


def finetune_recipe(steps: int, batch_size: int = 32, lr: float = 1e-4) -> TrainConfig:
    """The recipe for fine-tuning a pretrained encoder: warm-up over 6% of the steps, then linear decay to 0, weight
    decay 0.01, bf16 autocast where the hardware has it."""
    return TrainConfig(steps=steps, batch_size=batch_size, lr=lr, min_lr=0.0, warmup_steps=max(1, round(0.06 * steps)),
                       weight_decay=0.01, schedule="linear", bf16=True)


def _family(*presets: Preset) -> dict[str, Preset]:
    return {preset.name: preset for preset in presets}


_GPT_SMOKE = Preset("smoke", TrainConfig(steps=200, batch_size=16, lr=3e-3, min_lr=3e-4, warmup_steps=20,
                                         eval_every=50, eval_batches=4),
                    dict(block_size=64, n_layer=2, n_head=2, d_model=64))

PRESETS: dict[str, dict[str, Preset]] = {
    # notebook 04, labkit.train: the tiny GPT on Tiny Shakespeare. cpu: the fastest combination benchmarks/tiny_lm.py
    # measured (Muon, QK-norm, ReLU², an untied output layer, zero-initialised output projections, RoPE, a short
    # warm-up): val ≈ 1.49 after 5 minutes on 2 cores (the plain recipe: 1.55), and nanoGPT's CPU recipe's final
    # loss in under half its time. bf16 autocast did not pay at this width on a CPU.
    "tiny_gpt": _family(
        Preset("cpu", TrainConfig(steps=1600, warmup_steps=30, optimizer="muon"),
               dict(block_size=128, n_layer=4, n_head=4, d_model=128, position="rope", qk_norm=True,
                    activation="relu2", tie_head=False, zero_init_proj=True), minutes=5.0),
        Preset("mps", TrainConfig(steps=3000, batch_size=64, lr=2e-3, min_lr=2e-4),
               dict(block_size=256, n_layer=6, n_head=6, d_model=192)),
        Preset("cuda", TrainConfig(steps=2500, batch_size=128, lr=1.5e-3, min_lr=1.5e-4, bf16=True),
               dict(block_size=256, n_layer=6, n_head=6, d_model=384, dropout=0.2)),
        _GPT_SMOKE),
    # notebook 05: a TinyBERT on masked-LM + NSP. Pre-LN blocks: with post-LN (BERT's own) a tiny model sat on the
    # unigram plateau for the whole of a 10-minute CPU run, while pre-LN at lr 1e-3 left it within 500 steps.
    "pretraining": _family(
        Preset("cpu", TrainConfig(steps=4000, batch_size=64, lr=1e-3, min_lr=1e-4, warmup_steps=100, weight_decay=0.01,
                                  eval_every=500, eval_batches=40),
               dict(max_len=64, n_layer=4, n_head=4, d_model=128, norm_first=True), minutes=9.5),
        Preset("cuda", TrainConfig(steps=6000, batch_size=256, lr=1e-3, min_lr=1e-4, warmup_steps=300,
                                   weight_decay=0.01, eval_every=500, eval_batches=40, bf16=True),
               dict(max_len=64, n_layer=6, n_head=8, d_model=256, norm_first=True)),
        Preset("smoke", TrainConfig(steps=150, batch_size=32, lr=2e-3, min_lr=2e-4, warmup_steps=20, weight_decay=0.01,
                                    eval_every=50, eval_batches=4),
               dict(max_len=64, n_layer=2, n_head=2, d_model=64, norm_first=True))),
    # notebook 06 (and 08): the packaged encoder fine-tuned on SST-2, on CoNLL-2003, and on both at once. cpu: about
    # 0.12 s a SST-2 step and 0.15 s a CoNLL-2003 step in bf16 autocast (AVX-512 BF16 or AMX), twice that in
    # float32 elsewhere; cuda: three epochs of each training set; smoke: a real subset of the data, briefly.
    "sentiment": _family(
        Preset("cpu", finetune_recipe(600), minutes=1.2),
        Preset("cuda", finetune_recipe(3 * 67349 // 32)),
        Preset("smoke", finetune_recipe(30, batch_size=16, lr=2e-4), data=dict(train_examples=480))),
    "ner": _family(
        Preset("cpu", finetune_recipe(450), minutes=1.1),
        Preset("cuda", finetune_recipe(3 * 14041 // 32)),
        Preset("smoke", finetune_recipe(30, batch_size=16, lr=2e-4), data=dict(train_examples=480))),
    "multitask": _family(  # one batch of each task a step
        Preset("cpu", finetune_recipe(600), minutes=2.7),
        Preset("cuda", finetune_recipe(3 * 67349 // 32)),
        Preset("smoke", finetune_recipe(30, batch_size=16, lr=2e-4), data=dict(train_examples=480))),
    # notebook 06, section 8: a span head on the encoder, extractive question answering (SQuAD v1.1 online, else the
    # questions labkit.qa builds from CoNLL-2003's entities). data: the questions trained on and scored (None: all)
    # and the tokens question + passage are cut to (384 holds SQuAD's paragraphs; batches pad to their longest row).
    "qa": _family(
        Preset("cpu", finetune_recipe(450), data=dict(max_len=384), minutes=3.5),
        Preset("cuda", finetune_recipe(2 * 87599 // 32), data=dict(max_len=384)),
        Preset("smoke", replace(finetune_recipe(40, batch_size=16, lr=2e-4), eval_every=40),
               data=dict(train_examples=640, heldout_examples=300, max_len=64))),
    # notebook 09: the encoder-decoder on the synthetic translation task (too small for a GPU to gain much)
    "encoder_decoder": _family(
        Preset("cpu", TrainConfig(steps=1200, batch_size=64, lr=3e-3, min_lr=1e-4, warmup_steps=100,
                                  weight_decay=0.01, eval_every=100, eval_batches=4),
               data=dict(n_train=20000, n_heldout=500), minutes=1.0),
        Preset("smoke", TrainConfig(steps=150, batch_size=32, lr=3e-3, min_lr=3e-4, warmup_steps=15, weight_decay=0.01,
                                    eval_every=50, eval_batches=2),
               dict(d_ff=128), data=dict(n_train=2000, n_heldout=100))),
    # notebook 11: the 2-layer attention-only TinyGPT in which induction heads form, on circuits.RepeatMix. Measured
    # before choosing: learned positions, a tied output layer or a 64-token window each kept the heads from forming
    # within 3000 steps, and so did weight decay 0.1 with a decaying learning rate on half-repeated rows within 2000;
    # with these settings the best induction score jumps from about 0.1 to 0.6 between steps 1000 and 1500.
    "induction": _family(
        Preset("cpu", TrainConfig(steps=2400, batch_size=32, lr=1e-3, min_lr=1e-3, warmup_steps=30, weight_decay=0.0,
                                  eval_every=100, eval_batches=4),
               dict(block_size=32, n_layer=2, n_head=4, d_model=64, attention_only=True, position="rope",
                    tie_head=False), minutes=0.5),
        Preset("smoke", TrainConfig(steps=200, batch_size=16, lr=1e-3, min_lr=1e-3, warmup_steps=20, weight_decay=0.0,
                                    eval_every=50, eval_batches=2),
               dict(block_size=32, n_layer=2, n_head=4, d_model=64, attention_only=True, position="rope",
                    tie_head=False))),
    # notebook 10: five tiny GPTs, one per position scheme, trained one after the other (minutes: each)
    "positional_workbench": _family(
        Preset("cpu", TrainConfig(steps=700, batch_size=32, lr=4e-3, min_lr=3e-4, warmup_steps=50, eval_every=100,
                                  eval_batches=8),
               dict(block_size=64, n_layer=3, n_head=4, d_model=96), minutes=1.0),
        Preset("smoke", TrainConfig(steps=150, batch_size=16, lr=4e-3, min_lr=3e-4, warmup_steps=15, eval_every=50,
                                    eval_batches=4),
               dict(block_size=32, n_layer=2, n_head=4, d_model=64))),
}
FAMILIES = tuple(PRESETS)


def fast_mode() -> bool:
    """Whether LABKIT_FAST asks for the seconds-long smoke presets (the tests, and CI's notebook runs)."""
    return os.environ.get("LABKIT_FAST", "").lower() in {"1", "true", "yes"}


def get_preset(family: str, name: str) -> Preset:
    """`PRESETS[family][name]`, with an error that lists what there is."""
    if family not in PRESETS:
        raise ValueError(f"family must be one of {', '.join(map(repr, FAMILIES))}, got {family!r}")
    if name not in PRESETS[family]:
        raise ValueError(f"the {family!r} presets are {', '.join(map(repr, PRESETS[family]))}, got {name!r}")
    return PRESETS[family][name]


def preset_for(device: Any, family: str) -> Preset:
    """The family's preset for a device (a torch.device, or its name): smoke under LABKIT_FAST=1, else the device
    type's (cuda, mps) where the family has one, else cpu."""
    kind = getattr(device, "type", str(device).split(":")[0])
    name = "smoke" if fast_mode() else kind if kind in PRESETS.get(family, {}) else "cpu"
    return get_preset(family, name)
