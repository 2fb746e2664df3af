"""Notebook 11's checkers: a right answer written by hand passes, each plausible mistake gets its own message
(WRONG_ANSWERS, run by test_exercises.py), the checks leave the notebook's random state alone, and each reference
agrees with labkit's own hooks and measurements on a small TinyGPT."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from labkit.circuits import direct_logit_attribution, induction_scores, patch_residual_sweep, repeated_tokens
from labkit.exercises import check, exercises
from labkit.exercises.circuits import (_patching_setup, reference_induction_score, reference_lens,
                                       reference_logit_shares, reference_patch_each_position, reference_record_output,
                                       reference_without_head)
from labkit.hooks import ablating_heads, logit_lens, patching, recording, recording_heads, residual_stream
from labkit.models import GPTConfig, TinyGPT


def _model(seed: int = 0, **config) -> TinyGPT:
    """A small TinyGPT in eval mode with weights drawn large (std 0.3), so that every part matters."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TinyGPT(GPTConfig(vocab_size=11, block_size=12, n_layer=2, n_head=3, d_model=12, **config)).eval()
        for p in model.parameters():
            nn.init.normal_(p, std=0.3)
    return model


IDX = torch.randint(0, 11, (2, 10), generator=torch.Generator().manual_seed(1))


# --- record_output ------------------------------------------------------------------------------------------------

def _record(model, module, x, keep="output", remove="finally", give="right"):
    kept = []

    def hook(_module, inputs, output):
        kept.append(inputs[0] if keep == "input" else output)

    handle = module.register_forward_hook(hook)
    if remove == "finally":
        try:
            out = model(x)
        finally:
            handle.remove()
    else:
        out = model(x)
        if remove == "after":
            handle.remove()
    return {"right": (out, kept[-1]), "model_twice": (out, out), "swapped": (kept[-1], out)}[give]


def test_record_output_written_by_hand_passes() -> None:
    def record_output(model, module, x):
        seen = {}
        handle = module.register_forward_hook(lambda m, i, o: seen.__setitem__("out", o))
        try:
            logits = model(x)
        finally:
            handle.remove()
        return logits, seen["out"]

    assert check("record_output", record_output, quiet=True)


def test_record_output_reference_agrees_with_labkits_recording() -> None:
    model = _model()
    with torch.no_grad():
        out, kept = reference_record_output(model, model.blocks[0].self_attn, IDX)
        with recording(model, ["blocks.0.self_attn"]) as seen:
            logits = model(IDX)
    assert torch.equal(out, logits) and torch.equal(kept, seen["blocks.0.self_attn"])
    assert not model.blocks[0].self_attn._forward_hooks


# --- lens -------------------------------------------------------------------------------------------------------

def test_lens_written_by_hand_passes() -> None:
    def lens(stream, norm, unembed):
        normed = F.layer_norm(stream, stream.shape[-1:], norm.weight, norm.bias, norm.eps)
        return torch.einsum("lsd,vd->lsv", normed, unembed.weight)

    assert check("lens", lens, quiet=True)


def test_lens_reference_is_labkits_logit_lens_and_ends_at_the_models_logits() -> None:
    model = _model()
    stream = residual_stream(model, IDX)  # (layers + 1, batch, seq, d_model)
    with torch.no_grad():
        mine = torch.stack([reference_lens(stream[:, b], model.norm, model.lm_head) for b in range(2)], 1)
        torch.testing.assert_close(mine, logit_lens(model, IDX))
        torch.testing.assert_close(mine[-1], model(IDX))


# --- logit_shares -----------------------------------------------------------------------------------------------

def test_logit_shares_written_by_hand_passes() -> None:
    def logit_shares(parts, scale, norm_weight, row):
        shares = []
        for part in parts:
            shares.append(((part - part.mean()) * norm_weight * row).sum() * scale)
        return torch.stack(shares)

    assert check("logit_shares", logit_shares, quiet=True)


