"""Notebook 12's exercises, in the order the notebook teaches them: the time a run takes to reach a loss, read off
its evaluations; ReLU²; QK-norm's scaling of every query to RMS 1; Muon's Newton–Schulz orthogonalisation; and
Welch's t statistic with its degrees of freedom. The rules are labkit's (`labkit.speedrun`, `labkit.blocks`,
`labkit.attention`, `labkit.loop`)."""

from __future__ import annotations

import math
import numbers
import statistics
from typing import Any, Callable

import torch
import torch.nn.functional as F
from scipy import stats
from torch import Tensor

from labkit.exercises import expect, exercise
from labkit.exercises._compare import expect_tensor, max_difference, same, seeded_randn


# --- the time to reach a loss -------------------------------------------------------------------------------------

def reference_time_to_loss(clock: list[float], val: list[float], target: float) -> float | None:
    for i, v in enumerate(val):
        if v <= target:
            if i == 0:  # already there at the first evaluation: nothing before it to interpolate from
                return clock[0]
            t0, t1, v0 = clock[i - 1], clock[i], val[i - 1]
            return t0 + (t1 - t0) * (v0 - target) / (v0 - v)
    return None


# (what the case shows, clock, val, target): the clock's steps are uneven, as a real run's are
_TIME_CASES = [
    ("the loss crosses the target between two evaluations", [0.4, 0.9, 1.6, 2.2], [3.1, 2.7, 2.3, 2.0], 2.6),
    ("the loss goes down, up, and down again", [0.5, 1.0, 1.5, 2.0, 2.5], [3.0, 2.0, 2.6, 2.4, 1.8], 2.2),
    ("the loss hits the target exactly, then rises", [0.3, 0.8, 1.1], [2.9, 2.5, 2.7], 2.5),
    ("the loss is below the target at the first evaluation", [0.2, 0.7, 1.3], [1.5, 1.4, 1.35], 2.0),
    ("the loss never reaches the target", [0.5, 1.0, 1.4], [3.0, 2.8, 2.7], 2.0),
]


def _crossing(val: list[float], target: float) -> int | None:
    """The index of the first evaluation at or below `target`, or None."""
    return next((i for i, v in enumerate(val) if v <= target), None)


def _last_crossing_time(clock: list[float], val: list[float], target: float) -> float | None:
    """The interpolated time of the last evaluation that went from above `target` to at or below it."""
    for i in reversed(range(1, len(val))):
        if val[i] <= target < val[i - 1]:
            t0, t1, v0 = clock[i - 1], clock[i], val[i - 1]
            return t0 + (t1 - t0) * (v0 - target) / (v0 - val[i])
    return None


@exercise("time_to_loss", "12",
          task="time_to_loss(clock, val, target) → float or None: clock[i] is the training seconds at evaluation "
               "i and val[i] the validation loss there (two lists of the same length). Return the training "
               "seconds at which val first reached ≤ target, interpolated linearly between that evaluation and the "
               "one before it; clock[0] if val[0] is already ≤ target; None if val never gets there",
          hint="find the first i with val[i] <= target; if i == 0 return clock[0]; else return "
               "t0 + (t1 − t0)·(v0 − target)/(v0 − v1) with (t0, v0) the evaluation before and (t1, v1) evaluation i",
          reference=reference_time_to_loss)
