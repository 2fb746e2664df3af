"""Notebook 12's checkers: a right answer written by hand passes, each reference agrees with labkit's own code (and
with torch.optim.Muon and scipy), and each plausible mistake gets its own message (WRONG_ANSWERS, run by
test_exercises.py)."""

from __future__ import annotations

import math
import random
import statistics

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats

from labkit.attention import MultiHeadAttention
from labkit.blocks import relu_squared
from labkit.exercises import check, exercises
from labkit.exercises.speedrun import (_TIME_CASES, _WELCH_CASES, reference_newton_schulz, reference_qk_normalise,
                                       reference_relu_squared, reference_time_to_loss, reference_welch_t)
from labkit.speedrun import Run, welch_t_test

A, B, C = 3.4445, -4.7750, 2.0315


# --- time_to_loss ---------------------------------------------------------------------------------------------

def test_time_to_loss_written_by_hand_passes() -> None:
    def time_to_loss(clock, val, target):
        previous = None
        for t, v in zip(clock, val):
            if v <= target:
                if previous is None:
                    return t
                t0, v0 = previous
                return t0 + (target - v0) / (v - v0) * (t - t0)
            previous = (t, v)
        return None

    assert check("time_to_loss", time_to_loss, quiet=True)


def test_time_to_loss_reference_is_labkits_run_time_to() -> None:
    rng = random.Random(12)
    cases = [(clock, val, target) for _, clock, val, target in _TIME_CASES]
    for _ in range(50):  # noisy falling curves on an uneven clock, targets anywhere in their range and beyond
        clock = list(np.cumsum([rng.uniform(0.1, 1.0) for _ in range(8)]))
        val = [3.0 - 0.2 * i + rng.gauss(0, 0.15) for i in range(8)]
        cases.append((clock, val, rng.uniform(min(val) - 0.2, max(val) + 0.2)))
    for clock, val, target in cases:
        theirs = Run(seed=0, clock=clock, val=val).time_to(target)
        mine = reference_time_to_loss(clock, val, target)
        assert (mine is None and theirs is None) or math.isclose(mine, theirs, abs_tol=1e-12), (clock, val, target)
    assert math.isclose(reference_time_to_loss([0.4, 0.9, 1.6], [3.1, 2.7, 2.3], 2.6), 0.9 + 0.7 * 0.25)


def _time_to(clock, val, target, how="right"):
    """time_to_loss, or one mistake in it: how="step" takes the time of the first evaluation at or below the target,
    "wrong_end" interpolates from the other end, "last" takes the last crossing, "strict" needs val < target,
    "no_first" forgets the first evaluation's case, "zero" / "inf" stand for None."""
    hits = [i for i, v in enumerate(val) if (v < target if how == "strict" else v <= target)]
    if not hits:
        return {"zero": 0.0, "inf": math.inf}.get(how)
    i = hits[0]
    if how == "last":
        i = [i for i in hits if i == 0 or val[i - 1] > target][-1]
    if i == 0 and how != "no_first":
        return clock[0]
    t0, t1, v0, v1 = clock[i - 1], clock[i], val[i - 1], val[i]
    if how == "step":
        return t1
    share = (v0 - target) / (v0 - v1)
    return t0 + (t1 - t0) * (1 - share if how == "wrong_end" else share)


# --- relu_squared -------------------------------------------------------------------------------------------------

def test_relu_squared_written_by_hand_passes() -> None:
    assert check("relu_squared", lambda x: torch.where(x > 0, x * x, torch.zeros_like(x)), quiet=True)
    assert check("relu_squared", lambda x: x.clamp(min=0) ** 2, quiet=True)


def test_relu_squared_reference_is_labkits() -> None:
    x = torch.randn(3, 7, 16, generator=torch.Generator().manual_seed(0)) * 3
    assert torch.equal(reference_relu_squared(x), relu_squared(x))


def _relu_in_place(x):
    return F.relu(x, inplace=True) ** 2


# --- qk_normalise -------------------------------------------------------------------------------------------------

