"""Notebook 08's checkers: a right answer written by hand passes, each plausible mistake gets its own message
(WRONG_ANSWERS, run by test_exercises.py), the checks leave the notebook's random state alone, and each reference
agrees with labkit's own function or with the model's own attention weights."""

from __future__ import annotations

import math

import torch

from labkit.attention_stats import attention_share, mean_distance, token_groups
from labkit.exercises import check
from labkit.exercises.attention_stats import (_attention, reference_attention_from_projections,
                                              reference_difference_map, reference_mean_attention_distance,
                                              reference_share_on_tokens)

# --- attention_from_projections --------------------------------------------------------------------------------


def _projected(h, query, key, n_heads, scale="sqrt_head", split="right", dim=-1, bias=True, keys="key",
               swap=False):
    seq, d_model = h.shape
    d_head = d_model // n_heads

    def project(linear):
        return linear(h) if bias else h @ linear.weight.T

    def heads(x):
        if split == "mixed":
            return x.reshape(n_heads, seq, d_head)
        if split == "interleaved":
            return x.view(seq, d_head, n_heads).permute(2, 0, 1)
        return x.view(seq, n_heads, d_head).transpose(0, 1)

    q, k = heads(project(query)), heads(project(key if keys == "key" else query))
    scores = k @ q.transpose(-2, -1) if swap else q @ k.transpose(-2, -1)
    divisor = {"sqrt_head": math.sqrt(d_head), "none": 1.0, "head": d_head, "sqrt_model": math.sqrt(d_model)}[scale]
    return (scores / divisor).softmax(dim)


def test_attention_from_projections_written_by_hand_passes() -> None:
    def attention_from_projections(h, query, key, n_heads):
        seq, d_model = h.shape
        d_head = d_model // n_heads
        q = query(h).reshape(seq, n_heads, d_head).permute(1, 0, 2)
        k = key(h).reshape(seq, n_heads, d_head).permute(1, 2, 0)  # already transposed: (heads, d_head, seq)
        return torch.softmax(q @ k * d_head ** -0.5, dim=2)

    assert check("attention_from_projections", attention_from_projections, quiet=True)


def test_attention_from_projections_reference_gives_a_berts_own_attention() -> None:
    from transformers import BertConfig, BertModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        bert = BertModel(BertConfig(vocab_size=50, hidden_size=24, num_hidden_layers=2, num_attention_heads=4,
                                    intermediate_size=32, attn_implementation="eager")).eval()
    ids = torch.tensor([[1, 7, 3, 9, 2, 4]])
    with torch.no_grad():
        out = bert(ids, output_attentions=True, output_hidden_states=True)
        for layer in range(2):
            module = bert.encoder.layer[layer].attention.self
            mine = reference_attention_from_projections(out.hidden_states[layer][0], module.query, module.key, 4)
            assert torch.allclose(mine, out.attentions[layer][0], atol=1e-5)


# --- head_entropies ---------------------------------------------------------------------------------------------

def _entropy(attn, log=torch.log, sign=-1.0, reduce="mean", clamp=True):
    p = attn.clamp_min(1e-30) if clamp else attn
    rows = sign * (attn * log(p)).sum(-1)
    return rows.mean(-1) if reduce == "mean" else rows.sum(-1)


def test_head_entropies_written_by_hand_passes() -> None:
    def head_entropies(attn):
        terms = torch.where(attn > 0, attn * attn.log(), torch.zeros_like(attn))
        return -terms.sum(-1).mean(-1)

    assert check("head_entropies", head_entropies, quiet=True)


def _entropy_off_by_a_bit(attn):
    out = _entropy(attn)
    out[1, 2] += 0.01
    return out


# --- mean_attention_distance ------------------------------------------------------------------------------------

def _distance(attn, how="abs", reduce="mean", keys="sum"):
    seq = attn.shape[-1]
    positions = torch.arange(seq, dtype=attn.dtype)
    signed = positions[:, None] - positions[None, :]
    distance = {"abs": signed.abs(), "signed": signed, "square": signed ** 2}[how]
    weighted = attn * distance
    per_query = weighted.sum(-1) if keys == "sum" else weighted.mean(-1)
    return per_query.mean(-1) if reduce == "mean" else per_query.sum(-1)


def test_mean_attention_distance_written_by_hand_passes() -> None:
    def mean_attention_distance(attn):
        seq = attn.shape[-1]
        q = torch.arange(seq).view(seq, 1)
        k = torch.arange(seq).view(1, seq)
        return torch.einsum("lhqk,qk->lh", attn, (q - k).abs().float()) / seq

    assert check("mean_attention_distance", mean_attention_distance, quiet=True)


