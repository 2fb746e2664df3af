"""Notebook 04's ladder: the hand-written GPT copied into `TinyGPT` ("what you wrote is what labkit runs"), and
the rungs' results as a table (`Rung`, `ladder_table`; `labkit.viz.ladder` draws them).

Notebook 04 builds a GPT rung by rung from small modules the learner writes. Their parameters have these names,
and `tiny_gpt_tensors` renames them (weights or gradients alike) to `TinyGPT`'s:

    notebook 04 (the ladder's GPT)          TinyGPT                                  how
    token_emb.weight                        token_emb.weight                         as it is
    pos_emb.weight                          pos_emb.table.weight                     as it is
    blocks.i.ln1.weight / ln2.weight        blocks.i.norm1.weight / norm2.weight     as it is
    blocks.i.attn.heads.h.query.weight      blocks.i.self_attn.q_proj.weight         heads stacked: head h is
    (key, value likewise)                   (k_proj, v_proj)                         rows h·d_head..(h+1)·d_head
    blocks.i.attn.proj.weight               blocks.i.self_attn.out_proj.weight       as it is
    blocks.i.ff.up.weight / down.weight     blocks.i.ff.linear1.weight / linear2     as it is
    ln_f.weight                             norm.weight                              as it is
    lm_head.weight                          lm_head.weight                           tied to token_emb or its own

Stacking the heads' rows is what `split_heads` undoes: TinyGPT computes every head's queries with one matrix and
then cuts its output into n_head slices of d_head features, slice h being head h. The ladder's GPT has no biases
(`GPTConfig.bias=False`), learned positions, GELU feed-forward layers 4·d_model wide and pre-LN blocks, as TinyGPT;
an output layer that shares the token embedding's matrix gives `tie_head=True`, one with its own `tie_head=False`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from labkit.models import GPTConfig, TinyGPT

__all__ = ["tiny_gpt_tensors", "ladder_config", "to_tiny_gpt", "Rung", "ladder_table"]

_RENAMES = (
    (r"pos_emb\.weight", "pos_emb.table.weight"),
    (r"blocks\.(\d+)\.ln1\.weight", r"blocks.\1.norm1.weight"),
    (r"blocks\.(\d+)\.ln2\.weight", r"blocks.\1.norm2.weight"),
    (r"blocks\.(\d+)\.attn\.proj\.weight", r"blocks.\1.self_attn.out_proj.weight"),
    (r"blocks\.(\d+)\.ff\.up\.weight", r"blocks.\1.ff.linear1.weight"),
    (r"blocks\.(\d+)\.ff\.down\.weight", r"blocks.\1.ff.linear2.weight"),
    (r"ln_f\.weight", "norm.weight"),
    (r"token_emb\.weight", "token_emb.weight"),
)
_HEAD = re.compile(r"blocks\.(\d+)\.attn\.heads\.(\d+)\.(query|key|value)\.weight")
_PROJ = {"query": "q_proj", "key": "k_proj", "value": "v_proj"}


def tiny_gpt_tensors(tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The ladder GPT's tensors by name (a state_dict, or {name: p.grad}) → the same tensors under TinyGPT's names.

    Each layer's per-head query / key / value matrices (d_head, d_model) are stacked into one (d_model, d_model).
    A tied `lm_head.weight` (the token embedding's memory, as a state_dict lists it) is left out, as
    named_parameters() leaves it out. Raises ValueError naming the first tensor it cannot place.
    """
    out: dict[str, Tensor] = {}
    heads: dict[tuple[str, str], dict[int, Tensor]] = {}
    for name, tensor in tensors.items():
        if name == "lm_head.weight":
            embedding = tensors.get("token_emb.weight")
            if embedding is None or tensor.data_ptr() != embedding.data_ptr():  # not tied: its own matrix
                out[name] = tensor
            continue
        if match := _HEAD.fullmatch(name):
            layer, head, which = match.groups()
            heads.setdefault((layer, which), {})[int(head)] = tensor
            continue
        for pattern, target in _RENAMES:
            if re.fullmatch(pattern, name):
                out[re.sub(pattern, target, name)] = tensor
                break
        else:
            hint = " (TinyGPT's ladder has no biases: build every nn.Linear and nn.LayerNorm with bias=False)" \
                if name.endswith(".bias") else ""
            raise ValueError(f"{name!r} has no place in TinyGPT{hint}; the names the copy reads are listed in "
                             f"labkit.ladder's docstring")
    for (layer, which), by_head in heads.items():
        if sorted(by_head) != list(range(len(by_head))):
            raise ValueError(f"block {layer} has {which} weights for heads {sorted(by_head)}; expected 0..n_head-1")
        out[f"blocks.{layer}.self_attn.{_PROJ[which]}.weight"] = torch.cat([by_head[h] for h in sorted(by_head)])
    return out


