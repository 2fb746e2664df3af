"""The positional-encoding workbench: one tiny language model trained with each position scheme, then compared.

Every variant gets the same model shape, the same data, the same batches (one seed), the same optimizer and the
same number of steps; only `GPTConfig.position` differs. Two measurements follow:

* the validation loss at the training context (`VariantRun.val_loss`);
* the loss at each position of windows several times longer than the training context (`loss_by_position`):
  does the model still predict well at positions it never saw?

The model is causal, so position t of a long window sees exactly what it would see in a window of t + 1 tokens:
the mean of the first L positions' losses is the loss on windows of L tokens (`mean_loss_up_to`).

    run = train_variant("rope", corpus)                  # one call per variant
    results = compare_positions(corpus)                  # all five, as plain numbers
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from labkit.blocks import count_parameters
from labkit.corpus import CharCorpus
from labkit.device import pick_device, set_seed
from labkit.loop import History
from labkit.models import POSITIONS, GPTConfig, TinyGPT, check_position
from labkit.modules import eval_mode
from labkit.presets import Preset, preset_for
from labkit.train import train
from labkit.validate import require_positive_int

__all__ = ["VariantRun", "VariantResult", "train_variant", "loss_by_position",
           "mean_loss_up_to", "evaluate_variant", "compare_positions"]


@dataclass
class VariantRun:
    """One trained variant: its position scheme, the model (in eval mode), the run's History, and its preset."""

    position: str
    model: TinyGPT
    history: History
    preset: str

    @property
    def val_loss(self) -> float:
        """The run's last validation estimate, on windows of block_size tokens (the same windows for every run)."""
        return self.history.eval_val[-1]


def train_variant(position: str, corpus: CharCorpus, preset: Preset | None = None, *,
                  device: torch.device | None = None, on_eval: Callable[[History], None] | None = None,
                  progress: bool = True) -> VariantRun:
    """Train a TinyGPT with `GPTConfig.position = position` on `corpus` under `preset` (default: the
    "positional_workbench" preset for the device, "smoke" under LABKIT_FAST=1). Same shape, seed, batches and steps
    for every position."""
    check_position("position", position)
    device = device or pick_device()
    preset = preset or preset_for(device, "positional_workbench")
    if not isinstance(preset, Preset):
        raise TypeError(f"preset must be a labkit.presets.Preset (e.g. preset_for(device, 'positional_workbench')), "
                        f"got {type(preset).__name__}")
    set_seed(preset.train.seed)  # the same random state before every variant's initialisation
    model = TinyGPT(GPTConfig(vocab_size=corpus.tokenizer.vocab_size, position=position, **preset.shape))
    history = train(model, corpus, preset.train, device=device, on_eval=on_eval, progress=progress)
    return VariantRun(position, model.eval(), history, preset.name)


@torch.no_grad()
def loss_by_position(model: TinyGPT, corpus: CharCorpus, seq_len: int, batches: int, *, batch_size: int = 16,
                     seed: int = 0) -> Tensor:
    """(seq_len,): the mean validation cross-entropy at each position 0..seq_len-1, over `batches` × `batch_size`
    windows of seq_len tokens drawn from the "val" split by a generator seeded with `seed` (the same windows for
    every model). seq_len may exceed the training context for every position scheme but the learned one."""
    require_positive_int("seq_len", seq_len)
    require_positive_int("batches", batches)
    require_positive_int("batch_size", batch_size)
    model.check_length(seq_len)  # before any window is drawn
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    total = torch.zeros(seq_len, dtype=torch.float64)
    with eval_mode(model):
        for _ in range(batches):
            x, y = corpus.batch("val", batch_size, seq_len, generator=generator, device=device)
            logits = model(x)  # (batch, seq_len, vocab)
            losses = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="none")  # (batch·seq,)
            total += losses.view(batch_size, seq_len).sum(0).double().cpu()
    return (total / (batches * batch_size)).float()


def mean_loss_up_to(per_position: Tensor | Sequence[float], length: int) -> float:
    """The loss on windows of `length` tokens, from a causal model's per-position losses (seq,): their mean over
    positions 0..length-1."""
    per_position = torch.as_tensor(per_position, dtype=torch.float64)
    require_positive_int("length", length)
    if per_position.dim() != 1 or length > len(per_position):
        raise ValueError(f"per_position must be 1-D with at least length={length} entries, got shape "
                         f"{tuple(per_position.shape)}")
    return float(per_position[:length].mean())


@dataclass(frozen=True)
class VariantResult:
    """What one variant measured, as plain numbers.

    loss_by_position: (longest,) the mean validation loss at each position, longest = max(factors) · block_size;
    nan past the longest window the variant runs on. loss_at: factor → the loss on windows of factor ·
    block_size tokens, None where the variant cannot run that far.
    """

    position: str
    block_size: int
    parameters: int
    train_seconds: float
    val_loss: float
    loss_by_position: list[float]
    loss_at: dict[int, float | None]


def _check_factors(factors: Sequence[int]) -> tuple[int, ...]:
    if not factors or any(not isinstance(f, int) or isinstance(f, bool) or f < 1 for f in factors):
        raise ValueError(f"factors must be positive ints (multiples of the training context), got {factors!r}")
    return tuple(sorted(set(factors)))


def evaluate_variant(run: VariantRun, corpus: CharCorpus, factors: Sequence[int] = (1, 2, 4), *, batches: int = 8,
                     batch_size: int = 16, seed: int = 0) -> VariantResult:
    """Measure a trained variant: its val loss, and `loss_by_position` on windows of max(factors) × block_size
    tokens (only up to block_size for the learned table)."""
    factors = _check_factors(factors)
    block_size = run.model.config.block_size
    longest = factors[-1] * block_size
    reach = longest if run.model.max_len is None else min(longest, run.model.max_len)
    curve = loss_by_position(run.model, corpus, reach, batches, batch_size=batch_size, seed=seed).tolist()
    curve += [math.nan] * (longest - reach)
    loss_at = {f: mean_loss_up_to(curve, f * block_size) if f * block_size <= reach else None for f in factors}
    return VariantResult(run.position, block_size, count_parameters(run.model), run.history.elapsed_s, run.val_loss,
                         curve, loss_at)


def compare_positions(corpus: CharCorpus, preset: Preset | None = None, positions: Sequence[str] = POSITIONS,
                      factors: Sequence[int] = (1, 2, 4), *, device: torch.device | None = None, batches: int = 8,
                      batch_size: int = 16, progress: bool = True) -> dict[str, VariantResult]:
    """Train and measure every position scheme in `positions` under one preset: position → VariantResult."""
    for position in positions:
        check_position("position", position)
    factors = _check_factors(factors)
    results = {}
    for position in positions:
        start = time.perf_counter()
        run = train_variant(position, corpus, preset, device=device, progress=progress)
        results[position] = evaluate_variant(run, corpus, factors, batches=batches, batch_size=batch_size)
        if progress:
            print(f"{position:>10}: val loss {run.val_loss:.3f}, {time.perf_counter() - start:.0f} s")
    return results