def test_mean_attention_distance_reference_is_labkits_mean_distance() -> None:
    attn = torch.randn(3, 4, 7, 7, generator=torch.Generator().manual_seed(1)).softmax(-1)
    assert torch.allclose(reference_mean_attention_distance(attn), mean_distance(attn))


# --- share_on_tokens ---------------------------------------------------------------------------------------------

def test_share_on_tokens_written_by_hand_passes() -> None:
    def share_on_tokens(attn, positions):
        share = torch.zeros(attn.shape[:2])
        for p in positions:
            share = share + attn[:, :, :, p].mean(-1)
        return share

    assert check("share_on_tokens", share_on_tokens, quiet=True)


def test_share_on_tokens_reference_is_labkits_attention_share() -> None:
    tokens = ["[CLS]", "hi", ",", "there", "!", "[SEP]"]
    attn = _attention(2)
    for positions in token_groups(tokens).values():
        assert torch.allclose(reference_share_on_tokens(attn, positions), attention_share(attn, positions))
    assert torch.equal(reference_share_on_tokens(attn, []), attention_share(attn, []))


# --- rollout_maps ---------------------------------------------------------------------------------------------

def _rollout(attn, residual=0.5, combine="mean", order="new_left", keep_all=True):
    seq = attn.shape[-1]
    heads = attn.mean(1) if combine == "mean" else attn.amax(1)
    layers = (1 - residual) * heads + residual * torch.eye(seq) if residual else heads
    if residual == 1.0:
        layers = heads + torch.eye(seq)
    rolled, maps = torch.eye(seq), []
    for layer in layers:
        rolled = layer @ rolled if order == "new_left" else rolled @ layer
        maps.append(rolled)
    return torch.stack(maps) if keep_all else maps[-1]


def test_rollout_maps_written_by_hand_passes() -> None:
    assert check("rollout_maps", _rollout, quiet=True)


# --- difference_map ------------------------------------------------------------------------------------------

def _difference(before, after, sign=1, keep_sign=True, measure="abs", divide_by="heads", order="layer_head",
                flat=False):
    diff = sign * (after - before)
    shown = diff if keep_sign else diff.abs()
    change = {"abs": diff.abs().sum(-1).mean(-1), "signed": diff.sum(-1).mean(-1),
              "largest": diff.abs().amax(dim=(-2, -1))}[measure]
    index = int(change.argmax())
    if flat:
        return shown, index
    layer, head = divmod(index, change.shape[1] if divide_by == "heads" else change.shape[0])
    return shown, (layer, head) if order == "layer_head" else (head, layer)


def test_difference_map_written_by_hand_passes() -> None:
    def difference_map(before, after):
        diff = after - before
        change = (after - before).abs().sum(dim=3).mean(dim=2)
        best = (change == change.max()).nonzero()[0]
        return diff, (best[0].item(), best[1].item())

    assert check("difference_map", difference_map, quiet=True)


def test_difference_map_reference_picks_the_head_whose_rows_moved_most() -> None:
    before = torch.full((2, 3, 4, 4), 0.25)
    after = before.clone()
    after[1, 2] = torch.eye(4)
    diff, most = reference_difference_map(before, after)
    assert most == (1, 2) and torch.equal(diff, after - before)


# --- the checks run on inputs of their own and leave the notebook's random state alone --------------------------

def test_checks_leave_the_callers_random_state_alone() -> None:
    from labkit.exercises import exercises

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    for name, ex in exercises("08").items():
        assert check(name, ex.reference, quiet=True), name
    assert torch.equal(torch.rand(3), expected)


