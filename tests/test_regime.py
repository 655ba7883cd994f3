"""Tests for portfolio.regime: the causal two-state Gaussian HMM and regime clarity."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portfolio.errors import DataError
from portfolio.regime import (
    GaussianHMM2,
    HMMParams,
    causal_regime_clarity,
    causal_regime_probabilities,
    forward_filter,
    load_clarity_series,
    log_likelihood,
    regime_clarity,
)

DATASETS = Path(__file__).resolve().parents[1] / "backtest" / "datasets"

# Known parameters of the synthetic two-state series (daily-return-like magnitudes).
TRUE_TRANS = np.array([[0.99, 0.01], [0.03, 0.97]])
TRUE_MEANS = np.array([0.0005, -0.001])
TRUE_SDS = np.array([0.008, 0.02])


def simulate(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded simulation of the two-state chain with Gaussian emissions (returns, states)."""
    rng = np.random.default_rng(seed)
    states = np.empty(n, dtype=np.int64)
    states[0] = 0
    u = rng.random(n)
    for t in range(1, n):
        prev = states[t - 1]
        states[t] = prev if u[t] < TRUE_TRANS[prev, prev] else 1 - prev
    x = TRUE_MEANS[states] + TRUE_SDS[states] * rng.standard_normal(n)
    return x, states


def normal_pdf(x: float, mean: float, var: float) -> float:
    return math.exp(-((x - mean) ** 2) / (2.0 * var)) / math.sqrt(2.0 * math.pi * var)


def reference_forward(x: np.ndarray, p: HMMParams) -> tuple[np.ndarray, float]:
    """Plain-Python normalised forward recursion (Rabiner 1989, eqs. 19-20 with scaling)."""
    out = []
    prev: list[float] = []
    loglik = 0.0
    for t, xt in enumerate(x):
        dens = [normal_pdf(float(xt), float(p.means[i]), float(p.variances[i])) for i in range(2)]
        if t == 0:
            pred = [float(p.start_prob[0]), float(p.start_prob[1])]
        else:
            pred = [sum(prev[i] * float(p.trans[i, j]) for i in range(2)) for j in range(2)]
        u = [pred[j] * dens[j] for j in range(2)]
        c = u[0] + u[1]
        prev = [u[0] / c, u[1] / c]
        loglik += math.log(c)
        out.append(prev)
    return np.array(out), loglik


def brute_force_loglik(x: np.ndarray, p: HMMParams) -> float:
    """log p(x) by summing the joint density over all 2^T state paths (definition)."""
    total = 0.0
    for path in itertools.product((0, 1), repeat=len(x)):
        prob = float(p.start_prob[path[0]])
        for t, s in enumerate(path):
            if t > 0:
                prob *= float(p.trans[path[t - 1], s])
            prob *= normal_pdf(float(x[t]), float(p.means[s]), float(p.variances[s]))
        total += prob
    return math.log(total)


def random_params(rng: np.random.Generator) -> HMMParams:
    p0 = rng.uniform(0.05, 0.95)
    a01 = rng.uniform(0.01, 0.5)
    a10 = rng.uniform(0.01, 0.5)
    return HMMParams(
        start_prob=np.array([p0, 1.0 - p0]),
        trans=np.array([[1.0 - a01, a01], [a10, 1.0 - a10]]),
        means=rng.normal(0.0, 0.005, 2),
        variances=np.sort(rng.uniform(1e-5, 1e-3, 2)),
    )


@pytest.fixture(scope="module")
def sp500() -> pd.Series:
    frame = pd.read_csv(DATASETS / "sp500_index.csv.gz", parse_dates=["Date"], index_col="Date")
    return frame["SP500"]


# --------------------------------------------------------------------------------------------
# Forward filter
# --------------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60))
def test_forward_filter_matches_reference(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    params = random_params(rng)
    x = rng.normal(0.0, 0.015, n)
    got = forward_filter(x, params)
    want, want_ll = reference_forward(x, params)
    assert got.shape == (n, 2)
    np.testing.assert_allclose(got, want, rtol=0.0, atol=1e-10)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=0.0, atol=1e-12)
    assert log_likelihood(x, params) == pytest.approx(want_ll, rel=1e-12, abs=1e-9)