def check_time_to_loss(answer: Callable[..., Any]) -> None:
    for case, clock, val, target in _TIME_CASES:
        what = f"time_to_loss({clock}, {val}, {target})"
        got = answer(list(clock), list(val), target)
        right = reference_time_to_loss(clock, val, target)
        i = _crossing(val, target)
        if right is None:
            expect(not (isinstance(got, numbers.Real) and got == 0),
                   f"{what} returned 0, but {case}: return None — 0 s would mean the run got there at once")
            expect(not (isinstance(got, numbers.Real) and math.isinf(got)),
                   f"{what} returned inf, but {case}: return None (the notebook leaves such runs out of the means)")
            expect(got is None, f"{what} returned {got!r}, but {case}: return None")
            continue
        expect(got is not None, f"{what} returned None, but val[{i}] = {val[i]} ≤ {target} ({case}): reaching "
                                f"the target means val ≤ target, equal included")
        expect(isinstance(got, numbers.Real) and not isinstance(got, bool),
               f"{what} returned a {type(got).__name__}; return the seconds as a float")
        got = float(got)
        if i == 0:
            expect(math.isclose(got, clock[0], abs_tol=1e-9),
                   f"{what} = {got:.4g}, but {case} (val[0] = {val[0]} ≤ {target}): return clock[0] = {clock[0]}; "
                   f"there is no evaluation before it to interpolate from (val[i − 1] at i = 0 is val[-1], the "
                   f"last one)")
            continue
        t0, t1, v0, v1 = clock[i - 1], clock[i], val[i - 1], val[i]
        share = (v0 - target) / (v0 - v1)
        expect(v1 == target or not math.isclose(got, t1, abs_tol=1e-9),
               f"{what} = {got:.4g}, the time of the first evaluation at or below the target, not interpolated: the "
               f"loss went from {v0} at {t0} s to {v1} at {t1} s, and crossed {target} {share:.0%} of the way, at "
               f"{t0} + ({t1} − {t0})·({v0} − {target})/({v0} − {v1}) = {right:.4g} s")
        expect(not math.isclose(got, t0 + (t1 - t0) * (1 - share), abs_tol=1e-9),
               f"{what} = {got:.4g}: interpolated from the wrong end. From {v0} to {v1} the loss reaches {target} "
               f"{share:.0%} of the way, so the time is {share:.0%} of the way from t0 = {t0} s to t1 = {t1} s: "
               f"t0 + (t1 − t0)·(v0 − target)/(v0 − v1) = {right:.4g} s")
        last = _last_crossing_time(clock, val, target)
        expect(last is None or math.isclose(last, right, abs_tol=1e-9) or not math.isclose(got, last, abs_tol=1e-9),
               f"{what} = {got:.4g}, the last time the loss came down through {target}; {case}, and it first got "
               f"there between {t0} s and {t1} s, at {right:.4g} s: stop at the first evaluation ≤ target")
        expect(math.isclose(got, right, abs_tol=1e-9), f"{what} = {got:.4g}, expected {right:.4g} ({case})")


# --- ReLU² ----------------------------------------------------------------------------------------------------------

def reference_relu_squared(x: Tensor) -> Tensor:
    return F.relu(x).square()


@exercise("relu_squared", "12",
          task="relu_squared(x) → ReLU(x)², elementwise, the same shape as x (any shape): 0 where x ≤ 0, x² where "
               "x > 0; leave x itself unchanged",
          hint="F.relu(x) ** 2 (or x.clamp(min=0).square()): the ReLU first, then the square; no in-place ops on x",
          reference=reference_relu_squared)
def check_relu_squared(answer: Callable[..., Any]) -> None:
    x = 2 * seeded_randn(2, 4, 8, seed=1201)
    x[0, 0, 0] = 0.0
    given = x.clone()
    what = "relu_squared(x of shape (2, 4, 8))"
    out = answer(given)
    expect(torch.equal(given, x), f"{what} changed x in place (x.relu_(), F.relu(x, inplace=True), x **= 2, …): "
                                  f"in a model x is the previous layer's output, which backward still needs; "
                                  f"compute a new tensor, F.relu(x) ** 2")
    out = expect_tensor(out, tuple(x.shape), what).detach()
    lowest = int(x.argmin())
    wrong = {
        f"negative inputs came out positive (x = {float(x.flatten()[lowest]):.3f} gave "
        f"{float(out.flatten()[lowest]):.3f}, not 0): that is x², with no ReLU — or the ReLU came after the square, "
        f"where it changes nothing since x² ≥ 0. ReLU first, then square: F.relu(x) ** 2": x.square(),
        "not squared: that is ReLU(x) itself; square it, F.relu(x) ** 2": F.relu(x),
        "that is GELU(x)²; the speedrun's activation squares the ReLU: F.relu(x) ** 2": F.gelu(x).square(),
    }
    for message, value in wrong.items():
        expect(not same(out, value, 1e-5), message)
    worst = max_difference(out, reference_relu_squared(x))
    expect(worst <= 1e-5, f"differs from F.relu(x) ** 2 by up to {worst:.3g}")


# --- QK-norm ------------------------------------------------------------------------------------------------------

def reference_qk_normalise(q: Tensor) -> Tensor:
    eps = torch.finfo(q.dtype).eps  # what F.rms_norm uses when eps=None
    return q / (q.square().mean(-1, keepdim=True) + eps).sqrt()


