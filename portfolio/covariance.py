"""Causal covariance estimates per close (EWMA and rolling window) for Black-Litterman.

Every estimator here is causal: the matrix for bar ``t`` uses ``returns[:t + 1]`` only, where
``returns[t] = p_t / p_{t-1} - 1`` is known at the close of bar ``t``. Changing any return after
``t`` leaves the matrices ``[:t + 1]`` bit-for-bit unchanged.

Estimator at bar ``t`` (per pair of assets ``i, j``)
----------------------------------------------------
* Window and weights: EWMA uses bars ``0..t`` with weights ``w_s = lam ** (t - s)``,
  ``lam = 0.5 ** (1 / halflife)`` (the weight halves every ``halflife`` bars); rolling uses bars
  ``max(0, t - lookback + 1)..t`` with weight 1.
* Missing data (NaN return, e.g. asset not listed yet): pairwise deletion. The pair ``(i, j)``
  uses the bars of the window where *both* returns are finite (the weights of the other bars are
  simply absent; in the EWMA they keep decaying with time).
* Weighted sample covariance on that common set, with the usual unbiased correction (the same
  as ``numpy.cov(x, y, aweights=w, ddof=1)`` and pandas ``ewm(...).cov(bias=False)``)::

      cov_ij = sum_s w_s (x_i - m_i)(x_j - m_j) / (W - W2 / W),
      m_i = sum_s w_s x_i / W,  W = sum_s w_s,  W2 = sum_s w_s**2

  For the rolling window this is ``sum (x_i - m_i)(x_j - m_j) / (n - 1)``.
* Annualized: multiplied by ``periods_per_year`` (default 252).
* An asset with fewer than ``min_history`` finite returns in the window is *unavailable*: its
  variance is ``missing_variance`` (annualized, default 1.0, i.e. 100 % volatility, large
  enough that an optimizer puts little weight on it) and its covariances are 0. A pair of
  available assets with fewer than 2 common observations gets covariance 0.
* If no asset is available (in particular for every ``t < min_history - 1``) the whole matrix
  is NaN.
* Shrinkage toward the diagonal: ``Sigma_s = (1 - s) Sigma + s diag(Sigma)``; ``s = 1`` gives a
  diagonal matrix.
* Positive definiteness: pairwise deletion can give an indefinite matrix. If the smallest
  eigenvalue is below ``EIGEN_FLOOR_RTOL * max(diag)`` a ridge
  ``(EIGEN_FLOOR_RTOL * max(diag) - lambda_min) * I`` is added, so every returned matrix is
  symmetric positive definite.

Cost and memory
---------------
Both path functions are one jitted pass of ``O(T * A**2)`` (running weighted sums; the rolling
sums are recomputed from scratch every ``lookback`` bars so rounding cannot drift), plus an
``O(A**3)`` eigenvalue computation only on bars that need the ridge. The output holds
``8 * T * A**2`` bytes: 26 MB for 8300 bars and 20 assets. The path functions are meant for A up
to a few hundred; for larger universes call :func:`covariance_at` per bar (``O(t * A**2)``
time and memory, a direct two-pass computation that also serves as the test reference).
The running-sum formula loses accuracy only when ``|mean| >> std`` over the window, which does
not happen for returns.
"""

from __future__ import annotations

import logging
import math
import numbers

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray

from portfolio.errors import ConfigError, DataError

__all__ = [
    "DEFAULT_MISSING_VARIANCE",
    "EIGEN_FLOOR_RTOL",
    "covariance_at",
    "ewma_covariance_path",
    "rolling_covariance_path",
]

logger = logging.getLogger(__name__)

#: Annualized variance given to an asset without enough history (100 % volatility).
DEFAULT_MISSING_VARIANCE: float = 1.0

#: Smallest eigenvalue kept, relative to the largest variance; below it a ridge is added.
EIGEN_FLOOR_RTOL: float = 1e-10