def _parts(model: TinyGPT, idx: torch.Tensor) -> torch.Tensor:
    """(parts, batch, seq, d_model): the embedding, every head through its slice of out_proj, every MLP."""
    ff = [f"blocks.{i}.ff" for i in range(len(model.blocks))]
    with torch.no_grad(), recording(model, ["drop", *ff]) as seen, recording_heads(model) as heads:
        model(idx)
    parts = [seen["drop"]]
    for i, block in enumerate(model.blocks):
        attn = block.self_attn
        for h in range(attn.n_heads):
            parts.append(heads[i][:, h] @ attn.out_proj.weight[:, h * attn.d_head:(h + 1) * attn.d_head].T)
        parts.append(seen[f"blocks.{i}.ff"])
    return torch.stack(parts)


def test_logit_shares_reference_is_labkits_direct_logit_attribution() -> None:
    model = _model().double()
    targets = IDX.roll(-1, dims=1)
    names, shares, constant = direct_logit_attribution(model, IDX, targets)
    parts = _parts(model, IDX)
    assert parts.shape[0] == len(names)
    for b, s in ((0, 0), (1, 4), (1, 9)):
        stream = parts[:, b, s].sum(0)
        scale = (stream.var(unbiased=False) + model.norm.eps).rsqrt()
        with torch.no_grad():
            mine = reference_logit_shares(parts[:, b, s], scale, model.norm.weight, model.lm_head.weight[targets[b, s]])
        torch.testing.assert_close(mine, shares[b, s])


# --- without_head -----------------------------------------------------------------------------------------------