@exercise("qk_normalise", "12",
          task="qk_normalise(q) → (batch, heads, seq, d_head): q (batch, heads, seq, d_head) with each vector over "
               "d_head (each head's query at each position) divided by its root-mean-square, so that its RMS is 1: "
               "q / √(mean(q², last dim) + ε) with ε = torch.finfo(q.dtype).eps — what F.rms_norm(q, (d_head,)) "
               "computes. No weight, no mean subtracted; leave q itself unchanged",
          hint="q / (q.square().mean(-1, keepdim=True) + torch.finfo(q.dtype).eps).sqrt(): keepdim=True keeps one "
               "RMS per vector, broadcast over its d_head features",
          reference=reference_qk_normalise)
def check_qk_normalise(answer: Callable[..., Any]) -> None:
    batch, heads, seq, d_head = 2, 3, 5, 8
    # off-centre vectors, each with a scale of its own (from about 0.3 to 3)
    q = (seeded_randn(batch, heads, seq, d_head, seed=1202) + 0.5) * (0.5 * seeded_randn(batch, heads, seq, 1,
                                                                                           seed=1203)).exp()
    given = q.clone()
    what = f"qk_normalise(q of shape {(batch, heads, seq, d_head)})"
    out = answer(given)
    expect(torch.equal(given, q), f"{what} changed q in place (q /= …, q.div_(…)): the attention still needs q; "
                                  f"return a new tensor")
    out = expect_tensor(out, tuple(q.shape), what).detach()
    rms = out.square().mean(-1).sqrt()  # (batch, heads, seq): each vector's RMS
    expect(not bool(((out.mean(-1).abs() < 1e-3) & ((rms - 1).abs() < 1e-3)).all()),
           "every vector has mean 0 over d_head: the mean was subtracted, which is LayerNorm; QK-norm (RMSNorm) only "
           "divides by √(mean(q²) + ε), and keeps the mean")
    expect(not bool(((rms - d_head ** -0.5).abs() < 1e-3).all()),
           f"every vector has length 1, so its RMS is 1/√{d_head} = {d_head ** -0.5:.3f}, not 1: you divided by the "
           f"L2 norm √(sum q²); divide by the root-mean-square √(mean(q²)) = ‖q‖/√d_head")
    eps = torch.finfo(q.dtype).eps
    wrong = {
        f"normalised over the sequence (dim 2, {seq} positions): each query vector runs over d_head, the last dim; "
        f"take the mean over dim=-1": q / (q.square().mean(2, keepdim=True) + eps).sqrt(),
        f"normalised over the heads (dim 1, {heads} heads): each query vector runs over d_head, the last dim; take "
        f"the mean over dim=-1": q / (q.square().mean(1, keepdim=True) + eps).sqrt(),
        "divided by the RMS of the whole tensor: every vector (each head at each position) gets its own RMS, "
        "q.square().mean(-1, keepdim=True)": q / (q.square().mean() + eps).sqrt(),
        "divided by mean(q²) itself; take its square root, √(mean(q²) + ε)": q / (q.square().mean(-1, keepdim=True)
                                                                                   + eps),
    }
    for message, value in wrong.items():
        expect(not same(out, value, 1e-4), message)
    expect(bool(((rms - 1).abs() < 1e-3).all()),
           f"each vector's RMS over d_head should be 1, but they range from {float(rms.min()):.3f} to "
           f"{float(rms.max()):.3f}")
    worst = max_difference(out, F.rms_norm(q, (d_head,)))
    expect(worst <= 1e-5, f"differs from F.rms_norm(q, (d_head,)) by up to {worst:.3g}: if you added an ε of your "
                          f"own, use F.rms_norm's, torch.finfo(q.dtype).eps = {eps:.3g}")


# --- Muon's Newton–Schulz iteration ---------------------------------------------------------------------------------

_ABC = (3.4445, -4.7750, 2.0315)  # the quintic's coefficients, as torch.optim.Muon's


def reference_newton_schulz(G: Tensor, steps: int = 5) -> Tensor:
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G / (G.norm() + 1e-7)  # every singular value now ≤ 1, where the iteration converges
    tall = G.shape[0] > G.shape[1]
    if tall:  # work on the wide side: A below is then the smaller matrix
        X = X.T
    for _ in range(steps):
        A = X @ X.T
        B = b * A + c * A @ A
        X = a * X + B @ X
    return X.T if tall else X


