"""Causal two-state Gaussian hidden Markov regime model and the ``regime_clarity`` signal.

The model (Hamilton 1989; Rabiner 1989, "A tutorial on hidden Markov models", Proc. IEEE 77(2))
treats a daily return series ``r_t`` as drawn from one of two hidden states ``s_t in {0, 1}``,
``r_t | s_t = i ~ N(mean_i, variance_i)``, with a first-order Markov chain
``P(s_t = j | s_{t-1} = i) = trans[i, j]``. States are ordered by variance so that labels are
stable across refits: **state 0 = calm** (smaller variance), **state 1 = turbulent**.

Causality
---------
Only *forward-filtered* probabilities ``P(s_t | r_1..r_t)`` are ever produced. Smoothed
probabilities ``P(s_t | r_1..r_T)`` (forward-backward) read the future and are used only inside
the EM fit, on the fit window, which never extends past the bar being served.

``regime_clarity`` at a close is the filtered probability of the most likely state, in
``[0.5, 1]`` for two states: 1 means the model is certain which regime it is in, 0.5 means it
cannot tell. Black-Litterman consumers use it to scale view confidence, so 1.0 means "no
discount"; that is the fill value before the model has enough history.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from numba import njit

from portfolio.errors import DataError

__all__ = [
    "GaussianHMM2",
    "HMMParams",
    "causal_regime_clarity",
    "causal_regime_probabilities",
    "forward_filter",
    "load_clarity_series",
    "log_likelihood",
    "regime_clarity",
]

logger = logging.getLogger(__name__)

_LOG_2PI = math.log(2.0 * math.pi)
# Below this the scaled forward normaliser risks subnormal precision loss; recompute in logs.
_TINY = 1e-250


# ---------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class HMMParams:
    """Parameters of a two-state Gaussian HMM (frozen; arrays are read-only float64 copies).

    Parameters
    ----------
    start_prob : np.ndarray, shape (2,)
        Distribution of the state at the first bar of the sequence the model was fitted on.
    trans : np.ndarray, shape (2, 2)
        Row-stochastic transition matrix, ``trans[i, j] = P(s_t = j | s_{t-1} = i)``.
    means : np.ndarray, shape (2,)
        Per-state mean of the return, in return units per bar (e.g. daily log return).
    variances : np.ndarray, shape (2,)
        Per-state variance of the return, in squared return units per bar; strictly positive.

    Raises
    ------
    ValueError
        If a shape is wrong, a value is not finite, a probability is negative, a probability
        vector or transition row does not sum to 1 (tolerance 1e-8), or a variance is not > 0.
    """

    start_prob: np.ndarray
    trans: np.ndarray
    means: np.ndarray
    variances: np.ndarray

    def __post_init__(self) -> None:
        shapes = {"start_prob": (2,), "trans": (2, 2), "means": (2,), "variances": (2,)}
        for name, shape in shapes.items():
            arr = np.array(getattr(self, name), dtype=np.float64, copy=True)
            if arr.shape != shape:
                raise ValueError(f"HMMParams.{name} must have shape {shape}, got {arr.shape}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"HMMParams.{name} must be finite, got {arr.tolist()}")
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        if np.any(self.start_prob < 0.0) or abs(self.start_prob.sum() - 1.0) > 1e-8:
            raise ValueError(
                "HMMParams.start_prob must be non-negative and sum to 1, "
                f"got {self.start_prob.tolist()}"
            )
        if np.any(self.trans < 0.0) or np.any(np.abs(self.trans.sum(axis=1) - 1.0) > 1e-8):
            raise ValueError(
                f"HMMParams.trans rows must be non-negative and sum to 1, got {self.trans.tolist()}"
            )
        if np.any(self.variances <= 0.0):
            raise ValueError(f"HMMParams.variances must be > 0, got {self.variances.tolist()}")

    def stationary_distribution(self) -> np.ndarray:
        """Stationary distribution ``π`` of ``trans`` (``π = π · trans``), shape (2,).

        For two states ``π_0 = trans[1, 0] / (trans[0, 1] + trans[1, 0])``; if the chain never
        switches (both off-diagonals 0) the answer is not unique and ``[0.5, 0.5]`` is returned.
        """
        a01 = float(self.trans[0, 1])
        a10 = float(self.trans[1, 0])
        if a01 + a10 <= 0.0:
            return np.array([0.5, 0.5])
        p0 = a10 / (a01 + a10)
        return np.array([p0, 1.0 - p0])

    def __repr__(self) -> str:
        return (
            f"HMMParams(start_prob={self.start_prob.tolist()}, trans={self.trans.tolist()}, "
            f"means={self.means.tolist()}, variances={self.variances.tolist()})"
        )


# ---------------------------------------------------------------------------------------------
# Numba kernels
# ---------------------------------------------------------------------------------------------


@njit(cache=True)
def _log_normal_pdf_nb(x: float, mean: float, variance: float) -> float:
    d = x - mean
    return -0.5 * (_LOG_2PI + math.log(variance) + d * d / variance)


@njit(cache=True)
def _forward_core_nb(
    x: np.ndarray,
    start_prob: np.ndarray,
    trans: np.ndarray,
    means: np.ndarray,
    variances: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Scaled forward recursion (Rabiner 1989, eqs. 91-92b).

    Returns the filtered probabilities ``alpha`` (T, 2), the per-bar emission densities scaled
    so that their maximum over states is 1 (T, 2) (needed by the backward pass), and the log
    likelihood ``sum_t log c_t``. Scaling the emissions per bar by their maximum keeps the
    recursion in [0, 1] whatever the return magnitude; the removed factor is added back to the
    log likelihood.
    """
    n = x.shape[0]
    alpha = np.empty((n, 2))
    b = np.empty((n, 2))
    loglik = 0.0
    p0 = start_prob[0]
    p1 = start_prob[1]
    for t in range(n):
        lb0 = _log_normal_pdf_nb(x[t], means[0], variances[0])
        lb1 = _log_normal_pdf_nb(x[t], means[1], variances[1])
        lmax = max(lb0, lb1)
        b[t, 0] = math.exp(lb0 - lmax)
        b[t, 1] = math.exp(lb1 - lmax)
        if t > 0:
            a0 = alpha[t - 1, 0]
            a1 = alpha[t - 1, 1]
            p0 = a0 * trans[0, 0] + a1 * trans[1, 0]
            p1 = a0 * trans[0, 1] + a1 * trans[1, 1]
        u0 = p0 * b[t, 0]
        u1 = p1 * b[t, 1]
        c = u0 + u1
        if c > _TINY:
            alpha[t, 0] = u0 / c
            alpha[t, 1] = u1 / c
            loglik += math.log(c) + lmax
        else:
            # The predicted mass sits on a state whose density underflowed: redo this bar in
            # log space so the filter neither divides by zero nor loses precision.
            l0 = math.log(p0) + lb0 if p0 > 0.0 else -np.inf
            l1 = math.log(p1) + lb1 if p1 > 0.0 else -np.inf
            m = max(l0, l1)
            e0 = math.exp(l0 - m)
            e1 = math.exp(l1 - m)
            s = e0 + e1
            alpha[t, 0] = e0 / s
            alpha[t, 1] = e1 / s
            loglik += m + math.log(s)
    return alpha, b, loglik


