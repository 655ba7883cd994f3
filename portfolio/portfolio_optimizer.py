"""Mean-variance portfolio optimization with box, budget, gross-leverage and return constraints.

The problem
-----------
For expected returns ``mu`` (shape ``(n,)``, decimal returns per period), a covariance matrix
``Sigma`` (shape ``(n, n)``, symmetric positive semidefinite, same period) and a return weight
``lam >= 0`` (:attr:`PortfolioOptimizer.return_weight`), the optimizer solves::

    minimize    f(w) = 0.5 * w' Sigma w - lam * mu' w
    subject to  lo_i <= w_i <= hi_i                  (box: min_weight / max_weight)
                sum_i w_i = budget                   (only when budget is not None)
                sum_i |w_i| <= max_leverage          (gross leverage cap)
                mu' w >= target_return               (only when target_return is not None)

Weights are fractions of equity. ``lam`` multiplies the *return* term, exactly as in the
formula above (hence the name ``return_weight``): a larger value gives a more return-seeking
portfolio and 0 gives the minimum-variance portfolio; the classical ``max mu'w - (d/2) w'Sigma
w`` with risk aversion ``d`` is the same problem with ``lam = 1 / d``.

**Budget.** ``budget`` is the *net* exposure ``sum(w)`` the optimizer must meet exactly: 1.0 is
a fully invested portfolio, 0.0 a dollar-neutral one, ``None`` drops the constraint (the net
exposure is then free within the box and the leverage cap). It is not a capital amount.

**Gross leverage** is ``sum(|w|)``; ``|budget| <= max_leverage`` is required. When
``|budget| == max_leverage`` every weight must have the sign of the budget (because
``sum|w| >= |sum w|`` with equality only then), so the bounds are tightened accordingly and the
cap is dropped. The cap is also dropped whenever the other constraints already imply it:
long-only bounds with ``budget <= max_leverage``, or ``sum_i max(|lo_i|, |hi_i|) <= max_leverage``
(``max(|min_weight|, |max_weight|) * n <= max_leverage`` for uniform bounds). This matters for
SLSQP: a budget and a gross cap that coincide (long-only, budget 1, cap 1) are linearly dependent
active constraints, and SLSQP then may report success at a wrong point.

Two solvers
-----------
``solver="slsqp"`` (reference, :func:`solve_slsqp`): :func:`scipy.optimize.minimize` with
``method="SLSQP"`` and analytic gradients. Because ``|w|`` is not differentiable, when the cap is
kept every weight is split as ``w = u - v`` with ``u, v >= 0`` and the cap becomes the linear
constraint ``sum(u + v) <= max_leverage``; at any solution ``sum(u + v) >= sum|w|``, so the split
problem is equivalent. The box is carried by the variable bounds of ``u`` and ``v``
(``u_i in [max(lo_i, 0), hi_i]`` only if ``hi_i > 0``, ``v_i in [max(-hi_i, 0), -lo_i]`` only if
``lo_i < 0``), so that ``lo_i <= u_i - v_i <= hi_i`` holds for every feasible pair. When the cap is
dropped the weights are the variables directly.

``solver="fast"`` (:func:`solve_fast`, ``@njit``): FISTA, the accelerated projected gradient
method of Beck & Teboulle (2009, SIAM J. Imaging Sci. 2(1)) with the gradient-based adaptive
restart of O'Donoghue & Candès (2015, Found. Comput. Math. 15), step ``1 / lambda_max(Sigma)``
(from ``eigvalsh``, which also rejects an indefinite ``Sigma``).
It stops when the projected-gradient step ``max_i |x_{k+1, i} - y_{k, i}|`` is at most ``tol``
(weight units) and reports ``converged=False`` after ``max_iter`` steps.

*Exact projection* onto ``C = {lo <= w <= hi, sum w = b, sum|w| <= L}``. The projection of ``z``
minimizes ``0.5 ||w - z||^2`` over ``C``. With a multiplier ``nu`` for the budget and
``theta >= 0`` for the cap, the Lagrangian ``0.5||w - z||^2 + nu (sum w - b) + theta
(sum|w| - L)`` separates by coordinate, and each one-dimensional convex problem over
``[lo_i, hi_i]`` is solved by clipping its unconstrained minimizer::

    w_i(nu, theta) = clip(S_theta(z_i - nu), lo_i, hi_i),   S_theta(t) = sign(t) max(|t| - theta, 0)

``sum_i w_i(nu, theta)`` is continuous, piecewise linear and non-increasing in ``nu``, so for
each ``theta`` the budget multiplier ``nu(theta)`` is its root (bracketed by
``min(z - hi) - theta`` and ``max(z - lo) + theta``). With ``g(theta) = sum|w_i(nu(theta),
theta)|``, ``g(theta) - L`` is the derivative of the concave dual in ``theta``, so ``g`` is
non-increasing; if ``g(0) <= L``
the cap is inactive (``theta = 0``), otherwise ``theta > 0`` is the root of ``g(theta) = L``
(complementary slackness). Both roots are found by Newton steps on these piecewise-linear
functions with exact slopes (``-#free`` for ``nu``; ``(sum_F s_i)^2 / |F| - |F|`` for ``theta``,
``F`` the coordinates that are neither clipped nor zeroed and ``s_i`` their signs), safeguarded
by bisection of a maintained bracket: Newton from a point on the root's linear piece lands on the
root exactly, so a few steps give machine precision. The result is returned on the feasible
side of the cap.

*Return target* by a dual outer loop: the solution ``w(eta)`` of the problem with return weight
``lam + eta`` has ``mu'w(eta)`` non-decreasing in ``eta >= 0``; if ``mu'w(0) < target`` the
multiplier is bracketed by growing ``eta`` and found by Illinois regula falsi (``mu'w(eta)`` is
piecewise linear for the parametric QP), each inner solve warm-started from the previous one.
The returned weights are those of the bracket end with ``mu'w >= target``, within ``1e-9``. With
a singular covariance ``mu'w(eta)`` can jump at the multiplier ``eta*``; once the bracket has
collapsed onto it, both ends minimize the Lagrangian at ``eta*`` and so does their convex
combination that meets the target exactly, which is then returned.

*Warm start.* :meth:`PortfolioOptimizer.optimize` / :meth:`~PortfolioOptimizer.optimize_array`
take ``warm_start=w_prev``; without it the optimizer starts from its last solution for the same
instrument tuple (``optimize``, or ``optimize_array(..., instrument_names=...)``) or else for
the same number of assets (unnamed ``optimize_array``), so a per-close loop warm-starts from the
previous close automatically. The start point only changes
the number of iterations, never the solution beyond ``tol``. :meth:`~PortfolioOptimizer.reset`
forgets it.

*Fallback.* If the fast solver does not converge, a warning is logged
(``logging.getLogger(__name__)``) and the problem is solved again with SLSQP. An SLSQP failure
raises :class:`~portfolio.errors.OptimizationError`.

Feasibility is checked before solving (bounds against the budget, the smallest achievable gross
leverage against ``max_leverage``, the target against the maximum achievable ``mu'w`` from a
:func:`scipy.optimize.linprog` LP), and every violated constraint raises ``OptimizationError``
naming it and its numbers; inputs are checked for NaN/inf, shapes and a non-symmetric or
indefinite covariance.

Threads
-------
These problems are small (tens to a few hundred assets); BLAS threads only add overhead and
contention with the numba kernels. Callers that loop over closes (the engine, the benchmarks)
should pin BLAS to one thread, with ``threadpoolctl.threadpool_limits(1)`` if threadpoolctl is
importable, else by setting ``OMP_NUM_THREADS=1``, ``OPENBLAS_NUM_THREADS=1`` and
``MKL_NUM_THREADS=1`` before numpy is imported. This module does not depend on threadpoolctl.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numba import njit
from scipy.optimize import linprog, minimize

from portfolio.errors import OptimizationError

__all__ = [
    "FAST_STATUS_CONVERGED",
    "FAST_STATUS_MAX_ITER",
    "FAST_STATUS_NOT_PSD",
    "FAST_STATUS_TARGET_FAILED",
    "OptimizationConstraints",
    "PortfolioOptimizer",
    "portfolio_objective",
    "project_onto_constraints",
    "should_rebalance",
    "should_rebalance_nb",
    "solve_fast",
    "solve_fast_status",
    "solve_slsqp",
]

logger = logging.getLogger(__name__)

#: Status codes of :func:`solve_fast_status`.
FAST_STATUS_CONVERGED = 0
FAST_STATUS_MAX_ITER = 1
FAST_STATUS_NOT_PSD = 2
FAST_STATUS_TARGET_FAILED = 3

#: Tolerance used when checking a solution against the constraints (weight units).
FEASIBILITY_TOL = 1e-8
#: Relative tolerance of the covariance symmetry check.
_SYMMETRY_RTOL = 1e-9
#: Eigenvalues below ``-_PSD_RTOL * lambda_max`` make a covariance indefinite.
_PSD_RTOL = 1e-10
#: The return-target loop stops once ``0 <= mu'w - target <= _TARGET_SLACK * max(1, |target|)``.
_TARGET_SLACK = 1e-9


# ============================================================================================
# Numba kernels: projection, FISTA, return-target loop.
# ============================================================================================


@njit(cache=True, fastmath={"reassoc", "contract"})
def _matvec_nb(a: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """``out = a @ x`` for a square ``a`` (plain loops: no BLAS threads for small n).

    Reassociation lets LLVM vectorize the dot products (4-7x faster here); it changes only the
    rounding of each sum, never the algorithm.
    """
    n = x.shape[0]
    for i in range(n):
        s = 0.0
        for j in range(n):
            s += a[i, j] * x[j]
        out[i] = s


@njit(cache=True)
def _budget_sum_nb(
    z: np.ndarray, lo: np.ndarray, hi: np.ndarray, theta: float, nu: float
) -> tuple[float, int]:
    """``sum_i clip(S_theta(z_i - nu), lo_i, hi_i)`` and the number of coordinates on a slope."""
    total = 0.0
    free = 0
    for i in range(z.shape[0]):
        t = z[i] - nu
        if t > theta:
            v = t - theta
            lin = True
        elif t < -theta:
            v = t + theta
            lin = True
        else:
            v = 0.0
            lin = theta == 0.0
        if v <= lo[i]:
            v = lo[i]
            lin = False
        elif v >= hi[i]:
            v = hi[i]
            lin = False
        total += v
        if lin:
            free += 1
    return total, free


@njit(cache=True)
def _solve_nu_nb(
    z: np.ndarray, lo: np.ndarray, hi: np.ndarray, theta: float, budget: float, nu0: float
) -> float:
    """Root ``nu`` of ``sum_i clip(S_theta(z_i - nu), lo_i, hi_i) = budget``.

    Safeguarded Newton on a non-increasing piecewise-linear function; requires
    ``sum(lo) <= budget <= sum(hi)``.
    """
    n = z.shape[0]
    a = math.inf
    c = -math.inf
    scale = abs(budget)
    for i in range(n):
        a = min(a, z[i] - hi[i])
        c = max(c, z[i] - lo[i])
        scale += max(abs(lo[i]), abs(hi[i]))
    # h(a) = sum(hi) - budget >= 0 and h(c) = sum(lo) - budget <= 0.
    a -= theta
    c += theta
    htol = 4e-16 * (1.0 + scale)
    nu = nu0 if a < nu0 < c else 0.5 * (a + c)
    width_ref = c - a
    for it in range(300):
        total, free = _budget_sum_nb(z, lo, hi, theta, nu)
        h = total - budget
        if abs(h) <= htol:
            return nu
        if h > 0.0:
            a = nu
        else:
            c = nu
        if c - a <= 1e-15 * max(1.0, abs(a), abs(c)):
            return nu
        new = nu + h / free if free > 0 else 0.5 * (a + c)
        # Bisect when Newton leaves the bracket or the bracket stops halving every 3 steps.
        if not (a < new < c):
            new = 0.5 * (a + c)
        if it % 3 == 2:
            if c - a > 0.5 * width_ref:
                new = 0.5 * (a + c)
            width_ref = c - a
        nu = new
    return nu


@njit(cache=True)
def _fill_nb(
    z: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    theta: float,
    nu: float,
    out: np.ndarray,
) -> tuple[float, int, float]:
    """Write ``w(nu, theta)`` into ``out``; return ``(sum|w|, #free, sum of free signs)``."""
    l1 = 0.0
    free = 0
    ssum = 0.0
    for i in range(z.shape[0]):
        t = z[i] - nu
        sgn = 0.0
        if t > theta:
            v = t - theta
            sgn = 1.0
        elif t < -theta:
            v = t + theta
            sgn = -1.0
        else:
            v = 0.0
        if v <= lo[i]:
            v = lo[i]
            sgn = 0.0
        elif v >= hi[i]:
            v = hi[i]
            sgn = 0.0
        out[i] = v
        l1 += abs(v)
        if sgn != 0.0:
            free += 1
            ssum += sgn
    return l1, free, ssum


@njit(cache=True)
def _project_nb(
    z: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    budget: float,
    max_leverage: float,
    state: np.ndarray,
    out: np.ndarray,
) -> None:
    """Euclidean projection of ``z`` onto ``{lo <= w <= hi, sum w = budget, sum|w| <= L}``.

    ``budget`` NaN means no budget, ``max_leverage`` inf means no cap. ``state = [nu, theta]``
    holds the multipliers of the previous call (a warm start) and receives the new ones. The
    set must be non-empty (checked by the callers).
    """
    has_budget = not math.isnan(budget)
    nu = state[0] if has_budget else 0.0
    if has_budget:
        nu = _solve_nu_nb(z, lo, hi, 0.0, budget, nu)
    l1, free, ssum = _fill_nb(z, lo, hi, 0.0, nu, out)
    if not (l1 > max_leverage):
        state[0] = nu
        state[1] = 0.0
        return
    n = z.shape[0]
    gtol = 4e-16 * (1.0 + max_leverage)
    th_a = 0.0  # g(th_a) > 0 (cap violated)
    th_c = math.inf  # g(th_c) <= 0 (cap met)
    nu_c = nu
    th = state[1] if state[1] > 0.0 else (l1 - max_leverage) / n
    width_ref = math.inf
    for it in range(300):
        if has_budget:
            nu = _solve_nu_nb(z, lo, hi, th, budget, nu)
        l1, free, ssum = _fill_nb(z, lo, hi, th, nu, out)
        g = l1 - max_leverage
        if g <= 0.0:
            th_c = th
            nu_c = nu
            if g >= -gtol:
                break
        else:
            th_a = th
        if th_c < math.inf and th_c - th_a <= 1e-15 * max(1.0, th_c):
            break
        slope = -float(free)
        if has_budget and free > 0:
            slope += ssum * ssum / free
        new = th - g / slope if slope < 0.0 else math.nan
        if th_c == math.inf:
            if not (new > th_a):
                new = 2.0 * max(th_a, 1e-300) if th_a > 0.0 else 2.0 * th + 1e-16
        elif not (th_a < new < th_c):
            new = 0.5 * (th_a + th_c)
        if th_c < math.inf and it % 3 == 2:
            if th_c - th_a > 0.5 * width_ref:
                new = 0.5 * (th_a + th_c)
            width_ref = th_c - th_a
        th = new
    if th != th_c and th_c < math.inf:
        # Return the point on the feasible side of the cap.
        th = th_c
        nu = nu_c
        _fill_nb(z, lo, hi, th, nu, out)
    state[0] = nu
    state[1] = th


@njit(cache=True)
def _cap_implied_nb(lo: np.ndarray, hi: np.ndarray, budget: float, max_leverage: float) -> bool:
    """True when ``sum|w| <= max_leverage`` follows from the box and the budget."""
    worst = 0.0
    all_long = True
    all_short = True
    for i in range(lo.shape[0]):
        worst += max(abs(lo[i]), abs(hi[i]))
        if lo[i] < 0.0:
            all_long = False
        if hi[i] > 0.0:
            all_short = False
    if worst <= max_leverage:
        return True
    if not math.isnan(budget):
        if all_long and budget <= max_leverage:
            return True
        if all_short and -budget <= max_leverage:
            return True
    return False


@njit(cache=True)
def _fista_nb(
    sigma: np.ndarray,
    c: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    budget: float,
    max_leverage: float,
    x0: np.ndarray,
    step: float,
    tol: float,
    max_iter: int,
    state: np.ndarray,
) -> tuple[np.ndarray, bool, int]:
    """FISTA with adaptive restart for ``min 0.5 x'Sigma x - c'x`` over the projection set."""
    n = c.shape[0]
    x = np.empty(n)
    xn = np.empty(n)
    y = np.empty(n)
    z = np.empty(n)
    sx = np.empty(n)
    sxn = np.empty(n)
    sy = np.empty(n)
    _project_nb(x0, lo, hi, budget, max_leverage, state, x)
    _matvec_nb(sigma, x, sx)
    y[:] = x
    sy[:] = sx
    t = 1.0
    for k in range(max_iter):
        for i in range(n):
            z[i] = y[i] - step * (sy[i] - c[i])
        _project_nb(z, lo, hi, budget, max_leverage, state, xn)
        _matvec_nb(sigma, xn, sxn)
        diff = 0.0
        restart = 0.0
        for i in range(n):
            d = xn[i] - y[i]
            diff = max(diff, abs(d))
            restart -= d * (xn[i] - x[i])
        if diff <= tol:
            return xn, True, k + 1
        if restart > 0.0:
            # The momentum points uphill: restart (O'Donoghue & Candès 2015, gradient scheme).
            t = 1.0
            for i in range(n):
                y[i] = xn[i]
                sy[i] = sxn[i]
        else:
            tn = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
            beta = (t - 1.0) / tn
            for i in range(n):
                y[i] = xn[i] + beta * (xn[i] - x[i])
                sy[i] = sxn[i] + beta * (sxn[i] - sx[i])
            t = tn
        x, xn = xn, x
        sx, sxn = sxn, sx
    return x, False, max_iter


@njit(cache=True)
def solve_fast_status(
    mu: np.ndarray,
    sigma: np.ndarray,
    lam: float,
    lo: np.ndarray,
    hi: np.ndarray,
    budget: float,
    max_leverage: float,
    target_return: float,
    w0: np.ndarray,
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, int, int]:
    """:func:`solve_fast` with diagnostics: ``(weights, status, iterations)``.

    ``status`` is one of ``FAST_STATUS_CONVERGED`` (0), ``FAST_STATUS_MAX_ITER`` (1: FISTA hit
    ``max_iter``), ``FAST_STATUS_NOT_PSD`` (2: ``sigma`` has an eigenvalue below
    ``-1e-10 * lambda_max`` or is zero) and ``FAST_STATUS_TARGET_FAILED`` (3: the return-target
    loop did not close). ``iterations`` counts FISTA steps over all inner solves; ``max_iter``
    caps each inner solve.
    """
    n = mu.shape[0]
    eig = np.linalg.eigvalsh(sigma)
    lmax = eig[n - 1]
    if eig[0] < -_PSD_RTOL * max(lmax, 0.0) or math.isnan(lmax):
        return np.zeros(n), FAST_STATUS_NOT_PSD, 0
    if lmax > 0.0:
        step = 1.0 / lmax
    else:
        # Zero covariance: a linear objective, for which any step is admissible; scale it so
        # one step moves the weights by O(1).
        cmax = 0.0
        for i in range(n):
            cmax = max(cmax, abs(lam * mu[i]))
        step = 1.0 / cmax if cmax > 0.0 else 1.0
    cap = max_leverage
    if _cap_implied_nb(lo, hi, budget, max_leverage):
        cap = math.inf
    start = np.zeros(n)
    if w0.shape[0] == n:
        for i in range(n):
            if math.isfinite(w0[i]):
                start[i] = w0[i]
    state = np.zeros(2)
    c = lam * mu
    x, conv, iters = _fista_nb(sigma, c, lo, hi, budget, cap, start, step, tol, max_iter, state)
    if not conv:
        return x, FAST_STATUS_MAX_ITER, iters
    if math.isnan(target_return):
        return x, FAST_STATUS_CONVERGED, iters
    ret = 0.0
    for i in range(n):
        ret += mu[i] * x[i]
    if ret >= target_return:
        return x, FAST_STATUS_CONVERGED, iters
    slack = _TARGET_SLACK * max(1.0, abs(target_return))
    # Bracket the return multiplier eta: g(eta) = mu'w(eta) - target, g(eta_a) < 0 <= g(eta_b).
    eta_a = 0.0
    g_a = ret - target_return
    x_a = x
    eta_b = max(lam, 1.0)
    g_b = -1.0
    x_b = x
    found = False
    for _ in range(80):
        c = (lam + eta_b) * mu
        x_b, conv, it = _fista_nb(sigma, c, lo, hi, budget, cap, x_a, step, tol, max_iter, state)
        iters += it
        if not conv:
            return x_b, FAST_STATUS_MAX_ITER, iters
        g_b = -target_return
        for i in range(n):
            g_b += mu[i] * x_b[i]
        if g_b >= 0.0:
            found = True
            break
        eta_a = eta_b
        g_a = g_b
        x_a = x_b
        eta_b *= 4.0
    if not found:
        return x_b, FAST_STATUS_TARGET_FAILED, iters
    if g_b <= slack:
        return x_b, FAST_STATUS_CONVERGED, iters
    # Illinois regula falsi; wa / wb are the (possibly halved) weights of the secant.
    wa = g_a
    wb = g_b
    side = 0
    x_m = x_b
    for _ in range(200):
        eta = eta_a - wa * (eta_b - eta_a) / (wb - wa)
        if not (eta_a < eta < eta_b):
            eta = 0.5 * (eta_a + eta_b)
        c = (lam + eta) * mu
        x_m, conv, it = _fista_nb(sigma, c, lo, hi, budget, cap, x_m, step, tol, max_iter, state)
        iters += it
        if not conv:
            return x_m, FAST_STATUS_MAX_ITER, iters
        g_m = -target_return
        for i in range(n):
            g_m += mu[i] * x_m[i]
        if g_m >= 0.0:
            eta_b, g_b, wb, x_b = eta, g_m, g_m, x_m
            if g_b <= slack:
                return x_b, FAST_STATUS_CONVERGED, iters
            if side == 1:
                wa *= 0.5  # Illinois: halve the stale end so the bracket shrinks from both sides
            side = 1
        else:
            eta_a, g_a, wa, x_a = eta, g_m, g_m, x_m
            if side == -1:
                wb *= 0.5
            side = -1
        if eta_b - eta_a <= 1e-13 * eta_b:
            break
    # The bracket has collapsed onto eta* but mu'w(eta) jumps there (a singular covariance makes
    # the minimizer set of the Lagrangian at eta* a segment). Both ends minimize that Lagrangian,
    # so does every convex combination of them, and the one meeting the target exactly is the
    # constrained optimum (and feasible, C being convex).
    if eta_b - eta_a <= 1e-13 * eta_b:
        alpha = -g_a / (g_b - g_a)
        x = np.empty(n)
        for i in range(n):
            x[i] = x_a[i] + alpha * (x_b[i] - x_a[i])
        return x, FAST_STATUS_CONVERGED, iters
    return x_b, FAST_STATUS_TARGET_FAILED, iters


@njit(cache=True)
def solve_fast(
    mu: np.ndarray,
    sigma: np.ndarray,
    lam: float,
    lo: np.ndarray,
    hi: np.ndarray,
    budget: float,
    max_leverage: float,
    target_return: float,
    w0: np.ndarray,
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, bool]:
    """Jitted mean-variance solve for the per-close loop (FISTA + exact projection).

    Parameters
    ----------
    mu : ndarray, shape (n,)
        Expected returns per period (decimal).
    sigma : ndarray, shape (n, n)
        Symmetric positive semidefinite covariance, same period, C-contiguous float64.
    lam : float
        Weight of the return term, ``>= 0``.
    lo, hi : ndarray, shape (n,)
        Finite per-asset weight bounds, ``lo <= hi``.
    budget : float
        Required ``sum(w)``; NaN for no budget constraint.
    max_leverage : float
        Cap on ``sum|w|``; ``inf`` for no cap.
    target_return : float
        Lower bound on ``mu'w``; NaN for none.
    w0 : ndarray, shape (n,)
        Warm start (projected onto the constraints first); any other length starts from 0.
    tol : float
        Stopping tolerance on the projected-gradient step (weight units), e.g. ``1e-10``.
    max_iter : int
        Maximum FISTA iterations per inner solve.

    Returns
    -------
    weights : ndarray, shape (n,)
    converged : bool
        False when the iteration limit was hit, ``sigma`` is not PSD or the return-target loop
        failed; the caller then falls back to SLSQP. The constraints must be feasible (the
        caller checks them; see :meth:`PortfolioOptimizer.optimize_array`).
    """
    w, status, _ = solve_fast_status(
        mu, sigma, lam, lo, hi, budget, max_leverage, target_return, w0, tol, max_iter
    )
    return w, status == FAST_STATUS_CONVERGED


def project_onto_constraints(
    z: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    budget: float | None,
    max_leverage: float,
) -> np.ndarray:
    """Euclidean projection of ``z`` onto ``{lo <= w <= hi, sum w = budget, sum|w| <= L}``.

    Exposes the exact projection used by the fast solver (see the module docstring). The set
    must be non-empty; ``budget=None`` drops the budget, ``max_leverage=inf`` the cap.

    Returns
    -------
    ndarray, shape (n,)
    """
    z = np.ascontiguousarray(z, dtype=np.float64)
    out = np.empty_like(z)
    b = math.nan if budget is None else float(budget)
    _project_nb(
        z,
        np.ascontiguousarray(lo, dtype=np.float64),
        np.ascontiguousarray(hi, dtype=np.float64),
        b,
        float(max_leverage),
        np.zeros(2),
        out,
    )
    return out


# ============================================================================================
# Python-level helpers: reduction, feasibility, SLSQP reference.
# ============================================================================================


def portfolio_objective(w: np.ndarray, mu: np.ndarray, sigma: np.ndarray, lam: float) -> float:
    """``0.5 * w' sigma w - lam * mu' w`` for ``w``, ``mu`` of shape (n,), ``sigma`` (n, n)."""
    w = np.asarray(w, dtype=np.float64)
    return float(0.5 * w @ sigma @ w - lam * np.asarray(mu, dtype=np.float64) @ w)


def _reduce_problem(
    lo: np.ndarray, hi: np.ndarray, budget: float | None, max_leverage: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Tighten the bounds / drop the gross cap where the other constraints imply it.

    Returns ``(lo, hi, cap)`` with ``cap = inf`` when the cap is redundant. Requires a feasible
    problem (checked before).
    """
    b = math.nan if budget is None else budget
    if budget is not None and abs(budget) >= max_leverage:
        # |sum w| = sum|w| forces every weight to the sign of the budget.
        lo = np.maximum(lo, 0.0) if budget > 0 else lo
        hi = np.minimum(hi, 0.0) if budget < 0 else hi
        if budget == 0.0:
            lo = np.zeros_like(lo)
            hi = np.zeros_like(hi)
        return lo, hi, math.inf
    if _cap_implied_nb(lo, hi, b, max_leverage):
        return lo, hi, math.inf
    return lo, hi, max_leverage


def _split_structure(
    lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[tuple[float, float]]]:
    """Indices of the ``u`` and ``v`` variables of ``w = u - v`` and their bounds."""
    iu = np.flatnonzero(hi > 0.0)
    iv = np.flatnonzero(lo < 0.0)
    bounds = [(max(float(lo[i]), 0.0), float(hi[i])) for i in iu]
    bounds += [(max(float(-hi[i]), 0.0), float(-lo[i])) for i in iv]
    return iu, iv, bounds


def _assemble(z: np.ndarray, n: int, iu: np.ndarray, iv: np.ndarray) -> np.ndarray:
    w = np.zeros(n)
    w[iu] += z[: iu.size]
    w[iv] -= z[iu.size :]
    return w


def _lp_matrices(
    n: int, iu: np.ndarray, iv: np.ndarray, budget: float | None, cap: float
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Budget (equality) and cap (inequality) rows in split variables."""
    m = iu.size + iv.size
    a_eq = b_eq = a_ub = b_ub = None
    if budget is not None:
        a_eq = np.concatenate([np.ones(iu.size), -np.ones(iv.size)])[None, :]
        b_eq = np.array([budget])
    if math.isfinite(cap):
        a_ub = np.ones((1, m))
        b_ub = np.array([cap])
    return a_eq, b_eq, a_ub, b_ub


def _max_return(
    mu: np.ndarray, lo: np.ndarray, hi: np.ndarray, budget: float | None, cap: float
) -> float:
    """``max mu'w`` over the box, budget and gross cap (an LP, solved with HiGHS)."""
    n = mu.size
    iu, iv, bounds = _split_structure(lo, hi)
    if not bounds:
        return 0.0
    a_eq, b_eq, a_ub, b_ub = _lp_matrices(n, iu, iv, budget, cap)
    cost = -np.concatenate([mu[iu], -mu[iv]])
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
    if res.status != 0:
        raise OptimizationError(
            f"could not compute the maximum achievable return for target_return: {res.message}"
        )
    return float(-res.fun)


def _min_gross(lo: np.ndarray, hi: np.ndarray, budget: float | None) -> float:
    """Smallest ``sum|w|`` over the box and budget.

    Start at the point of the box nearest 0, ``m = clip(0, lo, hi)``; reaching the budget moves
    weights away from 0 only (every coordinate that can still rise is ``>= 0``, every one that
    can fall is ``<= 0``), at cost 1 per unit: ``sum|m| + |budget - sum m|``.
    """
    m = np.clip(0.0, lo, hi)
    base = float(np.abs(m).sum())
    if budget is None:
        return base
    return base + abs(budget - float(m.sum()))


def _check_feasible(
    mu: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    budget: float | None,
    max_leverage: float,
    target_return: float | None,
) -> None:
    """Raise :class:`OptimizationError` naming the first infeasible constraint."""
    n = lo.size
    bad = np.flatnonzero(lo > hi)
    if bad.size:
        i = int(bad[0])
        raise OptimizationError(
            f"min_weight {lo[i]} > max_weight {hi[i]} for asset {i}: the box is empty"
        )
    if budget is not None:
        slo, shi = float(lo.sum()), float(hi.sum())
        tol = FEASIBILITY_TOL * max(1.0, abs(budget))
        if slo > budget + tol:
            raise OptimizationError(
                f"budget={budget} is infeasible: the weights' lower bounds sum to "
                f"{slo:.10g} (n * min_weight with n={n}) > budget"
            )
        if shi < budget - tol:
            raise OptimizationError(
                f"budget={budget} is infeasible: the weights' upper bounds sum to "
                f"{shi:.10g} (n * max_weight with n={n}) < budget"
            )
    if budget is not None and abs(budget) > max_leverage:
        raise OptimizationError(
            f"budget={budget} is infeasible: |budget| > max_leverage={max_leverage}"
        )
    gmin = _min_gross(lo, hi, budget)
    if gmin > max_leverage * (1.0 + 1e-12):
        raise OptimizationError(
            f"max_leverage={max_leverage} is infeasible: the bounds and budget need a gross "
            f"leverage sum|w| of at least {gmin:.10g}"
        )
    if target_return is not None:
        lo_r, hi_r, cap = _reduce_problem(lo, hi, budget, max_leverage)
        best = _max_return(mu, lo_r, hi_r, budget, cap)
        if target_return > best + 1e-12 * max(1.0, abs(best)):
            raise OptimizationError(
                f"target_return={target_return} is infeasible: the maximum expected return "
                f"mu'w under the bounds, budget={budget} and max_leverage={max_leverage} is "
                f"{best:.10g}"
            )


def _slsqp_impl(
    mu: np.ndarray,
    sigma: np.ndarray,
    lam: float,
    lo: np.ndarray,
    hi: np.ndarray,
    budget: float | None,
    max_leverage: float,
    target_return: float | None,
    w0: np.ndarray | None,
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, bool, str]:
    """SLSQP reference; returns ``(weights, ok, message)``. Assumes a feasible problem."""
    n = mu.size
    lo, hi, cap = _reduce_problem(lo, hi, budget, max_leverage)
    if math.isfinite(cap):
        iu, iv, bounds = _split_structure(lo, hi)
    else:
        iu, iv = np.arange(n), np.arange(0)
        bounds = [(float(a), float(b)) for a, b in zip(lo, hi, strict=True)]
    m = len(bounds)
    b_nan = math.nan if budget is None else budget
    start = np.zeros(n) if w0 is None else np.where(np.isfinite(w0), w0, 0.0)
    w_start = project_onto_constraints(start, lo, hi, budget, cap)
    z0 = np.concatenate([np.maximum(w_start[iu], 0.0), np.maximum(-w_start[iv], 0.0)])
    if math.isfinite(cap):
        # A start with u_i v_i = 0 and u, v inside their (possibly shifted) bounds.
        z0 = np.clip(z0, [b[0] for b in bounds], [b[1] for b in bounds])
    jac_w = np.concatenate([np.ones(iu.size), -np.ones(iv.size)])

    def fun(z: np.ndarray) -> tuple[float, np.ndarray]:
        w = _assemble(z, n, iu, iv)
        sw = sigma @ w
        f = 0.5 * w @ sw - lam * (mu @ w)
        g = sw - lam * mu
        return float(f), np.concatenate([g[iu], -g[iv]])

    cons: list[dict[str, Any]] = []
    if budget is not None:
        cons.append(
            {
                "type": "eq",
                "fun": lambda z: np.array([jac_w @ z - b_nan]),
                "jac": lambda z: jac_w[None, :],
            }
        )
    if math.isfinite(cap):
        ones = np.ones(m)
        cons.append(
            {
                "type": "ineq",
                "fun": lambda z: np.array([cap - z.sum()]),
                "jac": lambda z: -ones[None, :],
            }
        )
    if target_return is not None:
        mu_z = np.concatenate([mu[iu], -mu[iv]])
        tr = float(target_return)
        cons.append(
            {
                "type": "ineq",
                "fun": lambda z: np.array([mu_z @ z - tr]),
                "jac": lambda z: mu_z[None, :],
            }
        )
    res = minimize(
        fun,
        z0,
        jac=True,
        method="SLSQP",
        bounds=bounds,
        constraints=cons,
        options={"maxiter": max(int(max_iter), 100), "ftol": min(float(tol), 1e-12)},
    )
    w = np.clip(_assemble(res.x, n, iu, iv), lo, hi)
    ok = bool(res.success) and _violation(w, mu, lo, hi, budget, max_leverage, target_return) <= (
        FEASIBILITY_TOL
    )
    return w, ok, str(res.message)


def _violation(
    w: np.ndarray,
    mu: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    budget: float | None,
    max_leverage: float,
    target_return: float | None,
) -> float:
    """Largest constraint violation of ``w`` (weight / return units)."""
    v = max(float(np.max(lo - w, initial=0.0)), float(np.max(w - hi, initial=0.0)))
    if budget is not None:
        v = max(v, abs(float(w.sum()) - budget))
    v = max(v, float(np.abs(w).sum()) - max_leverage)
    if target_return is not None:
        v = max(v, target_return - float(mu @ w))
    return v


def solve_slsqp(
    mu: np.ndarray,
    sigma: np.ndarray,
    lam: float,
    lo: np.ndarray,
    hi: np.ndarray,
    budget: float | None,
    max_leverage: float,
    target_return: float | None,
    w0: np.ndarray | None = None,
    tol: float = 1e-10,
    max_iter: int = 1000,
) -> tuple[np.ndarray, bool]:
    """Reference solve with :func:`scipy.optimize.minimize` (``method="SLSQP"``).

    Same problem and arguments as :func:`solve_fast` (``None`` instead of NaN for no budget or
    target, ``inf`` for no cap), using the ``w = u - v`` split for the gross cap (module
    docstring). The constraints must be feasible. ``ftol`` is ``min(tol, 1e-12)``.

    Returns
    -------
    weights : ndarray, shape (n,)
    ok : bool
        SLSQP reported success and the weights meet every constraint within ``1e-8``.
    """
    w, ok, _ = _slsqp_impl(
        np.asarray(mu, dtype=np.float64),
        np.asarray(sigma, dtype=np.float64),
        lam,
        np.asarray(lo, dtype=np.float64),
        np.asarray(hi, dtype=np.float64),
        budget,
        max_leverage,
        target_return,
        w0,
        tol,
        max_iter,
    )
    return w, ok


# ============================================================================================
# Public API.
# ============================================================================================


def _is_real(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


@dataclass(frozen=True, slots=True)
class OptimizationConstraints:
    """Constraints of the mean-variance problem (weights are fractions of equity).

    Parameters
    ----------
    min_weight, max_weight : float
        Per-asset weight bounds, ``min_weight <= max_weight``.
    max_leverage : float
        Cap on gross leverage ``sum|w|``, ``> 0`` (``inf`` allowed: no cap).
    target_return : float or None
        Lower bound on ``mu'w`` in the units of the expected returns; ``None`` for none.
    long_only : bool
        Forbid short positions: the lower bound used is :attr:`effective_min_weight`
        ``= max(min_weight, 0)``, so the default ``-0.25`` becomes 0 while a positive floor is
        kept. ``min_weight`` itself is stored unchanged.
    budget : float or None
        Required net exposure ``sum(w)`` (1.0 = fully invested); ``None`` for no budget.
        ``|budget| <= max_leverage`` is required.

    Raises
    ------
    OptimizationError
        For a non-finite or non-numeric field, ``max_leverage <= 0``, ``min_weight >
        max_weight`` (after ``long_only``) or ``|budget| > max_leverage``; the message names the
        field and the value.
    """

    min_weight: float = -0.25
    max_weight: float = 0.25
    max_leverage: float = 3.0
    target_return: float | None = None
    long_only: bool = False
    budget: float | None = 1.0

    def __post_init__(self) -> None:
        name = type(self).__name__
        for field_name in ("min_weight", "max_weight"):
            value = getattr(self, field_name)
            if not _is_real(value) or not math.isfinite(value):
                raise OptimizationError(
                    f"{name}.{field_name} must be a finite number, got {value!r}"
                )
        if (
            not _is_real(self.max_leverage)
            or math.isnan(self.max_leverage)
            or self.max_leverage <= 0
        ):
            raise OptimizationError(
                f"{name}.max_leverage must be a number > 0, got {self.max_leverage!r}"
            )
        for field_name in ("target_return", "budget"):
            value = getattr(self, field_name)
            if value is not None and (not _is_real(value) or not math.isfinite(value)):
                raise OptimizationError(
                    f"{name}.{field_name} must be a finite number or None, got {value!r}"
                )
        if not isinstance(self.long_only, bool | np.bool_):
            raise OptimizationError(f"{name}.long_only must be a bool, got {self.long_only!r}")
        if self.effective_min_weight > self.max_weight:
            detail = " (long_only raises it to 0)" if self.long_only else ""
            raise OptimizationError(
                f"{name}.min_weight={self.effective_min_weight}{detail} > "
                f"max_weight={self.max_weight}: the weight bounds are empty"
            )
        if self.budget is not None and abs(self.budget) > self.max_leverage:
            raise OptimizationError(
                f"{name}.budget={self.budget} is infeasible: |budget| > "
                f"max_leverage={self.max_leverage}"
            )

    @property
    def effective_min_weight(self) -> float:
        """Lower weight bound actually used: ``max(min_weight, 0)`` when ``long_only``."""
        return max(float(self.min_weight), 0.0) if self.long_only else float(self.min_weight)

    def bounds(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-asset bounds ``(lo, hi)``, each of shape (n,)."""
        return (
            np.full(n, self.effective_min_weight, dtype=np.float64),
            np.full(n, float(self.max_weight), dtype=np.float64),
        )


def _as_float_vector(values: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise OptimizationError(f"{name} must be numeric: {exc}") from None
    if arr.ndim != 1:
        raise OptimizationError(f"{name} must be 1-D, got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        i = int(bad[0])
        raise OptimizationError(f"{name}[{i}] must be finite, got {arr[i]}")
    return arr


class PortfolioOptimizer:
    """Mean-variance optimizer with a jitted fast solver and an SLSQP reference.

    Parameters
    ----------
    constraints : OptimizationConstraints or None
        ``None`` uses the defaults of :class:`OptimizationConstraints`.
    return_weight : float
        ``lam >= 0`` in ``0.5 w'Sigma w - lam mu'w`` (it weights the *return* term; see the
        module docstring).
    solver : {"fast", "slsqp"}
        ``"fast"``: :func:`solve_fast` with SLSQP fallback; ``"slsqp"``: the reference only.
    tol : float
        Fast solver: tolerance on the projected-gradient step (weight units); SLSQP:
        ``ftol = min(tol, 1e-12)``.
    max_iter : int
        Iteration cap of each fast inner solve and of SLSQP (at least 100 for SLSQP).

    Attributes
    ----------
    last_solver : str or None
        ``"fast"``, ``"slsqp"`` or ``"slsqp-fallback"`` for the last solve.
    last_n_iter : int
        FISTA iterations of the last fast solve (0 for SLSQP).
    """

    def __init__(
        self,
        constraints: OptimizationConstraints | None = None,
        return_weight: float = 1.0,
        solver: Literal["fast", "slsqp"] = "fast",
        tol: float = 1e-10,
        max_iter: int = 10_000,
    ) -> None:
        if constraints is None:
            constraints = OptimizationConstraints()
        if not isinstance(constraints, OptimizationConstraints):
            raise OptimizationError(
                f"constraints must be an OptimizationConstraints, got {type(constraints).__name__}"
            )
        if not _is_real(return_weight) or not math.isfinite(return_weight) or return_weight < 0:
            raise OptimizationError(
                f"return_weight must be a finite number >= 0, got {return_weight!r}"
            )
        if solver not in ("fast", "slsqp"):
            raise OptimizationError(f"solver must be 'fast' or 'slsqp', got {solver!r}")
        if not _is_real(tol) or not (0.0 < tol < 1.0):
            raise OptimizationError(f"tol must be a number in (0, 1), got {tol!r}")
        if not isinstance(max_iter, numbers.Integral) or isinstance(max_iter, bool) or max_iter < 1:
            raise OptimizationError(f"max_iter must be an integer >= 1, got {max_iter!r}")
        self.constraints: OptimizationConstraints = constraints
        self.return_weight: float = float(return_weight)
        self.solver: Literal["fast", "slsqp"] = solver
        self.tol: float = float(tol)
        self.max_iter: int = int(max_iter)
        self.last_solver: str | None = None
        self.last_n_iter: int = 0
        self._last_by_names: dict[tuple[str, ...], np.ndarray] = {}
        self._last_array: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the remembered solutions used as warm starts."""
        self._last_by_names.clear()
        self._last_array = None

    # ------------------------------------------------------------------ array level
    def optimize_array(
        self,
        mu: np.ndarray,
        sigma: np.ndarray,
        warm_start: np.ndarray | None = None,
        instrument_names: Sequence[str] | None = None,
    ) -> np.ndarray:
        """Optimal weights for aligned arrays: validation, feasibility, solve, fallback.

        Parameters
        ----------
        mu : ndarray, shape (n,)
            Expected returns per period.
        sigma : ndarray, shape (n, n)
            Covariance, same period; must be symmetric (relative tolerance ``1e-9``, then
            symmetrized) and positive semidefinite.
        warm_start : ndarray, shape (n,), optional
            Start point. Default: the last solution for the same ``instrument_names`` if they
            are given, else the last unnamed ``optimize_array`` solution of the same length.
        instrument_names : sequence of str, optional
            Names of the ``n`` assets; only used to key the remembered warm start, so that a
            changing universe never starts from another universe's weights.

        Returns
        -------
        ndarray, shape (n,)
            Weights meeting every constraint within ``1e-8``.

        Raises
        ------
        OptimizationError
            Invalid input (NaN/inf, shapes, asymmetric or indefinite covariance), infeasible
            constraints, or an SLSQP failure.
        """
        mu_a = _as_float_vector(mu, "expected_returns")
        n = mu_a.size
        if n == 0:
            raise OptimizationError("expected_returns must contain at least one asset")
        sig = self._check_covariance(sigma, n)
        key: tuple[str, ...] | None = None
        if instrument_names is not None:
            key = self._check_names(instrument_names)
            if len(key) != n:
                raise OptimizationError(
                    f"instrument_names has {len(key)} names but expected_returns has {n} values"
                )
        w0: np.ndarray | None = None
        if warm_start is not None:
            w0 = _as_float_vector(warm_start, "warm_start")
            if w0.size != n:
                raise OptimizationError(f"warm_start must have shape ({n},), got {w0.shape}")
        elif key is not None:
            w0 = self._last_by_names.get(key)
        elif self._last_array is not None and self._last_array.size == n:
            w0 = self._last_array
        w = self._solve(mu_a, sig, w0)
        if key is not None:
            self._last_by_names[key] = w
        else:
            self._last_array = w
        return w

    def _check_covariance(self, sigma: Any, n: int) -> np.ndarray:
        try:
            sig = np.asarray(sigma, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise OptimizationError(f"covariance must be numeric: {exc}") from None
        if sig.shape != (n, n):
            raise OptimizationError(f"covariance must have shape ({n}, {n}), got {sig.shape}")
        bad = np.argwhere(~np.isfinite(sig))
        if bad.size:
            i, j = (int(k) for k in bad[0])
            raise OptimizationError(f"covariance[{i}, {j}] must be finite, got {sig[i, j]}")
        asym = np.abs(sig - sig.T)
        scale = float(np.max(np.abs(sig)))
        if float(asym.max()) > _SYMMETRY_RTOL * scale:
            i, j = (int(k) for k in np.unravel_index(int(np.argmax(asym)), asym.shape))
            raise OptimizationError(
                f"covariance is not symmetric: covariance[{i}, {j}]={sig[i, j]} but "
                f"covariance[{j}, {i}]={sig[j, i]}"
            )
        return np.ascontiguousarray(0.5 * (sig + sig.T))

    def _solve(self, mu: np.ndarray, sigma: np.ndarray, w0: np.ndarray | None) -> np.ndarray:
        c = self.constraints
        n = mu.size
        lo, hi = c.bounds(n)
        _check_feasible(mu, lo, hi, c.budget, c.max_leverage, c.target_return)
        lo_r, hi_r, cap = _reduce_problem(lo, hi, c.budget, c.max_leverage)
        if self.solver == "fast":
            w, status, iters = solve_fast_status(
                mu,
                sigma,
                self.return_weight,
                lo_r,
                hi_r,
                math.nan if c.budget is None else float(c.budget),
                cap,
                math.nan if c.target_return is None else float(c.target_return),
                np.zeros(0) if w0 is None else np.ascontiguousarray(w0),
                self.tol,
                self.max_iter,
            )
            self.last_n_iter = int(iters)
            if status == FAST_STATUS_NOT_PSD:
                eig = np.linalg.eigvalsh(sigma)
                raise OptimizationError(
                    "covariance is not positive semidefinite: smallest eigenvalue "
                    f"{eig[0]:.6g}, largest {eig[-1]:.6g}"
                )
            if status == FAST_STATUS_CONVERGED:
                self.last_solver = "fast"
                return w
            reason = "max_iter reached" if status == FAST_STATUS_MAX_ITER else "target loop"
            logger.warning(
                "fast solver did not converge (%s, %d iterations, max_iter=%d, n=%d); "
                "falling back to SLSQP",
                reason,
                iters,
                self.max_iter,
                n,
            )
            self.last_solver = "slsqp-fallback"
        else:
            eig = np.linalg.eigvalsh(sigma)
            if eig[0] < -_PSD_RTOL * max(eig[-1], 0.0):
                raise OptimizationError(
                    "covariance is not positive semidefinite: smallest eigenvalue "
                    f"{eig[0]:.6g}, largest {eig[-1]:.6g}"
                )
            self.last_solver = "slsqp"
            self.last_n_iter = 0
        w, ok, msg = _slsqp_impl(
            mu,
            sigma,
            self.return_weight,
            lo,
            hi,
            c.budget,
            c.max_leverage,
            c.target_return,
            w0,
            self.tol,
            self.max_iter,
        )
        if not ok:
            raise OptimizationError(f"SLSQP did not converge to a feasible optimum: {msg}")
        return w

    # ------------------------------------------------------------------ named level
    def optimize(
        self,
        expected_returns: Mapping[str, float] | np.ndarray | Sequence[float],
        covariance: np.ndarray | pd.DataFrame,
        instrument_names: Sequence[str],
        warm_start: Mapping[str, float] | np.ndarray | None = None,
    ) -> dict[str, float]:
        """Optimal weights by instrument name.

        Parameters
        ----------
        expected_returns : Mapping[str, float] or array, shape (n,)
            By name (every name required, no others) or aligned with ``instrument_names``.
        covariance : ndarray or DataFrame, shape (n, n)
            Aligned with ``instrument_names`` (a DataFrame is reindexed by them).
        instrument_names : sequence of str
            Unique names, defining the order.
        warm_start : Mapping or array, optional
            Start point; default the last solution for the same ``instrument_names``.

        Returns
        -------
        dict[str, float]
            Weight per name, in the order of ``instrument_names``.
        """
        names = self._check_names(instrument_names)
        mu = self._named_vector(expected_returns, names, "expected_returns")
        if isinstance(covariance, pd.DataFrame):
            missing = [k for k in names if k not in covariance.index or k not in covariance.columns]
            if missing:
                raise OptimizationError(
                    f"covariance has no row/column for instruments {missing[:5]}"
                )
            covariance = covariance.loc[list(names), list(names)].to_numpy(dtype=np.float64)
        w0 = None if warm_start is None else self._named_vector(warm_start, names, "warm_start")
        w = self.optimize_array(mu, covariance, warm_start=w0, instrument_names=names)
        return {k: float(v) for k, v in zip(names, w, strict=True)}

    def optimize_with_bl(
        self,
        bl_result: Mapping[str, Any],
        instrument_names: Sequence[str],
        warm_start: Mapping[str, float] | np.ndarray | None = None,
    ) -> dict[str, float]:
        """Optimize with a Black-Litterman posterior.

        Parameters
        ----------
        bl_result : Mapping
            The dict of ``BlackLitterman.optimize``; only ``"posterior_returns"`` (name ->
            expected return) and ``"posterior_covariance"`` (ndarray (n, n) aligned with
            ``instrument_names``) are used.
        instrument_names : sequence of str
        warm_start : optional, as in :meth:`optimize`.

        Returns
        -------
        dict[str, float]
        """
        if not isinstance(bl_result, Mapping):
            raise OptimizationError(f"bl_result must be a mapping, got {type(bl_result).__name__}")
        for key in ("posterior_returns", "posterior_covariance"):
            if key not in bl_result:
                raise OptimizationError(f"bl_result has no key {key!r}")
        return self.optimize(
            bl_result["posterior_returns"],
            bl_result["posterior_covariance"],
            instrument_names,
            warm_start=warm_start,
        )

    @staticmethod
    def _check_names(instrument_names: Sequence[str]) -> tuple[str, ...]:
        if isinstance(instrument_names, str):
            raise OptimizationError(
                f"instrument_names must be a sequence of names, got the string {instrument_names!r}"
            )
        names = tuple(instrument_names)
        if not names:
            raise OptimizationError("instrument_names must not be empty")
        seen: set[str] = set()
        for k in names:
            if k in seen:
                raise OptimizationError(f"instrument_names has the duplicate {k!r}")
            seen.add(k)
        return names

    @staticmethod
    def _named_vector(values: Any, names: tuple[str, ...], what: str) -> np.ndarray:
        if isinstance(values, Mapping):
            missing = [k for k in names if k not in values]
            if missing:
                raise OptimizationError(f"{what} has no value for instruments {missing[:5]}")
            extra = [k for k in values if k not in set(names)]
            if extra:
                raise OptimizationError(
                    f"{what} has instruments not in instrument_names: {extra[:5]}"
                )
            arr = _as_float_vector([values[k] for k in names], what)
        else:
            arr = _as_float_vector(values, what)
        if arr.size != len(names):
            raise OptimizationError(
                f"{what} must have {len(names)} values (one per instrument), got {arr.size}"
            )
        return arr


@njit(cache=True)
def should_rebalance_nb(
    current: np.ndarray,
    target: np.ndarray,
    signal_change: float,
    signal_threshold: float,
    drift_threshold: float,
) -> bool:
    """Jitted rule of :func:`should_rebalance` for aligned arrays of shape (n,).

    ``abs(signal_change) > signal_threshold`` or ``max_i |current_i - target_i| >
    drift_threshold``. No validation: inputs must be finite and of equal length.
    """
    if abs(signal_change) > signal_threshold:
        return True
    for i in range(current.shape[0]):  # noqa: SIM110 (numba: no generator expressions)
        if abs(current[i] - target[i]) > drift_threshold:
            return True
    return False


def should_rebalance(
    current_weights: Mapping[str, float] | np.ndarray | Sequence[float],
    target_weights: Mapping[str, float] | np.ndarray | Sequence[float],
    signal_change: float,
    signal_threshold: float = 0.15,
    drift_threshold: float = 0.05,
) -> bool:
    """Whether to rebalance: a large signal change or a large position drift.

    True when ``|signal_change| > signal_threshold`` or ``max_i |current_i - target_i| >
    drift_threshold`` (both strictly greater: a drift exactly at the threshold does not
    trigger; the same rule as the jitted :func:`should_rebalance_nb`). Weights are fractions of
    equity; mappings are compared over the union of their
    names with a missing name meaning weight 0 (so a drift band also works for a zero target);
    arrays must have the same shape.

    Raises
    ------
    OptimizationError
        NaN/inf inputs, negative thresholds, mismatched shapes, or a mapping mixed with an array.
    """
    for name, value in (
        ("signal_change", signal_change),
        ("signal_threshold", signal_threshold),
        ("drift_threshold", drift_threshold),
    ):
        if not _is_real(value) or not math.isfinite(value):
            raise OptimizationError(f"{name} must be a finite number, got {value!r}")
    if signal_threshold < 0 or drift_threshold < 0:
        raise OptimizationError(
            f"thresholds must be >= 0, got signal_threshold={signal_threshold}, "
            f"drift_threshold={drift_threshold}"
        )
    cur_map = isinstance(current_weights, Mapping)
    tgt_map = isinstance(target_weights, Mapping)
    if cur_map != tgt_map:
        raise OptimizationError(
            "current_weights and target_weights must both be mappings or both be arrays"
        )
    if isinstance(current_weights, Mapping) and isinstance(target_weights, Mapping):
        keys = list(dict.fromkeys([*current_weights, *target_weights]))
        cur = _as_float_vector([current_weights.get(k, 0.0) for k in keys], "current_weights")
        tgt = _as_float_vector([target_weights.get(k, 0.0) for k in keys], "target_weights")
    else:
        cur = _as_float_vector(current_weights, "current_weights")
        tgt = _as_float_vector(target_weights, "target_weights")
        if cur.shape != tgt.shape:
            raise OptimizationError(
                f"current_weights shape {cur.shape} != target_weights shape {tgt.shape}"
            )
    return bool(
        should_rebalance_nb(
            cur, tgt, float(signal_change), float(signal_threshold), float(drift_threshold)
        )
    )