def test_log_likelihood_equals_sum_over_all_paths() -> None:
    rng = np.random.default_rng(3)
    params = random_params(rng)
    x = rng.normal(0.0, 0.02, 9)
    assert log_likelihood(x, params) == pytest.approx(brute_force_loglik(x, params), rel=1e-12)


def test_forward_filter_survives_underflowing_density() -> None:
    # All prior mass on state 0 whose density at x[0] underflows to 0 relative to state 1:
    # by Bayes' rule the filtered probability is still [1, 0] and log p(x0) = log N(x0; m0, v0).
    params = HMMParams(
        start_prob=np.array([1.0, 0.0]),
        trans=np.array([[0.9, 0.1], [0.1, 0.9]]),
        means=np.array([0.0, 0.0]),
        variances=np.array([1e-6, 1.0]),
    )
    x0 = 0.5
    probs = forward_filter(np.array([x0]), params)
    np.testing.assert_array_equal(probs, [[1.0, 0.0]])
    expected = -0.5 * (math.log(2.0 * math.pi * 1e-6) + x0**2 / 1e-6)
    assert log_likelihood(np.array([x0]), params) == pytest.approx(expected, rel=1e-14)


def test_forward_filter_rejects_non_finite() -> None:
    params = random_params(np.random.default_rng(0))
    with pytest.raises(ValueError, match="position 2"):
        forward_filter(np.array([0.01, 0.0, np.inf, 0.02]), params)


# --------------------------------------------------------------------------------------------
# EM fit
# --------------------------------------------------------------------------------------------


def test_em_log_likelihood_is_monotone_per_iteration() -> None:
    x, _ = simulate(3000, seed=11)
    model = GaussianHMM2()
    model.fit(x, n_iter=40, tol=0.0)  # tol=0: run until no step improves (or 40 steps)
    hist = model.loglik_history_
    assert hist.size >= 10
    assert np.all(np.diff(hist) >= -1e-9 * abs(hist[-1]))
    assert hist[-1] > hist[0] + 1.0  # EM actually moved away from the initialization
    # Independent check: the likelihood of the parameters after k steps, recomputed.
    for k in (0, 1, 2, 5, hist.size - 1):
        params = GaussianHMM2().fit(x, n_iter=k, tol=0.0)
        assert log_likelihood(x, params) == pytest.approx(hist[k], rel=1e-12)


def test_em_recovers_synthetic_parameters() -> None:
    x, states = simulate(20000, seed=7)
    model = GaussianHMM2()
    params = model.fit(x)
    assert model.converged_
    # Tolerances ≈ 3-4 standard errors given ~15000 calm and ~5000 turbulent bars.
    np.testing.assert_allclose(params.variances, TRUE_SDS**2, rtol=0.1)
    assert params.means[0] == pytest.approx(TRUE_MEANS[0], abs=3e-4)
    assert params.means[1] == pytest.approx(TRUE_MEANS[1], abs=1e-3)
    assert params.trans[0, 0] == pytest.approx(TRUE_TRANS[0, 0], abs=0.005)
    assert params.trans[1, 1] == pytest.approx(TRUE_TRANS[1, 1], abs=0.01)
    # The filter recovers the hidden path well (a sanity check of the labels).
    accuracy = np.mean(np.argmax(forward_filter(x, params), axis=1) == states)
    assert accuracy > 0.9


def test_fit_orders_states_by_variance_whatever_the_init() -> None:
    x, _ = simulate(4000, seed=5)
    swapped = HMMParams(
        start_prob=np.array([0.5, 0.5]),
        trans=np.array([[0.97, 0.03], [0.01, 0.99]]),
        means=np.array([-0.001, 0.0005]),
        variances=np.array([4e-4, 6e-5]),  # state 0 starts as the turbulent one
    )
    # tol=0 runs both fits to the fixed point, so they can be compared tightly.
    params = GaussianHMM2().fit(x, n_iter=1000, tol=0.0, init=swapped)
    assert params.variances[0] < params.variances[1]
    default = GaussianHMM2().fit(x, n_iter=1000, tol=0.0)
    np.testing.assert_allclose(params.variances, default.variances, rtol=1e-6)
    np.testing.assert_allclose(params.trans, default.trans, atol=1e-6)


