"""Notebook 04's recurrent exercises: a GRU step, the walk along a sequence, a GRU layer's parameter count. Right
answers written other ways pass, the references equal PyTorch's GRU, and plausible mistakes are refused, each with
its own message (WRONG_ANSWERS, run by test_exercises.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from labkit.blocks import count_parameters
from labkit.exercises import check, exercises
from labkit.exercises.recurrent import reference_gru_cell, reference_gru_layer_parameters, reference_gru_unroll


def _gates(x, h, weight_ih, weight_hh, bias_ih, bias_hh):
    """(r, z, i_n, h_n) of one GRU step, by PyTorch's layout (rows r, z, n)."""
    i_r, i_z, i_n = F.linear(x, weight_ih, bias_ih).chunk(3, -1)
    h_r, h_z, h_n = F.linear(h, weight_hh, bias_hh).chunk(3, -1)
    return torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z), i_n, h_n


# --- gru_cell -----------------------------------------------------------------------------------------------------

def test_gru_cell_written_by_hand_passes() -> None:
    def gru_cell(x, h, weight_ih, weight_hh, bias_ih, bias_hh):
        r, z, i_n, h_n = _gates(x, h, weight_ih, weight_hh, bias_ih, bias_hh)
        n = torch.tanh(i_n + r * h_n)
        return n + z * (h - n)  # = (1 - z)·n + z·h

    assert check("gru_cell", gru_cell, quiet=True)
    assert check("gru_cell", lambda x, h, *weights: torch._VF.gru_cell(x, h, *weights), quiet=True)


def test_gru_cell_reference_is_torchs_gru_cell() -> None:
    for batch, d_in, hidden in ((1, 1, 1), (4, 7, 3), (2, 16, 32)):
        torch.manual_seed(batch + d_in + hidden)
        cell = nn.GRUCell(d_in, hidden)
        x, h = torch.randn(batch, d_in), torch.randn(batch, hidden)
        with torch.no_grad():
            torch.testing.assert_close(reference_gru_cell(x, h, cell.weight_ih, cell.weight_hh, cell.bias_ih,
                                                          cell.bias_hh), cell(x, h))


def _z_swapped(x, h, *weights):
    r, z, i_n, h_n = _gates(x, h, *weights)
    n = torch.tanh(i_n + r * h_n)
    return z * n + (1 - z) * h


def _reset_before_matmul(x, h, weight_ih, weight_hh, bias_ih, bias_hh):
    r, z, i_n, _ = _gates(x, h, weight_ih, weight_hh, bias_ih, bias_hh)
    w_hn, b_hn = weight_hh.chunk(3, 0)[2], bias_hh.chunk(3)[2]
    n = torch.tanh(i_n + F.linear(r * h, w_hn, b_hn))
    return (1 - z) * n + z * h


def _reset_without_bias(x, h, weight_ih, weight_hh, bias_ih, bias_hh):
    r, z, i_n, _ = _gates(x, h, weight_ih, weight_hh, bias_ih, bias_hh)
    w_hn, b_hn = weight_hh.chunk(3, 0)[2], bias_hh.chunk(3)[2]
    n = torch.tanh(i_n + r * (h @ w_hn.T) + b_hn)
    return (1 - z) * n + z * h


def _order_zrn(x, h, weight_ih, weight_hh, bias_ih, bias_hh):
    i_z, i_r, i_n = F.linear(x, weight_ih, bias_ih).chunk(3, -1)
    h_z, h_r, h_n = F.linear(h, weight_hh, bias_hh).chunk(3, -1)
    r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
    return (1 - z) * torch.tanh(i_n + r * h_n) + z * h


def _no_reset(x, h, *weights):
    _, z, i_n, h_n = _gates(x, h, *weights)
    return (1 - z) * torch.tanh(i_n + h_n) + z * h


def _candidate_only(x, h, *weights):
    r, _, i_n, h_n = _gates(x, h, *weights)
    return torch.tanh(i_n + r * h_n)


def _in_place(x, h, *weights):
    r, z, i_n, h_n = _gates(x, h, *weights)
    n = torch.tanh(i_n + r * h_n)
    return h.mul_(z).add_((1 - z) * n)


def _all_gates(x, h, weight_ih, weight_hh, bias_ih, bias_hh):
    return torch.sigmoid(F.linear(x, weight_ih, bias_ih) + F.linear(h, weight_hh, bias_hh))


# --- gru_unroll ---------------------------------------------------------------------------------------------------

