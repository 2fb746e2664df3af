"""The one training loop every labkit trainer runs.

A trainer says what is particular to it, and `run` does the rest:

    history = run(model, config, batch=lambda step: corpus.batch("train", 32, 128, generator=batch_generator(0, step)),
                  loss=lambda net, batch: F.cross_entropy(net(batch[0]).flatten(0, 1), batch[1].flatten()),
                  evaluate=lambda: {"val": ...})

Each step: batch `step` (drawn by the caller, usually from `batch_generator(seed, step)`, so that a resumed run
sees the same batches as one that never stopped) → the loss under autocast → backward → a stop before a NaN or
inf loss reaches the weights → clip the gradients' norm → AdamW (or Muon + AdamW) at `lr_at(step)` (warm-up, then
cosine or linear decay). Every `eval_every` steps, at the end and when the time limit (of training, evaluations not
counted) runs out: `evaluate()`, an atomic checkpoint when asked for, then `on_eval(history)` (the live plots).
Ctrl-C stops cleanly and names the checkpoint that survives. Under torchrun each process takes its own rows of the
same global batch (DistributedDataParallel).

bf16 autocast follows one rule: `config.bf16` and `labkit.device.bf16_is_fast(device)`; the presets say where
it is on.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm.auto import tqdm

from labkit.checkpoint import load_checkpoint, restore_model, save_checkpoint
from labkit.device import bf16_is_fast
from labkit.modules import eval_mode
from labkit.presets import TrainConfig
from labkit.validate import require_positive_int

__all__ = ["History", "trailing_mean", "fixed_batch_losses", "lr_at", "batch_generator", "autocast", "make_optimizer",
           "hidden_matrices", "MuonAdamW", "interrupt_notice", "distributed", "run"]


@dataclass
class History:
    """What a run measured. losses: name → one value per step ("loss" is the one trained on; nan on a step where
    that part was not computed, e.g. NSP on a batch without sentence pairs); evals: name → one value per
    evaluation, taken at eval_steps; tokens_per_s over the training time of this session; elapsed_s (wall time)
    over all sessions, of which eval_s went to evaluations, checkpoints and on_eval (elapsed_s - eval_s: training)."""

    step: int = 0  # steps done
    losses: dict[str, list[float]] = field(default_factory=dict)
    eval_steps: list[int] = field(default_factory=list)
    evals: dict[str, list[float]] = field(default_factory=dict)
    tokens_per_s: float = 0.0
    elapsed_s: float = 0.0
    eval_s: float = 0.0
    interrupted: bool = False

    @property
    def train_loss(self) -> list[float]:
        """The loss trained on, one per step."""
        return self.losses.get("loss", [])

    @property
    def eval_train(self) -> list[float]:
        """The loss on fixed training batches, one per evaluation."""
        return self.evals.get("train", [])

    @property
    def eval_val(self) -> list[float]:
        """The loss on fixed held-out batches, one per evaluation."""
        return self.evals.get("val", [])

    def record_step(self, values: Mapping[str, float]) -> None:
        """Append one step's values; a name this step lacks gets nan, a name seen first gets nan for earlier steps."""
        for name in values:
            if name not in self.losses:
                self.losses[name] = [math.nan] * self.step
        for name, recorded in self.losses.items():
            recorded.append(values.get(name, math.nan))
        self.step += 1

    def record_eval(self, scores: Mapping[str, float]) -> None:
        self.eval_steps.append(self.step)
        for name, value in scores.items():
            self.evals.setdefault(name, []).append(float(value))

    def to_dict(self) -> dict:
        return asdict(self)


def trailing_mean(values: Sequence[float], k: int) -> np.ndarray:
    """(n,) → (n,): the mean of each value and the k - 1 before it (fewer at the start), nan values left out of every
    mean and left nan themselves. How the lab's plots smooth a per-step loss curve or a per-position one."""
    require_positive_int("k", k)
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    sums = np.cumsum(np.where(finite, values, 0.0))
    counts = np.cumsum(finite)
    before = np.maximum(np.arange(len(values)) - k, -1)
    window_sums = sums - np.where(before >= 0, sums[before], 0.0)
    window_counts = counts - np.where(before >= 0, counts[before], 0)
    return np.where(finite, window_sums / np.maximum(window_counts, 1), np.nan)