def _spread_matrix(m: int, n: int, seed: int) -> Tensor:
    """(m, n) with random singular vectors and singular values spread evenly from 0.1 to 3, as a gradient's are
    spread: a few strong directions, many weak ones."""
    gen = torch.Generator().manual_seed(seed)
    k = min(m, n)
    u = torch.linalg.qr(torch.randn(m, k, generator=gen)).Q
    v = torch.linalg.qr(torch.randn(n, k, generator=gen)).Q
    return u @ torch.diag(torch.linspace(0.1, 3.0, k)) @ v.T


def _iterate(X: Tensor, steps: int, cubic: bool = False) -> Tensor:
    """`steps` Newton–Schulz steps on X as given: the quintic, or the cubic 1.5·X − 0.5·X Xᵀ X."""
    a, b, c = _ABC
    for _ in range(steps):
        if cubic:
            X = 1.5 * X - 0.5 * X @ X.T @ X
        else:
            A = X @ X.T
            X = a * X + (b * A + c * A @ A) @ X
    return X


def _singular_values(X: Tensor) -> str:
    """The range of X's singular values, "from 0.68 to 1.13", for the messages."""
    s = torch.linalg.svdvals(X.detach().double())
    return f"from {float(s.min()):.2f} to {float(s.max()):.2f}"


def _run_newton_schulz(answer: Callable[..., Any], G: Tensor, steps: int | None) -> tuple[Tensor, str]:
    """answer(G) (steps None: the default) or answer(G, steps), refused if it changed G, returned the wrong shape or
    dtype, or diverged."""
    m, n = G.shape
    what = f"newton_schulz(G of shape {(m, n)}{'' if steps is None else f', {steps}'})"
    given = G.clone()
    out = answer(given) if steps is None else answer(given, steps)
    expect(torch.equal(given, G), f"{what} changed G in place (G /= …, G.div_(…)): in Muon G is the momentum "
                                  f"buffer, which must stay as it was; work on a new tensor")
    expect(not (isinstance(out, Tensor) and m != n and tuple(out.shape) == (n, m)),
           f"{what} returned shape {(n, m)}: a tall G is worked on transposed, so transpose the result back")
    out = expect_tensor(out, (m, n), what).detach()
    expect(out.dtype == G.dtype, f"{what} returned {out.dtype}; compute in G's dtype ({G.dtype}). On a GPU Muon runs "
                                 f"the iteration in bfloat16 for speed, but this check compares the arithmetic")
    if not bool(out.isfinite().all()):  # diverged: G not normalised, or the iteration itself is wrong
        unit = G / G.norm()
        again = answer(unit) if steps is None else answer(unit, steps)
        expect(not (isinstance(again, Tensor) and bool(again.isfinite().all())),
               f"{what} holds inf or NaN, but not when G is scaled to ‖G‖_F = 1 beforehand: without dividing G by its "
               f"Frobenius norm first, singular values above 1 grow without bound; X = G / (G.norm() + 1e-7)")
        expect(False, f"{what} holds inf or NaN, even for G scaled to ‖G‖_F = 1 beforehand: the iteration diverges; "
                      f"check that A = X @ X.T (the Gram matrix of X's rows, which B @ X multiplies from the left, "
                      f"not X.T @ X) and that (a, b, c) = (3.4445, −4.7750, 2.0315)")
    return out, what


@exercise("newton_schulz", "12",
          task="newton_schulz(G, steps=5) → (m, n): Muon's orthogonalisation of a 2-D matrix G (m, n), the "
               "iteration torch.optim.Muon runs (there in bfloat16), which the check compares with — so the SVD's "
               "U·Vᵀ, which it approximates, does not pass. X = G / (‖G‖_F + 1e-7); if m > n work on X.T "
               "instead; then `steps` times: A = X @ X.T, B = b·A + c·A @ A, X = a·X + B @ X with (a, b, c) = "
               "(3.4445, −4.7750, 2.0315); transpose back if you transposed. Compute in G's dtype and leave G "
               "unchanged",
          hint="X = G / (G.norm() + 1e-7); tall = G.shape[0] > G.shape[1]; if tall: X = X.T; then the loop "
               "A = X @ X.T; B = b * A + c * A @ A; X = a * X + B @ X; return X.T if tall else X",
          reference=reference_newton_schulz)