FloatArray = NDArray[np.float64]


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _check_returns(returns: ArrayLike) -> FloatArray:
    try:
        arr = np.asarray(returns, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"returns must be a numeric (T, A) array: {exc}") from exc
    if arr.ndim != 2:
        raise DataError(f"returns must be a 2-D (T, A) array, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"returns must have at least one bar and one asset, got {arr.shape}")
    infinite = np.isinf(arr)
    if infinite.any():
        t, a = (int(v) for v in np.argwhere(infinite)[0])
        raise DataError(
            f"returns must be finite or NaN (missing), got {float(arr[t, a])!r} "
            f"at bar {t}, asset {a}"
        )
    return np.ascontiguousarray(arr)


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    out = int(value)
    if out < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {out}")
    return out


def _check_positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
    out = float(value)
    if not (out > 0.0 and math.isfinite(out)):
        raise ConfigError(f"{name} must be a finite number > 0, got {out!r}")
    return out


def _check_shrinkage(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"shrinkage must be a number in [0, 1], got {value!r}")
    out = float(value)
    if not (0.0 <= out <= 1.0):
        raise ConfigError(f"shrinkage must be in [0, 1], got {out!r}")
    return out


# --------------------------------------------------------------------------------------------
# Numba kernels
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def _is_pd_above_nb(mat: FloatArray, floor: float) -> bool:  # pragma: no cover - jitted
    """True if ``mat - floor * I`` has a Cholesky factor (smallest eigenvalue > floor)."""
    n = mat.shape[0]
    low = np.zeros((n, n))
    for j in range(n):
        d = mat[j, j] - floor
        for k in range(j):
            d -= low[j, k] * low[j, k]
        if not d > 0.0:
            return False
        ljj = math.sqrt(d)
        low[j, j] = ljj
        for i in range(j + 1, n):
            v = mat[i, j]
            for k in range(j):
                v -= low[i, k] * low[j, k]
            low[i, j] = v / ljj
    return True


@njit(cache=True)
def _finalize_nb(
    raw: FloatArray,
    available: NDArray[np.bool_],
    shrinkage: float,
    missing_variance: float,
    out: FloatArray,
) -> None:  # pragma: no cover - jitted
    """Missing assets, shrinkage toward the diagonal and ridge; writes ``out`` (A, A)."""
    n = raw.shape[0]
    keep = 1.0 - shrinkage
    max_diag = 0.0
    for i in range(n):
        for j in range(i, n):
            if available[i] and available[j]:
                v = raw[i, j]
                if i == j:
                    v = max(v, 0.0)  # rounding on a constant series
                else:
                    v *= keep
            elif i == j:
                v = missing_variance
            else:
                v = 0.0
            out[i, j] = v
            out[j, i] = v
        max_diag = max(max_diag, out[i, i])
    floor = EIGEN_FLOOR_RTOL * (max_diag if max_diag > 0.0 else missing_variance)
    if not _is_pd_above_nb(out, floor):
        lam_min = np.linalg.eigvalsh(out)[0]
        ridge = floor - lam_min
        for i in range(n):
            out[i, i] += ridge


@njit(cache=True)
def _raw_from_sums_nb(
    cnt: NDArray[np.int64],
    sw: FloatArray,
    sw2: FloatArray,
    sx: FloatArray,
    sxy: FloatArray,
    scale: float,
    raw: FloatArray,
) -> None:  # pragma: no cover - jitted
    """Annualized pairwise covariance from running weighted sums (upper triangle is state)."""
    n = cnt.shape[0]
    for i in range(n):
        for j in range(i, n):
            w = sw[i, j]
            denom = w - sw2[i, j] / w if cnt[i, j] >= 2 else 0.0
            v = (sxy[i, j] - sx[i, j] * sx[j, i] / w) / denom * scale if denom > 0.0 else 0.0
            raw[i, j] = v
            raw[j, i] = v


@njit(cache=True)
def _add_row_nb(
    row: FloatArray,
    sign: float,
    cnt: NDArray[np.int64],
    sw: FloatArray,
    sw2: FloatArray,
    sx: FloatArray,
    sxy: FloatArray,
) -> None:  # pragma: no cover - jitted
    """Add (sign=+1) or remove (sign=-1) one bar of weight 1 to the pairwise sums."""
    n = row.shape[0]
    step = 1 if sign > 0.0 else -1
    for i in range(n):
        xi = row[i]
        if math.isnan(xi):
            continue
        for j in range(i, n):
            xj = row[j]
            if math.isnan(xj):
                continue
            cnt[i, j] += step
            sw[i, j] += sign
            sw2[i, j] += sign
            sxy[i, j] += sign * xi * xj
            sx[i, j] += sign * xi
            if j != i:
                sx[j, i] += sign * xj


@njit(cache=True)
def _path_nb(
    returns: FloatArray,
    lam: float,
    lookback: int,
    min_history: int,
    shrinkage: float,
    scale: float,
    missing_variance: float,
) -> FloatArray:  # pragma: no cover - jitted
    """Covariance at every bar from running pairwise sums, shape (T, A, A).

    ``lookback == 0`` selects the EWMA (every sum decays by ``lam`` per bar); ``lookback > 0``
    a rolling window of that many bars (``lam`` is then unused). Only the update of the sums
    differs; the estimate emitted from them is the same for both.
    """
    n_bars, n_assets = returns.shape
    out = np.empty((n_bars, n_assets, n_assets))
    cnt = np.zeros((n_assets, n_assets), dtype=np.int64)
    sw = np.zeros((n_assets, n_assets))
    sw2 = np.zeros((n_assets, n_assets))
    sx = np.zeros((n_assets, n_assets))
    sxy = np.zeros((n_assets, n_assets))
    raw = np.empty((n_assets, n_assets))
    available = np.zeros(n_assets, dtype=np.bool_)
    lam2 = lam * lam
    for t in range(n_bars):
        if lookback == 0:
            # Decay every sum by one bar, then add bar t with weight 1: w_s = lam ** (t - s).
            for i in range(n_assets):
                for j in range(n_assets):
                    sx[i, j] *= lam
                    if j >= i:
                        sw[i, j] *= lam
                        sw2[i, j] *= lam2
                        sxy[i, j] *= lam
            _add_row_nb(returns[t], 1.0, cnt, sw, sw2, sx, sxy)
        else:
            start = t - lookback + 1
            if start > 0 and start % lookback == 0:
                # Rebuild the window sums from scratch every `lookback` bars so that the
                # rounding of add/remove updates cannot accumulate over a long history.
                cnt[:] = 0
                sw[:] = 0.0
                sw2[:] = 0.0
                sx[:] = 0.0
                sxy[:] = 0.0
                for s in range(start, t + 1):
                    _add_row_nb(returns[s], 1.0, cnt, sw, sw2, sx, sxy)
            else:
                _add_row_nb(returns[t], 1.0, cnt, sw, sw2, sx, sxy)
                if start > 0:
                    _add_row_nb(returns[start - 1], -1.0, cnt, sw, sw2, sx, sxy)
        any_available = False
        for i in range(n_assets):
            available[i] = cnt[i, i] >= min_history
            any_available = any_available or available[i]
        if not any_available:
            out[t] = np.nan
            continue
        _raw_from_sums_nb(cnt, sw, sw2, sx, sxy, scale, raw)
        _finalize_nb(raw, available, shrinkage, missing_variance, out[t])
    return out


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def ewma_covariance_path(
    returns: ArrayLike,
    halflife: float,
    min_history: int,
    shrinkage: float,
    *,
    periods_per_year: float = 252,
    missing_variance: float = DEFAULT_MISSING_VARIANCE,
) -> FloatArray:
    """Causal exponentially weighted covariance matrix at every bar.

    Parameters
    ----------
    returns : array_like, shape (T, A)
        Simple per-bar returns, ``returns[t] = p_t / p_{t-1} - 1``; NaN marks a missing
        observation (asset not listed). Infinite values are rejected.
    halflife : float
        Half-life of the weights in bars (> 0): ``w_s = 0.5 ** ((t - s) / halflife)``.
    min_history : int
        Finite returns (>= 2) an asset needs up to ``t`` to be estimated; bars where no asset
        has that many are NaN matrices.
    shrinkage : float
        ``s`` in [0, 1] of ``(1 - s) Sigma + s diag(Sigma)``.
    periods_per_year : float
        Bars per year used to annualize (default 252).
    missing_variance : float
        Annualized variance assigned to assets without enough history (default 1.0).

    Returns
    -------
    ndarray, shape (T, A, A)
        Annualized covariance per bar, symmetric positive definite, or all-NaN during warm-up.
        See the module docstring for the exact estimator and NaN policy.

    Raises
    ------
    DataError
        If ``returns`` is not a non-empty 2-D numeric array or contains inf.
    ConfigError
        If a parameter is out of range.
    """
    data = _check_returns(returns)
    hl = _check_positive("halflife", halflife)
    min_hist = _check_int("min_history", min_history, 2)
    shrink = _check_shrinkage(shrinkage)
    scale = _check_positive("periods_per_year", periods_per_year)
    missing = _check_positive("missing_variance", missing_variance)
    lam = 0.5 ** (1.0 / hl)
    logger.debug("EWMA covariance path: %s bars x %s assets, halflife %g", *data.shape, hl)
    return _path_nb(data, lam, 0, min_hist, shrink, scale, missing)


def rolling_covariance_path(
    returns: ArrayLike,
    lookback: int,
    min_history: int,
    shrinkage: float,
    *,
    periods_per_year: float = 252,
    missing_variance: float = DEFAULT_MISSING_VARIANCE,
) -> FloatArray:
    """Causal rolling-window sample covariance matrix at every bar.

    Parameters
    ----------
    returns : array_like, shape (T, A)
        Simple per-bar returns; NaN marks a missing observation. Infinite values are rejected.
    lookback : int
        Window length in bars (>= 2): bar ``t`` uses bars ``max(0, t - lookback + 1)..t``.
    min_history : int
        Finite returns in the window (2 <= min_history <= lookback) an asset needs to be
        estimated; bars where no asset has that many are NaN matrices.
    shrinkage : float
        ``s`` in [0, 1] of ``(1 - s) Sigma + s diag(Sigma)``.
    periods_per_year : float
        Bars per year used to annualize (default 252).
    missing_variance : float
        Annualized variance assigned to assets without enough history (default 1.0).

    Returns
    -------
    ndarray, shape (T, A, A)
        Annualized covariance per bar (``numpy.cov`` of the window, ``ddof=1``, pairwise
        complete), shrunk, symmetric positive definite, or all-NaN during warm-up.

    Raises
    ------
    DataError
        If ``returns`` is not a non-empty 2-D numeric array or contains inf.
    ConfigError
        If a parameter is out of range, including ``min_history > lookback``.
    """
    data = _check_returns(returns)
    look = _check_int("lookback", lookback, 2)
    min_hist = _check_int("min_history", min_history, 2)
    if min_hist > look:
        raise ConfigError(
            f"min_history ({min_hist}) must not exceed lookback ({look}): the window could "
            "never hold enough returns"
        )
    shrink = _check_shrinkage(shrinkage)
    scale = _check_positive("periods_per_year", periods_per_year)
    missing = _check_positive("missing_variance", missing_variance)
    logger.debug("Rolling covariance path: %s bars x %s assets, lookback %d", *data.shape, look)
    return _path_nb(data, 1.0, look, min_hist, shrink, scale, missing)


def covariance_at(
    returns: ArrayLike,
    t: int,
    *,
    halflife: float | None = None,
    lookback: int | None = None,
    min_history: int,
    shrinkage: float,
    periods_per_year: float = 252,
    missing_variance: float = DEFAULT_MISSING_VARIANCE,
) -> FloatArray:
    """Covariance estimate of a single bar ``t``, computed directly from ``returns[:t + 1]``.

    Same estimator as :func:`ewma_covariance_path` (give ``halflife``) or
    :func:`rolling_covariance_path` (give ``lookback``), but computed with an explicit two-pass
    (mean, then centered products) pairwise formula rather than running sums. Use it for a
    single live step, for very large universes, or as a reference in tests. Cost
    ``O(n * A**2)`` time and memory with ``n`` the window length (``t + 1`` for the EWMA).

    Parameters
    ----------
    returns : array_like, shape (T, A)
        Simple per-bar returns; NaN marks a missing observation. Rows after ``t`` are ignored.
    t : int
        Bar index, ``0 <= t < T``.
    halflife, lookback : float or int, optional
        Exactly one of them: EWMA half-life in bars, or rolling window length in bars.
    min_history, shrinkage, periods_per_year, missing_variance
        As in the path functions.

    Returns
    -------
    ndarray, shape (A, A)
        Annualized covariance at bar ``t`` (all-NaN during warm-up).
    """
    data = _check_returns(returns)
    n_bars, n_assets = data.shape
    bar = _check_int("t", t, 0)
    if bar >= n_bars:
        raise ConfigError(f"t must be < the number of bars {n_bars}, got {bar}")
    if (halflife is None) == (lookback is None):
        raise ConfigError(
            f"give exactly one of halflife (EWMA) or lookback (rolling), got "
            f"halflife={halflife!r}, lookback={lookback!r}"
        )
    min_hist = _check_int("min_history", min_history, 2)
    shrink = _check_shrinkage(shrinkage)
    scale = _check_positive("periods_per_year", periods_per_year)
    missing = _check_positive("missing_variance", missing_variance)
    if halflife is not None:
        lam = 0.5 ** (1.0 / _check_positive("halflife", halflife))
        window = data[: bar + 1]
        weights = lam ** np.arange(bar, -1, -1, dtype=np.float64)
    else:
        look = _check_int("lookback", lookback, 2)
        if min_hist > look:
            raise ConfigError(f"min_history ({min_hist}) must not exceed lookback ({look})")
        window = data[max(0, bar - look + 1) : bar + 1]
        weights = np.ones(window.shape[0])

    valid = np.isfinite(window)
    vf = valid.astype(np.float64)
    count = valid.sum(axis=0)
    available = count >= min_hist
    if not available.any():
        return np.full((n_assets, n_assets), np.nan)
    x0 = np.where(valid, window, 0.0)
    wv = vf * weights[:, None]
    sum_w = vf.T @ wv  # [i, j] = sum of weights where both i and j are finite
    sum_w2 = (vf * weights[:, None] ** 2).T @ vf
    pair_count = vf.T @ vf
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (x0 * weights[:, None]).T @ vf / sum_w  # [i, j]: mean of i over common(i, j)
        # centered[s, i, j] = x_i(s) - mean[i, j], zero where i or j is missing at s
        mask = valid[:, :, None] & valid[:, None, :]
        centered = np.where(mask, x0[:, :, None] - mean[None, :, :], 0.0)
        num = np.einsum("s,sij,sji->ij", weights, centered, centered)
        denom = sum_w - sum_w2 / sum_w
        raw = np.where((pair_count >= 2) & (denom > 0.0), num / denom * scale, 0.0)
    out = np.empty((n_assets, n_assets))
    _finalize_nb(np.ascontiguousarray(raw), available, shrink, missing, out)
    return out
