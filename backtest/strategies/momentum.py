"""Cross-sectional 12-1 month momentum (Jegadeesh and Titman, *J. Finance* 48, 1993)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from backtest.strategies.base import (
    PERIODS_PER_YEAR,
    REBALANCE_CHOICES,
    BaseStrategy,
    choice_param,
    float_param,
    int_param,
    register_strategy,
    schedule_mask,
)

__all__ = ["MomentumStrategy", "momentum_scores"]


def momentum_scores(prices: np.ndarray, lookback: int, skip: int) -> tuple[np.ndarray, np.ndarray]:
    """Trailing momentum ``p[t - skip] / p[t - lookback] - 1`` and its eligibility.

    Parameters
    ----------
    prices : ndarray, shape (n_bars, n_assets)
        Closes, ``NaN`` = not listed.
    lookback, skip : int
        Bars back to the start and to the end of the measurement window, ``0 <= skip <
        lookback``.

    Returns
    -------
    score : ndarray, shape (n_bars, n_assets)
        Decimal return over the window; ``NaN`` where not eligible.
    eligible : ndarray of bool, shape (n_bars, n_assets)
        ``True`` where the asset has a price on every bar of ``[t - lookback, t]``.
    """
    n, m = prices.shape
    finite = np.isfinite(prices)
    # Integer running counts of valid prices: exact, so eligibility never depends on rounding.
    counts = np.vstack([np.zeros((1, m), dtype=np.int64), np.cumsum(finite, axis=0)])
    eligible = np.zeros((n, m), dtype=bool)
    score = np.full((n, m), np.nan)
    if n > lookback:
        in_window = counts[lookback + 1 :] - counts[: n - lookback]
        eligible[lookback:] = in_window == lookback + 1
        with np.errstate(invalid="ignore"):
            raw = prices[lookback - skip : n - skip] / prices[: n - lookback] - 1.0
        score[lookback:] = np.where(eligible[lookback:], raw, np.nan)
    return score, eligible


@register_strategy("momentum")
@dataclass(frozen=True, kw_only=True)
class MomentumStrategy(BaseStrategy):
    """Hold the ``top_k`` assets with the highest trailing momentum, equally weighted.

    Signal: ``score_t = p[t - skip] / p[t - lookback] - 1`` (default 12-1 months: 252 and 21
    bars). An asset is eligible at bar ``t`` only with a price on every bar of
    ``[t - lookback, t]``.

    Targets: on each scheduled bar (``rebalance="month_end"``: the last bar of each calendar
    month, decided from the index dates only; or ``"every_n_bars"``: bars ``0, n, 2n, ...``)
    the ``top_k`` eligible assets with the highest scores get ``1 / top_k`` each (ties broken by
    column order); with fewer eligible assets, fewer positions and the rest in cash. Between
    scheduled bars the last target is kept, except that an asset whose price becomes ``NaN``
    drops to 0 (which emits a row). Scheduled bars always emit a row (rebalance back from
    drift) once the first non-empty target exists.

    Views: ``expected_return = view_scale * ((1 + score) ** (252 / (lookback - skip)) - 1)``
    (the annualized trailing momentum, scaled down because past winners keep only a fraction
    of their past return; clipped to ``[-1, 1]``). ``confidence = |2 (r - 0.5) / N - 1|`` with
    ``r`` the average rank (1 = lowest) of the score among the ``N`` eligible assets at that
    bar: close to 1 for the extreme winners and losers, 0 in the middle (and 0 when ``N = 1``).

    Parameters
    ----------
    lookback : int, default 252
        Bars from the start of the window to ``t``, ``>= 2``.
    skip : int, default 21
        Most recent bars excluded (short-term reversal), ``0 <= skip < lookback``.
    top_k : int, default 5
        Number of assets held, ``>= 1``.
    rebalance : {"month_end", "every_n_bars"}, default "month_end"
    n : int, default 21
        Period of ``every_n_bars`` (ignored for ``month_end``), ``>= 1``.
    view_scale : float, default 0.2
        Multiplier from annualized past momentum to expected return, ``>= 0``.
    """

    lookback: int = int_param(252, low=2)
    skip: int = int_param(21, low=0)
    top_k: int = int_param(5, low=1)
    rebalance: str = choice_param("month_end", REBALANCE_CHOICES)
    n: int = int_param(21, low=1)
    view_scale: float = float_param(0.2, low=0.0)

    def _validate_params(self) -> None:
        if self.skip >= self.lookback:
            raise self._param_error("skip", f"must be < lookback ({self.lookback})", self.skip)

    def _targets(self, prices: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        p = prices.to_numpy()
        n, m = p.shape
        schedule = schedule_mask(prices.index, self.rebalance, self.n)
        score, eligible = momentum_scores(p, self.lookback, self.skip)
        sched_rows = np.flatnonzero(schedule)
        targets = np.zeros((len(sched_rows), m))
        if len(sched_rows) and m:
            ranked = np.where(eligible[sched_rows], score[sched_rows], -np.inf)
            # Stable sort of the negated scores: highest first, ties by column order.
            order = np.argsort(-ranked, axis=1, kind="stable")[:, : self.top_k]
            chosen_ok = np.take_along_axis(eligible[sched_rows], order, axis=1)
            np.put_along_axis(targets, order, np.where(chosen_ok, 1.0 / self.top_k, 0.0), axis=1)
        # Carry each scheduled target forward to the next scheduled bar (0 before the first).
        slot = np.cumsum(schedule) - 1
        desired = np.zeros((n, m))
        after_first = slot >= 0
        desired[after_first] = targets[slot[after_first]]
        return desired, schedule

    def _views(self, prices: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        score, eligible = momentum_scores(prices.to_numpy(), self.lookback, self.skip)
        exponent = PERIODS_PER_YEAR / (self.lookback - self.skip)
        expected = self.view_scale * (np.power(1.0 + score, exponent) - 1.0)
        ranks = pd.DataFrame(score).rank(axis=1, method="average").to_numpy()
        count = eligible.sum(axis=1, keepdims=True).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            confidence = np.abs(2.0 * (ranks - 0.5) / count - 1.0)
        return expected, np.where(eligible, confidence, np.nan)
