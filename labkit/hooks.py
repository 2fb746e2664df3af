"""Hooks: read what a part of a model computes, knock a part out, or put in what it computed on another input, and
always take the hooks off again, also when the block inside raises.

    with recording(model, ["blocks.0", "blocks.1"]) as seen:    # module name → its output (detached)
        model(idx)
    with ablating_heads(model, [(0, 2)]):                         # layer 0's head 2 writes nothing
        loss = ...
    with patching(model, {"blocks.0": clean["blocks.0"]}):       # block 0's output from the clean run
        patched = model(corrupted_idx)

Modules are named as `model.named_modules()` names them (TinyGPT: "drop" is the embedded input, "blocks.<i>" the
residual stream after block i, "blocks.<i>.self_attn", "blocks.<i>.ff", "norm", "lm_head"). A head's output is its
slice of the attention's concatenated heads, the input of `out_proj`: (batch, seq, d_head) per head.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager

import torch
from torch import Tensor, nn

from labkit.attention import MultiHeadAttention
from labkit.modules import eval_mode

__all__ = ["module_named", "recording", "replacing", "patching", "attention_layers", "recording_heads",
           "ablating_heads", "patching_heads", "residual_stream", "logit_lens"]


def module_named(model: nn.Module, name: str) -> nn.Module:
    """`model`'s submodule called `name`; an unknown name raises ValueError listing names that are there."""
    modules = dict(model.named_modules())
    if name not in modules:
        stem = name.rsplit(".", 1)[0]
        near = [n for n in modules if n and (n.startswith(stem) or stem.startswith(n))][:8] or list(modules)[1:9]
        raise ValueError(f"{type(model).__name__} has no module named {name!r}; it has e.g. {near}")
    return modules[name]


@contextmanager
def _hooked(handles: list[torch.utils.hooks.RemovableHandle]) -> Iterator[None]:
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def recording(model: nn.Module, names: Iterable[str]) -> Iterator[dict[str, Tensor]]:
    """Inside the block, every forward pass stores each named module's output (detached) in the dict it yields:
    name → tensor, the last pass's."""
    seen: dict[str, Tensor] = {}
    handles = []
    for name in list(names):
        def keep(_module: nn.Module, _inputs: tuple, output: Tensor, name: str = name) -> None:
            seen[name] = output.detach()
        handles.append(module_named(model, name).register_forward_hook(keep))
    with _hooked(handles):
        yield seen


@contextmanager
def replacing(model: nn.Module, name: str, change: Callable[[Tensor], Tensor]) -> Iterator[None]:
    """Inside the block, module `name`'s output is replaced by `change(output)`."""
    handle = module_named(model, name).register_forward_hook(lambda _m, _i, output: change(output))
    with _hooked([handle]):
        yield


def _check_like(name: str, new: Tensor, output: Tensor) -> None:
    if new.shape != output.shape:
        raise ValueError(f"the patch for {name!r} has shape {tuple(new.shape)} but the module computes "
                         f"{tuple(output.shape)}: clean and corrupted inputs must have the same length")


@contextmanager
def patching(model: nn.Module, outputs: Mapping[str, Tensor], positions: Iterable[int] | None = None) -> Iterator[None]:
    """Inside the block, each named module's output is `outputs[name]` (from another run, same shape): at every
    position, or only at `positions` (the sequence axis, 1)."""
    where = None if positions is None else list(positions)
    with ExitStack() as stack:
        for name, new in outputs.items():
            def put(output: Tensor, name: str = name, new: Tensor = new) -> Tensor:
                _check_like(name, new, output)
                if where is None:
                    return new.to(output.dtype)
                output = output.clone()
                output[:, where] = new[:, where].to(output.dtype)
                return output
            stack.enter_context(replacing(model, name, put))
        yield


# ----------------------------------------------------------------------------- heads


