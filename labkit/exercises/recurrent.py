"""Notebook 04's recurrent baseline (section "Why attention"): one step of a GRU written by hand, checked against
`torch.nn.GRUCell`; the walk along a sequence that a recurrent model cannot skip, checked against `torch.nn.GRU`;
and the parameter count of a GRU layer, which `labkit.recurrent.gru_matching` uses to size a GRU like a GPT."""

from __future__ import annotations

import numbers
from typing import Any, Callable

import torch
from torch import Tensor, nn

from labkit.blocks import count_parameters
from labkit.exercises import expect, exercise
from labkit.exercises._compare import expect_tensor, max_difference, same, seeded, seeded_randn

# --- one GRU step -------------------------------------------------------------------------------------------------


def reference_gru_cell(x: Tensor, h: Tensor, weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor,
                       bias_hh: Tensor) -> Tensor:
    i_r, i_z, i_n = (x @ weight_ih.T + bias_ih).chunk(3, dim=-1)  # each (batch, hidden)
    h_r, h_z, h_n = (h @ weight_hh.T + bias_hh).chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)  # reset gate: how much of the old state the candidate reads
    z = torch.sigmoid(i_z + h_z)  # update gate: how much of the old state is kept
    n = torch.tanh(i_n + r * h_n)  # the candidate state
    return (1 - z) * n + z * h


def _gru_cell_variant(x: Tensor, h: Tensor, weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor, bias_hh: Tensor,
                      mistake: str) -> Tensor:
    """The GRU step with one mistake in it (the checker names each by what it computes)."""
    gates_i, gates_h = (x @ weight_ih.T + bias_ih).chunk(3, -1), (h @ weight_hh.T + bias_hh).chunk(3, -1)
    if mistake == "order_zrn":  # weight chunks read as z, r, n
        gates_i, gates_h = (gates_i[1], gates_i[0], gates_i[2]), (gates_h[1], gates_h[0], gates_h[2])
    (i_r, i_z, i_n), (h_r, h_z, h_n) = gates_i, gates_h
    r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
    if mistake == "reset_before_matmul":  # Cho et al.'s first GRU: W_hn (r ⊙ h) + b_hn
        hidden = h.shape[-1]
        h_n = (r * h) @ weight_hh[2 * hidden:].T + bias_hh[2 * hidden:]
        return (1 - z) * torch.tanh(i_n + h_n) + z * h
    if mistake == "reset_without_bias":  # r ⊙ (W_hn h) + b_hn
        hidden = h.shape[-1]
        h_n = r * (h @ weight_hh[2 * hidden:].T) + bias_hh[2 * hidden:]
        return (1 - z) * torch.tanh(i_n + h_n) + z * h
    n = torch.tanh(i_n + r * h_n)
    if mistake == "z_swapped":
        return z * n + (1 - z) * h
    if mistake == "no_reset":
        return (1 - z) * torch.tanh(i_n + h_n) + z * h
    if mistake == "sum_no_gate":
        return n
    return (1 - z) * n + z * h  # order_zrn: the right formula on the wrong rows


_GRU_MISTAKES = (
    ("z_swapped", "you mixed z·n + (1 − z)·h, but the update gate z keeps the OLD state in PyTorch's GRU: "
                  "h' = (1 − z)·n + z·h"),
    ("reset_before_matmul", "r multiplies h before W_hn (Cho et al.'s first GRU, W_hn·(r ⊙ h) + b_hn); PyTorch "
                            "applies it after: n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))"),
    ("reset_without_bias", "r multiplies W_hn h but not b_hn; PyTorch's reset gate scales the whole "
                           "(W_hn h + b_hn), bias included"),
    ("order_zrn", "you read the gates' rows in the order z, r, n; weight_ih and weight_hh stack them as r, z, n "
                  "(rows 0..H-1: r, H..2H-1: z, 2H..3H-1: n)"),
    ("no_reset", "the reset gate r is never applied: n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))"),
    ("sum_no_gate", "you returned the candidate n itself; the new state mixes it with the old one: "
                    "h' = (1 − z)·n + z·h"),
)


