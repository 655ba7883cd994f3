"""Tests for portfolio.risk.VaRCalculator: historical, Gaussian and Euler component VaR."""

from __future__ import annotations

import math
import statistics
from importlib import resources

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from portfolio.errors import ConfigError, DataError
from portfolio.risk import VaRCalculator

# 20 returns; sorted: -0.05, -0.03, -0.02, -0.01, ...
SAMPLE = np.array(
    [
        0.01,
        -0.02,
        0.03,
        -0.05,
        0.00,
        0.02,
        -0.01,
        0.04,
        -0.03,
        0.01,
        0.005,
        0.015,
        0.025,
        -0.005,
        0.035,
        0.045,
        0.012,
        0.008,
        0.002,
        0.001,
    ]
)


def _sp500_returns() -> pd.Series:
    path = resources.files("backtest.datasets") / "sp500_index.csv.gz"
    with resources.as_file(path) as p:
        prices = pd.read_csv(p, parse_dates=["Date"], index_col="Date")["SP500"]
    return prices.pct_change().dropna()


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize("confidence", [0.0, 1.0, 1.5, -0.1, math.nan, True, "0.95"])
def test_confidence_validation(confidence: object) -> None:
    with pytest.raises(ConfigError, match="confidence"):
        VaRCalculator(confidence)  # type: ignore[arg-type]


@pytest.mark.parametrize("periods", [0, -1, 1.5, True])
def test_periods_validation(periods: object) -> None:
    with pytest.raises(ConfigError, match="periods"):
        VaRCalculator(0.95, periods)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- historical


def test_historical_var_hand_sorted_sample() -> None:
    # numpy "linear" quantile: position (n - 1) * q in the sorted sample, interpolated.
    # 95%: q = 0.05 -> position 19 * 0.05 = 0.95 between -0.05 and -0.03:
    # -0.05 + 0.95 * 0.02 = -0.031 -> VaR 0.031.
    assert VaRCalculator(0.95).historical_var(SAMPLE) == pytest.approx(0.031, abs=1e-15)
    # 90%: position 1.9 between -0.03 and -0.02: -0.03 + 0.9 * 0.01 = -0.021.
    assert VaRCalculator(0.90).historical_var(SAMPLE) == pytest.approx(0.021, abs=1e-15)
    # 80%: position 3.8 between -0.01 and -0.005: -0.01 + 0.8 * 0.005 = -0.006.
    assert VaRCalculator(0.80).historical_var(SAMPLE) == pytest.approx(0.006, abs=1e-15)


def test_historical_var_matches_empyrical_percentile() -> None:
    # empyrical.value_at_risk(returns, cutoff) is np.percentile(returns, 100 * cutoff).
    # Equal up to rounding: 1 - 0.95 is 0.050000000000000044 in floating point.
    assert VaRCalculator(0.95).historical_var(SAMPLE) == pytest.approx(
        -np.percentile(SAMPLE, 5), abs=1e-15
    )


def test_historical_var_all_gains_is_negative() -> None:
    assert VaRCalculator(0.95).historical_var([0.01, 0.02, 0.03]) == pytest.approx(
        -(0.01 + 0.1 * 0.01), abs=1e-15
    )


def test_historical_var_multi_period_overlapping() -> None:
    r = [0.10, -0.10, -0.20, 0.05]
    # Overlapping 2-period compounded returns: 1.1*0.9-1, 0.9*0.8-1, 0.8*1.05-1.
    two = sorted([1.1 * 0.9 - 1, 0.9 * 0.8 - 1, 0.8 * 1.05 - 1])  # -0.28, -0.16, -0.01
    # 90%: position 2 * 0.1 = 0.2 between -0.28 and -0.16.
    expected = -(two[0] + 0.2 * (two[1] - two[0]))
    assert VaRCalculator(0.90, periods=2).historical_var(r) == pytest.approx(expected, abs=1e-15)
    with pytest.raises(DataError, match="at least 5"):
        VaRCalculator(0.90, periods=5).historical_var(r)


def test_historical_var_real_sp500() -> None:
    r = _sp500_returns()
    values = np.sort(r.to_numpy())
    pos = (len(values) - 1) * 0.01
    lo = math.floor(pos)
    expected = -(values[lo] + (pos - lo) * (values[lo + 1] - values[lo]))
    assert VaRCalculator(0.99).historical_var(r) == pytest.approx(expected, abs=1e-15)
    # Sanity on the scale of the real number: the 99% daily loss of the S&P 500 is a few %.
    assert 0.02 < expected < 0.05