def ladder_config(model: nn.Module) -> GPTConfig:
    """The GPTConfig of the ladder's GPT `model`, read from its parameters' shapes."""
    params = dict(model.named_parameters())
    for needed in ("token_emb.weight", "pos_emb.weight", "blocks.0.attn.heads.0.query.weight"):
        if needed not in params:
            raise ValueError(f"the model has no parameter {needed!r}: is it notebook 04's GPT (token_emb, pos_emb, "
                             f"blocks of ln1 / attn.heads / attn.proj / ln2 / ff.up / ff.down, ln_f, lm_head)?")
    vocab_size, d_model = params["token_emb.weight"].shape
    n_layer = len({name.split(".")[1] for name in params if name.startswith("blocks.")})
    n_head = len({name.split(".")[4] for name in params if name.startswith("blocks.0.attn.heads.")})
    return GPTConfig(vocab_size=vocab_size, block_size=params["pos_emb.weight"].shape[0], n_layer=n_layer,
                     n_head=n_head, d_model=d_model, position="learned", tie_head="lm_head.weight" not in params)


def to_tiny_gpt(model: nn.Module) -> TinyGPT:
    """A TinyGPT holding `model`'s weights (the ladder's GPT from notebook 04), on its device, in its dtype and its
    train/eval mode. Raises ValueError if a weight is missing, left over or of another shape."""
    with torch.random.fork_rng():  # TinyGPT's random initialisation is overwritten: leave the caller's RNG alone
        tiny = TinyGPT(ladder_config(model)).to(next(model.parameters()))  # its device and dtype
    state = tiny_gpt_tensors(model.state_dict())
    expected = {name: p.shape for name, p in tiny.named_parameters()}
    missing, extra = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    if missing or extra:
        raise ValueError(f"the weights do not map onto TinyGPT: missing {missing}, left over {extra}")
    for name, tensor in state.items():
        if tensor.shape != expected[name]:
            raise ValueError(f"{name} has shape {tuple(tensor.shape)} in your model's copy, TinyGPT expects "
                             f"{tuple(expected[name])}")
    with torch.no_grad():
        for name, p in tiny.named_parameters():
            p.copy_(state[name])
    return tiny.train(model.training)


@dataclass(frozen=True)
class Rung:
    """One rung of the ladder after training: its size, its losses (estimated on fixed batches), its time, and the
    loss of every training step."""

    parameters: int
    train: float
    val: float
    seconds: float
    curve: list[float]


def ladder_table(rungs: Mapping[str, Rung]) -> str:
    """A Markdown table of the rungs in order, with what each one gained on the validation loss."""
    if not rungs:
        raise ValueError("rungs is empty: train at least one rung first")
    rows = ["| rung | parameters | train loss | val loss | gain on val | seconds |", "|---|---:|---:|---:|---:|---:|"]
    previous = None
    for name, rung in rungs.items():
        gain = "" if previous is None else f"{previous - rung.val:+.3f}"
        rows.append(f"| {name} | {rung.parameters:,} | {rung.train:.3f} | {rung.val:.3f} | {gain} | "
                    f"{rung.seconds:.1f} |")
        previous = rung.val
    return "\n".join(rows)