def check_newton_schulz(answer: Callable[..., Any]) -> None:
    G = _spread_matrix(8, 8, seed=1204)
    out, what = _run_newton_schulz(answer, G, None)
    X = G / (G.norm() + 1e-7)
    u, _, vh = torch.linalg.svd(G)
    expected = reference_newton_schulz(G)
    wrong = {
        f"{what} is G / ‖G‖_F, singular values {_singular_values(X)}: that is only the starting point; run the "
        f"`steps` iterations on it": X,
        f"{what} is U·Vᵀ from the SVD (every singular value exactly 1): the exact orthogonalisation, which Muon "
        f"approximates with a few matrix products because an SVD is slow on a GPU; write the iteration": u @ vh,
        f"{what} is the cubic iteration 1.5·X − 0.5·X Xᵀ X, singular values "
        f"{_singular_values(_iterate(X, 5, cubic=True))}: its slope at 0 is 1.5, so weak directions stay weak "
        f"after 5 steps. Muon's quintic a·X + (b·A + c·A²)·X has slope a = 3.4445 at 0 and brings them all near 1":
            _iterate(X, 5, cubic=True),
        f"{what}: G was divided by its largest singular value; divide by the Frobenius norm G.norm(), which is "
        f"cheap and ≥ the largest singular value": _iterate(G / torch.linalg.matrix_norm(G, 2), 5),
        f"{what} ran 6 steps; run exactly `steps` (5 by default): for _ in range(steps)": _iterate(X, 6),
        f"{what} ran 4 steps; run exactly `steps` (5 by default): for _ in range(steps)": _iterate(X, 4),
    }
    for message, value in wrong.items():
        expect(not same(out, value, 1e-4), message)
    s = torch.linalg.svdvals(out.double())
    expect(0.6 <= float(s.min()) and float(s.max()) <= 1.25,
           f"{what}'s singular values run {_singular_values(out)}; after 5 steps of Muon's iteration they all lie "
           f"between about 0.6 and 1.25, so that the update moves every direction about alike")
    worst = max_difference(out, expected)
    expect(worst <= 1e-4, f"{what} differs from Muon's iteration by up to {worst:.3g}; check the coefficients "
                          f"(a, b, c) = (3.4445, −4.7750, 2.0315) and B = b·A + c·A @ A, X = a·X + B @ X")
    for (m, n), steps in (((12, 6), 5), ((6, 12), 3), ((12, 6), 3)):  # tall and wide, `steps` given
        G = _spread_matrix(m, n, seed=1205 + m)
        out, what = _run_newton_schulz(answer, G, steps)
        expect(steps == 5 or not same(out, reference_newton_schulz(G, 5), 1e-4),
               f"{what} gave what 5 steps give: run `steps` iterations, for _ in range(steps)")
        worst = max_difference(out, reference_newton_schulz(G, steps))
        expect(worst <= 1e-4, f"{what} differs from Muon's iteration by up to {worst:.3g}")
    G = _spread_matrix(6, 12, seed=1211)
    out, _ = _run_newton_schulz(answer, G, 5)
    scaled, _ = _run_newton_schulz(answer, 100 * G, 5)
    worst = max_difference(scaled, out)
    expect(worst <= 1e-4, f"newton_schulz(100·G, 5) differs from newton_schulz(G, 5) by up to "
                          f"{worst:.3g}: Muon's update must not depend on the gradient's size; divide G by its "
                          f"Frobenius norm first")


# --- Welch's t-test -----------------------------------------------------------------------------------------------

def reference_welch_t(a: list[float], b: list[float]) -> tuple[float, float]:
    va = statistics.variance(a) / len(a)  # the squared standard error of a's mean (n − 1 in the variance)
    vb = statistics.variance(b) / len(b)
    t = (statistics.mean(a) - statistics.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return t, df


# two samples of seconds each: different sizes, spreads and signs of the difference
_WELCH_CASES = [
    ([41.2, 39.8, 43.5, 40.6, 42.9], [44.1, 49.8, 46.3]),
    ([12.0, 12.4, 11.7, 12.9], [10.8, 11.1, 13.0, 9.9, 12.2, 10.4]),
]


def _population_welch(a: list[float], b: list[float]) -> tuple[float, float]:
    """Welch's t and df with the variances divided by n instead of n − 1."""
    va, vb = statistics.pvariance(a) / len(a), statistics.pvariance(b) / len(b)
    t = (statistics.mean(a) - statistics.mean(b)) / math.sqrt(va + vb)
    return t, (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))