def test_gru_unroll_written_by_hand_passes() -> None:
    def gru_unroll(step, xs, h0):
        out = torch.empty(xs.shape[0], xs.shape[1], h0.shape[1])
        h = h0
        for t, x_t in enumerate(xs.unbind(1)):
            h = out[:, t] = step(x_t, h)
        return out

    assert check("gru_unroll", gru_unroll, quiet=True)


def test_gru_unroll_reference_with_a_cell_is_torchs_gru() -> None:
    torch.manual_seed(0)
    layer, cell = nn.GRU(3, 5, batch_first=True), nn.GRUCell(3, 5)
    cell.load_state_dict({name: getattr(layer, f"{name}_l0") for name in ("weight_ih", "weight_hh", "bias_ih",
                                                                            "bias_hh")})
    xs, h0 = torch.randn(4, 9, 3), torch.randn(4, 5)
    with torch.no_grad():
        torch.testing.assert_close(reference_gru_unroll(cell, xs, h0), layer(xs, h0[None])[0])


def _unroll(step, xs, h0, *, carry=True, before=False, backwards=False):
    h, states = h0, []
    for t in (reversed(range(xs.shape[1])) if backwards else range(xs.shape[1])):
        if before:
            states.append(h)
        h_next = step(xs[:, t], h if carry else h0)
        h = h_next
        if not before:
            states.append(h)
    return torch.stack(states, 1)


def _last_only(step, xs, h0):
    h = h0
    for t in range(xs.shape[1]):
        h = step(xs[:, t], h)
    return h


def _as_list(step, xs, h0):
    h, states = h0, []
    for t in range(xs.shape[1]):
        h = step(xs[:, t], h)
        states.append(h)
    return states


# --- gru_layer_parameters -----------------------------------------------------------------------------------------

def test_gru_layer_parameters_written_by_hand_passes() -> None:
    assert check("gru_layer_parameters", lambda d_in, hidden: 3 * hidden * (d_in + hidden + 2), quiet=True)
    assert check("gru_layer_parameters", lambda d_in, hidden: torch.tensor(3 * hidden * (d_in + hidden + 2)),
                 quiet=True)


def test_gru_layer_parameters_reference_is_count_parameters() -> None:
    for d_in, hidden in ((1, 1), (3, 8), (64, 146), (200, 17)):
        assert reference_gru_layer_parameters(d_in, hidden) == count_parameters(nn.GRU(d_in, hidden))


# --- the checks run on inputs of their own and leave the notebook's random state alone --------------------------

def test_checks_leave_the_callers_random_state_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    for name in ("gru_cell", "gru_unroll", "gru_layer_parameters"):
        assert exercises("04")[name].notebook == "04"
        assert check(name, exercises("04")[name].reference, quiet=True), name
    assert torch.equal(torch.rand(3), expected)


# exercise name → plausible wrong answers and a piece of the message each must get (run by test_exercises.py)
WRONG_ANSWERS = {
    "gru_cell": [
        (_z_swapped, "the update gate z keeps the OLD state"),
        (_reset_before_matmul, "Cho et al.'s first GRU"),
        (_reset_without_bias, "r multiplies W_hn h but not b_hn"),
        (_order_zrn, "in the order z, r, n"),
        (_no_reset, "the reset gate r is never applied"),
        (_candidate_only, "returned the candidate n itself"),
        (_in_place, "changed its inputs in place"),
        (_all_gates, "has shape (3, 12), expected (3, 4)"),
    ],
    "gru_unroll": [
        (lambda step, xs, h0: _unroll(step, xs, h0, carry=False), "every position started from h0"),
        (lambda step, xs, h0: _unroll(step, xs, h0, before=True), "holds the state before reading x_t"),
        (lambda step, xs, h0: _unroll(step, xs, h0, backwards=True), "read the sequence from the last position"),
        (_last_only, "returned only the last state"),
        (_as_list, "returned a list of 5 states"),
    ],
    "gru_layer_parameters": [
        (lambda d_in, hidden: 3 * hidden * (d_in + hidden + 1), "one bias vector per gate"),
        (lambda d_in, hidden: 3 * hidden * (d_in + hidden), "left out the biases"),
        (lambda d_in, hidden: 4 * hidden * (d_in + hidden + 2), "that is an LSTM"),
        (lambda d_in, hidden: 2 * hidden * (d_in + hidden + 2), "two gates"),
        (lambda d_in, hidden: 3 * hidden * (d_in + 2), "no hidden-to-hidden matrices"),
        (lambda d_in, hidden: 3.0 * hidden * (d_in + hidden + 2), "expected a whole number"),
    ],
}
