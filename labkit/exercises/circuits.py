"""Notebook 11's exercises, in the order the notebook teaches them: a forward hook that reads one module's output
and always comes off again; the logit lens; direct logit attribution at one position; a head knocked out of the
concatenated heads; the induction score of a layer's heads; and activation patching, one position at a time. The
rules are labkit's (`labkit.hooks`, `labkit.circuits`)."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.exercises import expect, exercise
from labkit.exercises._compare import expect_tensor, max_difference, same, seeded
from labkit.hooks import patching, recording
from labkit.masks import causal_mask
from labkit.models import GPTConfig, TinyGPT


def _hooks_on(model: nn.Module) -> int:
    """How many forward hooks and forward pre-hooks sit on `model` and its submodules."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


# --- a hook that reads ----------------------------------------------------------------------------------------------

class _Stop(RuntimeError):
    """The error `_FailsAfter` raises on purpose."""


class _FailsAfter(nn.Module):
    """A model whose forward pass runs `inner` and then fails: a hook on a module inside must come off anyway."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        self.inner(x)
        raise _Stop("the forward pass failed on purpose, after the hooked module ran")


def reference_record_output(model: nn.Module, module: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    kept: list[Tensor] = []
    handle = module.register_forward_hook(lambda _module, _inputs, output: kept.append(output))
    try:
        out = model(x)
    finally:  # also when model(x) raises
        handle.remove()
    return out, kept[-1]


@exercise("record_output", "11",
          task="record_output(model, module, x) → (model's output, module's output): register a forward hook on "
               "`module` (a submodule of model) that keeps what the module returns, run model(x), and remove the "
               "hook again — also when model(x) raises",
          hint="handle = module.register_forward_hook(lambda m, inputs, output: kept.append(output)); then "
               "try: out = model(x) finally: handle.remove()",
          reference=reference_record_output)
def check_record_output(answer: Callable[..., Any]) -> None:
    with seeded(11):
        model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3))
        x = torch.randn(4, 5)
    module = model[2]
    with torch.no_grad():
        model_out, module_in, module_out = model(x), model[:2](x), model[:3](x)
        result = answer(model, module, x.clone())
    expect(isinstance(result, tuple) and len(result) == 2,
           f"record_output returned {type(result).__name__}; return a pair (model's output, module's output)")
    out, kept = result
    expect(not isinstance(kept, tuple), "the module's output came back as a tuple: that is the hook's `inputs` "
                                        "argument; keep `output`, the hook's third argument")
    expect(not (same(out, module_out) and same(kept, model_out)),
           "the two are swapped: return (the model's output, the module's output)")
    expect(not same(kept, model_out), "the second tensor is the model's output again: return what the hook kept, "
                                      "the module's output")
    expect(not same(kept, module_in), "the second tensor is the module's input: a forward hook is called as "
                                      "hook(module, inputs, output); keep `output`")
    out = expect_tensor(out, tuple(model_out.shape), "the model's output from record_output")
    expect(same(out, model_out),
           f"the first tensor differs from model(x) by up to {max_difference(out, model_out):.3g}")
    kept = expect_tensor(kept, tuple(module_out.shape), "the module's output from record_output")
    expect(same(kept, module_out), f"the second tensor differs from the module's output by up to "
                                   f"{max_difference(kept, module_out):.3g}")
    left = _hooks_on(model)
    expect(left == 0, f"{left} hook(s) still on the model after record_output returned: remove yours, "
                      f"handle.remove()")
    failing = _FailsAfter(model[:3])
    try:
        answer(failing, module, x.clone())
    except _Stop:
        pass
    else:
        expect(False, "model(x) raised, but record_output returned anyway: let the error through (try/finally, "
                      "no except)")
    left = _hooks_on(failing)
    expect(left == 0, f"model(x) raised and {left} hook(s) stayed on the module: remove the hook in a `finally:` "
                      f"block (or a with block), so that it comes off when the forward pass fails too")


# --- the logit lens ---------------------------------------------------------------------------------------------

def reference_lens(stream: Tensor, norm: nn.Module, unembed: nn.Module) -> Tensor:
    return unembed(norm(stream))


@exercise("lens", "11",
          task="lens(stream, norm, unembed) → (layers + 1, seq, vocab): the logit lens. stream (layers + 1, seq, "
               "d_model) is the residual stream after the embedding and after every block; read every layer as the "
               "model reads its last one, through its final LayerNorm `norm` and its output layer `unembed`, and "
               "return the logits",
          hint="unembed(norm(stream)): both act on the last axis, so one call reads every layer and position; "
               "no softmax",
          reference=reference_lens)
def check_lens(answer: Callable[..., Any]) -> None:
    layers, seq, d_model, vocab = 3, 5, 8, 11
    with seeded(21):
        norm, unembed = nn.LayerNorm(d_model), nn.Linear(d_model, vocab, bias=False)
        with torch.no_grad():  # a trained-looking norm: weight away from 1, bias away from 0
            norm.weight.copy_(1 + 0.5 * torch.randn(d_model))
            norm.bias.copy_(0.5 * torch.randn(d_model))
        stream = 3 * torch.randn(layers, seq, d_model) + 1
    with torch.no_grad():
        what = f"lens(stream of shape {(layers, seq, d_model)}, norm, unembed)"
        out = expect_tensor(answer(stream.clone(), norm, unembed), (layers, seq, vocab), what).detach().float()
        logits = unembed(norm(stream))
        wrong = {
            "the final LayerNorm is skipped: the output layer reads normalised streams; unembed(norm(stream))":
                unembed(stream),
            "probabilities, not logits (every row sums to 1): leave out the softmax": logits.softmax(-1),
            "log-probabilities, not logits: leave out the log_softmax": logits.log_softmax(-1),
            "every layer's rows are the last layer's: read each layer's own stream, not stream[-1]":
                logits[-1].expand_as(logits),
            "normalised without the norm's trained weight and bias (a fresh LayerNorm, or F.layer_norm without "
            "them): call the model's own `norm`": unembed(F.layer_norm(stream, (d_model,))),
        }
        for message, value in wrong.items():
            expect(not same(out, value, 1e-4), message)
        worst = max_difference(out, logits)
    expect(worst <= 1e-4, f"differs from unembed(norm(stream)) by up to {worst:.3g}")


# --- direct logit attribution -----------------------------------------------------------------------------------

def reference_logit_shares(parts: Tensor, scale: Tensor, norm_weight: Tensor, row: Tensor) -> Tensor:
    centred = parts - parts.mean(-1, keepdim=True)  # the norm centres the sum, so each part
    return (centred * scale * norm_weight) @ row


@exercise("logit_shares", "11",
          task="logit_shares(parts, scale, norm_weight, row) → (parts,): direct logit attribution at one position. "
               "parts (parts, d_model) is what each component (embedding, heads, MLPs) wrote into the residual "
               "stream, summing to it; scale (0-d) the final LayerNorm's 1/√(var + ε) of that stream, frozen; "
               "norm_weight (d_model,) the norm's weight; row (d_model,) the target token's row of the output layer. "
               "A part's share is the part centred over its features, times scale and norm_weight, dotted with row",
          hint="((parts - parts.mean(-1, keepdim=True)) * scale * norm_weight) @ row: with its scale frozen the "
               "norm is linear, so it splits over the parts",
          reference=reference_logit_shares)
def check_logit_shares(answer: Callable[..., Any]) -> None:
    n_parts, d_model = 5, 8
    with seeded(31):
        parts = 2 * torch.randn(n_parts, d_model) + 3 * torch.randn(n_parts, 1)  # each part off-centre
        norm = nn.LayerNorm(d_model)
        with torch.no_grad():
            norm.weight.copy_(1 + 0.5 * torch.randn(d_model))
            norm.bias.copy_(0.5 * torch.randn(d_model))
        row = torch.randn(d_model)
    stream = parts.sum(0)
    scale = (stream.var(unbiased=False) + norm.eps).rsqrt()
    weight = norm.weight.detach()
    with torch.no_grad():
        what = f"logit_shares(parts of shape {(n_parts, d_model)}, scale, norm_weight, row)"
        out = answer(parts.clone(), scale.clone(), weight.clone(), row.clone())
        out = expect_tensor(out, (n_parts,), what).detach().float()
        centred = parts - parts.mean(-1, keepdim=True)
        wrong = {
            "the parts are not centred: the norm subtracts the stream's mean, so subtract each part's mean over "
            "its features, parts.mean(-1, keepdim=True)": (parts * scale * weight) @ row,
            f"the scale is left out: multiply by the frozen 1/√(var + ε) = {float(scale):.4f}":
                (centred * weight) @ row,
            f"divided by the scale; it is already 1/√(var + ε) = {float(scale):.4f}, so multiply":
                (centred / scale * weight) @ row,
            "the norm's weight is left out: multiply by norm_weight before the dot product with row":
                (centred * scale) @ row,
            "centred over the parts (dim 0); centre each part over its own features, the last dim":
                ((parts - parts.mean(0)) * scale * weight) @ row,
        }
        for message, value in wrong.items():
            expect(not same(out, value, 1e-4), message)
        total = float(out.sum() + norm.bias @ row)
        logit = float(norm(stream) @ row)
        expect(math.isclose(total, logit, abs_tol=1e-4),
               f"the shares plus norm.bias · row add up to {total:.4f}, but the logit through the LayerNorm is "
               f"{logit:.4f}: the shares must split the logit")
        worst = max_difference(out, reference_logit_shares(parts, scale, weight, row))
    expect(worst <= 1e-4, f"differs from each centred part · scale · norm_weight · row by up to {worst:.3g}")


# --- knocking out a head ----------------------------------------------------------------------------------------

def reference_without_head(z: Tensor, head: int, n_heads: int) -> Tensor:
    d_head = z.shape[-1] // n_heads
    out = z.clone()
    out[..., head * d_head:(head + 1) * d_head] = 0
    return out


def _zeroed(z: Tensor, index: tuple) -> Tensor:
    out = z.clone()
    out[index] = 0
    return out


@exercise("without_head", "11",
          task="without_head(z, head, n_heads) → (batch, seq, d_model): z holds an attention layer's heads "
               "concatenated (the input of out_proj), head h owning features h·d_head … (h+1)·d_head − 1; return "
               "a copy with `head`'s features set to 0 (zero ablation) and leave z itself unchanged",
          hint="d_head = z.shape[-1] // n_heads; out = z.clone(); out[..., head * d_head:(head + 1) * d_head] = 0",
          reference=reference_without_head)
def check_without_head(answer: Callable[..., Any]) -> None:
    batch, seq, n_heads, d_head = 2, 5, 3, 4
    d_model = n_heads * d_head
    z = torch.randn(batch, seq, d_model, generator=torch.Generator().manual_seed(41))
    for head in range(n_heads):
        given = z.clone()
        what = f"without_head(z of shape {(batch, seq, d_model)}, head={head}, n_heads={n_heads})"
        out = expect_tensor(answer(given, head, n_heads), (batch, seq, d_model), what)
        expect(torch.equal(given, z), f"{what} changed z in place: clone it first, out = z.clone(); the model's own "
                                      f"activations must stay as they were")
        own = slice(head * d_head, (head + 1) * d_head)
        features = f"{own.start}…{own.stop - 1}"
        kept_only = torch.zeros_like(z)
        kept_only[..., own] = z[..., own]
        wrong = {
            f"{what} zeroed features {list(range(head, d_model, n_heads))}, every n_heads-th: a head's features are "
            f"consecutive, head {head} owns {features}": _zeroed(z, (..., slice(head, None, n_heads))),
            f"{what} zeroed position {head} of the sequence; the heads are on the last axis, "
            f"z[..., {own.start}:{own.stop}]": _zeroed(z, (slice(None), head)),
            f"{what} kept only head {head} and zeroed the others: ablation removes that head and keeps the rest":
                kept_only,
        }
        if head + 1 < n_heads:
            wrong[f"{what} zeroed head {head + 1}'s features {own.stop}…{own.stop + d_head - 1}; head {head} owns "
                  f"{features} (heads count from 0)"] = _zeroed(z, (..., slice(own.stop, own.stop + d_head)))
        wrong[f"{what} zeroed nothing: set z[..., {own.start}:{own.stop}] to 0"] = z
        for message, value in wrong.items():
            expect(not same(out, value, 0.0), message)
        right = reference_without_head(z, head, n_heads)
        expect(same(out, right, 0.0), f"{what} should be z with features {features} set to 0, but differs from it "
                                      f"by up to {max_difference(out, right):.3g}")


# --- induction heads ---------------------------------------------------------------------------------------------

def reference_induction_score(attn: Tensor, length: int) -> Tensor:
    t = torch.arange(length, 2 * length)  # the second copy's queries
    return attn[:, :, t, t - length + 1].mean(dim=(0, 2))


def _repeat_attention(batch: int, heads: int, length: int) -> Tensor:
    """(batch, heads, 2·length, 2·length) causal rows: on the second copy, head 0 attends to t − length + 1 (an
    induction head), head 1 to t − length (a duplicate-token head), head 2 to t − 1 (a previous-token head); the
    other heads' rows are random."""
    seq = 2 * length
    gen = torch.Generator().manual_seed(51)
    scores = torch.randn(batch, heads, seq, seq, generator=gen).mul(2)
    attn = scores.masked_fill(~causal_mask(seq), float("-inf")).softmax(-1)
    t = torch.arange(length, seq)
    for head, back in ((0, length - 1), (1, length), (2, 1)):
        attn[:, head, t] = 0
        attn[:, head, t, t - back] = 1
    return attn


