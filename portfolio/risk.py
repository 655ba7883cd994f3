"""Value at Risk: historical, parametric (Gaussian), and its Euler decomposition by position.

All VaR numbers are **positive losses** as fractions of portfolio value (or in currency when
weights are given in currency): a 95% one-day VaR of 0.02 means "on 95% of days the loss is at
most 2%". A negative VaR means even the ``1 - confidence`` quantile is a gain.

Formulas (``c`` = confidence, ``h`` = ``periods``, ``z = Phi^{-1}(1 - c)``, a negative number):

* historical: ``VaR = -Q_{1-c}(R_h)`` where ``R_h`` are the overlapping ``h``-period compounded
  returns ``prod(1 + r) - 1`` (the returns themselves when ``h = 1``) and ``Q`` is
  ``numpy.quantile(..., method="linear")``, the same interpolation as ``np.percentile`` used by
  empyrical's ``value_at_risk``;
* parametric: ``VaR = -(h * mu + z * sqrt(h) * sigma)`` with ``sigma`` the sample standard
  deviation (``ddof=1``) when estimated from returns (i.i.d. returns, square-root-of-time);
* portfolio: ``mu_p = w . m`` (0 without ``mean``), ``sigma_p = sqrt(w' S w)``, same formula;
* marginal: ``dVaR/dw_i = -(h * m_i + z * sqrt(h) * (S w)_i / sigma_p)``;
* component (Euler): ``CVaR_i = w_i * dVaR/dw_i``. VaR is homogeneous of degree one in ``w``,
  so by Euler's theorem the components sum to the portfolio VaR (Tasche 1999, "Risk
  contributions and performance measurement"; Jorion, *Value at Risk*, 3rd ed., ch. 7). With
  ``mean`` the expected return is attributed as ``w_i * m_i``; without it the mean is 0.

When ``sigma_p = 0`` (zero weights, or a riskless combination of a singular covariance) the
volatility term of the marginal VaR is set to 0: for a positive semi-definite ``S``,
``w' S w = 0`` implies ``S w = 0``, so the components still sum to the portfolio VaR.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from portfolio.errors import ConfigError, DataError

__all__ = ["VaRCalculator"]

# Relative tolerance for symmetry and positive semi-definiteness of a covariance matrix.
_COV_RTOL = 1e-8


def _labels(x: Any) -> list[Any] | None:
    """Index labels of a pandas Series (None for anything else)."""
    if isinstance(x, pd.Series):
        return list(x.index)
    return None


def _vector(name: str, x: Any, *, min_len: int = 1) -> np.ndarray:
    """1-D finite float64 copy of ``x``; DataError naming ``name`` and the first bad position."""
    if isinstance(x, pd.DataFrame):
        raise DataError(f"{name} must be 1-D (a Series or array), got a DataFrame of {x.shape}")
    try:
        a = np.array(x.to_numpy() if isinstance(x, pd.Series) else x, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{name} must be numeric, got {type(x).__name__}") from None
    if a.ndim != 1:
        raise DataError(f"{name} must be 1-D, got shape {a.shape}")
    if a.shape[0] < min_len:
        raise DataError(f"{name} needs at least {min_len} value(s), got {a.shape[0]}")
    bad = ~np.isfinite(a)
    if bad.any():
        i = int(np.argmax(bad))
        labels = _labels(x)
        where = f"position {i}" + (f" (label {labels[i]!r})" if labels is not None else "")
        raise DataError(f"{name} contains non-finite value {a[i]!r} at {where}")
    return a


class VaRCalculator:
    """Historical and Gaussian Value at Risk with Euler (component) decomposition.

    Parameters
    ----------
    confidence : float, default 0.95
        Confidence level ``c`` in ``(0, 1)``; the VaR is the loss at the ``1 - c`` quantile.
    periods : int, default 1
        Horizon ``h`` in return periods (e.g. 10 for a 10-day VaR from daily returns).

    Raises
    ------
    ConfigError
        If ``confidence`` is not in ``(0, 1)`` or ``periods`` is not an integer ``>= 1``.
    """

    def __init__(self, confidence: float = 0.95, periods: int = 1) -> None:
        if (
            isinstance(confidence, (bool, np.bool_))
            or not isinstance(confidence, (int, float, np.integer, np.floating))
            or not 0.0 < float(confidence) < 1.0
        ):
            raise ConfigError(f"VaRCalculator.confidence must be in (0, 1), got {confidence!r}")
        if (
            isinstance(periods, (bool, np.bool_))
            or not isinstance(periods, (int, np.integer))
            or periods < 1
        ):
            raise ConfigError(f"VaRCalculator.periods must be an integer >= 1, got {periods!r}")
        self.confidence = float(confidence)
        self.periods = int(periods)
        #: ``Phi^{-1}(1 - confidence)``, negative for confidence > 0.5.
        self.z = float(norm.ppf(1.0 - self.confidence))

    def __repr__(self) -> str:
        return f"VaRCalculator(confidence={self.confidence!r}, periods={self.periods!r})"

    def _gaussian(self, mu: float, sigma: float) -> float:
        h = self.periods
        return -(h * mu + self.z * math.sqrt(h) * sigma)

    def historical_var(self, returns: Any) -> float:
        """Historical VaR ``-quantile(R_h, 1 - confidence, method="linear")``.

        Parameters
        ----------
        returns : array_like or Series, shape (n,)
            Simple decimal returns per period, finite, ``n >= periods``.

        Returns
        -------
        float
            Positive loss as a fraction of value (negative if the quantile is a gain).

        Raises
        ------
        DataError
            For non-1-D input, non-finite values (naming the position) or too few returns.
        """
        r = _vector("returns", returns, min_len=self.periods)
        h = self.periods
        if h > 1:
            # Overlapping h-period compounded returns via cumulative log-wealth differences.
            logw = np.concatenate(([0.0], np.cumsum(np.log1p(r))))
            r = np.expm1(logw[h:] - logw[:-h])
        return float(-np.quantile(r, 1.0 - self.confidence, method="linear"))

    def parametric_var(
        self,
        returns: Any = None,
        *,
        mu: float | None = None,
        sigma: float | None = None,
    ) -> float:
        """Gaussian VaR ``-(h * mu + z * sqrt(h) * sigma)``.

        Give either ``returns`` (then ``mu`` is their mean and ``sigma`` their sample standard
        deviation, ``ddof=1``) or both ``mu`` and ``sigma`` (per period).

        Parameters
        ----------
        returns : array_like or Series, shape (n,), optional
            Simple decimal returns per period, finite, ``n >= 2``.
        mu, sigma : float, optional
            Mean and standard deviation (``>= 0``) of the per-period return.

        Returns
        -------
        float
            Positive loss as a fraction of value.

        Raises
        ------
        DataError
            For invalid returns, non-finite ``mu``/``sigma``, negative ``sigma``, or when both or
            neither of the two forms are given.
        """
        if returns is not None:
            if mu is not None or sigma is not None:
                raise DataError("parametric_var takes either returns or (mu, sigma), not both")
            r = _vector("returns", returns, min_len=2)
            return self._gaussian(float(r.mean()), float(r.std(ddof=1)))
        if mu is None or sigma is None:
            raise DataError(
                f"parametric_var needs returns, or both mu and sigma; got mu={mu!r}, "
                f"sigma={sigma!r}"
            )
        m = float(mu)
        s = float(sigma)
        if not math.isfinite(m):
            raise DataError(f"parametric_var mu must be finite, got {mu!r}")
        if not (math.isfinite(s) and s >= 0.0):
            raise DataError(f"parametric_var sigma must be finite and >= 0, got {sigma!r}")
        return self._gaussian(m, s)

    def _inputs(
        self, weights: Any, covariance: Any, mean: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Validate ``(weights, covariance, mean)``; align a labelled covariance to the weights."""
        w = _vector("weights", weights)
        n = w.shape[0]
        w_labels = _labels(weights)
        if isinstance(covariance, pd.DataFrame):
            if w_labels is not None:
                if set(covariance.index) != set(w_labels) or set(covariance.columns) != set(
                    w_labels
                ):
                    raise DataError(
                        "covariance labels do not match the weights index: "
                        f"weights {w_labels}, covariance rows {list(covariance.index)}, "
                        f"columns {list(covariance.columns)}"
                    )
                covariance = covariance.loc[w_labels, w_labels]
            covariance = covariance.to_numpy(dtype=np.float64)
        try:
            s = np.array(covariance, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(
                f"covariance must be numeric, got {type(covariance).__name__}"
            ) from None
        if s.shape != (n, n):
            raise DataError(f"covariance must have shape ({n}, {n}) for {n} weights, got {s.shape}")
        if not np.isfinite(s).all():
            i, j = np.unravel_index(int(np.argmax(~np.isfinite(s))), s.shape)
            raise DataError(f"covariance contains non-finite value {s[i, j]!r} at ({i}, {j})")
        scale = float(np.abs(s).max()) if n else 0.0
        tol = _COV_RTOL * scale
        asym = np.abs(s - s.T)
        if (asym > tol).any():
            i, j = np.unravel_index(int(np.argmax(asym)), s.shape)
            raise DataError(
                f"covariance must be symmetric: entry ({i}, {j}) = {s[i, j]!r} but "
                f"({j}, {i}) = {s[j, i]!r}"
            )
        if (np.diag(s) < 0.0).any():
            k = int(np.argmax(np.diag(s) < 0.0))
            raise DataError(f"covariance has a negative variance {s[k, k]!r} at ({k}, {k})")
        m: np.ndarray | None = None
        if mean is not None:
            m = _vector("mean", mean)
            if m.shape[0] != n:
                raise DataError(f"mean must have {n} entries like the weights, got {m.shape[0]}")
            m_labels = _labels(mean)
            if w_labels is not None and m_labels is not None:
                if set(m_labels) != set(w_labels):
                    raise DataError(
                        f"mean labels {m_labels} do not match the weights index {w_labels}"
                    )
                m = pd.Series(m, index=m_labels).loc[w_labels].to_numpy(dtype=np.float64)
        return w, s, m

    @staticmethod
    def _vol_parts(w: np.ndarray, s: np.ndarray) -> tuple[float, np.ndarray]:
        """``(sigma_p, S w / sigma_p)``; DataError if ``w' S w`` is clearly negative.

        Computed on ``u = w / max|w|`` so that tiny or huge weights neither underflow into
        subnormals nor overflow in ``w' S w``; the gradient ``S u / sqrt(u' S u)`` is scale-free.
        The gradient is 0 when ``sigma_p = 0`` (see the module docstring).
        """
        scale = float(np.abs(w).max()) if w.size else 0.0
        if scale == 0.0:
            return 0.0, np.zeros_like(w)
        u = w / scale
        su = s @ u
        var = float(u @ su)
        # Allow rounding noise of a PSD matrix, relative to |u|' |S| |u|.
        tol = _COV_RTOL * float(np.abs(u) @ np.abs(s) @ np.abs(u))
        if var < -tol:
            raise DataError(
                "covariance is not positive semi-definite: w' S w = "
                f"{var * scale * scale!r} for these weights"
            )
        if var <= 0.0:
            return 0.0, np.zeros_like(w)
        root = math.sqrt(var)
        return scale * root, su / root

    def _marginal(self, w: np.ndarray, s: np.ndarray, m: np.ndarray | None) -> np.ndarray:
        h = self.periods
        _, grad = self._vol_parts(w, s)
        mean_term = m if m is not None else np.zeros_like(w)
        return -(h * mean_term + self.z * math.sqrt(h) * grad)

    def portfolio_parametric_var(self, weights: Any, covariance: Any, mean: Any = None) -> float:
        """Gaussian portfolio VaR ``-(h * w.m + z * sqrt(h) * sqrt(w' S w))``.

        Parameters
        ----------
        weights : array_like or Series, shape (n,)
            Position weights (fractions of value; currency amounts give a VaR in currency).
        covariance : array_like or DataFrame, shape (n, n)
            Per-period return covariance, symmetric positive semi-definite. A DataFrame is
            aligned to the labels of a weights Series.
        mean : array_like or Series, shape (n,), optional
            Per-period expected returns; ``None`` means 0.

        Returns
        -------
        float
            Positive loss in the unit of ``weights``.

        Raises
        ------
        DataError
            For shape mismatches, non-finite values, an asymmetric or indefinite covariance.
        """
        w, s, m = self._inputs(weights, covariance, mean)
        mu_p = float(w @ m) if m is not None else 0.0
        return self._gaussian(mu_p, self._vol_parts(w, s)[0])

    def marginal_var(self, weights: Any, covariance: Any, mean: Any = None) -> np.ndarray:
        """Marginal VaR ``dVaR/dw_i = -(h * m_i + z * sqrt(h) * (S w)_i / sigma_p)``.

        Same parameters as :meth:`portfolio_parametric_var`. Returns an ndarray of shape (n,)
        in VaR per unit of weight; the volatility term is 0 when ``sigma_p = 0``.
        """
        w, s, m = self._inputs(weights, covariance, mean)
        return self._marginal(w, s, m)

    def component_var(self, weights: Any, covariance: Any, mean: Any = None) -> np.ndarray:
        """Euler component VaR ``CVaR_i = w_i * dVaR/dw_i``.

        Same parameters as :meth:`portfolio_parametric_var`. Returns an ndarray of shape (n,)
        in the unit of the VaR; it sums (up to floating-point rounding) to
        :meth:`portfolio_parametric_var` for the same inputs. A negative entry is a position
        that lowers the portfolio VaR (a hedge).
        """
        w, s, m = self._inputs(weights, covariance, mean)
        return w * self._marginal(w, s, m)