def attention_layers(model: nn.Module) -> list[MultiHeadAttention]:
    """The self-attention layers of a model made of labkit blocks (`model.blocks[i].self_attn`), in order."""
    layers = [block.self_attn for block in getattr(model, "blocks", [])
              if isinstance(getattr(block, "self_attn", None), MultiHeadAttention)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no labkit attention layers (model.blocks[i].self_attn)")
    return layers


def _check_heads(layers: list[MultiHeadAttention], heads: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    heads = [tuple(h) for h in heads]
    for layer, head in heads:
        if not 0 <= layer < len(layers):
            raise ValueError(f"layer {layer} is out of range: the model has layers 0..{len(layers) - 1}")
        if not 0 <= head < layers[layer].n_heads:
            raise ValueError(f"head {head} is out of range: layer {layer} has heads 0..{layers[layer].n_heads - 1}")
    return heads


@contextmanager
def _before_out_proj(model: nn.Module, change: dict[int, Callable[[Tensor], Tensor | None]]) -> Iterator[None]:
    """Run `change[layer](heads)` on each listed layer's concatenated heads (batch, seq, d_model), the input of its
    out_proj; a returned tensor replaces it."""
    layers = attention_layers(model)

    def hook(f: Callable[[Tensor], Tensor | None]) -> Callable[[nn.Module, tuple], tuple | None]:
        def before(_module: nn.Module, args: tuple) -> tuple | None:
            new = f(args[0])
            return None if new is None else (new,)
        return before

    with _hooked([layers[i].out_proj.register_forward_pre_hook(hook(f)) for i, f in change.items()]):
        yield


@contextmanager
def recording_heads(model: nn.Module) -> Iterator[dict[int, Tensor]]:
    """Inside the block, every forward pass stores each layer's head outputs in the dict it yields: layer →
    (batch, heads, seq, d_head), detached."""
    layers = attention_layers(model)
    seen: dict[int, Tensor] = {}

    def keep(layer: int) -> Callable[[Tensor], None]:
        def store(x: Tensor) -> None:
            batch, seq, _ = x.shape
            seen[layer] = x.detach().view(batch, seq, layers[layer].n_heads, -1).transpose(1, 2)
        return store

    with _before_out_proj(model, {i: keep(i) for i in range(len(layers))}):
        yield seen


def _with_heads(layer: MultiHeadAttention, heads: list[int],
                value: Callable[[Tensor, int], Tensor]) -> Callable[[Tensor], Tensor]:
    """A change of the concatenated heads x (batch, seq, d_model) that sets head h's slice to value(x_h, h)."""
    def change(x: Tensor) -> Tensor:
        x = x.clone()
        for h in heads:
            part = slice(h * layer.d_head, (h + 1) * layer.d_head)
            x[..., part] = value(x[..., part], h)
        return x
    return change


def _by_layer(heads: Iterable[tuple[int, int]]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for layer, head in heads:
        out.setdefault(layer, []).append(head)
    return out


@contextmanager
def ablating_heads(model: nn.Module, heads: Iterable[tuple[int, int]],
                   means: Mapping[int, Tensor] | None = None) -> Iterator[None]:
    """Inside the block, each (layer, head) in `heads` writes nothing (zero ablation), or, with `means` (layer →
    (heads, d_head), e.g. the mean of `recording_heads` over a data set), its mean output (mean ablation)."""
    layers = attention_layers(model)
    chosen = _by_layer(_check_heads(layers, heads))

    def value(layer: int) -> Callable[[Tensor, int], Tensor]:
        if means is None:
            return lambda x, h: torch.zeros_like(x)
        return lambda x, h: means[layer][h].to(x.dtype).expand_as(x)

    with _before_out_proj(model, {i: _with_heads(layers[i], hs, value(i)) for i, hs in chosen.items()}):
        yield


@contextmanager
def patching_heads(model: nn.Module, outputs: Mapping[tuple[int, int], Tensor]) -> Iterator[None]:
    """Inside the block, each (layer, head)'s output is `outputs[(layer, head)]` (batch, seq, d_head), e.g. from
    `recording_heads` on another input of the same length."""
    layers = attention_layers(model)
    chosen = _by_layer(_check_heads(layers, outputs))

    def value(layer: int) -> Callable[[Tensor, int], Tensor]:
        def patched(x: Tensor, h: int) -> Tensor:
            new = outputs[(layer, h)]
            _check_like(f"layer {layer}, head {h}", new, x)
            return new.to(x.dtype)
        return patched

    with _before_out_proj(model, {i: _with_heads(layers[i], hs, value(i)) for i, hs in chosen.items()}):
        yield


# ----------------------------------------------------------------------------- the residual stream


@torch.no_grad()
def residual_stream(model: nn.Module, idx: Tensor) -> Tensor:
    """(layers + 1, batch, seq, d_model): a TinyGPT's residual stream on idx (batch, seq), in eval mode: the
    embedded input, then the stream after each block."""
    names = ["drop", *(f"blocks.{i}" for i in range(len(model.blocks)))]
    with eval_mode(model), recording(model, names) as seen:
        model(idx)
    return torch.stack([seen[name] for name in names])


@torch.no_grad()
def logit_lens(model: nn.Module, idx: Tensor) -> Tensor:
    """(layers + 1, batch, seq, vocab): the residual stream after the embedding and after each block, read as the
    model reads its last one (final LayerNorm, then the output layer). The last row is the model's logits."""
    return model.lm_head(model.norm(residual_stream(model, idx)))