@exercise("gru_cell", "04",
          task="gru_cell(x, h, weight_ih, weight_hh, bias_ih, bias_hh) → h' (batch, hidden): one step of PyTorch's "
               "GRU for x (batch, d_in) and h (batch, hidden). weight_ih (3·hidden, d_in), weight_hh "
               "(3·hidden, hidden), bias_ih and bias_hh (3·hidden,) stack the reset, update and candidate gates' "
               "rows in that order (r, z, n)",
          hint="split x @ weight_ih.T + bias_ih and h @ weight_hh.T + bias_hh into 3 chunks each (r, z, n); "
               "r = σ(i_r + h_r), z = σ(i_z + h_z), n = tanh(i_n + r * h_n), h' = (1 − z) * n + z * h",
          reference=reference_gru_cell)
def check_gru_cell(answer: Callable[..., Any]) -> None:
    batch, d_in, hidden = 3, 5, 4
    with seeded(0):
        cell = nn.GRUCell(d_in, hidden)
    with torch.no_grad():
        cell.bias_hh.mul_(4.0)  # biases large enough that leaving one out, or gating it wrongly, shows
    x, h = seeded_randn(batch, d_in, seed=1), seeded_randn(batch, hidden, seed=2)
    params = [p.detach().clone() for p in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)]
    inputs = (x.clone(), h.clone(), *(p.clone() for p in params))
    what = "gru_cell(x (3, 5), h (3, 4), weights of nn.GRUCell(5, 4))"
    got = expect_tensor(answer(*inputs), (batch, hidden), what)
    expect(torch.equal(inputs[0], x) and torch.equal(inputs[1], h)
           and all(torch.equal(a, b) for a, b in zip(inputs[2:], params)),
           f"{what} changed its inputs in place; compute new tensors instead")
    with torch.no_grad():
        expected = cell(x, h)
        wrongs = {mistake: _gru_cell_variant(x, h, *params, mistake=mistake) for mistake, _ in _GRU_MISTAKES}
    for mistake, message in _GRU_MISTAKES:
        expect(not (same(got, wrongs[mistake]) and not same(got, expected)), f"{what}: {message}")
    worst = max_difference(got, expected)
    expect(worst <= 1e-5, f"{what} differs from nn.GRUCell's step by up to {worst:.3g}")


# --- walking the sequence -----------------------------------------------------------------------------------------


def reference_gru_unroll(step: Callable[[Tensor, Tensor], Tensor], xs: Tensor, h0: Tensor) -> Tensor:
    h, states = h0, []
    for t in range(xs.shape[1]):  # one position after the other: step t needs the state step t - 1 made
        h = step(xs[:, t], h)
        states.append(h)
    return torch.stack(states, dim=1)


@exercise("gru_unroll", "04",
          task="gru_unroll(step, xs, h0) → the state after each position (batch, seq, hidden), for xs "
               "(batch, seq, d_in) and a start state h0 (batch, hidden): feed x_t and the state so far to "
               "step(x_t, h) → h', one position after the other, and keep every h'",
          hint="h = h0; for t in range(xs.shape[1]): h = step(xs[:, t], h) and append h; then "
               "torch.stack(states, dim=1)",
          reference=reference_gru_unroll)