# exercise name → plausible wrong answers and a piece of the message each must get (run by test_exercises.py)
WRONG_ANSWERS = {
    "attention_from_projections": [
        (lambda h, q, k, n: _projected(h, q, k, n, dim=-2), "softmax over the queries (dim -2)"),
        (lambda h, q, k, n: _projected(h, q, k, n, scale="none"), "the scores are not scaled"),
        (lambda h, q, k, n: _projected(h, q, k, n, scale="head"), "divided by d_head = 4; divide by √d_head = 2"),
        (lambda h, q, k, n: _projected(h, q, k, n, scale="sqrt_model"), "divided by √d_model = √12"),
        (lambda h, q, k, n: _projected(h, q, k, n, split="mixed"), "that mixes tokens"),
        (lambda h, q, k, n: _projected(h, q, k, n, split="interleaved"), "head 0 holds features 0, 3, 6"),
        (lambda h, q, k, n: _projected(h, q, k, n, bias=False), "the projections' biases are left out"),
        (lambda h, q, k, n: _projected(h, q, k, n, swap=True), "the queries and keys are swapped"),
        (lambda h, q, k, n: _projected(h, q, k, n, keys="query"), "q·qᵀ: the keys come from the key projection"),
        (lambda h, q, k, n: _projected(h, q, k, n)[None], "has shape (1, 3, 5, 5), expected (3, 5, 5)"),
        (lambda h, q, k, n: _projected(h, q, k, n) * 1.01, "the rows sum to 1.01"),
    ],
    "head_entropies": [
        (lambda a: _entropy(a, clamp=False), "0·ln 0 must count as 0"),
        (lambda a: _entropy(a, sign=1.0), "entropy is −Σ p ln p (the minus sign)"),
        (lambda a: _entropy(a, log=torch.log2), "bits; use the natural log"),
        (lambda a: _entropy(a, reduce="sum"), "you summed over the queries"),
        (lambda a: _entropy(a)[..., None], "has shape (2, 3, 1), expected (2, 3)"),
        (lambda a: _entropy(a.mean(1, keepdim=True)).expand(2, 3), "has entropy ln 6 = 1.7918, got 1.3883"),
        (lambda a: _entropy(a.softmax(-1)), "a head looking at one key only has entropy 0, got 1.691"),
        (_entropy_off_by_a_bit, "averaged over queries by up to 0.01"),
    ],
    "mean_attention_distance": [
        (lambda a: _distance(a, how="signed"), "the distances are signed and cancel; use |q − k|"),
        (lambda a: _distance(a, how="square"), "the distances are squared"),
        (lambda a: _distance(a, reduce="sum"), "6 times too large: you summed over the 6 queries"),
        (lambda a: _distance(a, keys="mean"), "you averaged p·|q − k| over the keys"),
        (lambda a: torch.full((2, 3), 70 / 36), "the mean of |q − k| alone: weight each distance"),
        (lambda a: (torch.arange(6.0) - a.argmax(-1).float()).abs().mean(-1), "distance to each query's strongest"),
        (lambda a: _distance(a)[None], "has shape (1, 2, 3), expected (2, 3)"),
        (lambda a: (a * (torch.arange(6.0)[:, None] - torch.arange(6.0)).abs()).sum(-1).mean(), "has shape ()"),
    ],
    "share_on_tokens": [
        (lambda a, p: a[..., p, :].sum(-1).mean(-1), "is 1 for every head: you took the rows of queries [0, 5]"),
        (lambda a, p: a[..., p].sum(-1).sum(-1), "6 times too large: you summed over the queries"),
        (lambda a, p: a[..., p].mean(-1).mean(-1), "you averaged over the 2 key positions"),
        (lambda a, p: a[..., 0, p].sum(-1), "the share of query 0 ([CLS]) only"),
        (lambda a, p: a[..., p].amax(-1).mean(-1), "you took the largest of the positions' weights"),
        (lambda a, p: sum(a[..., i].mean(-1) for i in p), "share_on_tokens(attn, []) returned 0 (int)"),
        (lambda a, p: a[..., p].sum(-1).mean(-1)[..., None], "has shape (2, 3, 1), expected (2, 3)"),
        (lambda a, p: a[..., p[:1]].sum(-1).mean(-1), "differs from attn[..., positions].sum(-1).mean(-1)"),
    ],
    "rollout_maps": [
        (lambda a: _rollout(a, keep_all=False), "returned one (seq, seq) map; return one per layer"),
        (lambda a: _rollout(a, residual=1.0), "whose rows sum to 2"),
        (lambda a: _rollout(a, residual=0.0), "the plain mean of its heads"),
        (lambda a: _rollout(a, combine="max"), "combine the heads by their mean, not their max"),
        (lambda a: _rollout(a, order="new_right"), "multiplied in the wrong order"),
        (lambda a: _rollout(a, residual=0.3), "layer 0's map should be A_0"),
        (lambda a: _rollout(a) / _rollout(a).sum(-1, keepdim=True) * 1.01, "every row of a rollout map sums to 1"),
    ],
    "difference_map": [
        (lambda b, a: _difference(b, a, sign=-1), "that is before − after: red and blue swapped"),
        (lambda b, a: _difference(b, a, keep_sign=False), "the map lost its sign"),
        (lambda b, a: _difference(b, a, flat=True), "came back as 9, a flat index into (layers, heads) = (3, 4)"),
        (lambda b, a: _difference(b, a, divide_by="layers"), "(3, 0) is flat index 9 divided by the 3 layers"),
        (lambda b, a: _difference(b, a, order="head_layer"), "(1, 2) is (head, layer); give (layer, head) = (2, 1)"),
        (lambda b, a: _difference(b, a, measure="largest"), "(0, 3) holds the largest change of a single weight"),
        (lambda b, a: a - b, "returned Tensor; return two things, (diff, (layer, head))"),
        (lambda b, a: (a - b, (0, 0)), "is (layer, head) = (2, 1), got (0, 0)"),
    ],
}