def test_historical_var_input_validation() -> None:
    calc = VaRCalculator()
    idx = pd.date_range("2020-01-01", periods=3)
    with pytest.raises(DataError, match=r"position 1 \(label Timestamp\('2020-01-02"):
        calc.historical_var(pd.Series([0.01, np.nan, 0.02], index=idx))
    with pytest.raises(DataError, match="1-D"):
        calc.historical_var(np.zeros((3, 2)))
    with pytest.raises(DataError, match="DataFrame"):
        calc.historical_var(pd.DataFrame({"a": [0.1, 0.2]}))
    with pytest.raises(DataError, match="at least 1"):
        calc.historical_var([])
    with pytest.raises(DataError, match="inf"):
        calc.historical_var([0.1, np.inf])


# ----------------------------------------------------------------------------- parametric


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
@pytest.mark.parametrize("periods", [1, 10])
def test_parametric_var_against_scipy(confidence: float, periods: int) -> None:
    mu, sigma = 0.0005, 0.012
    expected = -norm.ppf(1 - confidence, loc=periods * mu, scale=math.sqrt(periods) * sigma)
    got = VaRCalculator(confidence, periods).parametric_var(mu=mu, sigma=sigma)
    assert got == pytest.approx(expected, rel=1e-13)


def test_parametric_var_from_returns_uses_sample_std() -> None:
    mu = statistics.fmean(SAMPLE)
    sigma = statistics.stdev(SAMPLE)  # ddof = 1
    expected = -norm.ppf(0.05, loc=mu, scale=sigma)
    assert VaRCalculator().parametric_var(SAMPLE) == pytest.approx(expected, rel=1e-13)
    # The textbook 95% value: 1.645 sigma for a zero mean.
    assert VaRCalculator().parametric_var(mu=0.0, sigma=1.0) == pytest.approx(1.6448536, abs=1e-7)


def test_parametric_var_argument_errors() -> None:
    calc = VaRCalculator()
    with pytest.raises(DataError, match="not both"):
        calc.parametric_var(SAMPLE, mu=0.0, sigma=0.1)
    with pytest.raises(DataError, match="both mu and sigma"):
        calc.parametric_var(mu=0.0)
    with pytest.raises(DataError, match="sigma"):
        calc.parametric_var(mu=0.0, sigma=-0.1)
    with pytest.raises(DataError, match="mu"):
        calc.parametric_var(mu=math.nan, sigma=0.1)
    with pytest.raises(DataError, match="at least 2"):
        calc.parametric_var([0.01])


# ----------------------------------------------------------------------------- portfolio


COV = np.array([[0.04, 0.006, 0.0], [0.006, 0.09, -0.01], [0.0, -0.01, 0.0225]])
W = np.array([0.5, 0.3, 0.2])
MEAN = np.array([0.01, 0.02, -0.005])


def test_portfolio_var_is_gaussian_var_of_portfolio() -> None:
    calc = VaRCalculator(0.99, periods=5)
    sigma_p = math.sqrt(W @ COV @ W)
    assert calc.portfolio_parametric_var(W, COV) == pytest.approx(
        calc.parametric_var(mu=0.0, sigma=sigma_p), rel=1e-14
    )
    assert calc.portfolio_parametric_var(W, COV, MEAN) == pytest.approx(
        -norm.ppf(0.01, loc=5 * float(W @ MEAN), scale=math.sqrt(5) * sigma_p), rel=1e-13
    )


def test_single_asset_portfolio() -> None:
    calc = VaRCalculator()
    assert calc.portfolio_parametric_var([1.0], [[0.04]]) == pytest.approx(
        calc.parametric_var(mu=0.0, sigma=0.2), rel=1e-15
    )
    np.testing.assert_allclose(
        calc.component_var([1.0], [[0.04]]), [calc.parametric_var(mu=0.0, sigma=0.2)], rtol=1e-15
    )


@pytest.mark.parametrize("mean", [None, MEAN])
def test_marginal_var_is_the_gradient(mean: np.ndarray | None) -> None:
    calc = VaRCalculator(0.975, periods=3)
    grad = calc.marginal_var(W, COV, mean)
    h = 1e-6
    for i in range(3):
        e = np.zeros(3)
        e[i] = h
        fd = (
            calc.portfolio_parametric_var(W + e, COV, mean)
            - calc.portfolio_parametric_var(W - e, COV, mean)
        ) / (2 * h)
        assert grad[i] == pytest.approx(fd, rel=1e-7)


def test_component_var_hand_two_assets() -> None:
    # Uncorrelated, sigma 0.2 and 0.1, weights 0.5/0.5: sigma_p^2 = 0.01 + 0.0025 = 0.0125.
    calc = VaRCalculator(0.95)
    z = norm.ppf(0.05)
    sigma_p = math.sqrt(0.0125)
    expected = [-z * 0.5 * 0.02 / sigma_p, -z * 0.5 * 0.005 / sigma_p]
    np.testing.assert_allclose(
        calc.component_var([0.5, 0.5], np.diag([0.04, 0.01])), expected, rtol=1e-14
    )


def test_component_var_negative_for_hedge() -> None:
    cov = np.array([[0.04, -0.03], [-0.03, 0.04]])
    cvar = VaRCalculator().component_var([1.0, 0.3], cov)
    assert cvar[0] > 0
    assert cvar[1] < 0