@torch.no_grad()
def fixed_batch_losses(model: nn.Module, loss: Callable[[str, torch.Generator], Tensor], splits: Mapping[str, str],
                       batches: int, seed: int = 0) -> dict[str, float]:
    """{name: the mean of `loss(split, generator)` over `batches` batches} for each name → split, in eval mode and
    without gradients. Each split's generator is seeded by `seed` alone, so every call scores the same batches: the
    periodic train / validation estimates of a run."""
    out = {}
    with eval_mode(model):
        for name, split in splits.items():
            generator = torch.Generator().manual_seed(seed + 12345)
            out[name] = torch.stack([loss(split, generator) for _ in range(batches)]).mean().item()
    return out


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up to `lr`, then cosine (or linear) decay to `min_lr` at the last step (steps count from 0)."""
    if not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an int >= 0, got {step!r}")
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = min((step - config.warmup_steps) / max(1, config.steps - config.warmup_steps), 1.0)
    fall = 0.5 * (1 + math.cos(math.pi * progress)) if config.schedule == "cosine" else 1 - progress
    return config.min_lr + (config.lr - config.min_lr) * fall


def batch_generator(seed: int, step: int) -> torch.Generator:
    """The generator that draws step `step`'s batch: the same for a run resumed there as for one that never stopped."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def autocast(device: torch.device, bf16: bool = True):
    """bf16 autocast when `bf16` and the device multiplies bf16 in hardware (`bf16_is_fast`); else a no-op context."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and bf16_is_fast(device))


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer | MuonAdamW:
    """AdamW with weight decay on the matrices (≥ 2-D: linear weights, embeddings) and none on biases and norms; with
    `config.optimizer == "muon"`, `MuonAdamW` instead. Parameters with requires_grad=False (a frozen encoder) are
    left out."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{type(model).__name__} has no parameter with requires_grad=True: nothing to train")
    if config.optimizer == "muon":
        return MuonAdamW(model, config)
    return _adamw(params, config)


def _adamw(params: list[nn.Parameter], config: TrainConfig) -> torch.optim.AdamW:
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, betas=(0.9, 0.99))


def hidden_matrices(model: nn.Module) -> list[nn.Parameter]:
    """The 2-D weights of the linear layers inside `model.blocks` (attention's projections, the feed-forward's
    layers): the matrices Muon trains. Embeddings and the output layer are lookups and readouts, not hidden maps."""
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.Module):
        raise ValueError(f"optimizer='muon' trains the weight matrices of a model's `blocks`, and "
                         f"{type(model).__name__} has no `blocks`: use optimizer='adamw'")
    return [m.weight for m in blocks.modules() if isinstance(m, nn.Linear) and m.weight.requires_grad]


class MuonAdamW:
    """`torch.optim.Muon` on `hidden_matrices(model)`, AdamW (as `make_optimizer`'s) on every other parameter, stepped
    together. Muon's step is scaled to match AdamW's update size (Moonshot's `match_rms_adamw`), so both follow the
    one learning-rate schedule and weight decay. `param_groups` lists Muon's groups, then AdamW's; `state_dict` is
    one optimizer's state dict over both (Muon's parameters numbered first), as checkpoints store it."""

    def __init__(self, model: nn.Module, config: TrainConfig) -> None:
        matrices = hidden_matrices(model)
        chosen = {id(p) for p in matrices}
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in chosen]
        self.muon = torch.optim.Muon(matrices, lr=config.lr, weight_decay=config.weight_decay,
                                     adjust_lr_fn="match_rms_adamw")
        self.adamw = _adamw(rest, config)

    @property
    def param_groups(self) -> list[dict]:
        return self.muon.param_groups + self.adamw.param_groups

    def step(self) -> None:
        self.muon.step()
        self.adamw.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.muon.zero_grad(set_to_none)
        self.adamw.zero_grad(set_to_none)

    def state_dict(self) -> dict:
        muon, adamw = self.muon.state_dict(), self.adamw.state_dict()
        n = sum(len(group["params"]) for group in muon["param_groups"])
        return {"state": {**muon["state"], **{i + n: s for i, s in adamw["state"].items()}},
                "param_groups": muon["param_groups"] + [{**g, "params": [i + n for i in g["params"]]}
                                                        for g in adamw["param_groups"]]}

    def load_state_dict(self, state: dict) -> None:
        k = len(self.muon.param_groups)
        if len(state["param_groups"]) != k + len(self.adamw.param_groups):
            raise ValueError(f"the saved optimizer state has {len(state['param_groups'])} parameter groups; "
                             f"Muon + AdamW has {k + len(self.adamw.param_groups)} (saved by another optimizer?)")
        n = sum(len(group["params"]) for group in state["param_groups"][:k])
        self.muon.load_state_dict({"state": {i: s for i, s in state["state"].items() if i < n},
                                   "param_groups": state["param_groups"][:k]})
        self.adamw.load_state_dict({"state": {i - n: s for i, s in state["state"].items() if i >= n},
                                    "param_groups": [{**g, "params": [i - n for i in g["params"]]}
                                                     for g in state["param_groups"][k:]]})


