"""Golden-file regression tests: the shipped configurations keep giving the same numbers.

The golden files in ``tests/golden/`` were written by this code and reviewed when they were
created; any change in the engine, the strategies or the data that moves a number fails here and
must be explained. Regenerate deliberately with ``PB_UPDATE_GOLDEN=1 python -m pytest
tests/test_golden.py`` and review the diff.

Equity paths and metrics are compared to 1e-9 relative (bit-identical output on one machine is
tested separately in ``tests/test_runner.py``; across CPUs the last bits of a floating-point sum
may legitimately differ). Trade counts and rebalance counts must match exactly.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtest.portfolio_engine import PortfolioBacktestEngine
from backtest.result import PortfolioBacktestResult
from portfolio.config import default_config_path, load_config

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("PB_UPDATE_GOLDEN") == "1"
REPO = Path(__file__).resolve().parents[1]


def _run(config_path: Path, start: str, end: str) -> PortfolioBacktestResult:
    return PortfolioBacktestEngine.from_config(load_config(config_path), start=start, end=end).run()


def _summary(result: PortfolioBacktestResult) -> pd.DataFrame:
    """Monthly equity of the book and each sleeve plus the counts that must match exactly."""
    eq = pd.concat([result.equity.rename("portfolio"), result.allocations], axis=1)
    monthly = eq.groupby(eq.index.to_period("M")).last()
    monthly.index = monthly.index.astype(str)
    monthly["n_trades_cum"] = (
        (result.trades.groupby(result.trades["timestamp"].dt.to_period("M")).size().cumsum())
        .reindex(pd.PeriodIndex(monthly.index, freq="M"))
        .ffill()
        .fillna(0)
        .to_numpy()
    )
    return monthly


def _check(name: str, result: PortfolioBacktestResult) -> None:
    summary = _summary(result)
    metrics = result.metrics
    s_path, m_path = GOLDEN / f"{name}_monthly.csv", GOLDEN / f"{name}_metrics.csv"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        summary.to_csv(s_path, float_format="%.17g")
        metrics.to_csv(m_path, float_format="%.17g")
    if not s_path.exists():
        pytest.fail(f"missing golden file {s_path}; create it with PB_UPDATE_GOLDEN=1")
    want_s = pd.read_csv(s_path, index_col=0)
    want_m = pd.read_csv(m_path, index_col=0)
    assert list(summary.columns) == list(want_s.columns)
    assert list(summary.index) == list(want_s.index)
    np.testing.assert_array_equal(
        summary["n_trades_cum"].to_numpy(), want_s["n_trades_cum"].to_numpy()
    )
    np.testing.assert_allclose(summary.to_numpy(), want_s.to_numpy(), rtol=1e-9, atol=1e-6)
    assert list(metrics.index) == list(want_m.index)
    np.testing.assert_allclose(
        metrics.to_numpy(dtype=float), want_m.to_numpy(dtype=float), rtol=1e-9, atol=1e-12
    )


def test_golden_default_sleeves_config() -> None:
    """The shipped config/portfolio.yaml over 2015-2017 (sleeves, costs, netting, month ends)."""
    _check("sleeves_2015_2017", _run(default_config_path(), "2015-01-01", "2017-12-31"))


def test_golden_black_litterman_config() -> None:
    """The shipped config/portfolio_bl.yaml over 2014-2016 (views, HMM regime, optimizer)."""
    path = REPO / "config" / "portfolio_bl.yaml"
    _check("black_litterman_2014_2016", _run(path, "2014-01-01", "2016-12-31"))