def test_fit_is_deterministic_and_guards_degenerate_variance() -> None:
    x, _ = simulate(1000, seed=1)
    a = GaussianHMM2().fit(x)
    b = GaussianHMM2().fit(x)
    for name in ("start_prob", "trans", "means", "variances"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    constant = GaussianHMM2().fit(np.zeros(50))
    np.testing.assert_array_equal(constant.variances, [1e-12, 1e-12])
    probs = forward_filter(np.zeros(50), constant)
    assert np.all(np.isfinite(probs))


def test_hmm_params_validation_and_immutability() -> None:
    good = random_params(np.random.default_rng(0))
    with pytest.raises(ValueError, match="trans"):
        HMMParams(good.start_prob, np.array([[0.5, 0.6], [0.5, 0.5]]), good.means, good.variances)
    with pytest.raises(ValueError, match="variances"):
        HMMParams(good.start_prob, good.trans, good.means, np.array([1e-4, 0.0]))
    with pytest.raises(ValueError, match="start_prob"):
        HMMParams(np.array([1.0]), good.trans, good.means, good.variances)
    with pytest.raises(ValueError, match="read-only"):
        good.means[0] = 1.0
    with pytest.raises(AttributeError):
        good.means = np.zeros(2)  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# Causal probabilities
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("refit", ["expanding", "rolling"])
def test_no_look_ahead(refit: str) -> None:
    x, _ = simulate(700, seed=21)
    kwargs = {"refit": refit, "refit_every": 40, "window": 200, "min_history": 120}
    base = causal_regime_probabilities(x, **kwargs)  # type: ignore[arg-type]
    rng = np.random.default_rng(99)
    for cut in (119, 120, 121, 159, 160, 333, 650):
        y = x.copy()
        y[cut + 1 :] = 3.0 * rng.standard_normal(y.size - cut - 1) * 0.01
        other = causal_regime_probabilities(y, **kwargs)  # type: ignore[arg-type]
        np.testing.assert_array_equal(other[: cut + 1], base[: cut + 1])
        np.testing.assert_array_equal(
            regime_clarity(other)[: cut + 1], regime_clarity(base)[: cut + 1]
        )
        # The perturbation is real: later bars do change (so the check above can fail).
        assert not np.array_equal(other[cut + 1 :], base[cut + 1 :])


def test_no_look_ahead_for_clarity_from_prices() -> None:
    x, _ = simulate(500, seed=8)
    idx = pd.bdate_range("2000-01-03", periods=501)
    prices = pd.Series(100.0 * np.exp(np.concatenate([[0.0], np.cumsum(x)])), index=idx)
    kwargs = {"refit_every": 30, "min_history": 100, "refit": "rolling", "window": 150}
    base = causal_regime_clarity(prices, **kwargs)  # type: ignore[arg-type]
    for cut in (100, 101, 250):
        changed = prices.copy()
        changed.iloc[cut + 1 :] *= np.linspace(0.5, 1.5, prices.size - cut - 1)
        other = causal_regime_clarity(changed, **kwargs)  # type: ignore[arg-type]
        pd.testing.assert_series_equal(other.iloc[: cut + 1], base.iloc[: cut + 1])


def test_causal_probabilities_layout_and_clarity_range() -> None:
    x, _ = simulate(600, seed=4)
    probs = causal_regime_probabilities(x, refit_every=50, min_history=150)
    assert probs.shape == (600, 2)
    assert np.all(np.isnan(probs[:150]))
    defined = probs[150:]
    assert np.all(np.isfinite(defined))
    np.testing.assert_allclose(defined.sum(axis=1), 1.0, rtol=0.0, atol=1e-12)
    clarity = regime_clarity(probs)
    assert np.all(np.isnan(clarity[:150]))
    assert np.all((clarity[150:] >= 0.5) & (clarity[150:] <= 1.0))
    np.testing.assert_array_equal(clarity[150:], defined.max(axis=1))


def test_causal_probabilities_follow_the_documented_construction() -> None:
    # Rebuild two served segments by hand from fit + forward_filter, following the docstring.
    x, _ = simulate(400, seed=9)
    k0, k1, every, window = 100, 160, 60, 120
    probs = causal_regime_probabilities(
        x, refit="rolling", refit_every=every, window=window, min_history=k0
    )
    model = GaussianHMM2()
    p0 = model.fit(x[: k0 + 1])
    np.testing.assert_array_equal(probs[k0:k1], forward_filter(x[:k1], p0)[k0:])
    warm = HMMParams(p0.stationary_distribution(), p0.trans, p0.means, p0.variances)
    s1 = k1 + 1 - window
    p1 = model.fit(x[s1 : k1 + 1], init=warm)
    np.testing.assert_array_equal(probs[k1 : k1 + every], forward_filter(x[s1:220], p1)[k1 - s1 :])


def test_leading_nan_is_dropped_and_other_nan_rejected() -> None:
    x, _ = simulate(300, seed=2)
    with_nan = np.concatenate([[np.nan], x])
    a = causal_regime_probabilities(with_nan, refit_every=50, min_history=100)
    b = causal_regime_probabilities(x, refit_every=50, min_history=100)
    assert a.shape == (301, 2)
    assert np.all(np.isnan(a[0]))
    np.testing.assert_array_equal(a[1:], b)
    bad = with_nan.copy()
    bad[57] = np.nan
    with pytest.raises(ValueError, match="position 57"):
        causal_regime_probabilities(bad)
    series = pd.Series(bad, index=pd.bdate_range("2001-01-01", periods=bad.size))
    with pytest.raises(ValueError, match="2001-03-21"):
        causal_regime_probabilities(series)


def test_too_short_series_gives_nan_or_fill() -> None:
    x = np.full(10, 0.001)
    probs = causal_regime_probabilities(x, min_history=10)
    assert probs.shape == (10, 2)
    assert np.all(np.isnan(probs))
    assert causal_regime_probabilities(np.empty(0)).shape == (0, 2)
    prices = pd.Series([100.0, 101.0, 100.5], index=pd.bdate_range("2020-01-01", periods=3))
    clarity = causal_regime_clarity(prices, fill_value=0.8)
    pd.testing.assert_series_equal(
        clarity, pd.Series([0.8, 0.8, 0.8], index=prices.index, name="regime_clarity")
    )


def test_invalid_settings_raise() -> None:
    x = np.zeros(10)
    with pytest.raises(ValueError, match="refit"):
        causal_regime_probabilities(x, refit="smoothed")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="refit_every"):
        causal_regime_probabilities(x, refit_every=0)
    with pytest.raises(ValueError, match="fill_value"):
        causal_regime_clarity(pd.Series(x + 1.0), fill_value=1.5)
    with pytest.raises(ValueError, match="prices must be finite and > 0"):
        causal_regime_clarity(pd.Series([1.0, -1.0, 2.0]))