def check_gru_unroll(answer: Callable[..., Any]) -> None:
    batch, seq, d_in, hidden = 2, 5, 3, 4
    with seeded(3):
        layer = nn.GRU(d_in, hidden, batch_first=True)
        cell = nn.GRUCell(d_in, hidden)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(layer, f"{name}_l0"))
    xs, h0 = seeded_randn(batch, seq, d_in, seed=4), seeded_randn(batch, hidden, seed=5)
    what = "gru_unroll(nn.GRUCell, xs (2, 5, 3), h0 (2, 4))"
    with torch.no_grad():
        expected = layer(xs, h0[None])[0]
        got = answer(cell, xs.clone(), h0.clone())
    expect(not (isinstance(got, Tensor) and tuple(got.shape) == (batch, hidden)),
           f"{what} returned only the last state (2, 4); return the state after every position, (2, 5, 4)")
    expect(not (isinstance(got, (list, tuple)) and len(got) == seq),
           f"{what} returned a {type(got).__name__} of {seq} states; stack them into one tensor along dim 1")
    got = expect_tensor(got, (batch, seq, hidden), what)
    with torch.no_grad():
        from_h0 = torch.stack([cell(xs[:, t], h0) for t in range(seq)], 1)
        shifted = torch.cat([h0[:, None], expected[:, :-1]], 1)
        backwards = layer(xs.flip(1), h0[None])[0]
    expect(not same(got, from_h0), f"{what}: every position started from h0; carry the state from one step to "
                                   f"the next, h = step(xs[:, t], h)")
    expect(not same(got, shifted), f"{what}: position t holds the state before reading x_t; it should hold the "
                                   f"state after it (h_1..h_T, not h_0..h_T-1)")
    expect(not (same(got, backwards) or same(got, backwards.flip(1))),
           f"{what}: read the sequence from the last position to the first; a causal model reads 0, 1, 2, ...")
    worst = max_difference(got, expected)
    expect(worst <= 1e-5, f"{what} differs from nn.GRU's output by up to {worst:.3g}")


# --- the parameters of a GRU layer --------------------------------------------------------------------------------


def reference_gru_layer_parameters(d_in: int, hidden: int) -> int:
    return 3 * (hidden * d_in + hidden * hidden + 2 * hidden)  # per gate: W_i, W_h, b_i, b_h


@exercise("gru_layer_parameters", "04",
          task="gru_layer_parameters(d_in, hidden) → the number of parameters of nn.GRU(d_in, hidden) (one layer): "
               "count the weights and biases of its three gates",
          hint="each of the gates r, z, n has an input matrix (hidden × d_in), a hidden matrix (hidden × hidden) and "
               "two bias vectors of hidden numbers (PyTorch keeps b_i and b_h apart)",
          reference=reference_gru_layer_parameters)
def check_gru_layer_parameters(answer: Callable[[int, int], Any]) -> None:
    for d_in, hidden in ((5, 4), (128, 445), (64, 146), (7, 1)):
        got = answer(d_in, hidden)
        what = f"gru_layer_parameters({d_in}, {hidden})"
        expect(isinstance(got, numbers.Integral) or (isinstance(got, Tensor) and got.numel() == 1
                                                     and not got.is_floating_point()),
               f"{what} returned {got!r}; expected a whole number")
        got = int(got)
        with seeded(0):  # building the layer draws its weights: from a random state of its own
            expected = count_parameters(nn.GRU(d_in, hidden))
        gates = hidden * d_in + hidden * hidden
        mistakes = (
            (3 * (gates + hidden), "one bias vector per gate; nn.GRU keeps two, b_i and b_h (6·hidden biases)"),
            (3 * gates, "left out the biases: nn.GRU has two bias vectors per gate"),
            (4 * (gates + 2 * hidden), "four gates: that is an LSTM; a GRU has three (r, z, n)"),
            (2 * (gates + 2 * hidden), "two gates; a GRU has three (reset r, update z and the candidate n)"),
            (3 * (hidden * d_in + 2 * hidden), "no hidden-to-hidden matrices: each gate also reads the state h, "
                                               "through a hidden × hidden matrix"),
        )
        for wrong, message in mistakes:
            expect(not (got == wrong and wrong != expected), f"{what} = {got:,}: {message}")
        expect(got == expected, f"{what} = {got:,}, but count_parameters(nn.GRU({d_in}, {hidden})) = {expected:,}")
