"""Why attention beats recurrence, in numbers: notebook 04's tiny GPT against a GRU with about the same parameter
count (`labkit.recurrent`), trained on the same batches for the same steps, then the time of one training step of
each against the sequence length, side by side.

    .venv/bin/python benchmarks/recurrent.py               # the device's preset, 800 steps (6 minutes, 2 idle cores)
    .venv/bin/python benchmarks/recurrent.py --steps 1600  # the cpu preset's whole run, as notebook 04 trains it
    .venv/bin/python benchmarks/recurrent.py --adamw-gpt   # also the GPT with the GRU's optimizer (AdamW)
    .venv/bin/python benchmarks/recurrent.py --quick       # the smoke preset and three lengths (seconds)
    .venv/bin/python benchmarks/recurrent.py --threads 1   # on a machine other jobs share (see below)

It prints three tables: the validation loss after the same steps (with parameters, training seconds and
tokens/s); the validation loss at each position of the context (`labkit.positional_workbench.loss_by_position`, the
same windows for both) averaged over doubling ranges of positions (`labkit.recurrent.loss_by_position_range`); and
the milliseconds of one training step against the sequence length (`labkit.recurrent.step_time_table`: forward,
backward and AdamW, the median of the repeats, the two models alternating). The GPT follows its preset (on the cpu
preset: Muon and the speedrun switches); the GRU gets the same
TrainConfig with AdamW in place of Muon (`recurrent_recipe`).

Run it on an otherwise idle machine: when other processes share the cores, torch's threads wait for each other at
every operation, and the GRU, which runs several small operations per position, slows down far more than the GPT
(on 2 busy cores, 100× against 15× for the GPT), which says nothing about either model. `--threads 1` avoids that.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import nn

from labkit.blocks import count_parameters
from labkit.corpus import CharCorpus
from labkit.data import load_data
from labkit.device import describe_device, pick_device, set_seed
from labkit.loop import History
from labkit.models import GPTConfig, TinyGPT
from labkit.positional_workbench import loss_by_position
from labkit.presets import TrainConfig, get_preset, preset_for
from labkit.recurrent import (GRULanguageModel, gru_matching, loss_by_position_range, recurrent_recipe,
                              step_time_table)
from labkit.train import train

SEQ_LENS = (32, 64, 128, 256, 512)
QUICK_SEQ_LENS = (32, 64, 128)


def trained(name: str, make_model: Callable[[], nn.Module], corpus: CharCorpus, config: TrainConfig,
            device: torch.device) -> tuple[nn.Module, History, str]:
    """make_model() built from the run's seed and trained with labkit.train.train (every model draws the same
    batches: one TrainConfig seed); the model, its History and its optimizer's name."""
    set_seed(config.seed)
    model = make_model()
    print(f"training {name}: {count_parameters(model):,} parameters, {config.steps} steps of {config.batch_size} × "
          f"{model.config.block_size}, {config.optimizer}", flush=True)
    return model, train(model, corpus, config, device=device), config.optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the smoke preset and three lengths")
    parser.add_argument("--steps", type=int, default=800, help="training steps of each model (not with --quick)")
    parser.add_argument("--adamw-gpt", action="store_true", help="also train the GPT with AdamW")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: labkit.device.pick_device())")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per model and length (median taken)")
    parser.add_argument("--threads", type=int, default=None, help="torch's CPU threads (default: torch's choice)")
    parser.add_argument("--data", default=None, help="a folder or file with Tiny Shakespeare (default: LABKIT_DATA)")
    args = parser.parse_args()
    if args.steps < 1 or args.repeats < 1:
        parser.error(f"--steps and --repeats must be at least 1, got {args.steps} and {args.repeats}")

    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    preset = get_preset("tiny_gpt", "smoke") if args.quick else preset_for(device, "tiny_gpt")
    config = preset.train if args.quick else replace(preset.train, steps=args.steps)
    corpus = CharCorpus.from_text(load_data("tinyshakespeare", args.data))
    gpt_config = GPTConfig(vocab_size=corpus.tokenizer.vocab_size, **preset.shape)
    gru_config = gru_matching(gpt_config)
    print(f"device: {describe_device(device)}, {torch.get_num_threads()} CPU threads; torch {torch.__version__}; "
          f"preset {preset.name!r}: {dict(preset.shape)}; GRU: {gru_config}")

    started = time.perf_counter()
    runs = {"GPT": trained("GPT", lambda: TinyGPT(gpt_config), corpus, config, device)}
    if args.adamw_gpt:
        runs["GPT (AdamW)"] = trained("GPT (AdamW)", lambda: TinyGPT(gpt_config), corpus, recurrent_recipe(config),
                                      device)
    runs["GRU"] = trained("GRU", lambda: GRULanguageModel(gru_config), corpus, recurrent_recipe(config), device)

    print(f"\nvalidation loss after {config.steps} steps on the same batches (batch {config.batch_size} × block "
          f"{gpt_config.block_size}; the mean over {config.eval_batches} fixed batches of each split)")
    print(f"{'model':<12}{'parameters':>12}{'optimizer':>11}{'train loss':>12}{'val loss':>10}{'train s':>9}"
          f"{'tokens/s':>10}")
    for name, (model, history, optimizer) in runs.items():
        print(f"{name:<12}{count_parameters(model):>12,}{optimizer:>11}{history.eval_train[-1]:>12.4f}"
              f"{history.eval_val[-1]:>10.4f}{history.elapsed_s - history.eval_s:>9.0f}{history.tokens_per_s:>10,.0f}")

    block = gpt_config.block_size
    curves = {name: loss_by_position(model, corpus, block, 16, batch_size=16, seed=config.seed)
              for name, (model, _, _) in runs.items()}
    ranges = loss_by_position_range(curves)
    ranges.insert(0, "positions", [f"{a}" if a == b else f"{a}-{b}" for a, b in zip(ranges["first"], ranges["last"])])
    ranges = ranges.drop(columns=["first", "last"])
    ranges.loc[len(ranges)] = ["all", *(float(curve.mean()) for curve in curves.values())]
    print(f"\nvalidation loss at the positions of the context, averaged over doubling ranges (the same 256 windows "
          f"of {block} characters for every model; position t has read t + 1 characters)")
    print(ranges.to_string(index=False, float_format=lambda v: f"{v:.4f}"))

    seq_lens = QUICK_SEQ_LENS if args.quick else SEQ_LENS
    print(f"\nms per training step (forward, backward, AdamW) against the sequence length, batch "
          f"{config.batch_size}, median of {args.repeats}", flush=True)
    table = step_time_table(gpt_config, gru_config, seq_lens, batch_size=config.batch_size, repeats=args.repeats,
                            device=device, seed=config.seed)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"\n({time.perf_counter() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