def _pooled_t(a: list[float], b: list[float]) -> float:
    """Student's t: one variance pooled over both samples."""
    na, nb = len(a), len(b)
    pooled = ((na - 1) * statistics.variance(a) + (nb - 1) * statistics.variance(b)) / (na + nb - 2)
    return (statistics.mean(a) - statistics.mean(b)) / math.sqrt(pooled * (1 / na + 1 / nb))


@exercise("welch_t", "12",
          task="welch_t(a, b) → (t, df): a and b are lists of seconds (one per seed), of any sizes n_a, n_b ≥ 2. "
               "t = (mean a − mean b) / √(s_a²/n_a + s_b²/n_b) with the sample variances s² (n − 1 in the "
               "denominator), and the Welch–Satterthwaite degrees of freedom df = (s_a²/n_a + s_b²/n_b)² / "
               "((s_a²/n_a)²/(n_a − 1) + (s_b²/n_b)²/(n_b − 1)); both as floats",
          hint="va = statistics.variance(a) / len(a) and vb likewise (n − 1 in the variance); "
               "t = (mean(a) − mean(b)) / √(va + vb); df = (va + vb)² / (va²/(n_a − 1) + vb²/(n_b − 1))",
          reference=reference_welch_t)
def check_welch_t(answer: Callable[..., Any]) -> None:
    def close(x: float, y: float) -> bool:
        return math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-12)

    for a, b in _WELCH_CASES:
        what = f"welch_t({a}, {b})"
        result = answer(list(a), list(b))
        expect(isinstance(result, (tuple, list)) and len(result) == 2,
               f"{what} returned {type(result).__name__}; return a pair (t, df)")
        expect(all(isinstance(x, numbers.Real) or (isinstance(x, Tensor) and x.numel() == 1) for x in result),
               f"{what} returned ({type(result[0]).__name__}, {type(result[1]).__name__}); return two numbers")
        t, df = (float(x) for x in result)
        right_t, right_df = reference_welch_t(a, b)
        na, nb = len(a), len(b)
        expect(not (close(t, right_df) and close(df, right_t)), f"{what} = ({t:.4f}, {df:.4f}) is (df, t); return "
                                                                f"(t, df)")
        expect(not close(t, -right_t),
               f"{what}: t = {t:.4f} has the wrong sign: t is about mean(a) − mean(b) = "
               f"{statistics.mean(a) - statistics.mean(b):.4f}, so it is {right_t:.4f}")
        pop_t, pop_df = _population_welch(a, b)
        expect(not close(t, pop_t),
               f"{what}: t = {t:.4f} uses variances divided by n (the population variance, numpy's var() by "
               f"default); the sample variance divides by n − 1 (statistics.variance, np.var(x, ddof=1)): "
               f"t = {right_t:.4f}")
        expect(not close(t, _pooled_t(a, b)),
               f"{what}: t = {t:.4f} is Student's t, with one variance pooled over both samples; Welch's t keeps "
               f"each sample's own, √(s_a²/n_a + s_b²/n_b): t = {right_t:.4f}")
        expect(close(t, right_t), f"{what}: t = {t:.6g}, expected (mean a − mean b) / √(s_a²/n_a + s_b²/n_b) = "
                                  f"{right_t:.6g}")
        expect(not close(df, na + nb - 2),
               f"{what}: df = n_a + n_b − 2 = {na + nb - 2} is Student's; Welch's comes from the two variances, "
               f"(s_a²/n_a + s_b²/n_b)² / ((s_a²/n_a)²/(n_a − 1) + (s_b²/n_b)²/(n_b − 1)) = {right_df:.4f}")
        expect(not close(df, 2 * stats.t.sf(abs(right_t), right_df)),
               f"{what}: the second number, {df:.4f}, is the two-sided p-value (what scipy's ttest_ind returns beside "
               f"t); return the degrees of freedom, {right_df:.4f}")
        expect(not close(df, pop_df), f"{what}: df = {df:.4f} uses variances divided by n; the sample variance "
                                      f"divides by n − 1: df = {right_df:.4f}")
        expect(close(df, right_df), f"{what}: df = {df:.6g}, expected (s_a²/n_a + s_b²/n_b)² / ((s_a²/n_a)²/(n_a − 1)"
                                    f" + (s_b²/n_b)²/(n_b − 1)) = {right_df:.6g}")
