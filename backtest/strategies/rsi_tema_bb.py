"""Mean reversion on oversold sell-offs: RSI, Bollinger bands and a TEMA trend filter."""

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
from backtest.strategies.indicators import bollinger, rsi_wilder, tema

__all__ = ["RsiTemaBbStrategy"]


@register_strategy("rsi_tema_bb")
@dataclass(frozen=True, kw_only=True)
class RsiTemaBbStrategy(BaseStrategy):
    """Buy sharp oversold drops below the lower Bollinger band; sell on reversion.

    Indicators per asset: ``RSI`` (Wilder, ``rsi_period``), ``TEMA`` (``tema_period``) and
    Bollinger bands (``bb_period``, ``bb_std`` population deviations) with middle ``M`` and
    lower band ``L``. All must be available (else the asset is flat).

    * **Entry** at the close of bar ``t``: ``RSI < rsi_entry`` and ``close < L`` and
      ``TEMA >= L``. The TEMA is the low-lag smoothed close: requiring it to stay above the
      lower band keeps the sharp sell-offs (the close broke the band but the smoothed path has
      not yet) and skips slow slides where even the smoothed price is below the band.
    * **Exit** when ``close > M`` (reverted to the mean) or ``RSI > rsi_exit`` (momentum
      recovered) or ``TEMA < L * (1 - stop)`` (the smoothed price itself broke down: the dip
      became a slide).
    * Otherwise the previous state is kept. Entry and exit are mutually exclusive on a bar
      (``close < L <= M``, ``RSI < rsi_entry < rsi_exit``, ``TEMA >= L >= L (1 - stop)``).

    Weights: ``min(1 / n_held, max_weight)`` per held asset, the rest cash; a row is emitted
    only when they change.

    Views: with ``z = (close - M) / std`` (``0`` when ``std = 0``),
    ``expected_return = view_scale * (M / close - 1) * 252 / bb_period`` (the return back to
    the middle band, assumed to be earned over about ``bb_period`` bars, annualized linearly;
    clipped to ``[-1, 1]``) and ``confidence = min(|z| / bb_std, 1)`` (full at the bands).

    Parameters
    ----------
    rsi_period : int, default 14
        ``>= 2``.
    rsi_entry : float, default 30.0
        Oversold threshold, ``0 < rsi_entry < rsi_exit``.
    rsi_exit : float, default 55.0
        Recovery threshold, ``rsi_exit < 100``.
    tema_period : int, default 20
        ``>= 2``.
    bb_period : int, default 20
        ``>= 2``.
    bb_std : float, default 2.0
        Band width in standard deviations, ``> 0``.
    stop : float, default 0.02
        Margin of the TEMA breakdown exit below the lower band, ``0 <= stop < 1``.
    max_weight : float, default 0.2
        Cap per asset, ``0 < max_weight <= 1``.
    view_scale : float, default 0.1
        Multiplier on the annualized reversion return, ``>= 0``.
    """

    rsi_period: int = int_param(14, low=2)
    rsi_entry: float = float_param(30.0, low=0.0, high=100.0, low_inclusive=False)
    rsi_exit: float = float_param(55.0, low=0.0, high=100.0, high_inclusive=False)
    tema_period: int = int_param(20, low=2)
    bb_period: int = int_param(20, low=2)
    bb_std: float = float_param(2.0, low=0.0, low_inclusive=False)
    stop: float = float_param(0.02, low=0.0, high=1.0, high_inclusive=False)
    max_weight: float = float_param(0.2, low=0.0, low_inclusive=False, high=1.0)
    view_scale: float = float_param(0.1, low=0.0)

    def _validate_params(self) -> None:
        if self.rsi_entry >= self.rsi_exit:
            raise self._param_error(
                "rsi_entry", f"must be < rsi_exit ({self.rsi_exit:g})", self.rsi_entry
            )

    def _targets(self, prices: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        p = prices.to_numpy()
        rsi = rsi_wilder(prices, self.rsi_period).to_numpy()
        smooth = tema(prices, self.tema_period).to_numpy()
        bands = bollinger(prices, self.bb_period, self.bb_std)
        middle = bands.middle.to_numpy()
        lower = bands.lower.to_numpy()
        valid = (
            np.isfinite(p)
            & np.isfinite(rsi)
            & np.isfinite(smooth)
            & np.isfinite(middle)
            & np.isfinite(lower)
        )
        with np.errstate(invalid="ignore"):
            entry = valid & (rsi < self.rsi_entry) & (p < lower) & (smooth >= lower)
            exit_ = (
                ~valid | (p > middle) | (rsi > self.rsi_exit) | (smooth < lower * (1.0 - self.stop))
            )
        held = hold_state(entry, exit_)
        return capped_equal_weights(held, self.max_weight), None

    def _views(self, prices: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        p = prices.to_numpy()
        bands = bollinger(prices, self.bb_period, self.bb_std)
        middle = bands.middle.to_numpy()
        std = bands.std.to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.where(std > 0.0, (p - middle) / std, 0.0)
            expected = self.view_scale * (middle / p - 1.0) * PERIODS_PER_YEAR / self.bb_period
        z[~np.isfinite(std)] = np.nan
        confidence = np.minimum(np.abs(z) / self.bb_std, 1.0)
        return expected, confidence
