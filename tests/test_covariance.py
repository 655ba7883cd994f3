"""Tests of portfolio.covariance: exactness against numpy/pandas, causality, NaN policy, PD."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from portfolio.covariance import (
    DEFAULT_MISSING_VARIANCE,
    EIGEN_FLOOR_RTOL,
    covariance_at,
    ewma_covariance_path,
    rolling_covariance_path,
)
from portfolio.errors import ConfigError, DataError

DATA = Path(__file__).resolve().parents[1] / "backtest" / "datasets" / "sp500_20_stocks.csv.gz"
RTOL = 1e-12


def assert_close_to(actual: np.ndarray, expected: np.ndarray, rtol: float = RTOL) -> None:
    """Entry-wise error below rtol times the largest entry of the expected matrix."""
    scale = np.max(np.abs(expected))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale)


def ewma_weights(t: int, halflife: float) -> np.ndarray:
    """Hand EWMA weights w_s = 0.5 ** ((t - s) / halflife), s = 0..t."""
    return 0.5 ** (np.arange(t, -1, -1) / halflife)


@pytest.fixture(scope="module")
def real_returns() -> np.ndarray:
    prices = pd.read_csv(DATA, index_col=0, parse_dates=True)
    return prices.pct_change().to_numpy()[1:]  # first row of pct_change is NaN by definition


@pytest.fixture(scope="module")
def synthetic() -> np.ndarray:
    rng = np.random.default_rng(42)
    mix = rng.normal(size=(5, 5)) * 0.3 + np.eye(5)
    return rng.normal(0.0005, 0.01, size=(700, 5)) @ mix


@pytest.fixture(scope="module")
def gappy() -> np.ndarray:
    """Correlated returns with listing gaps, a late listing and random holes."""
    rng = np.random.default_rng(7)
    mix = rng.normal(size=(4, 4)) * 0.4 + np.eye(4)
    r = rng.normal(0.0, 0.01, size=(400, 4)) @ mix
    r[:60, 1] = np.nan  # listed at bar 60
    r[150:190, 2] = np.nan  # suspended
    r[:300, 3] = np.nan  # listed at bar 300
    r[rng.random(r.shape) < 0.05] = np.nan
    return r


# ---------------------------------------------------------------------------------------------
# Exactness against direct computations
# ---------------------------------------------------------------------------------------------


def test_ewma_equals_weighted_numpy_cov(synthetic: np.ndarray) -> None:
    halflife = 30.0
    path = ewma_covariance_path(synthetic, halflife, 10, 0.0)
    for t in [9, 10, 57, 300, 699]:
        expected = np.cov(synthetic[: t + 1].T, aweights=ewma_weights(t, halflife), ddof=1) * 252
        assert_close_to(path[t], expected)


def test_rolling_equals_numpy_cov(synthetic: np.ndarray) -> None:
    lookback = 50
    path = rolling_covariance_path(synthetic, lookback, 20, 0.0)
    # around the periodic rebuild of the running sums (every `lookback` bars) and at the end
    for t in [19, 20, 49, 50, 99, 100, 101, 149, 150, 151, 699]:
        expected = np.cov(synthetic[max(0, t - lookback + 1) : t + 1].T) * 252
        assert_close_to(path[t], expected)


def test_real_data_matches_numpy_cov(real_returns: np.ndarray) -> None:
    ewma = ewma_covariance_path(real_returns, 60, 60, 0.0)
    rolling = rolling_covariance_path(real_returns, 252, 252, 0.0)
    last = real_returns.shape[0] - 1
    for t in [500, 4000, 6400, last]:  # windows with full-rank sample covariance
        expected = np.cov(real_returns[: t + 1].T, aweights=ewma_weights(t, 60), ddof=1) * 252
        assert_close_to(ewma[t], expected)
        assert_close_to(rolling[t], np.cov(real_returns[t - 251 : t + 1].T) * 252)


def test_pairwise_nan_matches_pandas(gappy: np.ndarray) -> None:
    # pandas rolling/ewm cov use the same pairwise-complete estimator (ddof=1 / bias=False).
    frame = pd.DataFrame(gappy)
    rolling_ref = frame.rolling(40, min_periods=2).cov()
    ewm_ref = frame.ewm(halflife=15, min_periods=2).cov()
    rolling = rolling_covariance_path(gappy, 40, 10, 0.0, periods_per_year=1)
    ewma = ewma_covariance_path(gappy, 15, 10, 0.0, periods_per_year=1)
    for t in [120, 170, 250, 399]:  # asset 3 is not listed before 300
        listed = [0, 1, 2] if t < 300 else [0, 1, 2, 3]
        sub = np.ix_(listed, listed)
        assert_close_to(rolling[t][sub], rolling_ref.loc[t].to_numpy()[sub], rtol=1e-11)
        assert_close_to(ewma[t][sub], ewm_ref.loc[t].to_numpy()[sub], rtol=1e-11)


@pytest.mark.parametrize("method", ["ewma", "rolling"])
def test_path_equals_covariance_at_every_bar(gappy: np.ndarray, method: str) -> None:
    kwargs = {"min_history": 10, "shrinkage": 0.25, "periods_per_year": 252}
    if method == "ewma":
        path = ewma_covariance_path(gappy, 15, 10, 0.25)
        param = {"halflife": 15}
    else:
        path = rolling_covariance_path(gappy, 40, 10, 0.25)
        param = {"lookback": 40}
    for t in range(gappy.shape[0]):
        direct = covariance_at(gappy, t, **param, **kwargs)
        if np.isnan(direct).all():
            assert np.isnan(path[t]).all()
        else:
            assert_close_to(path[t], direct, rtol=1e-11)


# ---------------------------------------------------------------------------------------------
# Causality
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [30, 99, 100, 150, 401])
def test_no_look_ahead(synthetic: np.ndarray, t: int) -> None:
    changed = synthetic.copy()
    rng = np.random.default_rng(t)
    changed[t + 1 :] = rng.normal(0.0, 0.05, size=changed[t + 1 :].shape)
    changed[t + 1 :: 7, 2] = np.nan
    for fn, arg in ((ewma_covariance_path, 20.0), (rolling_covariance_path, 50)):
        before = fn(synthetic, arg, 10, 0.1)
        after = fn(changed, arg, 10, 0.1)
        np.testing.assert_array_equal(before[: t + 1], after[: t + 1])
        assert not np.array_equal(before[t + 1 :], after[t + 1 :])  # the change is seen later


# ---------------------------------------------------------------------------------------------
# Warm-up, missing assets, shrinkage, positive definiteness
# ---------------------------------------------------------------------------------------------


def test_warm_up_bars_are_nan(synthetic: np.ndarray) -> None:
    for path in (
        ewma_covariance_path(synthetic, 20, 15, 0.0),
        rolling_covariance_path(synthetic, 30, 15, 0.0),
    ):
        assert np.isnan(path[:14]).all()
        assert np.isfinite(path[14:]).all()


def test_leading_nan_row_delays_warm_up(synthetic: np.ndarray) -> None:
    r = synthetic.copy()
    r[0] = np.nan  # e.g. the first row of a pct_change
    path = ewma_covariance_path(r, 20, 15, 0.0)
    assert np.isnan(path[:15]).all()
    expected = np.cov(r[1:16].T, aweights=ewma_weights(14, 20), ddof=1) * 252
    assert_close_to(path[15], expected)


def test_unlisted_asset_gets_missing_variance(gappy: np.ndarray) -> None:
    path = rolling_covariance_path(gappy, 40, 10, 0.0, missing_variance=4.0)
    before_listing = path[200]  # asset 3 listed at 300
    assert before_listing[3, 3] == 4.0
    np.testing.assert_array_equal(before_listing[3, :3], 0.0)
    np.testing.assert_array_equal(before_listing[:3, 3], 0.0)
    # Listed at bar 300: estimated once it has 10 finite returns in the window.
    first = next(t for t in range(300, 400) if path[t][3, 3] != 4.0)
    assert np.isfinite(gappy[300 : first + 1, 3]).sum() == 10
    window = gappy[first - 39 : first + 1, 3]
    assert path[first][3, 3] == pytest.approx(np.nanvar(window, ddof=1) * 252, rel=1e-12)
    default = ewma_covariance_path(gappy, 15, 10, 0.0)
    assert default[200][3, 3] == DEFAULT_MISSING_VARIANCE


def test_shrinkage_one_gives_diagonal(real_returns: np.ndarray) -> None:
    sample = real_returns[:1500]
    raw = ewma_covariance_path(sample, 60, 60, 0.0)
    diag = ewma_covariance_path(sample, 60, 60, 1.0)
    ok = slice(100, None)  # full-rank bars: no ridge on `raw`
    off = ~np.eye(20, dtype=bool)
    assert np.all(diag[ok][:, off] == 0.0)
    np.testing.assert_array_equal(
        np.diagonal(diag[ok], axis1=1, axis2=2), np.diagonal(raw[ok], axis1=1, axis2=2)
    )


def test_partial_shrinkage_scales_off_diagonal(synthetic: np.ndarray) -> None:
    raw = rolling_covariance_path(synthetic, 60, 30, 0.0)
    shrunk = rolling_covariance_path(synthetic, 60, 30, 0.3)
    off = ~np.eye(5, dtype=bool)
    np.testing.assert_allclose(shrunk[100:, off], 0.7 * raw[100:, off], rtol=1e-15, atol=0)
    np.testing.assert_array_equal(
        np.diagonal(shrunk[100:], axis1=1, axis2=2), np.diagonal(raw[100:], axis1=1, axis2=2)
    )


@pytest.mark.parametrize("shrinkage", [0.0, 0.1])
def test_positive_definite_on_real_data(real_returns: np.ndarray, shrinkage: float) -> None:
    for path, warm_up in (
        (ewma_covariance_path(real_returns, 60, 20, shrinkage), 19),
        (rolling_covariance_path(real_returns, 126, 60, shrinkage), 59),
    ):
        assert np.isnan(path[:warm_up]).all()
        estimates = path[warm_up:]
        assert np.isfinite(estimates).all()
        np.testing.assert_array_equal(estimates, np.swapaxes(estimates, 1, 2))
        assert np.linalg.eigvalsh(estimates).min() > 0.0


def test_ridge_repairs_indefinite_pairwise_matrix() -> None:
    # x~y correlate +1 on one block, y~z +1 on another, x~z -1 on a third: pairwise deletion
    # gives the indefinite correlation [[1, 1, -1], [1, 1, 1], [-1, 1, 1]].
    rng = np.random.default_rng(3)
    a, b, c = (rng.normal(0, 0.01, 30) for _ in range(3))
    nan = np.full(30, np.nan)
    r = np.vstack(
        [np.column_stack([a, a, nan]), np.column_stack([nan, b, b]), np.column_stack([c, nan, -c])]
    )
    pairwise = pd.DataFrame(r).cov().to_numpy() * 252  # pandas pairwise-complete reference
    lam_min = np.linalg.eigvalsh(pairwise)[0]
    assert lam_min < 0.0
    out = covariance_at(r, 89, lookback=90, min_history=10, shrinkage=0.0)
    floor = EIGEN_FLOOR_RTOL * np.max(np.diag(pairwise))
    off = ~np.eye(3, dtype=bool)
    assert_close_to(out[off], pairwise[off])
    assert_close_to(np.diag(out), np.diag(pairwise) + floor - lam_min)
    assert np.linalg.eigvalsh(out)[0] == pytest.approx(floor, rel=1e-3, abs=1e-15)
    path = rolling_covariance_path(r, 90, 10, 0.0)
    assert_close_to(path[89], out)


def test_constant_series_gets_ridge(synthetic: np.ndarray) -> None:
    r = synthetic[:100].copy()
    r[:, 0] = 0.0  # zero variance: singular sample covariance
    out = ewma_covariance_path(r, 20, 10, 0.0)[99]
    assert out[0, 0] > 0.0
    assert np.linalg.eigvalsh(out)[0] > 0.0


def test_annualization_factor(synthetic: np.ndarray) -> None:
    daily = ewma_covariance_path(synthetic, 30, 10, 0.2, periods_per_year=1)
    monthly = ewma_covariance_path(synthetic, 30, 10, 0.2, periods_per_year=12)
    np.testing.assert_allclose(monthly[10:], 12.0 * daily[10:], rtol=1e-15)


def test_accepts_dataframe_and_returns_float64(synthetic: np.ndarray) -> None:
    frame = pd.DataFrame(synthetic[:50])
    path = rolling_covariance_path(frame, 20, 5, 0.0)
    assert path.shape == (50, 5, 5) and path.dtype == np.float64
    np.testing.assert_array_equal(path, rolling_covariance_path(synthetic[:50], 20, 5, 0.0))


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "fragment"),
    [
        (
            lambda r: ewma_covariance_path(r[:, 0], 10, 5, 0.0),
            DataError,
            "returns must be a 2-D (T, A) array, got shape (40,)",
        ),
        (
            lambda r: ewma_covariance_path(np.where(np.eye(40, 3) == 1, np.inf, r), 10, 5, 0.0),
            DataError,
            "got inf at bar 0, asset 0",
        ),
        (
            lambda r: ewma_covariance_path(r[:0], 10, 5, 0.0),
            DataError,
            "at least one bar and one asset",
        ),
        (
            lambda r: ewma_covariance_path(r, 0, 5, 0.0),
            ConfigError,
            "halflife must be a finite number > 0, got 0.0",
        ),
        (
            lambda r: ewma_covariance_path(r, 10, 1, 0.0),
            ConfigError,
            "min_history must be >= 2, got 1",
        ),
        (
            lambda r: ewma_covariance_path(r, 10, 5.5, 0.0),
            ConfigError,
            "min_history must be an integer >= 2, got 5.5",
        ),
        (
            lambda r: ewma_covariance_path(r, 10, 5, 1.5),
            ConfigError,
            "shrinkage must be in [0, 1], got 1.5",
        ),
        (
            lambda r: rolling_covariance_path(r, 10, 5, np.nan),
            ConfigError,
            "shrinkage must be in [0, 1], got nan",
        ),
        (
            lambda r: rolling_covariance_path(r, 10, 20, 0.0),
            ConfigError,
            "min_history (20) must not exceed lookback (10)",
        ),
        (
            lambda r: rolling_covariance_path(r, 1, 2, 0.0),
            ConfigError,
            "lookback must be >= 2, got 1",
        ),
        (
            lambda r: rolling_covariance_path(r, 10, 5, 0.0, periods_per_year=0),
            ConfigError,
            "periods_per_year must be a finite number > 0, got 0.0",
        ),
        (
            lambda r: rolling_covariance_path(r, 10, 5, 0.0, missing_variance=-1.0),
            ConfigError,
            "missing_variance must be a finite number > 0, got -1.0",
        ),
        (
            lambda r: covariance_at(r, 40, halflife=10, min_history=5, shrinkage=0.0),
            ConfigError,
            "t must be < the number of bars 40, got 40",
        ),
        (
            lambda r: covariance_at(r, 5, halflife=10, lookback=10, min_history=5, shrinkage=0),
            ConfigError,
            "give exactly one of halflife (EWMA) or lookback (rolling)",
        ),
        (
            lambda r: covariance_at(r, 5, min_history=5, shrinkage=0),
            ConfigError,
            "give exactly one of halflife (EWMA) or lookback (rolling)",
        ),
    ],
)
def test_bad_input(call, error: type[Exception], fragment: str) -> None:
    r = np.random.default_rng(0).normal(0, 0.01, size=(40, 3))
    with pytest.raises(error) as info:
        call(r)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)
