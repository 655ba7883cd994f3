"""Tests of backtest.metrics against textbook definitions computed independently.

The reference implementations below are plain-Python loops (``statistics`` for sample moments), so
they share no code with the vectorized numpy module. Hand values come from tiny series whose
results can be checked on paper; the comment next to each states the arithmetic.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from backtest import metrics as m
from portfolio.errors import ConfigError, DataError

DATASETS = Path(__file__).resolve().parents[1] / "backtest" / "datasets"

# --------------------------------------------------------------------------------------------
# Independent reference implementations (textbook definitions, plain Python loops)
# --------------------------------------------------------------------------------------------


def ref_returns(equity: Sequence[float], ic: float | None = None) -> list[float]:
    values = ([ic] if ic is not None else []) + list(equity)
    return [values[i] / values[i - 1] - 1.0 for i in range(1, len(values))]


def ref_rf(rf_annual: float, ppy: float) -> float:
    return (1.0 + rf_annual) ** (1.0 / ppy) - 1.0


def ref_sharpe(r: Sequence[float], rf_annual: float, ppy: float) -> float:
    x = [ri - ref_rf(rf_annual, ppy) for ri in r]
    return statistics.fmean(x) / statistics.stdev(x) * math.sqrt(ppy)


def ref_sortino(r: Sequence[float], rf_annual: float, ppy: float) -> float:
    x = [ri - ref_rf(rf_annual, ppy) for ri in r]
    downside = math.sqrt(sum(min(xi, 0.0) ** 2 for xi in x) / len(x))
    return statistics.fmean(x) * ppy / (downside * math.sqrt(ppy))


def ref_drawdowns(equity: Sequence[float], ic: float | None = None) -> list[float]:
    peak = ic if ic is not None else equity[0]
    out = []
    for e in equity:
        peak = max(peak, e)
        out.append(e / peak - 1.0)
    return out


def ref_duration(equity: Sequence[float], ic: float | None = None) -> int:
    peak = ic if ic is not None else equity[0]
    run = longest = 0
    for e in equity:
        if e >= peak:
            peak = e
            run = 0
        else:
            run += 1
            longest = max(longest, run)
    return longest


def ref_cagr(equity: Sequence[float], ppy: float, ic: float | None = None) -> float:
    start = ic if ic is not None else equity[0]
    n = len(equity) if ic is not None else len(equity) - 1
    return (equity[-1] / start) ** (ppy / n) - 1.0


def ref_turnover(traded: Sequence[float], equity: Sequence[float], ppy: float) -> float:
    one_way = 0.0
    for t in traded:
        one_way += t / 2.0
    mean_equity = sum(equity) / len(equity)
    return one_way / mean_equity * ppy / len(equity)


def close(a: object, b: float, rel: float = 1e-9, abs_: float = 1e-12) -> bool:
    return bool(a == pytest.approx(b, rel=rel, abs=abs_))


# --------------------------------------------------------------------------------------------
# Fixtures: the same suite with numpy and pandas inputs
# --------------------------------------------------------------------------------------------

Wrap = Callable[[Sequence[float]], "np.ndarray | pd.Series"]


@pytest.fixture(params=["numpy", "pandas"])
def wrap(request: pytest.FixtureRequest) -> Wrap:
    def _wrap(values: Sequence[float]) -> np.ndarray | pd.Series:
        arr = np.asarray(values, dtype=np.float64)
        if request.param == "numpy":
            return arr
        return pd.Series(arr, index=pd.bdate_range("2021-01-04", periods=arr.size), name="x")

    return _wrap


EQ = [100.0, 110.0, 99.0, 121.0]


# --------------------------------------------------------------------------------------------
# Hand values on tiny series
# --------------------------------------------------------------------------------------------


def test_simple_returns_hand(wrap: Wrap) -> None:
    # 110/100 - 1 = 0.1, 99/110 - 1 = -0.1, 121/99 - 1 = 2/9
    got = m.simple_returns(wrap(EQ))
    assert isinstance(got, np.ndarray)
    assert got.shape == (3,)
    assert got == pytest.approx([0.1, -0.1, 2.0 / 9.0], rel=1e-12)
    # with capital 50 the first return is 100/50 - 1 = 1
    got_ic = m.simple_returns(wrap(EQ), initial_capital=50.0)
    assert got_ic == pytest.approx([1.0, 0.1, -0.1, 2.0 / 9.0], rel=1e-12)


def test_total_return_and_cagr_hand(wrap: Wrap) -> None:
    assert m.total_return(wrap(EQ)) == pytest.approx(0.21, rel=1e-12)  # 121/100 - 1
    # 3 return periods: with ppy = 3 it is one year, with ppy = 6 half a year -> 1.21**2 - 1
    assert m.cagr(wrap(EQ), periods_per_year=3) == pytest.approx(0.21, rel=1e-12)
    assert m.cagr(wrap(EQ), periods_per_year=6) == pytest.approx(0.4641, rel=1e-12)
    # capital 100 before [110, 99, 121]: the same 3 periods, counted from the capital
    assert m.cagr(wrap(EQ[1:]), periods_per_year=3, initial_capital=100.0) == pytest.approx(
        0.21, rel=1e-12
    )
    assert m.total_return(wrap(EQ[1:]), initial_capital=100.0) == pytest.approx(0.21, rel=1e-12)


def test_drawdown_hand(wrap: Wrap) -> None:
    # peak 110, then 99 -> 99/110 - 1 = -0.1, then a new peak at 121
    dd = m.drawdown_series(wrap(EQ))
    assert dd == pytest.approx([0.0, 0.0, -0.1, 0.0], abs=1e-15)
    assert m.max_drawdown(wrap(EQ)) == pytest.approx(-0.1, rel=1e-12)
    assert m.max_drawdown_duration(wrap(EQ)) == 1
    assert isinstance(m.max_drawdown_duration(wrap(EQ)), int)
    # calmar with ppy = 3: cagr 0.21 / 0.1
    assert m.calmar_ratio(wrap(EQ), periods_per_year=3) == pytest.approx(2.1, rel=1e-12)


@pytest.mark.parametrize(
    ("equity", "ic", "expected_mdd", "expected_duration"),
    [
        # never recovered: peak 120, under water at 90, 100, 110 -> 3 bars, 90/120 - 1
        ([100.0, 120.0, 90.0, 100.0, 110.0], None, -0.25, 3),
        # two drawdowns, the second longer: 99, 98, 97 below 100
        ([100.0, 90.0, 100.0, 99.0, 98.0, 97.0, 101.0], None, -0.1, 3),
        # equal to the peak counts as recovered
        ([100.0, 90.0, 100.0, 90.0], None, -0.1, 1),
        # monotone: no drawdown
        ([1.0, 2.0, 3.0], None, 0.0, 0),
        # first-day loss against the capital, never recovered: 2 bars, 90/100 - 1
        ([90.0, 95.0], 100.0, -0.1, 2),
        # capital below the first value: the first bar is a new peak
        ([100.0, 80.0, 100.0], 50.0, -0.2, 1),
    ],
)
def test_drawdown_cases(
    wrap: Wrap, equity: list[float], ic: float | None, expected_mdd: float, expected_duration: int
) -> None:
    assert m.max_drawdown(wrap(equity), initial_capital=ic) == pytest.approx(
        expected_mdd, rel=1e-12, abs=0.0
    )
    assert m.max_drawdown_duration(wrap(equity), initial_capital=ic) == expected_duration
    assert m.drawdown_series(wrap(equity), initial_capital=ic) == pytest.approx(
        ref_drawdowns(equity, ic), rel=1e-12, abs=1e-15
    )


def test_first_day_loss_counts_with_initial_capital(wrap: Wrap) -> None:
    eq = wrap([90.0, 95.0, 100.0])
    # with the capital: -10 % on day one, back to 100 on day three (recovery bar not counted)
    assert m.max_drawdown(eq, initial_capital=100.0) == pytest.approx(-0.1, rel=1e-12)
    assert m.max_drawdown_duration(eq, initial_capital=100.0) == 2
    assert m.total_return(eq, initial_capital=100.0) == 0.0
    assert m.simple_returns(eq, initial_capital=100.0)[0] == pytest.approx(-0.1, rel=1e-12)
    # without it the curve only rises, so the loss is invisible
    assert m.max_drawdown(eq) == 0.0
    assert m.max_drawdown_duration(eq) == 0
    assert math.isnan(m.calmar_ratio(eq))
    assert m.total_return(eq) == pytest.approx(100.0 / 90.0 - 1.0, rel=1e-12)


def test_volatility_sharpe_sortino_hand(wrap: Wrap) -> None:
    r = wrap([0.01, 0.03])
    # mean 0.02, sample std sqrt((0.01^2 + 0.01^2) / 1) = 0.01*sqrt(2)
    assert m.annual_volatility(r, periods_per_year=4) == pytest.approx(
        0.01 * math.sqrt(2) * 2, rel=1e-12
    )
    assert m.sharpe_ratio(r, periods_per_year=1) == pytest.approx(math.sqrt(2), rel=1e-12)
    assert m.sharpe_ratio(r, periods_per_year=4) == pytest.approx(2 * math.sqrt(2), rel=1e-12)
    # sortino: r = [0.02, -0.01], mean 0.005, downside sqrt((0 + 0.01^2) / 2) = 0.01/sqrt(2)
    assert m.sortino_ratio(wrap([0.02, -0.01]), periods_per_year=1) == pytest.approx(
        1 / math.sqrt(2), rel=1e-12
    )


def test_risk_free_is_annual_and_compounded(wrap: Wrap) -> None:
    # rf_annual 10.25 % with 2 periods a year is exactly 5 % per period (1.05^2 = 1.1025), so
    # returns [0.06, 0.08] have excess [0.01, 0.03]: Sharpe sqrt(2) * sqrt(2) = 2.
    r = wrap([0.06, 0.08])
    assert m.sharpe_ratio(r, rf_annual=0.1025, periods_per_year=2) == pytest.approx(2.0, rel=1e-9)
    # Sortino with target 5 %: excess [0.01, 0.03] never below zero -> +inf
    assert m.sortino_ratio(r, rf_annual=0.1025, periods_per_year=2) == math.inf
    # excess [-0.01, 0.01] with target 7 %/period: mean 0, so Sharpe 0
    rf = 1.07**2 - 1.0
    assert m.sharpe_ratio(r, rf_annual=rf, periods_per_year=2) == pytest.approx(0.0, abs=1e-9)


def test_turnover_hand(wrap: Wrap) -> None:
    # selling the whole book (100) and buying another (100) once in a year of 4 bars:
    # (200 / 2) / 100 * 4 / 4 = 1.0 one-way turnover a year
    eq = wrap([100.0, 100.0, 100.0, 100.0])
    assert m.turnover(wrap([0.0, 200.0, 0.0, 0.0]), eq, periods_per_year=4) == pytest.approx(
        1.0, rel=1e-12
    )
    # the same trade every bar: 4 a year
    assert m.turnover(wrap([200.0] * 4), eq, periods_per_year=4) == pytest.approx(4.0, rel=1e-12)
    # mean equity enters the denominator: equity [50, 150] has mean 100
    assert m.turnover(wrap([100.0, 0.0]), wrap([50.0, 150.0]), periods_per_year=2) == pytest.approx(
        0.5, rel=1e-12
    )


# --------------------------------------------------------------------------------------------
# NaN / inf policy for degenerate series
# --------------------------------------------------------------------------------------------


def test_constant_returns_policy(wrap: Wrap) -> None:
    ppy = 252
    # zero dispersion: Sharpe is NaN whatever the sign of the mean
    for c in (0.01, 0.0, -0.01):
        assert math.isnan(m.sharpe_ratio(wrap([c] * 10), periods_per_year=ppy))
    # a constant-growth equity curve has returns equal only up to rounding: still NaN
    growth = 100.0 * 1.001 ** np.arange(300)
    assert math.isnan(m.sharpe_ratio(m.simple_returns(wrap(list(growth)))))
    # returns equal to the per-period risk-free rate: zero excess everywhere
    rf = ref_rf(0.05, ppy)
    assert math.isnan(m.sharpe_ratio(wrap([rf] * 10), rf_annual=0.05))
    assert math.isnan(m.sortino_ratio(wrap([rf] * 10), rf_annual=0.05))
    # Sortino: no shortfall and a positive mean -> +inf; all zero -> NaN
    assert m.sortino_ratio(wrap([0.01] * 10)) == math.inf
    assert m.sortino_ratio(wrap([0.01, 0.02, 0.0])) == math.inf
    assert math.isnan(m.sortino_ratio(wrap([0.0] * 10)))
    # constant loss: downside = |c|, so Sortino = c * ppy / (|c| * sqrt(ppy)) = -sqrt(ppy)
    assert m.sortino_ratio(wrap([-0.01] * 10)) == pytest.approx(-math.sqrt(ppy), rel=1e-12)
    # volatility of a constant series is zero (up to rounding of the mean)
    assert m.annual_volatility(wrap([0.01] * 10)) == pytest.approx(0.0, abs=1e-15)


def test_fewer_than_two_returns_is_nan(wrap: Wrap) -> None:
    r = wrap([0.05])
    assert math.isnan(m.annual_volatility(r))
    assert math.isnan(m.sharpe_ratio(r))
    assert math.isnan(m.sortino_ratio(r))


def test_single_equity_value(wrap: Wrap) -> None:
    res = m.compute_metrics(wrap([100.0]))
    assert res["total_return"] == 0.0
    assert res["max_drawdown"] == 0.0
    assert res["max_drawdown_duration"] == 0.0
    for key in ("cagr", "annual_volatility", "sharpe", "sortino", "calmar", "turnover"):
        assert math.isnan(res[key]), key
    # with a capital the single bar is one full period: 0.9^252 - 1 compound growth
    res_ic = m.compute_metrics(wrap([90.0]), initial_capital=100.0)
    assert res_ic["total_return"] == pytest.approx(-0.1, rel=1e-12)
    assert res_ic["cagr"] == pytest.approx(0.9**252 - 1.0, rel=1e-12)
    assert res_ic["max_drawdown"] == pytest.approx(-0.1, rel=1e-12)
    assert res_ic["max_drawdown_duration"] == 1.0
    assert math.isnan(res_ic["sharpe"])


# --------------------------------------------------------------------------------------------
# Input errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        m.simple_returns,
        m.total_return,
        m.cagr,
        m.annual_volatility,
        m.sharpe_ratio,
        m.sortino_ratio,
        m.drawdown_series,
        m.max_drawdown,
        m.max_drawdown_duration,
        m.calmar_ratio,
        m.compute_metrics,
    ],
)
def test_empty_and_nan_input_raise(wrap: Wrap, call: Callable[..., object]) -> None:
    with pytest.raises(DataError, match="empty"):
        call(wrap([]))
    with pytest.raises(ValueError, match=r"non-finite value nan at position 2"):
        call(wrap([1.0, 1.01, np.nan, 1.02, np.nan]))
    with pytest.raises(ValueError, match=r"non-finite value inf at position 1"):
        call(wrap([1.0, np.inf, 1.02]))
    with pytest.raises(DataError, match="1-D"):
        call(np.ones((3, 2)))


def test_nan_message_names_index_label() -> None:
    s = pd.Series(
        [100.0, 101.0, np.nan], index=pd.to_datetime(["2020-01-02", "2020-01-03", "2020-01-06"])
    )
    with pytest.raises(DataError, match=r"equity: .*position 2 \(index label 2020-01-06"):
        m.max_drawdown(s)


def test_bad_values_and_parameters_raise(wrap: Wrap) -> None:
    with pytest.raises(DataError, match=r"strictly positive, got 0.0 at position 1"):
        m.total_return(wrap([100.0, 0.0, 50.0]))
    with pytest.raises(DataError, match="strictly positive"):
        m.drawdown_series(wrap([100.0, -5.0]))
    for ppy in (0, -252, math.nan, math.inf):
        with pytest.raises(ConfigError, match="periods_per_year"):
            m.sharpe_ratio(wrap([0.01, 0.02]), periods_per_year=ppy)
    for rf in (-1.0, -2.0, math.nan):
        with pytest.raises(ConfigError, match="rf_annual"):
            m.sharpe_ratio(wrap([0.01, 0.02]), rf_annual=rf)
        with pytest.raises(ConfigError, match="rf_annual"):
            m.compute_metrics(wrap([100.0]), rf_annual=rf)
    for ic in (0.0, -100.0, math.nan):
        with pytest.raises(ConfigError, match="initial_capital"):
            m.max_drawdown(wrap(EQ), initial_capital=ic)
    with pytest.raises(
        DataError, match=r"traded_notional: length 3 does not match equity length 4"
    ):
        m.turnover(wrap([1.0, 2.0, 3.0]), wrap(EQ))
    with pytest.raises(DataError, match=r"gross notional must be >= 0, got -1.0 at position 1"):
        m.turnover(wrap([0.0, -1.0, 0.0, 0.0]), wrap(EQ))
    with pytest.raises(DataError, match="costs: length 2"):
        m.compute_metrics(wrap(EQ), costs=wrap([1.0, 2.0]))
    with pytest.raises(DataError, match="costs: non-finite value nan at position 0"):
        m.compute_metrics(wrap(EQ), costs=wrap([np.nan, 0.0, 0.0, 0.0]))
    with pytest.raises(DataError, match="DataFrame"):
        m.total_return(pd.DataFrame({"a": EQ}))  # type: ignore[arg-type]
    # every error is also a plain ValueError for callers that know only the standard library
    assert issubclass(DataError, ValueError)
    assert issubclass(ConfigError, ValueError)


# --------------------------------------------------------------------------------------------
# Aggregates
# --------------------------------------------------------------------------------------------


def test_compute_metrics_keys_and_consistency(wrap: Wrap) -> None:
    rng = np.random.default_rng(7)
    eq = list(1000.0 * np.cumprod(1.0 + rng.normal(0.0005, 0.01, size=60)))
    traded = list(rng.uniform(0.0, 300.0, size=60))
    costs = [0.25] * 60
    res = m.compute_metrics(
        wrap(eq),
        traded_notional=wrap(traded),
        costs=wrap(costs),
        initial_capital=1000.0,
        rf_annual=0.03,
        periods_per_year=52,
    )
    assert list(res) == list(m.METRIC_KEYS)
    assert list(m.METRIC_KEYS) == [
        "total_return",
        "cagr",
        "annual_volatility",
        "sharpe",
        "sortino",
        "max_drawdown",
        "max_drawdown_duration",
        "calmar",
        "turnover",
        "total_costs",
    ]
    assert all(isinstance(v, float) for v in res.values())
    r = ref_returns(eq, 1000.0)
    assert close(res["total_return"], eq[-1] / 1000.0 - 1.0)
    assert close(res["cagr"], ref_cagr(eq, 52, 1000.0))
    assert close(res["annual_volatility"], statistics.stdev(r) * math.sqrt(52))
    assert close(res["sharpe"], ref_sharpe(r, 0.03, 52))
    assert close(res["sortino"], ref_sortino(r, 0.03, 52))
    assert close(res["max_drawdown"], min(ref_drawdowns(eq, 1000.0)))
    assert res["max_drawdown_duration"] == ref_duration(eq, 1000.0)
    assert close(res["calmar"], ref_cagr(eq, 52, 1000.0) / abs(min(ref_drawdowns(eq, 1000.0))))
    assert close(res["turnover"], ref_turnover(traded, eq, 52))
    assert res["total_costs"] == pytest.approx(15.0, rel=1e-12)  # 60 * 0.25

    bare = m.compute_metrics(wrap(eq))
    assert math.isnan(bare["turnover"])
    assert bare["total_costs"] == 0.0


def test_metric_formulas_cover_every_key() -> None:
    assert list(m.METRIC_FORMULAS) == list(m.METRIC_KEYS)
    assert all(isinstance(v, str) and v.strip() for v in m.METRIC_FORMULAS.values())


def _real_equities() -> pd.DataFrame:
    prices = pd.read_csv(
        DATASETS / "sp500_20_stocks.csv.gz", parse_dates=["Date"], index_col="Date"
    )[["AAPL", "BAC", "CVX"]]
    # buy-and-hold of 1000 per stock, and the sum of the three as the portfolio
    sleeves = 1000.0 * prices / prices.iloc[0]
    return pd.concat([sleeves.sum(axis=1).rename("portfolio"), sleeves], axis=1)


def test_metrics_table_real_data_against_reference() -> None:
    equities = _real_equities()
    n = len(equities)
    rng = np.random.default_rng(3)
    traded = pd.DataFrame(
        rng.uniform(0.0, 50.0, size=equities.shape), index=equities.index, columns=equities.columns
    )
    costs = traded * 0.001
    capital = {"portfolio": 3000.0, "AAPL": 1000.0, "BAC": 1000.0, "CVX": 1000.0}
    table = m.metrics_table(
        equities,
        traded_notional=traded,
        costs=costs,
        initial_capital=pd.Series(capital),
        rf_annual=0.02,
    )
    assert list(table.index) == ["portfolio", "AAPL", "BAC", "CVX"]
    assert list(table.columns) == list(m.METRIC_KEYS)
    assert (table.dtypes == np.float64).all()
    for col in equities.columns:
        eq = equities[col].tolist()
        ic = capital[col]
        r = ref_returns(eq, ic)
        row = table.loc[col]
        assert close(row["total_return"], eq[-1] / ic - 1.0)
        assert close(row["cagr"], ref_cagr(eq, 252, ic))
        assert close(row["annual_volatility"], statistics.stdev(r) * math.sqrt(252))
        assert close(row["sharpe"], ref_sharpe(r, 0.02, 252))
        assert close(row["sortino"], ref_sortino(r, 0.02, 252))
        assert close(row["max_drawdown"], min(ref_drawdowns(eq, ic)))
        assert row["max_drawdown_duration"] == ref_duration(eq, ic)
        assert close(row["turnover"], ref_turnover(traded[col].tolist(), eq, 252))
        assert close(row["total_costs"], math.fsum(costs[col].tolist()))
        assert 0 < row["max_drawdown_duration"] <= n
    # a Mapping for the capital gives the same table; no capital measures from the first close
    same = m.metrics_table(
        equities, traded_notional=traded, costs=costs, initial_capital=capital, rf_annual=0.02
    )
    pd.testing.assert_frame_equal(table, same)
    plain = m.metrics_table(equities[["AAPL"]])
    assert close(plain.loc["AAPL", "total_return"], equities["AAPL"].iloc[-1] / 1000.0 - 1.0)
    assert np.isnan(plain["turnover"].to_numpy()[0])
    assert plain.loc["AAPL", "total_costs"] == 0.0


def test_metrics_table_errors() -> None:
    idx = pd.bdate_range("2022-01-03", periods=3)
    eq = pd.DataFrame({"a": [1.0, 1.1, 1.2], "b": [2.0, 1.9, 2.1]}, index=idx)
    with pytest.raises(DataError, match="duplicate column names"):
        m.metrics_table(pd.DataFrame([[1.0, 2.0]], columns=["a", "a"]))
    with pytest.raises(DataError, match="no columns"):
        m.metrics_table(pd.DataFrame(index=idx))
    with pytest.raises(DataError, match="expected a DataFrame"):
        m.metrics_table(eq["a"])  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"traded_notional: missing columns \['b'\]"):
        m.metrics_table(eq, traded_notional=eq[["a"]])
    with pytest.raises(DataError, match="costs: index does not match"):
        m.metrics_table(eq, costs=eq.iloc[::-1])
    with pytest.raises(ConfigError, match=r"initial_capital: no entry for columns \['a'\]"):
        m.metrics_table(eq, initial_capital={"b": 2.0})
    bad = eq.copy()
    bad.loc[idx[1], "b"] = np.nan
    with pytest.raises(DataError, match=r"column 'b': equity: non-finite value nan at position 1"):
        m.metrics_table(bad)


# --------------------------------------------------------------------------------------------
# Metamorphic and property-based tests
# --------------------------------------------------------------------------------------------

returns_st = st.lists(
    st.floats(min_value=-0.5, max_value=0.5, allow_nan=False, allow_subnormal=False),
    min_size=2,
    max_size=60,
)
ppy_st = st.sampled_from([1, 4, 12, 52, 252])


def equity_from(r: Sequence[float], start: float) -> list[float]:
    out = [start]
    for ri in r:
        out.append(out[-1] * (1.0 + ri))
    return out


def nontrivial(r: Sequence[float]) -> bool:
    # keep clear of the zero-dispersion threshold, where the ratios are defined as NaN
    return statistics.stdev(r) > 1e-6


@settings(max_examples=150, deadline=None)
@given(r=returns_st, rf=st.floats(-0.05, 0.2), ppy=ppy_st)
def test_ratios_match_reference(r: list[float], rf: float, ppy: int) -> None:
    assume(nontrivial(r))
    assert close(m.annual_volatility(r, ppy), statistics.stdev(r) * math.sqrt(ppy))
    assert close(m.sharpe_ratio(np.asarray(r), rf, ppy), ref_sharpe(r, rf, ppy), abs_=1e-9)
    if min(ri - ref_rf(rf, ppy) for ri in r) < -1e-6:
        assert close(m.sortino_ratio(pd.Series(r), rf, ppy), ref_sortino(r, rf, ppy), abs_=1e-9)


@settings(max_examples=150, deadline=None)
@given(r=returns_st, start=st.floats(1.0, 1e6), rf=st.floats(0.0, 0.1), c=st.floats(-0.01, 0.01))
def test_shifting_returns_and_rf_together_leaves_sharpe_unchanged(
    r: list[float], start: float, rf: float, c: float
) -> None:
    # empyrical's metamorphic test: excess returns are unchanged when r and rf move together
    assume(nontrivial(r))
    ppy = 252
    rf_per = ref_rf(rf, ppy)
    shifted = [ri + c for ri in r]
    rf_shifted = (1.0 + rf_per + c) ** ppy - 1.0
    assert close(
        m.sharpe_ratio(shifted, rf_shifted, ppy), m.sharpe_ratio(r, rf, ppy), rel=1e-6, abs_=1e-6
    )
    assume(min(ri - rf_per for ri in r) < -1e-6)
    assert close(
        m.sortino_ratio(shifted, rf_shifted, ppy), m.sortino_ratio(r, rf, ppy), rel=1e-6, abs_=1e-6
    )


@settings(max_examples=150, deadline=None)
@given(r=returns_st, k=st.floats(0.01, 100.0), seed=st.integers(0, 2**32 - 1))
def test_scale_and_permutation_invariance_of_ratios(r: list[float], k: float, seed: int) -> None:
    assume(nontrivial(r))
    base = m.sharpe_ratio(r)
    # with rf = 0 the Sharpe ratio is scale-free, and a negative scale flips its sign
    assert close(m.sharpe_ratio([k * ri for ri in r]), base, rel=1e-9, abs_=1e-9)
    assert close(m.sharpe_ratio([-k * ri for ri in r]), -base, rel=1e-9, abs_=1e-9)
    # order does not matter to moments-based ratios
    perm = list(np.random.default_rng(seed).permutation(r))
    assert close(m.sharpe_ratio(perm), base, rel=1e-9, abs_=1e-9)
    assert close(m.annual_volatility(perm), m.annual_volatility(r), rel=1e-9)


@settings(max_examples=150, deadline=None)
@given(
    r=returns_st,
    start=st.floats(1.0, 1e6),
    ic_ratio=st.floats(0.5, 2.0),
    k=st.floats(1e-3, 1e3),
    shift=st.integers(-10, 10),
)
def test_scaling_equity_changes_nothing(
    r: list[float], start: float, ic_ratio: float, k: float, shift: int
) -> None:
    eq = np.asarray(equity_from(r, start))
    ic = start * ic_ratio
    traded = np.abs(np.diff(eq, prepend=eq[0]))
    costs = traded * 1e-3
    base = m.compute_metrics(eq, traded_notional=traded, costs=costs, initial_capital=ic)
    scaled = m.compute_metrics(
        eq * k, traded_notional=traded * k, costs=costs * k, initial_capital=ic * k
    )
    for key in m.METRIC_KEYS:
        if key == "max_drawdown_duration":
            continue
        if key == "total_costs":
            assert close(scaled[key], base[key] * k, rel=1e-9)
        elif math.isnan(base[key]):
            assert math.isnan(scaled[key]), key
        elif key == "calmar" and abs(base["max_drawdown"]) < 1e-9:
            # A drawdown at floating-point noise level (e.g. -7e-13) is itself rounding: its
            # relative error under scaling is large and cagr / |mdd| amplifies it to ~1e17.
            continue
        else:
            assert close(scaled[key], base[key], rel=1e-7, abs_=1e-9), key
    # a power-of-two scale is exact in floating point, so even the bar counts must agree
    p = 2.0**shift
    assert m.max_drawdown_duration(eq * p, ic * p) == m.max_drawdown_duration(eq, ic)
    assert np.array_equal(m.drawdown_series(eq * p, ic * p), m.drawdown_series(eq, ic))


@settings(max_examples=200, deadline=None)
@given(
    r=st.lists(st.floats(-0.99, 1.0, allow_subnormal=False), min_size=1, max_size=80),
    start=st.floats(1.0, 1e6),
    ic_ratio=st.one_of(st.none(), st.floats(0.1, 10.0)),
)
def test_drawdown_properties(r: list[float], start: float, ic_ratio: float | None) -> None:
    eq = equity_from(r, start)
    ic = None if ic_ratio is None else start * ic_ratio
    dd = m.drawdown_series(eq, ic)
    assert dd.shape == (len(eq),)
    assert np.all(dd <= 0.0)
    assert np.all(dd >= -1.0)
    mdd = m.max_drawdown(eq, ic)
    assert -1.0 <= mdd <= 0.0
    assert mdd == float(np.min(dd))
    assert dd == pytest.approx(ref_drawdowns(eq, ic), rel=1e-12, abs=1e-15)
    duration = m.max_drawdown_duration(eq, ic)
    assert duration == ref_duration(eq, ic)
    assert 0 <= duration <= len(eq)
    assert (duration == 0) == (mdd == 0.0)


@settings(max_examples=150, deadline=None)
@given(r=returns_st, start=st.floats(1.0, 1e6), ppy=st.integers(1, 60), with_ic=st.booleans())
def test_cagr_equals_total_return_over_one_year(
    r: list[float], start: float, ppy: int, with_ic: bool
) -> None:
    # exactly ppy return periods span one year, so annualizing changes nothing
    path = (r * (ppy // len(r) + 1))[:ppy]
    eq = equity_from(path, start)
    if with_ic:
        ic: float | None = eq[0]
        eq = eq[1:]
    else:
        ic = None
    assert close(m.cagr(eq, ppy, ic), m.total_return(eq, ic), rel=1e-9, abs_=1e-12)
    assert close(m.cagr(eq, ppy, ic), ref_cagr(eq, ppy, ic), rel=1e-9, abs_=1e-12)
    # over half a year (2 * ppy periods per year) the CAGR is the squared growth
    assert close(
        m.cagr(eq, 2 * ppy, ic), (1.0 + m.total_return(eq, ic)) ** 2 - 1.0, rel=1e-9, abs_=1e-12
    )


@settings(max_examples=100, deadline=None)
@given(
    r=returns_st,
    traded=st.lists(st.floats(0.0, 1e4), min_size=61, max_size=61),
    ppy=ppy_st,
)
def test_turnover_matches_reference(r: list[float], traded: list[float], ppy: int) -> None:
    eq = equity_from(r, 1000.0)
    tn = traded[: len(eq)]
    assert close(m.turnover(tn, eq, ppy), ref_turnover(tn, eq, ppy), rel=1e-9)