def test_qk_normalise_written_by_hand_passes() -> None:
    def qk_normalise(q):
        d_head = q.shape[-1]
        return q * d_head ** 0.5 / q.norm(dim=-1, keepdim=True)  # RMS = ‖q‖ / √d_head

    assert check("qk_normalise", qk_normalise, quiet=True)
    assert check("qk_normalise", lambda q: F.rms_norm(q, (q.shape[-1],)), quiet=True)


def test_qk_normalise_reference_is_rms_norm_and_labkits_qk_norm() -> None:
    gen = torch.Generator().manual_seed(1)
    for dtype in (torch.float32, torch.float64):
        q = torch.randn(2, 4, 6, 8, generator=gen, dtype=dtype) * 5
        torch.testing.assert_close(reference_qk_normalise(q), F.rms_norm(q, (8,)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        plain, normed = MultiHeadAttention(32, 4), MultiHeadAttention(32, 4, qk_norm=True)
    normed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 5, 32, generator=gen)
    with torch.no_grad():
        q, k, v = plain.queries_keys_values(x)
        q_normed, k_normed, v_normed = normed.queries_keys_values(x)
    torch.testing.assert_close(reference_qk_normalise(q), q_normed)
    torch.testing.assert_close(reference_qk_normalise(k), k_normed)
    assert torch.equal(v, v_normed)


def _rms_over(q, dim, eps=None):
    eps = torch.finfo(q.dtype).eps if eps is None else eps
    return q / (q.square().mean(dim, keepdim=True) + eps).sqrt()


def _qk_in_place(q):
    return q.div_(q.square().mean(-1, keepdim=True).sqrt())


# --- newton_schulz ------------------------------------------------------------------------------------------------

def _newton_schulz(G, steps=5, *, normalise="fro", transpose=True, back=True, cubic=False, side="left",
                   iterations=None, dtype=None, in_place=False):
    """Muon's iteration, or one mistake in it: normalise "none" / "spectral" instead of the Frobenius norm,
    transpose=False works on a tall G as it is, back=False leaves it transposed, cubic=True runs
    1.5·X − 0.5·X Xᵀ X, side="right" forms A = Xᵀ X, iterations fixes the number of steps, dtype computes in it,
    in_place divides G itself."""
    if in_place:
        X = G.div_(G.norm() + 1e-7)
    else:
        X = {"fro": lambda: G / (G.norm() + 1e-7), "none": lambda: G,
             "spectral": lambda: G / torch.linalg.matrix_norm(G, 2)}[normalise]()
    X = X if dtype is None else X.to(dtype)
    tall = transpose and G.shape[0] > G.shape[1]
    if tall:
        X = X.T
    for _ in range(steps if iterations is None else iterations):
        if cubic:
            X = 1.5 * X - 0.5 * X @ X.T @ X
        else:
            gram = X.T @ X if side == "right" else X @ X.T
            X = A * X + (B * gram + C * gram @ gram) @ X
    return X.T if tall and back else X


def test_newton_schulz_written_by_hand_passes() -> None:
    def newton_schulz(G, steps=5):  # the same polynomial, written on XᵀX from the right, with no transposing
        X = G / (G.norm() + 1e-7)
        eye = torch.eye(G.shape[1], dtype=G.dtype)
        for _ in range(steps):
            S = X.T @ X
            X = X @ (A * eye + B * S + C * S @ S)
        return X

    assert check("newton_schulz", newton_schulz, quiet=True)


def test_newton_schulz_on_a_tall_matrix_untransposed_passes() -> None:
    """Transposing a tall G only makes A = X Xᵀ the smaller matrix; the result is the same, so it is not required."""
    assert check("newton_schulz", lambda G, steps=5: _newton_schulz(G, steps, transpose=False), quiet=True)


def test_newton_schulz_reference_is_torch_optim_muons_update() -> None:
    gen = torch.Generator().manual_seed(2)
    for m, n in ((8, 8), (12, 6), (6, 12), (32, 20)):
        G = torch.randn(m, n, generator=gen)
        p = torch.nn.Parameter(torch.zeros(m, n))
        muon = torch.optim.Muon([p], lr=1.0, weight_decay=0.0, momentum=0.0, nesterov=False,
                                adjust_lr_fn="original")
        p.grad = G.clone()
        muon.step()  # p = −lr · √max(1, m/n) · NS(G), the iteration in bfloat16
        update = -p.detach() / math.sqrt(max(1.0, m / n))
        torch.testing.assert_close(reference_newton_schulz(G), update, atol=0.05, rtol=0.0)
        s = torch.linalg.svdvals(reference_newton_schulz(G.double()))
        assert 0.6 < float(s.min()) and float(s.max()) < 1.25, (m, n, s)


def _svd_orthogonal(G, steps=5):
    u, _, vh = torch.linalg.svd(G, full_matrices=False)
    return u @ vh


# --- welch_t ------------------------------------------------------------------------------------------------------

def test_welch_t_written_by_hand_passes() -> None:
    def welch_t(a, b):
        a, b = np.asarray(a), np.asarray(b)
        se_a, se_b = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
        t = (a.mean() - b.mean()) / np.sqrt(se_a + se_b)
        return float(t), float((se_a + se_b) ** 2 / (se_a ** 2 / (a.size - 1) + se_b ** 2 / (b.size - 1)))

    assert check("welch_t", welch_t, quiet=True)


def test_welch_t_reference_is_labkits_welch_t_test_and_scipys() -> None:
    rng = random.Random(12)
    samples = list(_WELCH_CASES)
    for n_a, n_b in ((2, 2), (3, 7), (10, 4), (5, 5)):
        samples.append(([rng.gauss(40, 1) for _ in range(n_a)], [rng.gauss(41, 4) for _ in range(n_b)]))
    for a, b in samples:
        t, df = reference_welch_t(a, b)
        labkit, scipy = welch_t_test(a, b), stats.ttest_ind(a, b, equal_var=False)
        assert math.isclose(t, labkit.t, rel_tol=1e-9) and math.isclose(df, labkit.df, rel_tol=1e-9)
        assert math.isclose(t, float(scipy.statistic), rel_tol=1e-6) and math.isclose(df, float(scipy.df),
                                                                                        rel_tol=1e-6)


def _welch(a, b, *, variance=statistics.variance, pooled=False, df="welch", sign=1, order="t_df"):
    """welch_t, or one mistake in it: variance=statistics.pvariance divides by n, pooled=True is Student's t,
    df="student" is n_a + n_b − 2, sign=-1 computes b − a, order="df_t" swaps the pair."""
    n_a, n_b = len(a), len(b)
    va, vb = variance(a) / n_a, variance(b) / n_b
    difference = sign * (statistics.mean(a) - statistics.mean(b))
    if pooled:
        sp2 = ((n_a - 1) * statistics.variance(a) + (n_b - 1) * statistics.variance(b)) / (n_a + n_b - 2)
        t = difference / math.sqrt(sp2 * (1 / n_a + 1 / n_b))
    else:
        t = difference / math.sqrt(va + vb)
    dof = n_a + n_b - 2 if df == "student" else (va + vb) ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1))
    return (dof, t) if order == "df_t" else (t, dof)