def interrupt_notice(step: int, eval_steps: list[int], checkpoint: str | os.PathLike | None) -> str:
    """What an interrupted run says: where it stopped, and which checkpoint (written at evaluations) survives."""
    kept = f"the checkpoint {checkpoint} (step {eval_steps[-1]}) is intact" if (
        checkpoint is not None and eval_steps) else "no checkpoint was written"
    return f"interrupted at step {step}; {kept}"


def distributed() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _map(batch: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """Apply `fn` to every tensor of a batch: a tensor, or a tuple, list or dict of batches."""
    if isinstance(batch, Tensor):
        return fn(batch)
    if isinstance(batch, Mapping):
        return {k: _map(v, fn) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        values = [_map(v, fn) for v in batch]
        return type(batch)(*values) if hasattr(batch, "_fields") else type(batch)(values)  # a NamedTuple too
    return batch


def _flat(batch: Any) -> Iterator[Tensor]:
    """The tensors of a batch, in order."""
    if isinstance(batch, Tensor):
        yield batch
    elif isinstance(batch, Mapping):
        for value in batch.values():
            yield from _flat(value)
    elif isinstance(batch, (tuple, list)):
        for value in batch:
            yield from _flat(value)


def _describes(saved: object, config: Any) -> bool:
    """Whether a checkpoint's model_config is `config`; fields added since it was saved take their defaults."""
    try:
        return type(config)(**saved) == config
    except (TypeError, ValueError):
        return False


class _Smoothed:
    """Running values for the progress bar: an exponential moving average of each name's finite values."""

    def __init__(self, decay: float = 0.9) -> None:
        self.decay, self.values = decay, {}

    def update(self, values: Mapping[str, float]) -> dict[str, str]:
        for name, value in values.items():
            if math.isfinite(value):
                old = self.values.get(name)
                self.values[name] = value if old is None else self.decay * old + (1 - self.decay) * value
        return {name: f"{value:.3f}" for name, value in self.values.items()}


def run(model: nn.Module, config: TrainConfig, *, batch: Callable[[int], Any],
        loss: Callable[[nn.Module, Any], Tensor | Mapping[str, Tensor]],
        evaluate: Callable[[], Mapping[str, float]] | None = None, device: torch.device | None = None,
        optimizer: torch.optim.Optimizer | MuonAdamW | None = None, tokens: Callable[[Any], int] | None = None,
        checkpoint: str | os.PathLike | None = None, resume: bool = False, model_config: Any = None,
        meta: Mapping[str, Any] | None = None, history_type: type[History] = History,
        on_eval: Callable[[History], None] | None = None, progress: bool = True, desc: str = "training") -> History:
    """Train `model` for `config.steps` steps and return what it measured (a `history_type`).

    batch(step): the global batch of that step, on the CPU: a tensor, or a tuple or dict of them, rows first.
    loss(net, batch): the loss to train on (a scalar tensor), or a dict with it as "loss" and its parts (a part left
    out on a step is recorded as nan); `net` is the model, wrapped for DDP or compiled when that is on.
    evaluate(): the scores to record (e.g. {"train": …, "val": …}); it sets eval mode itself.
    optimizer: default `make_optimizer(model, config)`; its learning rate is set to `lr_at(step)` every step.
    tokens(batch): how many tokens a batch holds (default: its first tensor's numel), for tokens_per_s.
    checkpoint: a .safetensors path written (atomically) at every evaluation with the weights, the optimizer, the
    random state, the History, `model_config.to_dict()` and `meta`; resume=True continues from it if it exists,
    refusing one written for another `model_config`.
    on_eval(history): called after every evaluation (live plots), on the first process only.
    """
    device = device or next(model.parameters()).device
    rank, world = distributed()
    if config.batch_size % world:
        raise ValueError(f"batch_size={config.batch_size} must be divisible by the number of processes ({world})")
    model.to(device)
    optimizer = optimizer or make_optimizer(model, config)
    history = history_type()
    if resume and checkpoint is not None and Path(checkpoint).exists():
        saved = load_checkpoint(checkpoint)
        if model_config is not None and not _describes(saved["meta"].get("model_config"), model_config):
            raise ValueError(f"{checkpoint} holds a model with config {saved['meta'].get('model_config')}, "
                             f"not {model_config.to_dict()}")
        restore_model(model, saved)
        optimizer.load_state_dict(saved["optim"])
        torch.set_rng_state(saved["rng"])
        history = history_type(**saved["meta"]["history"])
        history.interrupted = False
        if rank == 0:
            print(f"resumed from {checkpoint} at step {history.step}")
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        net = torch.compile(net)
    count = tokens or (lambda b: next(iter(_flat(b))).numel())

    def evaluate_and_save() -> None:
        began = time.perf_counter()
        if evaluate is not None:
            history.record_eval(evaluate())
        if checkpoint is not None and rank == 0:
            save_checkpoint(checkpoint, model, optimizer, **(meta or {}), train_config=asdict(config),
                            model_config=model_config.to_dict() if model_config is not None else None,
                            history=history.to_dict(), processes=world)
        if on_eval is not None and rank == 0:
            on_eval(history)
        now = time.perf_counter()
        history.eval_s, history.elapsed_s = history.eval_s + now - began, earlier_s + now - start

    model.train()
    bar = tqdm(total=config.steps, initial=history.step, desc=desc, disable=not progress or rank != 0)
    smoothed = _Smoothed()
    start, earlier_s, earlier_eval_s, seen = time.perf_counter(), history.elapsed_s, history.eval_s, 0
    try:
        while history.step < config.steps:
            step, lr = history.step, lr_at(history.step, config)
            global_batch = batch(step)
            seen += int(count(global_batch))
            rows = _map(global_batch, lambda t: t[rank::world].to(device, non_blocking=True))  # this process's rows
            with autocast(device, config.bf16):
                out = loss(net, rows)
            parts = dict(out) if isinstance(out, Mapping) else {"loss": out}
            parts["loss"].backward()
            values = torch.stack([v.detach().float() for v in parts.values()])
            if world > 1:
                dist.all_reduce(values, op=dist.ReduceOp.AVG)
            step_values = dict(zip(parts, values.tolist()))  # the one device → host sync of the step
            _check_finite(step_values["loss"], step, lr, checkpoint, history)
            for group in optimizer.param_groups:
                group["lr"] = lr
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            history.record_step(step_values)
            elapsed = time.perf_counter() - start
            training_s = elapsed - (history.eval_s - earlier_eval_s)  # this session's, evaluations left out
            history.tokens_per_s, history.elapsed_s = seen / training_s, earlier_s + elapsed
            bar.update(1)
            bar.set_postfix(**smoothed.update(step_values), lr=f"{lr:.1e}")
            out_of_time = config.time_limit_s is not None and training_s >= config.time_limit_s
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


def _check_finite(loss: float, step: int, lr: float, checkpoint: str | os.PathLike | None, history: History) -> None:
    """Stop before a NaN or inf loss reaches the weights, saying where the last good state is."""
    if math.isfinite(loss):
        return
    kept = (f"the checkpoint {checkpoint} holds step {history.eval_steps[-1]}" if checkpoint and history.eval_steps
            else "no checkpoint was written yet")
    raise FloatingPointError(f"the training loss became {loss} at step {step} (lr {lr:.2g}); the weights were not "
                             f"updated with it and {kept}. Lower TrainConfig.lr or grad_clip, or train in fp32 "
                             f"(bf16=False)")