@exercise("induction_score", "11",
          task="induction_score(attn, length) → (heads,): attn (batch, heads, 2·length, 2·length) is one layer's "
               "attention on `length` random tokens repeated twice. For every query t of the second copy (t = "
               "length … 2·length − 1) take the weight on key t − length + 1, the token after the earlier "
               "occurrence of t's token, and average over those queries and the batch",
          hint="t = torch.arange(length, 2 * length); attn[:, :, t, t - length + 1] is (batch, heads, length): "
               ".mean(dim=(0, 2))",
          reference=reference_induction_score)
def check_induction_score(answer: Callable[..., Any]) -> None:
    batch, heads, length = 3, 4, 5
    attn = _repeat_attention(batch, heads, length)
    what = f"induction_score(attn of shape {tuple(attn.shape)}, length={length})"
    out = answer(attn.clone(), length)
    expect(not (isinstance(out, Tensor) and tuple(out.shape) == (batch,)),
           f"{what} has one number per sequence, shape ({batch},): that averaged over the heads; average over the "
           f"batch (dim 0) and the queries, one score per head")
    out = expect_tensor(out, (heads,), what).detach().float()
    seq, t = 2 * length, torch.arange(length, 2 * length)
    every = torch.arange(seq)
    right = attn[:, :, t, t - length + 1].mean(dim=(0, 2))
    wrong = {
        "that measured key t − length, the earlier copy of the same token (a duplicate-token head, head 1 here); "
        "the induction head looks one further on, at t − length + 1": attn[:, :, t, t - length].mean(dim=(0, 2)),
        "that averaged over every query, the first copy's too: a first-copy token has no earlier occurrence; use "
        "t = length … 2·length − 1": attn[:, :, every, every - length + 1].mean(dim=(0, 2)),
        f"that averaged over queries {length - 1} … {seq - 1}: query {length - 1} is the first copy's last token; "
        f"start at t = length = {length}": attn.diagonal(-(length - 1), -2, -1).mean(dim=(0, 2)),
        "that is the previous-token diagonal (key t − 1, head 2 here); the induction head attends to "
        "t − length + 1": attn[:, :, t, t - 1].mean(dim=(0, 2)),
        f"{batch}·{length} = {batch * length} times too large: you summed over the batch and the queries; average "
        f"them": attn[:, :, t, t - length + 1].sum(dim=(0, 2)),
        f"{length} times too large: you summed over the {length} queries; average them":
            attn[:, :, t, t - length + 1].sum(-1).mean(0),
        f"{batch} times too large: you summed over the {batch} sequences of the batch; average them":
            attn[:, :, t, t - length + 1].mean(-1).sum(0),
    }
    for message, value in wrong.items():
        expect(not same(out, value, 1e-5), message)
    expect(math.isclose(float(out[0]), 1.0, abs_tol=1e-5),
           f"head 0 attends from every second-copy token to t − length + 1, a perfect induction head, so it scores "
           f"1; got {float(out[0]):.4f}")
    worst = max_difference(out, right)
    expect(worst <= 1e-5, f"differs from the mean of attn[b, h, t, t − length + 1] over the batch and the second "
                          f"copy's queries by up to {worst:.3g}")