def test_zero_weights_give_zero_var() -> None:
    calc = VaRCalculator()
    assert calc.portfolio_parametric_var([0.0, 0.0], COV[:2, :2]) == 0.0
    assert calc.component_var([0.0, 0.0], COV[:2, :2]).tolist() == [0.0, 0.0]


def test_riskless_combination_of_singular_covariance() -> None:
    # Perfectly correlated assets, long/short equal: sigma_p = 0, components sum to 0.
    cov = np.array([[0.04, 0.04], [0.04, 0.04]])
    calc = VaRCalculator()
    assert calc.portfolio_parametric_var([1.0, -1.0], cov) == 0.0
    assert calc.component_var([1.0, -1.0], cov).tolist() == [0.0, 0.0]


def test_tiny_and_huge_weights_scale_linearly() -> None:
    # VaR is homogeneous of degree one; w' S w would underflow/overflow without rescaling.
    calc = VaRCalculator(0.95)
    base = calc.portfolio_parametric_var(W, COV)
    for k in (1e-160, 1e160):
        assert calc.portfolio_parametric_var(W * k, COV) == pytest.approx(base * k, rel=1e-14)
        comp = calc.component_var(W * k, COV)
        np.testing.assert_allclose(comp, calc.component_var(W, COV) * k, rtol=1e-14)
        assert comp.sum() == pytest.approx(base * k, rel=1e-14)


@st.composite
def _portfolios(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, float]:
    n = draw(st.integers(1, 6))
    elems = st.floats(-1.0, 1.0, allow_nan=False, allow_subnormal=False)
    a = np.array(draw(st.lists(elems, min_size=n * n, max_size=n * n))).reshape(n, n)
    cov = a @ a.T * 0.01 + np.eye(n) * draw(st.floats(0.0, 1e-3))
    w = np.array(draw(st.lists(st.floats(-2.0, 2.0), min_size=n, max_size=n)))
    mean = None
    if draw(st.booleans()):
        mean = np.array(draw(st.lists(st.floats(-0.01, 0.01), min_size=n, max_size=n)))
    conf = draw(st.floats(0.5, 0.999))
    return w, cov, mean, conf


@settings(max_examples=200, deadline=None)
@given(_portfolios(), st.integers(1, 20))
def test_component_var_sums_to_portfolio_var(
    case: tuple[np.ndarray, np.ndarray, np.ndarray | None, float], periods: int
) -> None:
    w, cov, mean, conf = case
    calc = VaRCalculator(conf, periods)
    total = calc.portfolio_parametric_var(w, cov, mean)
    comp = calc.component_var(w, cov, mean)
    scale = np.abs(comp).sum() + abs(total) + 1e-300
    assert abs(comp.sum() - total) <= 1e-12 * scale


def test_pandas_inputs_are_aligned_by_label() -> None:
    calc = VaRCalculator()
    names = ["a", "b", "c"]
    cov_df = pd.DataFrame(COV, index=names, columns=names)
    w = pd.Series(W[::-1], index=names[::-1])  # same weights, listed in reverse order
    mean = pd.Series(MEAN, index=names)
    expected = calc.component_var(W, COV, MEAN)[::-1]
    np.testing.assert_allclose(calc.component_var(w, cov_df, mean), expected, rtol=1e-14)
    assert calc.portfolio_parametric_var(w, cov_df, mean) == pytest.approx(
        calc.portfolio_parametric_var(W, COV, MEAN), rel=1e-14
    )
    with pytest.raises(DataError, match="labels"):
        calc.portfolio_parametric_var(pd.Series(W, index=["a", "b", "x"]), cov_df)


def test_covariance_validation() -> None:
    calc = VaRCalculator()
    with pytest.raises(DataError, match=r"shape \(3, 3\)"):
        calc.portfolio_parametric_var(W, COV[:2, :2])
    bad = COV.copy()
    bad[0, 1] = 0.02
    with pytest.raises(DataError, match="symmetric"):
        calc.portfolio_parametric_var(W, bad)
    nan = COV.copy()
    nan[2, 2] = np.nan
    with pytest.raises(DataError, match=r"non-finite.*\(2, 2\)"):
        calc.portfolio_parametric_var(W, nan)
    with pytest.raises(DataError, match="negative variance"):
        calc.portfolio_parametric_var([1.0, 0.0], [[-0.01, 0.0], [0.0, 0.01]])
    indefinite = np.array([[0.01, 0.05], [0.05, 0.01]])
    with pytest.raises(DataError, match="positive semi-definite"):
        calc.component_var([1.0, -1.0], indefinite)
    with pytest.raises(DataError, match="mean must have 3"):
        calc.portfolio_parametric_var(W, COV, [0.0, 0.0])
    with pytest.raises(DataError, match="weights"):
        calc.portfolio_parametric_var([0.5, np.nan, 0.5], COV)