@njit(cache=True)
def _forward_nb(
    x: np.ndarray,
    start_prob: np.ndarray,
    trans: np.ndarray,
    means: np.ndarray,
    variances: np.ndarray,
) -> tuple[np.ndarray, float]:
    alpha, _, loglik = _forward_core_nb(x, start_prob, trans, means, variances)
    return alpha, loglik


@njit(cache=True)
def _baum_welch_nb(
    x: np.ndarray,
    start_prob: np.ndarray,
    trans: np.ndarray,
    means: np.ndarray,
    variances: np.ndarray,
    n_iter: int,
    tol: float,
    var_floor: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, bool]:
    """Baum-Welch EM (Rabiner 1989, eqs. 40a-c, 53-54) with scaled forward-backward.

    ``loglik_history[k]`` is the log likelihood of the parameters after ``k`` M-steps. Stops when
    an E-step improves the log likelihood by less than ``tol * max(1, |previous|)`` (relative
    tolerance) or after ``n_iter`` M-steps. Variances are floored at ``var_floor``; because the
    expected complete log likelihood is unimodal in each variance, clipping at the floor is the
    constrained maximiser, so every step is still a (generalised) EM step and the likelihood is
    non-decreasing.
    """
    n = x.shape[0]
    pi = start_prob.copy()
    a = trans.copy()
    mu = means.copy()
    var = variances.copy()
    hist = np.empty(n_iter + 1)
    gamma = np.empty((n, 2))
    xi = np.empty((2, 2))
    n_steps = 0
    converged = False
    n_hist = 0
    for it in range(n_iter + 1):
        alpha, b, ll = _forward_core_nb(x, pi, a, mu, var)
        hist[it] = ll
        n_hist = it + 1
        if it > 0 and ll - hist[it - 1] < tol * max(1.0, abs(hist[it - 1])):
            converged = True
            break
        if it == n_iter:
            break
        # E-step, backward pass. beta is renormalised to sum 1 at each bar: xi_t and gamma_t are
        # normalised per bar anyway, so any positive per-bar scale cancels.
        xi[:, :] = 0.0
        beta0 = 1.0
        beta1 = 1.0
        gamma[n - 1, 0] = alpha[n - 1, 0]
        gamma[n - 1, 1] = alpha[n - 1, 1]
        for t in range(n - 2, -1, -1):
            w0 = b[t + 1, 0] * beta0
            w1 = b[t + 1, 1] * beta1
            x00 = alpha[t, 0] * a[0, 0] * w0
            x01 = alpha[t, 0] * a[0, 1] * w1
            x10 = alpha[t, 1] * a[1, 0] * w0
            x11 = alpha[t, 1] * a[1, 1] * w1
            s = x00 + x01 + x10 + x11
            if s > 0.0:
                xi[0, 0] += x00 / s
                xi[0, 1] += x01 / s
                xi[1, 0] += x10 / s
                xi[1, 1] += x11 / s
                gamma[t, 0] = (x00 + x01) / s
                gamma[t, 1] = (x10 + x11) / s
            else:
                gamma[t, 0] = alpha[t, 0]
                gamma[t, 1] = alpha[t, 1]
            nb0 = a[0, 0] * w0 + a[0, 1] * w1
            nb1 = a[1, 0] * w0 + a[1, 1] * w1
            sb = nb0 + nb1
            if sb > 0.0:
                beta0 = nb0 / sb
                beta1 = nb1 / sb
            else:
                beta0 = 0.5
                beta1 = 0.5
        # M-step.
        g0 = gamma[0, 0] + gamma[0, 1]
        pi[0] = gamma[0, 0] / g0
        pi[1] = gamma[0, 1] / g0
        for i in range(2):
            row = xi[i, 0] + xi[i, 1]
            if row > 0.0:
                a[i, 0] = xi[i, 0] / row
                a[i, 1] = xi[i, 1] / row
            w = 0.0
            wx = 0.0
            for t in range(n):
                w += gamma[t, i]
                wx += gamma[t, i] * x[t]
            if w > 1e-12:
                m = wx / w
                ss = 0.0
                for t in range(n):
                    d = x[t] - m
                    ss += gamma[t, i] * d * d
                mu[i] = m
                var[i] = max(ss / w, var_floor)
            # else: the state is empty on this window; keep its emission parameters.
        n_steps = it + 1
    return pi, a, mu, var, hist[:n_hist].copy(), n_steps, converged