def test_clarity_from_prices_equals_clarity_from_log_returns() -> None:
    x, _ = simulate(400, seed=6)
    idx = pd.bdate_range("2010-01-01", periods=401)
    prices = pd.Series(50.0 * np.exp(np.concatenate([[0.0], np.cumsum(x)])), index=idx)
    log_returns = pd.Series(np.log(prices.to_numpy()), index=idx).diff()
    kwargs = {"refit_every": 50, "min_history": 120}
    from_prices = causal_regime_clarity(prices, **kwargs)  # type: ignore[arg-type]
    from_returns = causal_regime_clarity(
        log_returns,
        input_kind="returns",
        **kwargs,  # type: ignore[arg-type]
    )
    pd.testing.assert_series_equal(from_prices, from_returns, rtol=1e-9)
    assert from_prices.index.equals(idx)
    # Position 0 (no return) and returns 0..119 (positions 1..120) are filled with 1.0.
    assert np.all(from_prices.iloc[:121] == 1.0)
    assert np.all((from_prices.iloc[121:] >= 0.5) & (from_prices.iloc[121:] <= 1.0))


def test_regime_clarity_nan_rows_and_shape() -> None:
    p = np.array([[0.2, 0.8], [np.nan, np.nan], [0.5, 0.5], [0.9, 0.1]])
    np.testing.assert_array_equal(regime_clarity(p), [0.8, np.nan, 0.5, 0.9])
    with pytest.raises(ValueError, match="shape"):
        regime_clarity(np.array([0.5, 0.5]))