# --- activation patching ----------------------------------------------------------------------------------------

def reference_patch_each_position(model: nn.Module, name: str, clean_activation: Tensor, corrupted: Tensor,
                                  metric: Callable[[Tensor], Tensor]) -> Tensor:
    values = []
    with torch.no_grad():
        for position in range(corrupted.shape[1]):
            with patching(model, {name: clean_activation}, positions=[position]):
                values.append(float(metric(model(corrupted))))
    return torch.tensor(values)


def _patching_setup() -> tuple[TinyGPT, Tensor, Tensor, Callable[[Tensor], Tensor]]:
    """A small TinyGPT in eval mode, its weights drawn large enough that every patch moves the metric; a clean and a
    corrupted input that differ at positions 0 and 3; a logit difference at the last position, (1,)."""
    with seeded(61):
        model = TinyGPT(GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, d_model=16)).eval()
        for p in model.parameters():
            nn.init.normal_(p, std=0.3)
    clean, corrupted = torch.tensor([[3, 7, 1, 9, 4, 2]]), torch.tensor([[8, 7, 1, 12, 4, 2]])
    return model, clean, corrupted, lambda logits: logits[:, -1, 6] - logits[:, -1, 0]


@exercise("patch_each_position", "11",
          task="patch_each_position(model, name, clean_activation, corrupted, metric) → (seq,): for every position "
               "p of corrupted (1, seq), run the model on corrupted with module `name`'s output at position p only "
               "replaced by clean_activation[:, p] (clean_activation (1, seq, d_model) was recorded on the clean "
               "input), and keep float(metric(logits))",
          hint="for p in range(seq): with patching(model, {name: clean_activation}, positions=[p]): "
               "values.append(float(metric(model(corrupted)))); then torch.tensor(values)",
          reference=reference_patch_each_position)
