"""Checkpoints in safetensors: model weights, optimizer state and a JSON description, written atomically.

A checkpoint is one `.safetensors` file. Tensors: `model.<name>` for the weights, `optim.<i>.<key>` for the
optimizer's per-parameter state, `rng.torch` for the CPU random state. Metadata (strings only, so no pickle
anywhere): the model config, the optimizer's hyperparameters, the step, the tokenizer and anything else the
trainer wants to keep. The file is written to a temporary name and renamed, so a crash mid-write leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

__all__ = ["save_checkpoint", "load_checkpoint", "restore_model", "Checkpoint"]


class Checkpoint(dict):
    """What `load_checkpoint` returns: `model` and `optim` state dicts, `rng` and `meta` (a dict)."""


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    state = optimizer.state_dict()
    tensors = {f"optim.{i}.{key}": value.detach().cpu().contiguous()
               for i, per_param in state["state"].items() for key, value in per_param.items()}
    groups = [{k: v for k, v in group.items()} for group in state["param_groups"]]
    return tensors, groups


def save_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    **meta: Any) -> Path:
    """Write model (+ optimizer) state and `meta` (JSON-serialisable values) to `path`, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Tied weights share storage; safetensors refuses shared tensors, so store each once.
    seen: set[int] = set()
    tensors: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict(keep_vars=False).items():
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        tensors[f"model.{name}"] = tensor.detach().cpu().contiguous()
    groups: list[dict] = []
    if optimizer is not None:
        optim_tensors, groups = _optimizer_tensors(optimizer)
        tensors.update(optim_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    metadata = {"meta": json.dumps(meta), "param_groups": json.dumps(groups), "format": "labkit-checkpoint-1"}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)  # atomic on POSIX and Windows
    finally:  # a write that failed or was interrupted leaves no half-written file behind
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint`; a missing, truncated or foreign file raises ValueError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable safetensors checkpoint (truncated or corrupt?): {err}") from err
    if metadata.get("format") != "labkit-checkpoint-1":
        raise ValueError(f"{path} is a safetensors file but not a labkit checkpoint (no labkit metadata)")
    model = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            per_param.setdefault(int(index), {})[name] = value
    groups = json.loads(metadata["param_groups"])
    optim = {"state": per_param, "param_groups": groups} if groups else None
    return Checkpoint(model=model, optim=optim, rng=tensors.get("rng.torch"), meta=json.loads(metadata["meta"]))


def restore_model(model: nn.Module, checkpoint: Checkpoint) -> None:
    """Load the checkpoint's weights into `model`; a checkpoint of another shape raises a clear ValueError."""
    own = model.state_dict()
    tied = {name for name, t in own.items() for other, u in own.items()
            if other != name and t.data_ptr() == u.data_ptr()}
    saved = checkpoint["model"]
    missing = set(own) - set(saved) - tied
    unexpected = set(saved) - set(own)
    wrong = [f"{k}: checkpoint {tuple(saved[k].shape)} vs model {tuple(own[k].shape)}"
             for k in set(own) & set(saved) if saved[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        details = "; ".join([*(f"missing {k}" for k in sorted(missing)[:3]),
                             *(f"unexpected {k}" for k in sorted(unexpected)[:3]), *wrong[:3]])
        raise ValueError(f"the checkpoint was written by a model of another configuration: {details}")
    model.load_state_dict(saved, strict=False)