# ---------------------------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------------------------


def _as_1d_float(values: np.ndarray | pd.Series, name: str) -> np.ndarray:
    arr = np.asarray(values.to_numpy() if isinstance(values, pd.Series) else values)
    try:
        arr = arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def _position_label(values: np.ndarray | pd.Series, pos: int) -> str:
    if isinstance(values, pd.Series):
        return f"position {pos} (index {values.index[pos]!r})"
    return f"position {pos}"


def _check_finite(
    arr: np.ndarray, values: np.ndarray | pd.Series, name: str, allow_leading_nan: bool
) -> int:
    """Raise on the first non-finite value; return 1 if a leading NaN is to be dropped, else 0."""
    offset = 1 if (allow_leading_nan and arr.size > 0 and np.isnan(arr[0])) else 0
    bad = np.flatnonzero(~np.isfinite(arr[offset:]))
    if bad.size:
        pos = int(bad[0]) + offset
        raise ValueError(
            f"{name} must be finite (only a leading NaN is allowed): "
            f"{arr[pos]!r} at {_position_label(values, pos)}"
        )
    return offset


def _check_positive_int(value: int, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


class GaussianHMM2:
    """Two-state Gaussian HMM fitted by Baum-Welch EM; deterministic and label-stable.

    Parameters
    ----------
    variance_floor_ratio : float, default 1e-4
        Each state variance is floored at ``max(min_variance, variance_floor_ratio * var(x))``
        where ``var(x)`` is the sample variance of the fit data. Without a floor a state can
        collapse onto a single observation and the likelihood diverges.
    min_variance : float, default 1e-12
        Absolute variance floor (squared return units), used when the data is (near) constant.

    Attributes
    ----------
    params_ : HMMParams
        Fitted parameters, states ordered by variance (0 = calm, 1 = turbulent).
    loglik_history_ : np.ndarray, shape (n_iter_ + 1,) or shorter
        Log likelihood of the fit data under the parameters after ``k`` EM steps, ``k = 0..``;
        non-decreasing up to floating-point rounding.
    n_iter_ : int
        Number of EM (M-)steps performed.
    converged_ : bool
        Whether the relative tolerance was reached before ``n_iter`` steps.

    Notes
    -----
    Initialization (when ``init`` is not given) is deterministic: observations whose absolute
    deviation from the median is at most its 75th percentile seed the calm state, the rest the
    turbulent state (mean and variance of each group), ``trans = [[0.95, 0.05], [0.05, 0.95]]``
    and ``start_prob = [0.5, 0.5]``. No randomness is involved anywhere.
    """

    def __init__(self, variance_floor_ratio: float = 1e-4, min_variance: float = 1e-12) -> None:
        if not (math.isfinite(variance_floor_ratio) and variance_floor_ratio >= 0.0):
            raise ValueError(
                f"variance_floor_ratio must be finite and >= 0, got {variance_floor_ratio!r}"
            )
        if not (math.isfinite(min_variance) and min_variance > 0.0):
            raise ValueError(f"min_variance must be finite and > 0, got {min_variance!r}")
        self.variance_floor_ratio = float(variance_floor_ratio)
        self.min_variance = float(min_variance)
        self.params_: HMMParams | None = None
        self.loglik_history_: np.ndarray = np.empty(0)
        self.n_iter_: int = 0
        self.converged_: bool = False

    def variance_floor(self, returns: np.ndarray) -> float:
        """Variance floor used when fitting ``returns`` (squared return units)."""
        v = float(np.var(returns)) if returns.size else 0.0
        return max(self.min_variance, self.variance_floor_ratio * v)

    def initial_params(self, returns: np.ndarray) -> HMMParams:
        """Deterministic starting point for EM, from quantiles of ``returns`` (see class notes)."""
        x = np.asarray(returns, dtype=np.float64)
        floor = self.variance_floor(x)
        dev = np.abs(x - np.median(x))
        calm = x[dev <= np.quantile(dev, 0.75)]
        turb = x[dev > np.quantile(dev, 0.75)]
        if calm.size >= 2 and turb.size >= 2:
            means = np.array([calm.mean(), turb.mean()])
            variances = np.maximum(np.array([calm.var(), turb.var()]), floor)
        else:
            # Too few distinct values to split (tiny or constant window).
            v = max(float(np.var(x)), floor)
            means = np.full(2, float(np.mean(x)))
            variances = np.array([0.5 * v, 2.0 * v])
        return HMMParams(
            start_prob=np.array([0.5, 0.5]),
            trans=np.array([[0.95, 0.05], [0.05, 0.95]]),
            means=means,
            variances=variances,
        )

    def fit(
        self,
        returns: np.ndarray,
        n_iter: int = 100,
        tol: float = 1e-8,
        init: HMMParams | None = None,
    ) -> HMMParams:
        """Fit by Baum-Welch EM and return the parameters, states ordered by variance.

        Parameters
        ----------
        returns : np.ndarray, shape (T,)
            Finite returns per bar (e.g. daily log returns), ``T >= 2``.
        n_iter : int, default 100
            Maximum number of EM steps (0 returns the starting point, reordered).
        tol : float, default 1e-8
            Relative convergence tolerance: stop when one step improves the log likelihood by
            less than ``tol * max(1, |loglik|)``.
        init : HMMParams, optional
            Starting point (warm start); variances below the floor are raised to it. Default:
            the deterministic quantile initialization :meth:`initial_params`.

        Returns
        -------
        HMMParams
            Also stored in ``self.params_``; see the class attributes for diagnostics.

        Raises
        ------
        ValueError
            If ``returns`` is not 1-D, has fewer than 2 values or a non-finite value (the
            message names the first bad position), or ``n_iter``/``tol`` is invalid.
        """
        x = _as_1d_float(returns, "returns")
        _check_finite(x, returns, "returns", allow_leading_nan=False)
        if x.size < 2:
            raise ValueError(f"returns must have at least 2 values to fit, got {x.size}")
        _check_positive_int(n_iter, "n_iter", 0)
        if not (math.isfinite(tol) and tol >= 0.0):
            raise ValueError(f"tol must be finite and >= 0, got {tol!r}")
        start = self.initial_params(x) if init is None else init
        floor = self.variance_floor(x)
        pi, trans, means, variances, hist, n_steps, converged = _baum_welch_nb(
            np.ascontiguousarray(x),
            start.start_prob.copy(),
            start.trans.copy(),
            start.means.copy(),
            np.maximum(start.variances, floor),
            int(n_iter),
            float(tol),
            floor,
        )
        if variances[0] > variances[1]:
            # Relabel so that state 0 is the calm (low-variance) state.
            pi = pi[::-1]
            trans = trans[::-1, ::-1]
            means = means[::-1]
            variances = variances[::-1]
        # Renormalise to remove rounding drift in the probability vectors.
        pi = pi / pi.sum()
        trans = trans / trans.sum(axis=1, keepdims=True)
        params = HMMParams(start_prob=pi, trans=trans, means=means, variances=variances)
        self.params_ = params
        self.loglik_history_ = hist
        self.n_iter_ = int(n_steps)
        self.converged_ = bool(converged)
        return params


def _checked_forward(returns: np.ndarray, params: HMMParams) -> tuple[np.ndarray, float]:
    """Validate ``returns`` (1-D, all finite) and run the scaled forward pass: ``(alpha, ll)``."""
    x = _as_1d_float(returns, "returns")
    _check_finite(x, returns, "returns", allow_leading_nan=False)
    alpha, ll = _forward_nb(
        np.ascontiguousarray(x),
        params.start_prob.copy(),
        params.trans.copy(),
        params.means.copy(),
        params.variances.copy(),
    )
    return alpha, float(ll)


def forward_filter(returns: np.ndarray, params: HMMParams) -> np.ndarray:
    """Filtered state probabilities ``P(s_t | r_1..r_t)`` by the scaled forward recursion.

    Parameters
    ----------
    returns : np.ndarray, shape (T,)
        Finite returns, in the units the parameters were fitted in.
    params : HMMParams
        Model parameters; ``params.start_prob`` is the state distribution before ``r_1`` is seen.

    Returns
    -------
    np.ndarray, shape (T, 2)
        Row ``t`` depends on ``returns[:t + 1]`` only; rows sum to 1. Column 0 = calm,
        column 1 = turbulent (for parameters from :meth:`GaussianHMM2.fit`).

    Raises
    ------
    ValueError
        If ``returns`` is not 1-D or holds a non-finite value (first bad position named).
    """
    alpha, _ = _checked_forward(returns, params)
    return alpha


def log_likelihood(returns: np.ndarray, params: HMMParams) -> float:
    """Log likelihood ``log p(r_1..r_T | params)`` (natural log), by the scaled forward pass.

    Raises
    ------
    ValueError
        If ``returns`` is not 1-D or holds a non-finite value (first bad position named).
    """
    _, ll = _checked_forward(returns, params)
    return ll


# ---------------------------------------------------------------------------------------------
# Causal (walk-forward) probabilities and clarity
# ---------------------------------------------------------------------------------------------


def causal_regime_probabilities(
    returns: np.ndarray | pd.Series,
    refit: Literal["expanding", "rolling"] = "expanding",
    refit_every: int = 63,
    window: int = 756,
    min_history: int = 252,
    *,
    n_iter: int = 100,
    tol: float = 1e-8,
    model: GaussianHMM2 | None = None,
) -> np.ndarray:
    """Walk-forward filtered regime probabilities with periodic refits on past data only.

    Construction (indices ``k, t`` refer to the return series after dropping a leading NaN):

    * bars ``t < min_history`` are NaN;
    * refit bars are ``k = min_history, min_history + refit_every, ...``. At refit bar ``k`` the
      parameters ``θ_k`` are fitted on ``returns[s:k + 1]`` where ``s = 0`` (``"expanding"``) or
      ``s = max(0, k + 1 - window)`` (``"rolling"``; while fewer than ``window`` returns exist
      the window is simply all of them);
    * the bars ``t = k .. k + refit_every - 1`` it serves get the forward filter run with
      ``θ_k`` continuously from bar ``s`` (starting at ``θ_k.start_prob``) through ``t``.

    Row ``t`` therefore depends on ``returns[:t + 1]`` only: ``θ_k`` uses data up to
    ``k <= t`` and the filter at ``t`` uses data up to ``t``. Probabilities are never smoothed.
    Each EM fit is warm-started from the previous fit (its transition matrix, means and
    variances, with the start distribution reset to that transition matrix's stationary
    distribution, because the window start moves), which is itself a function of past data
    only; the first fit uses the deterministic quantile initialization.

    Parameters
    ----------
    returns : np.ndarray or pd.Series, shape (T,)
        Returns per bar (e.g. daily log returns). A NaN in the first position (the return of the
        first price) is allowed and yields a NaN row; any other non-finite value is an error.
    refit : {"expanding", "rolling"}, default "expanding"
        Fit window scheme.
    refit_every : int, default 63
        Bars between refits (63 ≈ one quarter of trading days).
    window : int, default 756
        Rolling window length in bars (≈ 3 years); ignored for ``"expanding"``.
    min_history : int, default 252
        First bar with a probability (the first fit uses ``min_history + 1`` returns).
    n_iter, tol : int, float
        EM settings passed to :meth:`GaussianHMM2.fit`.
    model : GaussianHMM2, optional
        Model carrying the variance floor settings; default ``GaussianHMM2()``.

    Returns
    -------
    np.ndarray, shape (T, 2)
        ``[:, 0]`` = P(calm), ``[:, 1]`` = P(turbulent); NaN rows before ``min_history`` (and at
        a dropped leading NaN). A series too short for one fit gives all NaN.

    Raises
    ------
    ValueError
        On a non-finite return other than a leading NaN (first bad position named), an
        unknown ``refit`` or an invalid integer setting.
    """
    if refit not in ("expanding", "rolling"):
        raise ValueError(f"refit must be 'expanding' or 'rolling', got {refit!r}")
    _check_positive_int(refit_every, "refit_every", 1)
    _check_positive_int(window, "window", 2)
    _check_positive_int(min_history, "min_history", 1)
    arr = _as_1d_float(returns, "returns")
    offset = _check_finite(arr, returns, "returns", allow_leading_nan=True)
    out = np.full((arr.size, 2), np.nan)
    x = np.ascontiguousarray(arr[offset:])
    n = x.size
    if n <= min_history:
        return out
    hmm = GaussianHMM2() if model is None else model
    prev: HMMParams | None = None
    for k in range(min_history, n, refit_every):
        start = 0 if refit == "expanding" else max(0, k + 1 - window)
        end = min(k + refit_every, n)
        init = None
        if prev is not None:
            init = HMMParams(
                start_prob=prev.stationary_distribution(),
                trans=prev.trans,
                means=prev.means,
                variances=prev.variances,
            )
        params = hmm.fit(x[start : k + 1], n_iter=n_iter, tol=tol, init=init)
        logger.debug(
            "regime refit at bar %d on [%d, %d]: %d EM steps, converged=%s",
            k,
            start,
            k,
            hmm.n_iter_,
            hmm.converged_,
        )
        alpha, _ = _forward_nb(
            x[start:end],
            params.start_prob.copy(),
            params.trans.copy(),
            params.means.copy(),
            params.variances.copy(),
        )
        out[offset + k : offset + end] = alpha[k - start :]
        prev = params
    return out


def regime_clarity(probabilities: np.ndarray) -> np.ndarray:
    """Regime clarity: filtered probability of the most likely state, per bar.

    Parameters
    ----------
    probabilities : np.ndarray, shape (T, K)
        State probabilities per bar (rows sum to 1), e.g. from
        :func:`causal_regime_probabilities`.

    Returns
    -------
    np.ndarray, shape (T,)
        ``max_k probabilities[t, k]``, in ``[1/K, 1]`` (``[0.5, 1]`` for two states); NaN where
        any entry of the row is NaN.

    Raises
    ------
    ValueError
        If ``probabilities`` is not 2-D with at least one column.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 1:
        raise ValueError(f"probabilities must have shape (T, K) with K >= 1, got {p.shape}")
    out = np.full(p.shape[0], np.nan)
    ok = ~np.isnan(p).any(axis=1)
    if ok.any():
        out[ok] = p[ok].max(axis=1)
    return out


def causal_regime_clarity(
    prices_or_returns: pd.Series,
    *,
    input_kind: Literal["prices", "returns"] = "prices",
    refit: Literal["expanding", "rolling"] = "expanding",
    refit_every: int = 63,
    window: int = 756,
    min_history: int = 252,
    fill_value: float = 1.0,
) -> pd.Series:
    """Causal ``regime_clarity`` of a market series, aligned to its index.

    Parameters
    ----------
    prices_or_returns : pd.Series, shape (T,)
        Market series, e.g. the S&P 500 index level. What it holds is stated by
        ``input_kind``, never guessed.
    input_kind : {"prices", "returns"}, default "prices"
        ``"prices"``: strictly positive finite levels, converted to log returns
        ``r_t = ln(P_t / P_{t-1})`` (log returns are additive and closer to Gaussian, which suits
        the model); the first return is NaN. ``"returns"``: per-bar returns used as given,
        a leading NaN allowed.
    refit, refit_every, window, min_history
        As in :func:`causal_regime_probabilities` (bar indices count returns, so with prices the
        first clarity value is at position ``min_history + 1``).
    fill_value : float, default 1.0
        Value where clarity is undefined (before ``min_history``, or the NaN first return).
        1.0 means "no discount" when clarity scales Black-Litterman view confidence.

    Returns
    -------
    pd.Series, shape (T,)
        Named ``"regime_clarity"``, same index as the input, values in ``[0.5, 1]`` where
        defined and ``fill_value`` elsewhere.

    Raises
    ------
    ValueError
        If a price is non-finite or not > 0, a return is non-finite (other than a leading NaN),
        the first bad position and index label named; or a setting is invalid.
    """
    if not isinstance(prices_or_returns, pd.Series):
        raise ValueError(
            f"prices_or_returns must be a pandas Series, got {type(prices_or_returns).__name__}"
        )
    if not (math.isfinite(fill_value) and 0.0 <= fill_value <= 1.0):
        raise ValueError(f"fill_value must be in [0, 1], got {fill_value!r}")
    values = _as_1d_float(prices_or_returns, "prices_or_returns")
    if input_kind == "prices":
        bad = np.flatnonzero(~(np.isfinite(values) & (values > 0.0)))
        if bad.size:
            pos = int(bad[0])
            raise ValueError(
                "prices must be finite and > 0: "
                f"{values[pos]!r} at {_position_label(prices_or_returns, pos)}"
            )
        returns = np.full(values.size, np.nan)
        if values.size > 1:
            returns[1:] = np.diff(np.log(values))
        source: np.ndarray | pd.Series = returns
    elif input_kind == "returns":
        source = prices_or_returns
    else:
        raise ValueError(f"input_kind must be 'prices' or 'returns', got {input_kind!r}")
    probs = causal_regime_probabilities(
        source,
        refit=refit,
        refit_every=refit_every,
        window=window,
        min_history=min_history,
    )
    clarity = regime_clarity(probs)
    clarity[np.isnan(clarity)] = fill_value
    return pd.Series(clarity, index=prices_or_returns.index, name="regime_clarity")


def load_clarity_series(path: str | os.PathLike[str], index: pd.DatetimeIndex) -> pd.Series:
    """Load a user-supplied clarity series and align it to ``index`` causally.

    Parameters
    ----------
    path : str or os.PathLike
        CSV file (optionally compressed, inferred from the extension) with a ``Date`` column of
        dates and exactly one numeric column of clarity values in ``[0, 1]``.
    index : pd.DatetimeIndex
        Target dates, unique and increasing (e.g. the price panel's index).

    Returns
    -------
    pd.Series
        Named ``"regime_clarity"``, indexed by ``index``. The value at each target date is the
        last file value dated on or before it (forward fill only, never back-fill, so a value is
        never used before its date). Target dates before the first file date get 1.0
        ("no discount" of Black-Litterman views).

    Raises
    ------
    DataError
        If the file cannot be read, lacks a ``Date`` column or has not exactly one other
        column, a date does not parse or is duplicated, or a value is non-numeric, not finite
        or outside ``[0, 1]``; the message names the file, the column and the date.
    ValueError
        If ``index`` is not a unique, increasing DatetimeIndex.
    """
    if not isinstance(index, pd.DatetimeIndex):
        raise ValueError(f"index must be a pandas DatetimeIndex, got {type(index).__name__}")
    if not (index.is_unique and index.is_monotonic_increasing):
        raise ValueError("index must be unique and increasing")
    name = os.fspath(path)
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{name}: cannot read clarity CSV: {exc}") from exc
    if "Date" not in frame.columns:
        raise DataError(f"{name}: missing 'Date' column (columns: {list(frame.columns)})")
    others = [c for c in frame.columns if c != "Date"]
    if len(others) != 1:
        raise DataError(
            f"{name}: expected 'Date' and exactly one value column, got {list(frame.columns)}"
        )
    column = others[0]
    dates = pd.to_datetime(frame["Date"], errors="coerce")
    if dates.isna().any():
        pos = int(np.flatnonzero(dates.isna().to_numpy())[0])
        raise DataError(
            f"{name}: column 'Date' has an unparseable date {frame['Date'].iloc[pos]!r} "
            f"at row {pos}"
        )
    if dates.duplicated().any():
        dup = dates[dates.duplicated()].iloc[0]
        raise DataError(f"{name}: column 'Date' has duplicate date {dup.date()}")
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~(np.isfinite(values) & (values >= 0.0) & (values <= 1.0))
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{name}: column {column!r} must hold finite values in [0, 1]; "
            f"got {raw.iloc[pos]!r} on {dates.iloc[pos].date()}"
        )
    date_index = pd.DatetimeIndex(dates)
    if index.tz is not None and date_index.tz is None:
        date_index = date_index.tz_localize(index.tz)
    series = pd.Series(values, index=date_index).sort_index()
    # reindex(method="ffill") takes the last value dated on or before each target date.
    aligned = series.reindex(index, method="ffill").fillna(1.0)
    return pd.Series(aligned.to_numpy(), index=index, name="regime_clarity")