def check_patch_each_position(answer: Callable[..., Any]) -> None:
    model, clean, corrupted, metric = _patching_setup()
    name, seq = "blocks.0", clean.shape[1]
    with torch.no_grad():
        with recording(model, [name]) as seen:
            high = float(metric(model(clean)))
        low = float(metric(model(corrupted)))
        right = reference_patch_each_position(model, name, seen[name], corrupted, metric)
        cumulative = []
        for position in range(seq):
            with patching(model, {name: seen[name]}, positions=range(position + 1)):
                cumulative.append(float(metric(model(corrupted))))
        out = answer(model, name, seen[name].clone(), corrupted.clone(), metric)
    left = _hooks_on(model)
    expect(left == 0, f"{left} hook(s) still on the model after patch_each_position returned: take each one off "
                      f"after its run (a with block does it)")
    what = f"patch_each_position(model, {name!r}, clean_activation, corrupted of shape {tuple(corrupted.shape)}, " \
           f"metric)"
    out = expect_tensor(out, (seq,), what).detach().float()
    expect(not same(out, torch.full((seq,), high), 1e-4),
           f"every entry is {high:.4f}, the clean run's metric: you patched every position at once; patch one "
           f"position per run, positions=[p]")
    expect(not same(out, torch.full((seq,), low), 1e-4),
           f"every entry is {low:.4f}, the corrupted run's own metric: nothing changed the runs. Put in "
           f"clean_activation[:, p], not an activation recorded on corrupted, and a hook that changes a copy of "
           f"the output must return it")
    expect(not same(out, torch.tensor(cumulative), 1e-4),
           f"entry p is what patching positions 0 … p together gives (the last one is the clean {high:.4f}): patch "
           f"position p alone in each run, and take its hook off afterwards")
    expect(not same(out[:-1], right[1:], 1e-4),
           f"entry p is what patching position p + 1 gives (entry 0 should be {float(right[0]):.4f}, got "
           f"{float(out[0]):.4f}): patch position p itself")
    worst = max_difference(out, right)
    expect(worst <= 1e-4, f"differs from the metric with only position p patched by up to {worst:.3g}; expected "
                          f"{[round(v, 4) for v in right.tolist()]}")
