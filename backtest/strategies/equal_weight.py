"""Equal weight over the listed assets of the universe, rebalanced on a calendar schedule."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from backtest.strategies.base import (
    REBALANCE_CHOICES,
    BaseStrategy,
    choice_param,
    int_param,
    register_strategy,
    schedule_mask,
)

__all__ = ["EqualWeightStrategy"]


@register_strategy("equal_weight")
@dataclass(frozen=True, kw_only=True)
class EqualWeightStrategy(BaseStrategy):
    """``1 / n_listed`` on every universe asset that has a price at the bar.

    A row is emitted on each scheduled bar (``rebalance="month_end"``: the last bar of each
    calendar month from the index dates; ``"every_n_bars"``: bars ``0, n, 2n, ...``) and
    whenever the listed set changes (an asset lists or its price goes missing), starting with
    the first bar on which any universe asset is listed.

    Views: none (all ``NaN``). The strategy has no return forecast, so in the
    ``black_litterman`` mode its sleeve falls back to the prior (equilibrium) returns.

    Parameters
    ----------
    rebalance : {"month_end", "every_n_bars"}, default "month_end"
    n : int, default 21
        Period of ``every_n_bars`` (ignored for ``month_end``), ``>= 1``.
    """

    rebalance: str = choice_param("month_end", REBALANCE_CHOICES)
    n: int = int_param(21, low=1)

    def _targets(self, prices: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        listed = np.isfinite(prices.to_numpy())
        count = listed.sum(axis=1, keepdims=True)
        desired = np.where(listed, 1.0 / np.maximum(count, 1), 0.0)
        return desired, schedule_mask(prices.index, self.rebalance, self.n)

    def _views(self, prices: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        empty = np.full(prices.shape, np.nan)
        return empty, empty.copy()