# --------------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------------


def test_sp500_turbulent_in_october_2008_and_calm_in_2017(sp500: pd.Series) -> None:
    log_returns = np.log(sp500).diff()
    probs = causal_regime_probabilities(log_returns, refit="expanding", refit_every=126)
    frame = pd.DataFrame(probs, index=sp500.index, columns=["calm", "turbulent"])
    assert frame["turbulent"].loc["2008-10"].mean() > 0.9
    assert frame["turbulent"].loc["2008-10"].min() > 0.5
    assert frame["turbulent"].loc["2017-05":"2017-08"].mean() < 0.1
    defined = frame.dropna()
    assert defined.index[0] == sp500.index[253]  # leading NaN + min_history=252 returns
    np.testing.assert_allclose(defined.sum(axis=1), 1.0, atol=1e-12)

    clarity = causal_regime_clarity(sp500, refit="rolling", refit_every=126)
    assert clarity.index.equals(sp500.index)
    assert np.all((clarity >= 0.5) & (clarity <= 1.0))
    assert np.all(clarity.iloc[:253] == 1.0)


# --------------------------------------------------------------------------------------------
# User-supplied clarity
# --------------------------------------------------------------------------------------------


def test_load_clarity_series_forward_fills_only(tmp_path: Path) -> None:
    path = tmp_path / "clarity.csv"
    path.write_text(
        "Date,clarity\n2020-01-08,0.6\n2020-01-03,0.8\n2020-01-04,0.7\n2020-01-10,0.9\n"
    )
    index = pd.bdate_range("2020-01-01", "2020-01-14")
    got = load_clarity_series(path, index)
    # 01-01/02 precede the first value: 1.0, not a back-filled 0.8. The Saturday 01-04 value
    # takes effect on Monday 01-06.
    expected = [1.0, 1.0, 0.8, 0.7, 0.7, 0.6, 0.6, 0.9, 0.9, 0.9]
    pd.testing.assert_series_equal(got, pd.Series(expected, index=index, name="regime_clarity"))


def test_load_clarity_series_rejects_out_of_range(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("Date,conf\n2020-01-02,0.5\n2020-01-03,1.2\n")
    index = pd.bdate_range("2020-01-01", periods=5)
    with pytest.raises(DataError) as info:
        load_clarity_series(path, index)
    msg = str(info.value)
    assert "bad.csv" in msg and "'conf'" in msg and "2020-01-03" in msg and "1.2" in msg


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("Date,conf\n2020-01-02,0.5\n2020-01-03,\n", "2020-01-03"),
        ("Date,conf\n2020-01-02,abc\n", "2020-01-02"),
        ("Date,conf\n2020-01-02,-0.1\n", "2020-01-02"),
        ("When,conf\n2020-01-02,0.5\n", "Date"),
        ("Date,a,b\n2020-01-02,0.5,0.5\n", "exactly one value column"),
        ("Date,conf\nnot-a-date,0.5\n", "unparseable"),
        ("Date,conf\n2020-01-02,0.5\n2020-01-02,0.6\n", "duplicate"),
    ],
)
def test_load_clarity_series_errors(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "c.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=needle) as info:
        load_clarity_series(path, pd.bdate_range("2020-01-01", periods=5))
    assert "c.csv" in str(info.value)
