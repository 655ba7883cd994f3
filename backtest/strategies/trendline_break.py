"""Trend-line breakout: buy when the close breaks above its rolling least-squares trend line."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from backtest.strategies.base import (
    PERIODS_PER_YEAR,
    BaseStrategy,
    capped_equal_weights,
    float_param,
    hold_state,
    int_param,
    register_strategy,
)
from backtest.strategies.indicators import rolling_linreg

__all__ = ["TrendlineBreakStrategy"]


@register_strategy("trendline_break")
@dataclass(frozen=True, kw_only=True)
class TrendlineBreakStrategy(BaseStrategy):
    """Long the assets whose close has broken above their rolling OLS trend line.

    Per asset, ``trend_t`` is the least-squares line of the last ``window`` closes (bars
    ``t - window + 1 .. t``) evaluated at bar ``t`` (:func:`~backtest.strategies.indicators.
    rolling_linreg`). The trend is *valid* when it is finite and ``> 0`` and the close exists.

    * enter at the close of bar ``t`` when ``close_t > trend_t * (1 + band)``;
    * exit when ``close_t < trend_t * (1 - exit_band)`` or the trend is not valid (warm-up,
      missing price);
    * otherwise keep the previous state (entry/exit events forward-filled).

    Entry and exit cannot both hold on one bar since ``band >= 0`` and ``exit_band >= 0``.
    Weights: ``min(1 / n_held, max_weight)`` for each held asset, the rest cash. A row is
    emitted only when these weights change (in practice: when the held set changes).

    Views: ``expected_return = view_scale * 252 * slope_t / mean_t`` (the trend line's drift per
    bar relative to the window's mean close, annualized; clipped to ``[-1, 1]``) and
    ``confidence = R^2`` of the same regression (how well a straight line explains the
    window). ``NaN`` before ``window`` valid bars.

    Parameters
    ----------
    window : int, default 50
        Regression window in bars, ``>= 3``.
    band : float, default 0.02
        Breakout margin above the trend line, ``>= 0``.
    exit_band : float, default 0.0
        Exit margin below the trend line, ``0 <= exit_band < 1``.
    max_weight : float, default 0.2
        Cap per asset, ``0 < max_weight <= 1``.
    view_scale : float, default 0.2
        Multiplier from annualized trend drift to expected return, ``>= 0``.
    """

    window: int = int_param(50, low=3)
    band: float = float_param(0.02, low=0.0)
    exit_band: float = float_param(0.0, low=0.0, high=1.0, high_inclusive=False)
    max_weight: float = float_param(0.2, low=0.0, low_inclusive=False, high=1.0)
    view_scale: float = float_param(0.2, low=0.0)

    def _targets(self, prices: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        p = prices.to_numpy()
        trend = rolling_linreg(prices, self.window).endpoint.to_numpy()
        valid = np.isfinite(trend) & (trend > 0.0) & np.isfinite(p)
        with np.errstate(invalid="ignore"):
            entry = valid & (p > trend * (1.0 + self.band))
            exit_ = ~valid | (p < trend * (1.0 - self.exit_band))
        held = hold_state(entry, exit_)
        return capped_equal_weights(held, self.max_weight), None

    def _views(self, prices: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        fit = rolling_linreg(prices, self.window)
        mean = prices.rolling(self.window, min_periods=self.window).mean().to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            drift = fit.slope.to_numpy() / mean
        return self.view_scale * PERIODS_PER_YEAR * drift, fit.r2.to_numpy()
