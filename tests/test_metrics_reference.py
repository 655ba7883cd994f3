"""Reference checks of backtest.metrics: hand computations and empyrical-reloaded on real data.

``tests/test_metrics.py`` already hand-checks the headline metrics (returns, total return, CAGR,
volatility, Sharpe, Sortino, drawdown series and duration, Calmar, turnover, the aggregates) and
runs property tests against plain-Python loops. This file adds:

1. hand-computable series for the calendar, tail and drawdown-date functions
   (:func:`monthly_returns`, :func:`month_stats`, :func:`drawdown_details`,
   :func:`value_at_risk`), with the arithmetic in comments;
2. a cross-check of every metric that empyrical-reloaded (a test-only dependency, the ``dev``
   extra) also defines, on real returns of the embedded S&P 500 data: the index, single stocks and
   an equal-weight basket rebalanced daily, over the whole 1990-2022 history and sub-windows;
3. the convention differences between the two libraries, each tested to be exactly what its
   explanation predicts;
4. metamorphic relations in the spirit of empyrical's own ``tests/test_stats.py``.

Mapping between the two APIs. Our equity functions take an equity curve ``E_0 .. E_n`` (or the
bars ``E_1 .. E_n`` plus ``initial_capital=E_0``); empyrical takes the returns
``r_t = E_t / E_{t-1} - 1`` for ``t = 1 .. n`` and anchors its cumulative curve at a constant before
the first return, which plays the role of ``E_0``. So ``f(E_1..E_n, initial_capital=E_0)`` and
``f(E_0..E_n)`` must both equal empyrical's ``f(r_1..r_n)`` for drawdown, CAGR and Calmar. Our
``rf_annual`` is annual and compounded to a per-bar rate, ``rf = (1 + rf_annual)**(1/252) - 1``;
empyrical's ``risk_free`` (Sharpe) and ``required_return`` (Sortino) are that per-bar rate.

Tolerance: 1e-12 relative. Where a quantity of the form ``g - 1`` (CAGR, a monthly return, a
drawdown) is computed by our code from two equity values but by empyrical by recompounding
``n`` returns, the growth factors ``g`` agree to a few ``n * eps`` but the subtraction of 1
cancels digits when ``g`` is near 1: the EW20 basket over 2008-2009 has a CAGR of -4.4e-4 and
the two CAGRs differ by 1.5e-12 relative while their ``1 + CAGR`` differ by 7e-16, and a few
months of the full history near 0 % differ by more than 1e-12 relative. Those quantities are
compared on ``1 + x`` (i.e. ``|dx| <= 1e-12 * |1 + x|``), as stated at each place.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import empyrical as ep
import numpy as np
import pandas as pd
import pytest
from empyrical import stats as ep_stats

from backtest import metrics as m
from backtest.data import load_default_index, load_default_panel
from portfolio.errors import ConfigError, DataError

PPY = 252
REL = 1e-12
EPS = float(np.finfo(np.float64).eps)


def per_bar_rf(rf_annual: float, ppy: float = PPY) -> float:
    """Per-bar risk-free rate that our ``rf_annual`` stands for (geometric compounding)."""
    return (1.0 + rf_annual) ** (1.0 / ppy) - 1.0


def bday_series(values: list[float], start: str = "2021-01-04") -> pd.Series:
    return pd.Series(values, index=pd.bdate_range(start, periods=len(values)), dtype=np.float64)


def dated_series(dates: list[str], values: list[float]) -> pd.Series:
    return pd.Series(values, index=pd.DatetimeIndex(dates), dtype=np.float64)


# --------------------------------------------------------------------------------------------
# Real data: curves and windows
# --------------------------------------------------------------------------------------------

WINDOWS: dict[str, tuple[str | None, str | None]] = {
    "full": (None, None),  # 1990-01-02 .. 2022-12-28, 8313 bars
    "dotcom": ("2000-01-01", "2002-12-31"),
    "gfc": ("2007-10-01", "2009-06-30"),
    "2008-09": ("2008-01-01", "2009-12-31"),  # EW20 ends almost flat: CAGR -4.4e-4
    "covid": ("2020-01-01", "2020-12-31"),
    "short": ("2022-06-01", "2022-07-29"),  # two months, 41 bars
}
CURVE_NAMES = ("SP500", "AAPL", "GE", "KO", "EW20")


@functools.cache
def real_curves() -> dict[str, pd.Series]:
    """Equity curves from the embedded data (full history).

    The index and three single stocks are their own price paths (buy and hold). ``EW20`` is the
    equal-weight basket of the 20 stocks rebalanced every day: its return is the plain mean of the
    20 stock returns of the day, compounded from 100 on the first date.
    """
    prices = load_default_panel().prices
    curves = {"SP500": load_default_index()}
    for name in ("AAPL", "GE", "KO"):
        curves[name] = prices[name].copy()
    values = prices.to_numpy()
    basket = np.mean(values[1:] / values[:-1] - 1.0, axis=1)
    equity = 100.0 * np.cumprod(np.concatenate(([1.0], 1.0 + basket)))
    curves["EW20"] = pd.Series(equity, index=prices.index, name="EW20")
    return curves


def window(curve: str, win: str) -> pd.Series:
    start, end = WINDOWS[win]
    return real_curves()[curve].loc[start:end]


def returns_of(equity: pd.Series) -> pd.Series:
    """Simple returns r_1..r_n of E_0..E_n, dated at the bar they end on (empyrical's input)."""
    return pd.Series(m.simple_returns(equity), index=equity.index[1:], name=equity.name)


CASES = [(c, w) for c in CURVE_NAMES for w in WINDOWS]
case_ids = [f"{c}-{w}" for c, w in CASES]


@pytest.fixture(params=["numpy", "pandas"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def as_kind(values: pd.Series, kind: str) -> np.ndarray | pd.Series:
    """The same values as a numpy array or a pandas Series (both libraries accept both)."""
    return values.to_numpy() if kind == "numpy" else values


def approx_growth(expected: float) -> object:
    """Compare a ``g - 1`` quantity on ``g``: absolute tolerance 1e-12 * |1 + expected|."""
    return pytest.approx(expected, rel=0.0, abs=REL * abs(1.0 + expected))


# --------------------------------------------------------------------------------------------
# 1. Hand-computable series: monthly_returns and month_stats
# --------------------------------------------------------------------------------------------

# Capital 100 before the first bar; January is a partial month (two bars at its end).
MONTH_DATES = ["2021-01-28", "2021-01-29", "2021-02-15", "2021-02-26", "2021-03-31", "2021-04-01"]
MONTH_DATES += ["2021-04-30"]
MONTH_EQUITY = [102.0, 105.0, 100.0, 84.0, 94.5, 90.0, 99.225]


def test_monthly_returns_hand_with_capital() -> None:
    eq = dated_series(MONTH_DATES, MONTH_EQUITY)
    got = m.monthly_returns(eq, initial_capital=100.0)
    # last value of each month / last value of the previous month (capital for the first):
    #   Jan 105 / 100 - 1 = 0.05;  Feb 84 / 105 - 1 = -0.2
    #   Mar 94.5 / 84 - 1 = 0.125; Apr 99.225 / 94.5 - 1 = 0.05 (94.5 * 1.05 = 99.225)
    assert list(got.index) == list(pd.period_range("2021-01", "2021-04", freq="M"))
    assert got.to_numpy() == pytest.approx([0.05, -0.2, 0.125, 0.05], rel=REL)
    # the same as compounding the bar returns inside each month: Jan (102/100) * (105/102) = 1.05
    assert got.iloc[0] == pytest.approx((102.0 / 100.0) * (105.0 / 102.0) - 1.0, rel=REL)
    # and as empyrical's aggregation of the bar returns (first return 102 / 100 - 1 on Jan 28)
    r = pd.Series(m.simple_returns(eq, initial_capital=100.0), index=eq.index)
    theirs = ep.aggregate_returns(r, "monthly")
    assert list(theirs.index) == [(2021, 1), (2021, 2), (2021, 3), (2021, 4)]
    assert got.to_numpy() == pytest.approx(theirs.to_numpy(), rel=REL)


def test_monthly_returns_hand_without_capital() -> None:
    eq = dated_series(MONTH_DATES, MONTH_EQUITY)
    got = m.monthly_returns(eq)
    # without capital January is measured from its first bar: 105 / 102 - 1 = 1/34
    assert got.to_numpy() == pytest.approx([1.0 / 34.0, -0.2, 0.125, 0.05], rel=REL)


def test_monthly_returns_month_without_bars() -> None:
    # no bar in February: March is measured from January's last value, 99 / 110 - 1 = -0.1,
    # and February does not appear (empyrical's groupby has no such group either)
    eq = dated_series(["2021-01-29", "2021-03-01"], [110.0, 99.0])
    got = m.monthly_returns(eq, initial_capital=100.0)
    assert [str(p) for p in got.index] == ["2021-01", "2021-03"]
    assert got.to_numpy() == pytest.approx([0.1, -0.1], rel=REL)


def test_month_stats_hand() -> None:
    eq = dated_series(MONTH_DATES, MONTH_EQUITY)
    # months [0.05, -0.2, 0.125, 0.05]: best 0.125, worst -0.2, 3 of 4 positive
    stats = m.month_stats(eq, initial_capital=100.0)
    assert stats["best_month"] == pytest.approx(0.125, rel=REL)
    assert stats["worst_month"] == pytest.approx(-0.2, rel=REL)
    assert stats["positive_months"] == 0.75
    assert stats["n_months"] == 4.0
    # add a May bar at the April value: R_May = 99.225 / 99.225 - 1 = 0 exactly, which is not
    # positive (R_m > 0 is strict), so 3 of 5 months are positive
    may = dated_series([*MONTH_DATES, "2021-05-14"], [*MONTH_EQUITY, 99.225])
    stats = m.month_stats(may, initial_capital=100.0)
    assert m.monthly_returns(may, initial_capital=100.0).iloc[-1] == 0.0
    assert stats["positive_months"] == 0.6
    assert stats["n_months"] == 5.0
    assert stats["best_month"] == pytest.approx(0.125, rel=REL)
    assert stats["worst_month"] == pytest.approx(-0.2, rel=REL)


# --------------------------------------------------------------------------------------------
# 1. Hand-computable series: drawdown_details
# --------------------------------------------------------------------------------------------

# Business days from Monday 2021-01-04: bar 0 = 01-04, 1 = 01-05, 2 = 01-06, 3 = 01-07,
# 4 = 01-08, 5 = 01-11.
D = pd.bdate_range("2021-01-04", periods=6)


@pytest.mark.parametrize(
    ("equity", "ic", "expected"),
    [
        # recovered: running peak 100, 120, 120, 120, 120, 130; trough 90 / 120 - 1 = -0.25 on
        # bar 2, peak bar 1, recovery bar 4 (120 >= 120: equal counts); under water bars 2-3
        ([100.0, 120.0, 90.0, 110.0, 120.0, 130.0], None, (-0.25, D[1], D[2], D[4], 2)),
        # not recovered: the same fall, the curve ends at 110 < 120; under water bars 2-3
        ([100.0, 120.0, 90.0, 110.0], None, (-0.25, D[1], D[2], None, 2)),
        # peak = the initial capital 100 (no bar reaches it before the trough) -> peak None;
        # trough 80 / 100 - 1 = -0.2 on bar 1, recovery bar 3 (101 >= 100); under water bars 0-2
        ([95.0, 80.0, 90.0, 101.0], 100.0, (-0.2, None, D[1], D[3], 3)),
        # the same, never recovered: under water bars 0-2 (the whole curve)
        ([95.0, 80.0, 90.0], 100.0, (-0.2, None, D[1], None, 3)),
        # the peak value is hit twice: the peak is the last bar at it (bar 2); 90 / 120 - 1
        ([100.0, 120.0, 120.0, 90.0, 125.0], None, (-0.25, D[2], D[3], D[4], 1)),
        # two equal troughs 80 / 100 - 1 = -0.2: the first (bar 1) is used, recovered on bar 2;
        # its run is 1 bar (bar 1)
        ([100.0, 80.0, 100.0, 80.0, 90.0], None, (-0.2, D[0], D[1], D[2], 1)),
        # capital above every bar: 100 / 105 - 1 is the worst, on bar 0, never recovered
        ([100.0, 101.0, 102.0], 105.0, (100.0 / 105.0 - 1.0, None, D[0], None, 3)),
    ],
)
def test_drawdown_details_hand(
    equity: list[float],
    ic: float | None,
    expected: tuple[float, pd.Timestamp | None, pd.Timestamp, pd.Timestamp | None, int],
) -> None:
    mdd, peak, trough, recovery, duration = expected
    got = m.drawdown_details(bday_series(equity), initial_capital=ic)
    assert got["max_drawdown"] == pytest.approx(mdd, rel=REL, abs=0.0)
    assert got["peak"] == peak
    assert got["trough"] == trough
    assert got["recovery"] == recovery
    assert got["duration_bars"] == float(duration)
    assert got["max_drawdown"] == m.max_drawdown(equity, ic)
    # the trough's run is one of the runs under water, so never longer than the longest one
    assert duration <= m.max_drawdown_duration(equity, ic)


def test_drawdown_details_duration_is_the_trough_run_not_the_longest() -> None:
    # [100, 80, 100, 80, 90]: the first trough's run is bar 1 alone; bars 3-4 are a longer run
    eq = bday_series([100.0, 80.0, 100.0, 80.0, 90.0])
    assert m.drawdown_details(eq)["duration_bars"] == 1.0
    assert m.max_drawdown_duration(eq) == 2


@pytest.mark.parametrize(
    ("equity", "ic"),
    [
        ([100.0, 101.0, 102.0], None),  # rising: never below the running peak
        ([100.0, 101.0, 102.0], 99.0),  # capital below the first bar: still no drawdown
        ([100.0, 100.0, 100.0], 100.0),  # flat at the capital: equal to the peak is not a loss
    ],
)
def test_drawdown_details_no_drawdown(equity: list[float], ic: float | None) -> None:
    got = m.drawdown_details(bday_series(equity), initial_capital=ic)
    assert got == {
        "max_drawdown": 0.0,
        "peak": None,
        "trough": None,
        "recovery": None,
        "duration_bars": 0.0,
    }


def test_sp500_financial_crisis_drawdown_matches_published_closes() -> None:
    # The S&P 500 closed at a record 1,565.15 on 9 Oct 2007, fell to a closing low of 676.53 on
    # 9 Mar 2009 and first closed above the 2007 record on 28 Mar 2013 (1,569.19): PRI/GlobalPost,
    # "S&P 500 closes at 1,569, a new record high", 28 Mar 2013
    # (https://www.pri.org/stories/2013-03-28/sp-500-closes-1569-new-record-high); Wikipedia,
    # "Closing milestones of the S&P 500". It is the deepest fall of the index over 1990-2022.
    sp = real_curves()["SP500"]
    got = m.drawdown_details(sp)
    assert got["peak"] == pd.Timestamp("2007-10-09")
    assert got["trough"] == pd.Timestamp("2009-03-09")
    assert got["recovery"] == pd.Timestamp("2013-03-28")
    assert got["max_drawdown"] == pytest.approx(676.53 / 1565.15 - 1.0, rel=REL)
    # under water: every bar strictly after the peak and strictly before the recovery
    n_under = int(((sp.index > got["peak"]) & (sp.index < got["recovery"])).sum())
    assert got["duration_bars"] == float(n_under)
    assert sp.loc["2007-10-09"] == 1565.15
    assert sp.loc["2009-03-09"] == 676.53
    assert sp.loc["2013-03-28"] == 1569.19


# --------------------------------------------------------------------------------------------
# 1. Hand-computable series: value_at_risk
# --------------------------------------------------------------------------------------------

# Seven returns; sorted: -0.05, -0.01, 0.0, 0.01, 0.015, 0.02, 0.03.
VAR_SAMPLE = [0.01, -0.05, 0.02, -0.01, 0.03, 0.0, 0.015]


@pytest.mark.parametrize(
    ("cutoff", "expected"),
    [
        # linear interpolation between order statistics (Hyndman & Fan 1996, "Sample quantiles in
        # statistical packages", The American Statistician 50(4), definition 7): the quantile q
        # sits at 0-based position h = (n - 1) * q of the sorted sample.
        (0.05, -0.038),  # h = 6 * 0.05 = 0.3: -0.05 + 0.3 * (-0.01 - -0.05) = -0.038
        (0.25, -0.005),  # h = 1.5: -0.01 + 0.5 * (0.0 - -0.01) = -0.005
        (0.5, 0.01),  # h = 3: the median
        (0.9, 0.024),  # h = 5.4: 0.02 + 0.4 * (0.03 - 0.02) = 0.024
    ],
)
def test_value_at_risk_hand(kind: str, cutoff: float, expected: float) -> None:
    r = as_kind(bday_series(VAR_SAMPLE), kind)
    assert m.value_at_risk(r, cutoff) == pytest.approx(expected, rel=REL)
    assert m.value_at_risk(r, cutoff) == pytest.approx(ep.value_at_risk(r, cutoff), rel=REL)


def test_value_at_risk_hand_default_cutoff_on_an_order_statistic(kind: str) -> None:
    # 21 returns -0.010, -0.009, ..., 0.010 (shuffled): h = 20 * 0.05 = 1, the second smallest
    values = [(k - 10) / 1000.0 for k in np.random.default_rng(0).permutation(21)]
    r = as_kind(bday_series(values), kind)
    assert m.value_at_risk(r) == pytest.approx(-0.009, rel=REL)


def test_calendar_and_tail_input_errors() -> None:
    eq = dated_series(MONTH_DATES, MONTH_EQUITY)
    for call in (m.monthly_returns, m.month_stats, m.drawdown_details):
        with pytest.raises(DataError, match="DatetimeIndex"):
            call(eq.to_numpy())  # type: ignore[arg-type]
        with pytest.raises(DataError, match="DatetimeIndex"):
            call(eq.reset_index(drop=True))
        with pytest.raises(DataError, match="unique and increasing"):
            call(eq.iloc[::-1])
        with pytest.raises(DataError, match="non-finite value nan at position 2"):
            call(eq.where(eq.index != eq.index[2]))
        with pytest.raises(ConfigError, match="initial_capital"):
            call(eq, initial_capital=0.0)
    for cutoff in (0.0, 1.0, -0.05, 1.5):
        with pytest.raises(ConfigError, match="cutoff"):
            m.value_at_risk(VAR_SAMPLE, cutoff)
    with pytest.raises(DataError, match="empty"):
        m.value_at_risk([])


# --------------------------------------------------------------------------------------------
# 2. Against empyrical on real returns
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("curve", "win"), CASES, ids=case_ids)
def test_volatility_sharpe_sortino_var_match_empyrical(curve: str, win: str, kind: str) -> None:
    r = as_kind(returns_of(window(curve, win)), kind)
    assert m.annual_volatility(r) == pytest.approx(ep.annual_volatility(r), rel=REL)
    for rf_annual in (0.0, 0.03, -0.005):
        # empyrical's risk_free / required_return is the per-bar rate our rf_annual compounds to
        rf = per_bar_rf(rf_annual)
        assert m.sharpe_ratio(r, rf_annual) == pytest.approx(
            ep.sharpe_ratio(r, risk_free=rf), rel=REL
        )
        # Sortino: both use mean(r - rf) * 252 / (sqrt(mean(min(r - rf, 0)^2)) * sqrt(252)),
        # the downside mean taken over all n bars (empyrical's downside_risk), target = rf
        assert m.sortino_ratio(r, rf_annual) == pytest.approx(
            ep.sortino_ratio(r, required_return=rf), rel=REL
        )
    for cutoff in (0.01, 0.05, 0.1):
        assert m.value_at_risk(r, cutoff) == pytest.approx(ep.value_at_risk(r, cutoff), rel=REL)


@pytest.mark.parametrize(("curve", "win"), CASES, ids=case_ids)
def test_drawdown_cagr_calmar_match_empyrical(curve: str, win: str, kind: str) -> None:
    e_all = window(curve, win)
    eq, ic = as_kind(e_all.iloc[1:], kind), float(e_all.iloc[0])
    whole = as_kind(e_all, kind)
    r = as_kind(returns_of(e_all), kind)

    # empyrical anchors its cumulative curve before r_1, the role of E_0: so our curve needs the
    # peak to start at E_0, either as the capital or as the first bar of the curve
    theirs_mdd = ep.max_drawdown(r)
    assert m.max_drawdown(eq, initial_capital=ic) == pytest.approx(theirs_mdd, rel=REL)
    assert m.max_drawdown(whole) == pytest.approx(theirs_mdd, rel=REL)
    assert m.max_drawdown(whole, initial_capital=ic) == pytest.approx(theirs_mdd, rel=REL)
    # bar by bar, on 1 + DD_t = E_t / P_t (DD_t near 0 is a cancellation, see the module doc)
    ours_dd = m.drawdown_series(eq, initial_capital=ic)
    theirs_dd = np.asarray(ep_stats.drawdown_series(r))
    assert 1.0 + ours_dd == pytest.approx(1.0 + theirs_dd, rel=REL)

    # CAGR (empyrical annual_return, alias cagr): (prod(1 + r))^(252 / n) - 1 with n returns;
    # ours is (E_n / E_0)^(252 / n) - 1: compared on the growth factor 1 + cagr
    theirs_cagr = ep.cagr(r)
    assert ep.annual_return(r) == theirs_cagr
    ours_cagr = m.cagr(eq, initial_capital=ic)
    assert ours_cagr == approx_growth(theirs_cagr)
    assert m.cagr(whole) == approx_growth(theirs_cagr)
    assert m.total_return(eq, initial_capital=ic) == approx_growth(ep.cum_returns_final(r))

    # Calmar = cagr / |mdd|: the growth-factor tolerance of the CAGR divided by |mdd|
    ours_calmar = m.calmar_ratio(eq, initial_capital=ic)
    tol = REL * abs(1.0 + theirs_cagr) / abs(theirs_mdd) + REL * abs(ours_calmar)
    assert ours_calmar == pytest.approx(ep.calmar_ratio(r), rel=0.0, abs=tol)
    assert m.calmar_ratio(whole) == pytest.approx(ep.calmar_ratio(r), rel=0.0, abs=tol)


@pytest.mark.parametrize(("curve", "win"), CASES, ids=case_ids)
def test_monthly_returns_and_month_stats_match_empyrical(curve: str, win: str) -> None:
    e_all = window(curve, win)
    eq, ic = e_all.iloc[1:], float(e_all.iloc[0])
    r = returns_of(e_all)
    theirs = ep.aggregate_returns(r, "monthly")  # index (year, month), value prod(1 + r) - 1
    ours = m.monthly_returns(eq, initial_capital=ic)
    assert [(p.year, p.month) for p in ours.index] == list(theirs.index)
    # compounded inside the month by empyrical, an equity ratio for us: compared on 1 + R_m
    assert 1.0 + ours.to_numpy() == pytest.approx(1.0 + theirs.to_numpy(), rel=REL)
    # the months chain: prod(1 + R_m) = E_n / E_0
    assert math.prod(1.0 + ours.to_numpy()) == pytest.approx(e_all.iloc[-1] / ic, rel=REL)

    stats = m.month_stats(eq, initial_capital=ic)
    assert stats["best_month"] == approx_growth(float(theirs.max()))
    assert stats["worst_month"] == approx_growth(float(theirs.min()))
    # a month that ends where the previous one ended is exactly 0 for us but +/- a few ulps for
    # empyrical (see test_flat_months_are_exactly_zero): count those as zero, i.e. not positive
    flat = np.abs(theirs.to_numpy()) <= REL
    assert np.all(ours.to_numpy()[flat] == 0.0)
    assert stats["positive_months"] == float(np.mean((theirs.to_numpy() > 0.0) & ~flat))
    assert stats["n_months"] == float(len(theirs))


@pytest.mark.parametrize(("curve", "win"), CASES, ids=case_ids)
def test_drawdown_details_match_empyrical_drawdown_series(curve: str, win: str) -> None:
    # empyrical has no drawdown-period table, but its drawdown series fixes the dates: the trough
    # is its argmin, the peak the last date before it with DD = 0 (none: the anchor E_0 is the
    # peak), the recovery the first later date with DD = 0
    e_all = window(curve, win)
    eq, ic = e_all.iloc[1:], float(e_all.iloc[0])
    dd = ep_stats.drawdown_series(returns_of(e_all))
    trough = int(np.argmin(dd.to_numpy()))
    at_zero = np.flatnonzero(dd.to_numpy() == 0.0)
    before, after = at_zero[at_zero < trough], at_zero[at_zero > trough]
    got = m.drawdown_details(eq, initial_capital=ic)
    assert got["trough"] == dd.index[trough]
    assert got["peak"] == (dd.index[before[-1]] if before.size else None)
    assert got["recovery"] == (dd.index[after[0]] if after.size else None)
    assert got["max_drawdown"] == pytest.approx(float(dd.min()), rel=REL)
    end = after[0] if after.size else len(dd)
    start = before[-1] if before.size else -1
    assert got["duration_bars"] == float(end - start - 1)


def test_compute_metrics_and_metrics_table_match_empyrical() -> None:
    # every curve of the data side by side: 20 stocks, the index and the basket, whole history
    prices = load_default_panel().prices
    curves = real_curves()
    full = pd.concat([prices, curves["SP500"], curves["EW20"]], axis=1)
    equities, capital = full.iloc[1:], full.iloc[0]
    rets = full.pct_change().iloc[1:]
    rf_annual = 0.02
    rf = per_bar_rf(rf_annual)
    table = m.metrics_table(equities, initial_capital=capital, rf_annual=rf_annual)

    # empyrical on the DataFrame of returns, one value per column
    vol = np.asarray(ep.annual_volatility(rets))
    sharpe = np.asarray(ep.sharpe_ratio(rets, risk_free=rf))
    sortino = ep.sortino_ratio(rets, required_return=rf).to_numpy()
    mdd = ep.max_drawdown(rets).to_numpy()
    growth = ep.cum_returns_final(rets, starting_value=1.0).to_numpy()
    cagr = ep.annual_return(rets).to_numpy()
    assert table["annual_volatility"].to_numpy() == pytest.approx(vol, rel=REL)
    assert table["sharpe"].to_numpy() == pytest.approx(sharpe, rel=REL)
    assert table["sortino"].to_numpy() == pytest.approx(sortino, rel=REL)
    assert table["max_drawdown"].to_numpy() == pytest.approx(mdd, rel=REL)
    assert 1.0 + table["total_return"].to_numpy() == pytest.approx(growth, rel=REL)
    assert 1.0 + table["cagr"].to_numpy() == pytest.approx(1.0 + cagr, rel=REL)
    for col in full.columns:
        calmar = ep.calmar_ratio(rets[col])
        assert table.loc[col, "calmar"] == pytest.approx(calmar, rel=REL)
        one = m.compute_metrics(equities[col], initial_capital=capital[col], rf_annual=rf_annual)
        # the table is compute_metrics row by row (turnover NaN on both: no traded notional)
        np.testing.assert_array_equal(list(one.values()), table.loc[col].to_numpy())


# --------------------------------------------------------------------------------------------
# 3. Convention differences, each tested to be what its explanation predicts
# --------------------------------------------------------------------------------------------


def test_risk_free_units_annual_compounded_vs_per_period(kind: str) -> None:
    # Ours: rf_annual compounded to rf = (1 + rf_annual)^(1/252) - 1 per bar. A user who passes
    # empyrical rf_annual / 252 gets a slightly larger per-bar rate (simple division), and the
    # Sharpe ratios then differ by (rf_simple - rf) / std(r) * sqrt(252): a constant shift of
    # the excess returns leaves their std unchanged.
    r = as_kind(returns_of(window("SP500", "full")), kind)
    rf_annual = 0.05
    rf_geo, rf_simple = per_bar_rf(rf_annual), rf_annual / PPY
    assert rf_simple > rf_geo
    ours = m.sharpe_ratio(r, rf_annual)
    naive = ep.sharpe_ratio(r, risk_free=rf_simple)
    predicted = (rf_simple - rf_geo) / float(np.std(r, ddof=1)) * math.sqrt(PPY)
    assert ours - naive == pytest.approx(predicted, rel=1e-9)
    assert predicted > 1e-3  # not a rounding-level difference
    # and the annual rate that compounds to rf_simple per bar makes the two agree again
    assert m.sharpe_ratio(r, (1.0 + rf_simple) ** PPY - 1.0) == pytest.approx(naive, rel=REL)


def test_zero_dispersion_is_nan_for_us_and_infinite_for_empyrical() -> None:
    # Documented in sharpe_ratio: excess returns with std <= 1e-12 (constant up to rounding) give
    # NaN. empyrical zeroes the std only when every value is bitwise equal, and divides anyway:
    # +/-inf for a constant non-zero series, NaN for all zeros, and an arbitrary huge finite
    # number when the values differ in the last bit (constant growth read back from equity).
    with np.errstate(divide="ignore", invalid="ignore"):
        for c, theirs in ((0.01, math.inf), (-0.01, -math.inf)):
            r = np.full(10, c)
            assert ep.sharpe_ratio(r) == theirs
            assert math.isnan(m.sharpe_ratio(r))
        assert math.isnan(ep.sharpe_ratio(np.zeros(10)))
        assert math.isnan(m.sharpe_ratio(np.zeros(10)))
    growth = m.simple_returns(100.0 * 1.001 ** np.arange(300))
    assert 0.0 < float(np.ptp(growth)) < 1e-14  # equal up to rounding only
    assert abs(ep.sharpe_ratio(growth)) > 1e12
    assert math.isnan(m.sharpe_ratio(growth))


def test_sortino_downside_below_tolerance_is_inf_for_us() -> None:
    # Documented in sortino_ratio: a downside deviation <= 1e-12 counts as zero, so a positive
    # mean gives +inf. empyrical divides by the tiny deviation: here sqrt(1e-28 / 3) * sqrt(252),
    # so its ratio is mean * 252 / that, a finite number near 2.7e13.
    r = np.array([0.01, 0.02, -1e-14])
    downside = math.sqrt(1e-28 / 3.0) * math.sqrt(PPY)
    assert ep.sortino_ratio(r) == pytest.approx(float(np.mean(r)) * PPY / downside, rel=1e-9)
    assert m.sortino_ratio(r) == math.inf
    # with no shortfall at all both give +inf
    with np.errstate(divide="ignore"):
        assert ep.sortino_ratio(np.array([0.01, 0.02])) == math.inf
    assert m.sortino_ratio(np.array([0.01, 0.02])) == math.inf


def test_calmar_with_overflowing_cagr() -> None:
    # Documented in cagr: a huge gain over very few bars overflows the power to +inf. Our Calmar
    # is then inf / |mdd| = +inf; empyrical maps an infinite Calmar to NaN.
    eq = np.array([1.0, 0.5, 1e6])  # 2 returns: (1e6)^(252 / 2) overflows; mdd = -0.5
    r = m.simple_returns(eq)
    with np.errstate(over="ignore"):
        assert ep.cagr(r) == math.inf
        assert math.isnan(ep.calmar_ratio(r))
    assert m.cagr(eq) == math.inf
    assert m.max_drawdown(eq) == -0.5
    assert m.calmar_ratio(eq) == math.inf


def test_monthly_returns_first_bar_at_month_end_without_capital() -> None:
    # Without initial_capital the first month is measured from the first bar. If that bar is the
    # last of its month, the month is reported with R = 0 exactly; empyrical, fed the returns,
    # has no return dated in that month and no such row. With initial_capital = E_0 and the bars
    # E_1.. the two agree (tested above); here the convention shows on real data.
    sp = real_curves()["SP500"].loc["2008-01-31":"2008-12-31"]  # 2008-01-31: last bar of January
    assert sp.index[1] == pd.Timestamp("2008-02-01")
    ours = m.monthly_returns(sp)
    theirs = ep.aggregate_returns(returns_of(sp), "monthly")
    assert str(ours.index[0]) == "2008-01"
    assert ours.iloc[0] == 0.0
    assert len(ours) == len(theirs) + 1
    assert 1.0 + ours.iloc[1:].to_numpy() == pytest.approx(1.0 + theirs.to_numpy(), rel=REL)
    # a first bar inside its month: nothing extra (January's return starts at 2008-01-02)
    mid = real_curves()["SP500"].loc["2008-01-02":"2008-12-31"]
    theirs_mid = ep.aggregate_returns(returns_of(mid), "monthly")
    assert 1.0 + m.monthly_returns(mid).to_numpy() == pytest.approx(
        1.0 + theirs_mid.to_numpy(), rel=REL
    )


def test_flat_months_are_exactly_zero() -> None:
    # A month whose last close equals the previous month's last close (coarse early prices, or a
    # round trip such as AMD: 45.48 at the ends of Feb and Mar 2020) has R_m = E / E - 1 = 0
    # exactly for us. empyrical recompounds the month's ~21 returns, each rounded, and lands a
    # few ulps off zero (at most about 21 eps) with either sign, so a share of positive months
    # taken from its numbers counts a flat month as a gain or a loss by chance. Predicted, per
    # stock: the flat months are exactly where ours is 0, and our positive share is empyrical's
    # minus the flat months it rounded above zero.
    prices = load_default_panel().prices
    theirs_all = ep.aggregate_returns(prices.pct_change().iloc[1:], "monthly")  # all 20 at once
    months = pd.DatetimeIndex(prices.index).to_period("M")
    n_flat = n_noise_positive = 0
    for col in prices.columns:
        e_all = prices[col]
        ours = m.monthly_returns(e_all.iloc[1:], initial_capital=float(e_all.iloc[0]))
        theirs = theirs_all[col].to_numpy()
        month_ends = e_all.groupby(months).last().to_numpy()
        flat = np.concatenate(([month_ends[0] == e_all.iloc[0]], month_ends[1:] == month_ends[:-1]))
        assert np.array_equal(ours.to_numpy() == 0.0, flat), col
        assert np.all(np.abs(theirs[flat]) <= 32 * EPS), col
        noise_positive = int((theirs[flat] > 0.0).sum())
        share = m.month_stats(e_all.iloc[1:], initial_capital=float(e_all.iloc[0]))
        assert share["positive_months"] * len(theirs) == pytest.approx(
            int((theirs > 0.0).sum()) - noise_positive, abs=1e-9
        )
        n_flat += int(flat.sum())
        n_noise_positive += noise_positive
    assert n_flat > 0
    assert n_noise_positive > 0
    amd = prices["AMD"]
    assert amd.loc["2020-02"].iloc[-1] == amd.loc["2020-03"].iloc[-1]


def test_first_day_loss_needs_the_capital_or_the_first_bar() -> None:
    # empyrical's anchor before r_1 makes a first-return loss a drawdown. Our equity function sees
    # it only if E_0 is on the curve or passed as the capital: bars [90, 95] alone only rise.
    eq = np.array([100.0, 90.0, 95.0])  # r = [-0.1, 95/90 - 1]
    r = m.simple_returns(eq)
    assert ep.max_drawdown(r) == pytest.approx(-0.1, rel=REL)
    assert m.max_drawdown(eq[1:], initial_capital=100.0) == pytest.approx(-0.1, rel=REL)
    assert m.max_drawdown(eq) == pytest.approx(-0.1, rel=REL)
    assert m.max_drawdown(eq[1:]) == 0.0


def test_nan_input_raises_for_us_and_is_skipped_by_empyrical() -> None:
    # Module policy: inputs are never silently cleaned. empyrical's nan-functions skip NaN.
    r = np.array([0.01, np.nan, 0.02, -0.01])
    assert ep.sharpe_ratio(r) == pytest.approx(ep.sharpe_ratio(r[~np.isnan(r)]), rel=REL)
    for call in (m.sharpe_ratio, m.sortino_ratio, m.annual_volatility, m.value_at_risk):
        with pytest.raises(DataError, match="non-finite value nan at position 1"):
            call(r)


# --------------------------------------------------------------------------------------------
# 4. Metamorphic relations (cf. empyrical tests/test_stats.py)
# --------------------------------------------------------------------------------------------


def _all_metrics(eq: pd.Series, ic: float) -> dict[str, object]:
    """Every return-based quantity of one curve, the dated ones included."""
    r = m.simple_returns(eq, ic)
    out: dict[str, object] = dict(m.compute_metrics(eq, initial_capital=ic, rf_annual=0.02))
    del out["turnover"], out["total_costs"]  # trade-based, NaN and 0 here (see test_metrics.py)
    out["var_5"] = m.value_at_risk(r)
    out["monthly"] = m.monthly_returns(eq, ic).to_numpy()
    out.update({f"month_{k}": v for k, v in m.month_stats(eq, ic).items()})
    out.update({f"dd_{k}": v for k, v in m.drawdown_details(eq, ic).items()})
    out["drawdown_series"] = m.drawdown_series(eq, ic)
    return out


@pytest.mark.parametrize("curve", CURVE_NAMES)
def test_scaling_equity_changes_no_metric(curve: str) -> None:
    e_all = window(curve, "gfc")
    eq, ic = e_all.iloc[1:], float(e_all.iloc[0])
    base = _all_metrics(eq, ic)
    # a power of two scales exactly in floating point: every value is bitwise the same
    exact = _all_metrics(eq * 2.0**-7, ic * 2.0**-7)
    for key, value in base.items():
        if isinstance(value, np.ndarray):
            assert np.array_equal(exact[key], value), key  # type: ignore[arg-type]
        else:
            assert exact[key] == value, key
    # any other scale moves each return by an ulp or so: equal to rounding, the dates identical
    scaled = _all_metrics(eq * 3.7, ic * 3.7)
    for key, value in base.items():
        if isinstance(value, pd.Timestamp) or value is None or key.endswith("_bars"):
            assert scaled[key] == value, key
        elif key in ("monthly", "drawdown_series"):
            got = np.asarray(scaled[key])
            assert 1.0 + got == pytest.approx(1.0 + np.asarray(value), rel=REL), key
        else:
            assert scaled[key] == pytest.approx(value, rel=REL), key


@pytest.mark.parametrize("curve", CURVE_NAMES)
def test_shifting_returns_and_rf_together_leaves_ratios_unchanged(curve: str, kind: str) -> None:
    # empyrical's test_sharpe_translation_same: excess returns (r + c) - (rf + c) = r - rf, so
    # the ratios agree up to rounding. Two sources, both bounded explicitly:
    # * round-off: forming r + c and rf + c, subtracting them, and our own r - rf round each bar
    #   by at most eps * (|r + c| + |rf + c| + |x|) / 2 together (x = r - rf), which moves the mean
    #   excess by at most the mean of that ("round_off", taken twice as large for margin);
    # * drift (ours only): rf is annual, so the shifted per-bar rate rf + c goes in as
    #   (1 + rf + c)^252 - 1, and taking the 252nd root back lands a few ulps off rf + c.
    # A shift d of the mean excess moves Sharpe by d * sqrt(252) / std and Sortino by at most
    # d * (sqrt(252) + |S|) / D (D = downside deviation, which moves by at most d as well).
    r = returns_of(window(curve, "full")).to_numpy()
    for rf_annual in (0.0, 0.03):
        rf = per_bar_rf(rf_annual)
        x = r - rf
        std = float(np.std(x, ddof=1))
        downside = math.sqrt(float(np.mean(np.minimum(x, 0.0) ** 2)))
        sharpe = m.sharpe_ratio(r, rf_annual)
        sortino = m.sortino_ratio(r, rf_annual)
        for c in (-0.001, 0.0004, 0.002):
            rs = as_kind(pd.Series(r + c), kind)
            round_off = EPS * (float(np.mean(np.abs(r + c))) + abs(rf + c) + float(np.mean(abs(x))))
            shifted_annual = (1.0 + rf + c) ** PPY - 1.0
            drift = abs(per_bar_rf(shifted_annual) - (rf + c))
            d = drift + round_off
            assert m.sharpe_ratio(rs, shifted_annual) == pytest.approx(
                sharpe, rel=REL, abs=d * math.sqrt(PPY) / std
            )
            assert m.sortino_ratio(rs, shifted_annual) == pytest.approx(
                sortino, rel=REL, abs=d * (math.sqrt(PPY) + abs(sortino)) / downside
            )
            # empyrical takes the per-bar rate directly: no drift
            assert ep.sharpe_ratio(rs, risk_free=rf + c) == pytest.approx(
                sharpe, rel=REL, abs=round_off * math.sqrt(PPY) / std
            )


@pytest.mark.parametrize("curve", CURVE_NAMES)
def test_larger_gains_leave_the_downside_unchanged(curve: str) -> None:
    # empyrical's Sortino noise tests: raising only the returns above the target leaves the
    # downside deviation unchanged, so the Sortino ratio scales with the mean excess return.
    r = returns_of(window(curve, "full")).to_numpy()
    rf_annual = 0.03
    rf = per_bar_rf(rf_annual)
    x = r - rf
    boosted = np.where(x > 0.0, r + x, r)  # every excess gain doubled, losses untouched
    xb = boosted - rf
    assert np.array_equal(np.minimum(xb, 0.0), np.minimum(x, 0.0))
    assert ep_stats.downside_risk(boosted, rf) == ep_stats.downside_risk(r, rf)
    ratio = float(np.mean(xb)) / float(np.mean(x))
    assert m.sortino_ratio(boosted, rf_annual) == pytest.approx(
        m.sortino_ratio(r, rf_annual) * ratio, rel=REL
    )


@pytest.mark.parametrize("curve", CURVE_NAMES)
def test_value_at_risk_equivariance(curve: str, kind: str) -> None:
    r = returns_of(window(curve, "full"))
    var = m.value_at_risk(as_kind(r, kind))
    # translation and positive scaling move the quantile with the data
    assert m.value_at_risk(as_kind(r + 0.001, kind)) == pytest.approx(var + 0.001, rel=REL)
    assert m.value_at_risk(as_kind(r * 2.5, kind)) == pytest.approx(var * 2.5, rel=REL)
    # reflection: the 5 % quantile of -r is minus the 95 % quantile of r (type-7 interpolation
    # is symmetric), read from empyrical
    assert m.value_at_risk(as_kind(-r, kind)) == pytest.approx(
        -ep.value_at_risk(as_kind(r, kind), 0.95), rel=REL
    )
    # a higher cutoff never gives a lower quantile
    levels = [m.value_at_risk(as_kind(r, kind), q) for q in (0.01, 0.05, 0.1, 0.5)]
    assert levels == sorted(levels)


@pytest.mark.parametrize("curve", CURVE_NAMES)
def test_higher_returns_never_deepen_the_drawdown(curve: str) -> None:
    # empyrical's max-drawdown translation test: adding c > 0 to every return makes each
    # drawdown shallower or equal; subtracting makes it deeper or equal.
    r = returns_of(window(curve, "dotcom")).to_numpy()

    def mdd_of(returns: np.ndarray) -> float:
        eq = 100.0 * np.cumprod(1.0 + returns)
        return m.max_drawdown(eq, initial_capital=100.0)

    base = mdd_of(r)
    assert base == pytest.approx(ep.max_drawdown(r), rel=REL)
    assert mdd_of(r + 0.001) >= base
    assert mdd_of(r - 0.001) <= base
    assert mdd_of(r + 0.001) == pytest.approx(ep.max_drawdown(r + 0.001), rel=REL)


Check = Callable[[np.ndarray | pd.Series], float]


@pytest.mark.parametrize(
    "pair",
    [
        (m.annual_volatility, ep.annual_volatility),
        (m.sharpe_ratio, ep.sharpe_ratio),
        (m.sortino_ratio, ep.sortino_ratio),
        (m.value_at_risk, ep.value_at_risk),
    ],
    ids=["vol", "sharpe", "sortino", "var"],
)
def test_numpy_and_pandas_inputs_agree(pair: tuple[Check, Check]) -> None:
    # the same returns as an array and as a Series give the same number, for both libraries
    ours, theirs = pair
    r = returns_of(window("EW20", "covid"))
    assert ours(r) == ours(r.to_numpy())
    assert ours(r) == pytest.approx(theirs(r), rel=REL)
    assert theirs(r) == pytest.approx(theirs(r.to_numpy()), rel=REL)