# --- the checks run on inputs of their own and leave the notebook's random state alone --------------------------

def test_checks_leave_the_callers_random_state_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    for name, ex in exercises("12").items():
        assert check(name, ex.reference, quiet=True), name
    assert torch.equal(torch.rand(3), expected)


# exercise name → plausible wrong answers and a piece of the message each must get (run by test_exercises.py)
WRONG_ANSWERS = {
    "time_to_loss": [
        (lambda c, v, t: _time_to(c, v, t, how="step"), "the time of the first evaluation at or below the target, "
                                                        "not interpolated"),
        (lambda c, v, t: _time_to(c, v, t, how="wrong_end"), "interpolated from the wrong end"),
        (lambda c, v, t: _time_to(c, v, t, how="last"), "the last time the loss came down through 2.2"),
        (lambda c, v, t: _time_to(c, v, t, how="strict"), "reaching the target means val ≤ target, equal included"),
        (lambda c, v, t: _time_to(c, v, t, how="no_first"), "return clock[0] = 0.2"),
        (lambda c, v, t: _time_to(c, v, t, how="zero"), "returned 0, but the loss never reaches the target"),
        (lambda c, v, t: _time_to(c, v, t, how="inf"), "returned inf, but the loss never reaches the target"),
    ],
    "relu_squared": [
        (lambda x: x ** 2, "negative inputs came out positive"),
        (lambda x: F.relu(x ** 2), "or the ReLU came after the square, where it changes nothing"),
        (lambda x: F.relu(x), "not squared: that is ReLU(x) itself"),
        (lambda x: F.gelu(x) ** 2, "that is GELU(x)²"),
        (lambda x: x.relu_().square_(), "changed x in place"),
        (_relu_in_place, "changed x in place"),
        (lambda x: F.relu(x).square().sum(), "has shape (), expected (2, 4, 8)"),
    ],
    "qk_normalise": [
        (lambda q: q / q.norm(dim=-1, keepdim=True), "every vector has length 1, so its RMS is 1/√8 = 0.354"),
        (lambda q: _rms_over(q, 2), "normalised over the sequence (dim 2, 5 positions)"),
        (lambda q: _rms_over(q, 1), "normalised over the heads (dim 1, 3 heads)"),
        (lambda q: F.layer_norm(q, q.shape[-1:]), "the mean was subtracted, which is LayerNorm"),
        (lambda q: q / q.square().mean().sqrt(), "divided by the RMS of the whole tensor"),
        (lambda q: q / q.square().mean(-1, keepdim=True), "divided by mean(q²) itself; take its square root"),
        (_qk_in_place, "changed q in place"),
        (lambda q: _rms_over(q, -1, eps=1e-5), "if you added an ε of your own"),
    ],
    "newton_schulz": [
        (lambda G, steps=5: _newton_schulz(G, steps, normalise="none"), "without dividing G by its Frobenius "
                                                                        "norm first"),
        (lambda G, steps=5: _newton_schulz(G, steps, cubic=True), "is the cubic iteration 1.5·X − 0.5·X Xᵀ X"),
        (lambda G, steps=5: G / G.norm(), "is G / ‖G‖_F, singular values from 0.02 to 0.58"),
        (_svd_orthogonal, "is U·Vᵀ from the SVD"),
        (lambda G, steps=5: _newton_schulz(G, steps, side="right"), "the iteration diverges; check that A = X @ X.T"),
        (lambda G, steps=5: _newton_schulz(G, steps, back=False), "returned shape (6, 12): a tall G is worked on "
                                                                  "transposed, so transpose the result back"),
        (lambda G, steps=5: _newton_schulz(G, steps, iterations=5), "gave what 5 steps give"),
        (lambda G, steps=5: _newton_schulz(G, steps, iterations=steps + 1), "ran 6 steps"),
        (lambda G, steps=5: _newton_schulz(G, steps, normalise="spectral"), "divided by its largest singular value"),
        (lambda G, steps=5: _newton_schulz(G, steps, dtype=torch.bfloat16), "returned torch.bfloat16"),
        (lambda G, steps=5: _newton_schulz(G, steps, in_place=True), "changed G in place"),
    ],
    "welch_t": [
        (lambda a, b: _welch(a, b, pooled=True, df="student"), "is Student's t, with one variance pooled"),
        (lambda a, b: _welch(a, b, variance=statistics.pvariance), "uses variances divided by n"),
        (lambda a, b: _welch(a, b, df="student"), "df = n_a + n_b − 2 = 6 is Student's"),
        (lambda a, b: _welch(a, b, sign=-1), "has the wrong sign"),
        (lambda a, b: _welch(a, b, order="df_t"), "is (df, t); return (t, df)"),
        (lambda a, b: (float(np.mean(a) - np.mean(b)) / math.sqrt(np.var(a) / len(a) + np.var(b) / len(b)), 3.0),
         "numpy's var() by default"),
        (lambda a, b: tuple(stats.ttest_ind(a, b, equal_var=False)), "is the two-sided p-value"),
    ],
}