def test_without_head_written_by_hand_passes() -> None:
    def without_head(z, head, n_heads):
        batch, seq, d_model = z.shape
        keep = torch.ones(n_heads, d_model // n_heads)
        keep[head] = 0
        return z * keep.flatten()

    assert check("without_head", without_head, quiet=True)


def test_without_head_reference_before_out_proj_is_labkits_ablating_heads() -> None:
    model = _model()
    n_heads = model.config.n_head
    for layer, head in ((0, 1), (1, 2)):
        out_proj = model.blocks[layer].self_attn.out_proj
        handle = out_proj.register_forward_pre_hook(lambda _m, args: (reference_without_head(args[0], head, n_heads),))
        try:
            with torch.no_grad():
                mine = model(IDX)
        finally:
            handle.remove()
        with torch.no_grad(), ablating_heads(model, [(layer, head)]):
            theirs = model(IDX)
        torch.testing.assert_close(mine, theirs)
        assert not torch.allclose(mine, model(IDX).detach())


def _without(z, head, n_heads, how="right"):
    d_head = z.shape[-1] // n_heads
    out = z if how == "in_place" else z.clone()
    if how == "only":
        out = torch.zeros_like(z)
        out[..., head * d_head:(head + 1) * d_head] = z[..., head * d_head:(head + 1) * d_head]
        return out
    index = {"right": (..., slice(head * d_head, (head + 1) * d_head)), "in_place": (..., slice(head * d_head,
                                                                                                (head + 1) * d_head)),
             "interleaved": (..., slice(head, None, n_heads)), "position": (slice(None), head),
             "next": (..., slice((head + 1) * d_head, (head + 2) * d_head))}[how]
    out[index] = 0
    return out


# --- induction_score ----------------------------------------------------------------------------------------------

def test_induction_score_written_by_hand_passes() -> None:
    def induction_score(attn, length):
        batch, heads, seq, _ = attn.shape
        total = torch.zeros(heads)
        for t in range(length, seq):
            total += attn[:, :, t, t - length + 1].sum(0)
        return total / (batch * length)

    assert check("induction_score", induction_score, quiet=True)


def test_induction_score_reference_is_labkits_induction_scores() -> None:
    model = _model(attention_only=True)
    tokens = repeated_tokens(11, 6, 4, generator=torch.Generator().manual_seed(3))
    maps = model.attention_maps(tokens)  # (layers, batch, heads, 12, 12)
    theirs = induction_scores(maps, 6)
    for layer in range(2):
        torch.testing.assert_close(reference_induction_score(maps[layer], 6), theirs[layer])
        torch.testing.assert_close(induction_scores(maps[layer][None], 6)[0], reference_induction_score(maps[layer], 6))


def _score(attn, length, back=None, queries="second", reduce="mean"):
    seq = attn.shape[-1]
    back = length - 1 if back is None else back
    t = torch.arange(length, seq) if queries == "second" else torch.arange(seq)
    picked = attn[:, :, t, t - back]  # (batch, heads, queries)
    return {"mean": picked.mean(dim=(0, 2)), "sum": picked.sum(dim=(0, 2)), "queries": picked.sum(-1).mean(0),
            "heads": picked.mean(dim=(1, 2))}[reduce]


# --- patch_each_position ------------------------------------------------------------------------------------------

def test_patch_each_position_written_by_hand_passes() -> None:
    assert check("patch_each_position", _patched_by_hand, quiet=True)  # its own hook, not labkit.hooks


def test_patch_each_position_reference_agrees_with_labkits_patch_residual_sweep() -> None:
    model, clean, corrupted, metric = _patching_setup()
    sweep = patch_residual_sweep(model, clean, corrupted, metric)  # (layers + 1, seq), normalised
    names = ["drop", "blocks.0", "blocks.1"]
    with torch.no_grad(), recording(model, names) as seen:
        high = float(metric(model(clean)))
    with torch.no_grad():
        low = float(metric(model(corrupted)))
    for row, name in enumerate(names):
        raw = reference_patch_each_position(model, name, seen[name], corrupted, metric)
        torch.testing.assert_close((raw - low) / (high - low), sweep[row])


def _patched(model, name, clean_activation, corrupted, metric, where=lambda p, seq: [p], source="clean"):
    seq = corrupted.shape[1]
    if source == "corrupted":
        with recording(model, [name]) as seen:
            model(corrupted)
        clean_activation = seen[name]
    values = []
    for p in range(seq):
        with patching(model, {name: clean_activation}, positions=where(p, seq)):
            values.append(float(metric(model(corrupted))))
    return torch.tensor(values)


def _patched_by_hand(model, name, clean_activation, corrupted, metric, returned=True, removed=True):
    module = dict(model.named_modules())[name]
    values = []
    for p in range(corrupted.shape[1]):
        def put(_module, _inputs, output, p=p):
            output = output.clone()
            output[:, p] = clean_activation[:, p]
            return output if returned else None
        handle = module.register_forward_hook(put)
        values.append(float(metric(model(corrupted))))
        if removed:
            handle.remove()
    return torch.tensor(values)


# --- the checks run on inputs of their own and leave the notebook's random state alone --------------------------

def test_checks_leave_the_callers_random_state_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    for name, ex in exercises("11").items():
        assert check(name, ex.reference, quiet=True), name
    assert torch.equal(torch.rand(3), expected)


# exercise name → plausible wrong answers and a piece of the message each must get (run by test_exercises.py)
WRONG_ANSWERS = {
    "record_output": [
        (lambda m, mod, x: _record(m, mod, x, keep="input"), "the second tensor is the module's input"),
        (lambda m, mod, x: _record(m, mod, x, remove="never"), "1 hook(s) still on the model after record_output"),
        (lambda m, mod, x: _record(m, mod, x, remove="after"), "remove the hook in a `finally:` block"),
        (lambda m, mod, x: _record(m, mod, x, give="model_twice"), "the second tensor is the model's output again"),
        (lambda m, mod, x: _record(m, mod, x, give="swapped"), "the two are swapped"),
        (lambda m, mod, x: m(x), "record_output returned Tensor; return a pair"),
    ],
    "lens": [
        (lambda s, norm, unembed: unembed(s), "the final LayerNorm is skipped"),
        (lambda s, norm, unembed: unembed(norm(s)).softmax(-1), "probabilities, not logits"),
        (lambda s, norm, unembed: unembed(norm(s)).log_softmax(-1), "log-probabilities, not logits"),
        (lambda s, norm, unembed: unembed(norm(s[-1])).expand(3, 5, 11), "every layer's rows are the last layer's"),
        (lambda s, norm, unembed: unembed(nn.LayerNorm(8)(s)), "without the norm's trained weight and bias"),
        (lambda s, norm, unembed: unembed(norm(s))[-1], "has shape (5, 11), expected (3, 5, 11)"),
    ],
    "logit_shares": [
        (lambda p, s, w, r: (p * s * w) @ r, "the parts are not centred"),
        (lambda p, s, w, r: ((p - p.mean(-1, keepdim=True)) * w) @ r, "the scale is left out"),
        (lambda p, s, w, r: ((p - p.mean(-1, keepdim=True)) * s) @ r, "the norm's weight is left out"),
        (lambda p, s, w, r: ((p - p.mean(0)) * s * w) @ r, "centred over the parts (dim 0)"),
        (lambda p, s, w, r: ((p - p.mean(-1, keepdim=True)) / s * w) @ r, "divided by the scale"),
        (lambda p, s, w, r: (p - p.mean(-1, keepdim=True)) * s * w * r, "has shape (5, 8), expected (5,)"),
        (lambda p, s, w, r: ((p - p.mean(-1, keepdim=True)) * s * w) @ r * 1.01, "the shares plus norm.bias · row"),
    ],
    "without_head": [
        (lambda z, h, n: _without(z, h, n, how="in_place"), "changed z in place"),
        (lambda z, h, n: _without(z, h, n, how="interleaved"), "zeroed features [0, 3, 6, 9], every n_heads-th"),
        (lambda z, h, n: _without(z, h, n, how="position"), "zeroed position 0 of the sequence"),
        (lambda z, h, n: _without(z, h, n, how="only"), "kept only head 0 and zeroed the others"),
        (lambda z, h, n: _without(z, h, n, how="next"), "zeroed head 1's features 4…7; head 0 owns 0…3"),
        (lambda z, h, n: z.clone(), "zeroed nothing"),
        (lambda z, h, n: _without(z, h, n)[0], "has shape (5, 12), expected (2, 5, 12)"),
    ],
    "induction_score": [
        (lambda a, n: _score(a, n, back=n), "a duplicate-token head"),
        (lambda a, n: _score(a, n, queries="all"), "that averaged over every query, the first copy's too"),
        (lambda a, n: a.diagonal(-(n - 1), -2, -1).mean(dim=(0, 2)), "query 4 is the first copy's last token"),
        (lambda a, n: _score(a, n, back=1), "the previous-token diagonal"),
        (lambda a, n: _score(a, n, reduce="sum"), "3·5 = 15 times too large"),
        (lambda a, n: _score(a, n, reduce="heads"), "one number per sequence, shape (3,)"),
        (lambda a, n: _score(a, n, reduce="queries"), "5 times too large: you summed over the 5 queries"),
    ],
    "patch_each_position": [
        (lambda *args: _patched(*args, where=lambda p, seq: None), "you patched every position at once"),
        (lambda *args: _patched(*args, where=lambda p, seq: range(p + 1)), "patching positions 0 … p together"),
        (lambda *args: _patched_by_hand(*args, returned=False), "must return it"),
        (lambda *args: _patched(*args, source="corrupted"), "not an activation recorded on corrupted"),
        (lambda *args: _patched(*args, where=lambda p, seq: [(p + 1) % seq]), "what patching position p + 1 gives"),
        (lambda *args: _patched(*args, where=lambda p, seq: [p + 1] if p + 1 < seq else []),
         "what patching position p + 1 gives"),
        (lambda *args: _patched_by_hand(*args, removed=False), "hook(s) still on the model"),
    ],
}
