"""Tests of portfolio.black_litterman: formulas, the He-Litterman (1999) example, bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portfolio.black_litterman import (
    VIEW_CONFIDENCE_EPS,
    AgentView,
    BlackLitterman,
    BlackLittermanConfig,
    bl_posterior_arrays,
    validate_covariance,
)
from portfolio.errors import OptimizationError

EPS = VIEW_CONFIDENCE_EPS

# ---------------------------------------------------------------------------------------------
# He, G. and Litterman, R. (1999), "The Intuition Behind Black-Litterman Model Portfolios",
# Goldman Sachs Investment Management Research. Inputs: Table 1 (correlations of the seven
# country equity indices) and Table 2 (volatilities, equilibrium weights, equilibrium expected
# returns), all in percent, delta = 2.5, tau = 0.05. The printed values were cross-checked with
# the independent transcriptions in lakshmiDRIP/DROP (sample/helitterman/Table4Reconciler.java,
# Table5Reconciler.java); no code was taken from it.
# ---------------------------------------------------------------------------------------------
HL_NAMES = ["AUS", "CAN", "FRA", "GER", "JPN", "UK", "USA"]
HL_CORRELATION = np.array(
    [
        [1.000, 0.488, 0.478, 0.515, 0.439, 0.512, 0.491],
        [0.488, 1.000, 0.664, 0.655, 0.310, 0.608, 0.779],
        [0.478, 0.664, 1.000, 0.861, 0.355, 0.783, 0.668],
        [0.515, 0.655, 0.861, 1.000, 0.354, 0.777, 0.653],
        [0.439, 0.310, 0.355, 0.354, 1.000, 0.405, 0.306],
        [0.512, 0.608, 0.783, 0.777, 0.405, 1.000, 0.652],
        [0.491, 0.779, 0.668, 0.653, 0.306, 0.652, 1.000],
    ]
)
HL_VOLATILITY_PCT = np.array([16.0, 20.3, 24.8, 27.1, 21.0, 20.0, 18.7])  # Table 2
HL_WEIGHTS_PCT = np.array([1.6, 2.2, 5.2, 5.5, 11.6, 12.4, 61.5])  # Table 2
HL_EQUILIBRIUM_PCT = np.array([3.9, 6.9, 8.4, 9.0, 4.3, 6.8, 7.6])  # Table 2, Pi
# Table 4: view 1, "Germany outperforms the rest of Europe (France, UK) by 5%", with the
# France/UK weights proportional to market capitalization (printed as -29.5% / -70.5%) and
# omega / tau = p Sigma p' (printed 0.021).
HL_TABLE4_MU_PCT = np.array([4.3, 7.6, 9.3, 11.0, 4.5, 7.0, 8.1])
HL_TABLE4_WSTAR_PCT = np.array([1.5, 2.1, -4.0, 35.4, 11.0, -9.5, 58.6])
# Table 5: view 1 plus view 2, "Canada outperforms the US by 3%", omega / tau = p Sigma p'.
HL_TABLE5_MU_PCT = np.array([4.4, 8.7, 9.5, 11.2, 4.6, 7.0, 7.5])
HL_TABLE5_WSTAR_PCT = np.array([1.5, 41.9, -3.4, 33.6, 11.0, -8.2, 18.8])
# The paper prints one decimal of a percent: a correct reproduction is within half a unit.
HL_ROUNDING_PCT = 0.05 + 1e-9


def hl_inputs() -> tuple[np.ndarray, np.ndarray]:
    vol = HL_VOLATILITY_PCT / 100.0
    return np.outer(vol, vol) * HL_CORRELATION, HL_WEIGHTS_PCT / 100.0


def europe_view(exact_cap_ratio: bool, confidence: float | None = 1.0) -> AgentView:
    if exact_cap_ratio:
        fra, uk = HL_WEIGHTS_PCT[2], HL_WEIGHTS_PCT[5]
        weights = {"GER": 1.0, "FRA": -fra / (fra + uk), "UK": -uk / (fra + uk)}
    else:
        weights = {"GER": 1.0, "FRA": -0.295, "UK": -0.705}
    return AgentView(weights, 0.05, confidence, "view1")


def canada_view() -> AgentView:
    return AgentView({"CAN": 1.0, "USA": -1.0}, 0.03, 1.0, "view2")


def optimal_weights(mu: np.ndarray, sigma_bl: np.ndarray, delta: float) -> np.ndarray:
    """Unconstrained mean-variance optimum w* = (delta Sigma_BL)^-1 mu (He-Litterman eq. 5)."""
    return np.linalg.solve(delta * sigma_bl, mu)


def random_problem(seed: int, n_assets: int, n_views: int):
    """Well-conditioned random SPD covariance, pick matrix, views and view variances."""
    rng = np.random.default_rng(seed)
    b = rng.normal(size=(n_assets, n_assets + 2))
    sigma = 0.04 * (b @ b.T / (n_assets + 2) + 0.2 * np.eye(n_assets))
    pi = rng.normal(0.05, 0.03, size=n_assets)
    p = rng.normal(size=(n_views, n_assets))
    q = rng.normal(0.03, 0.05, size=n_views)
    omega = np.diag(rng.uniform(0.2, 2.0, size=n_views) * 0.05 * np.diag(p @ sigma @ p.T))
    return sigma, pi, p, q, omega


def textbook_posterior(pi, sigma, p, q, omega, tau):
    """He-Litterman precision form with explicit inverses (the reference, not the code path)."""
    inv_ts = np.linalg.inv(tau * sigma)
    inv_omega = np.linalg.inv(omega)
    m = np.linalg.inv(inv_ts + p.T @ inv_omega @ p)
    mu = m @ (inv_ts @ pi + p.T @ inv_omega @ q)
    return mu, sigma + m


# ---------------------------------------------------------------------------------------------
# Config and views
# ---------------------------------------------------------------------------------------------


def test_config_defaults() -> None:
    cfg = BlackLittermanConfig()
    assert (cfg.risk_aversion, cfg.tau, cfg.default_view_confidence) == (2.5, 0.05, 0.5)
    assert BlackLitterman().config == cfg


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"risk_aversion": 0.0}, "risk_aversion must be a finite number > 0, got 0.0"),
        ({"risk_aversion": -1}, "risk_aversion must be a finite number > 0, got -1.0"),
        ({"risk_aversion": math.inf}, "risk_aversion must be a finite number > 0, got inf"),
        ({"tau": 0.0}, "tau must be a finite number > 0, got 0.0"),
        ({"tau": math.nan}, "tau must be a finite number > 0, got nan"),
        ({"tau": "0.05"}, "tau must be a positive number, got '0.05'"),
        ({"default_view_confidence": 1.5}, "default_view_confidence must be in [0, 1], got 1.5"),
        ({"default_view_confidence": -0.1}, "default_view_confidence must be in [0, 1], got -0.1"),
        ({"default_view_confidence": math.nan}, "default_view_confidence must be in [0, 1]"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict, fragment: str) -> None:
    with pytest.raises(OptimizationError) as info:
        BlackLittermanConfig(**kwargs)
    assert fragment in str(info.value)
    assert "BlackLittermanConfig." in str(info.value)
    assert isinstance(info.value, ValueError)


def test_config_is_frozen() -> None:
    cfg = BlackLittermanConfig()
    with pytest.raises(AttributeError):
        cfg.tau = 0.1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("A", 0.05, 1.2, "s1"), "AgentView(source='s1').confidence must be in [0, 1], got 1.2"),
        (("A", 0.05, -0.01, "s1"), "confidence must be in [0, 1], got -0.01"),
        (("A", 0.05, math.nan, "s1"), "confidence must be in [0, 1], got nan"),
        (("A", math.nan, 0.5, "s1"), "expected_return must be finite, got nan"),
        (("", 0.05, 0.5, "s1"), "instrument must be a non-empty name"),
        (({}, 0.05, 0.5, "s1"), "instrument mapping is empty"),
        (({"A": 0.0, "B": 0.0}, 0.05, 0.5, "s1"), "weights are all zero"),
        (({"A": math.inf}, 0.05, 0.5, "s1"), "instrument['A'] must be finite, got inf"),
        ((3, 0.05, 0.5, "s1"), "instrument must be a name or a mapping"),
    ],
)
def test_agent_view_rejects_bad_values(args: tuple, fragment: str) -> None:
    with pytest.raises(OptimizationError) as info:
        AgentView(*args)
    assert fragment in str(info.value)


def test_agent_view_weights_and_immutability() -> None:
    absolute = AgentView("A", 0.05)
    relative = AgentView({"A": 1.0, "B": -1.0}, 0.02, 0.7, "pairs")
    assert absolute.weights == {"A": 1.0} and not absolute.is_relative
    assert relative.weights == {"A": 1.0, "B": -1.0} and relative.is_relative
    source = {"A": 1.0}
    view = AgentView(source, 0.01)
    source["A"] = 5.0  # the caller's dict changing later must not change the view
    assert view.weights == {"A": 1.0}
    with pytest.raises(TypeError):
        view.instrument["A"] = 2.0  # type: ignore[index]
    assert hash(relative) == hash(AgentView({"A": 1.0, "B": -1.0}, 0.02, 0.7, "pairs"))


# ---------------------------------------------------------------------------------------------
# Equilibrium and views
# ---------------------------------------------------------------------------------------------


def test_equilibrium_proportional_to_weights_for_equal_diagonal_covariance() -> None:
    w = np.array([0.5, 0.3, 0.2])
    pi = BlackLitterman().compute_equilibrium_returns(0.04 * np.eye(3), w)
    # pi = delta * s^2 * w, hand-computed: 2.5 * 0.04 = 0.1
    np.testing.assert_allclose(pi, 0.1 * w, rtol=1e-15)
    np.testing.assert_allclose(pi / pi.sum(), w / w.sum(), rtol=1e-15)


def test_equilibrium_scales_with_risk_aversion() -> None:
    sigma, w = hl_inputs()
    pi1 = BlackLitterman(BlackLittermanConfig(risk_aversion=1.0)).compute_equilibrium_returns(
        sigma, w
    )
    np.testing.assert_allclose(pi1, sigma @ w, rtol=1e-15)
    pi3 = BlackLitterman(BlackLittermanConfig(risk_aversion=3.0)).compute_equilibrium_returns(
        sigma, w
    )
    np.testing.assert_allclose(pi3, 3.0 * pi1, rtol=1e-14)


def test_build_views_omega_formula() -> None:
    sigma, _ = hl_inputs()
    bl = BlackLitterman(BlackLittermanConfig(tau=0.05, default_view_confidence=0.4))
    views = [europe_view(False, 0.8), canada_view(), AgentView("JPN", 0.02, None, "jp")]
    p, q, omega = bl.build_views(views, HL_NAMES, 0.7, covariance=sigma)
    expected_p = np.zeros((3, 7))
    expected_p[0, [3, 2, 5]] = [1.0, -0.295, -0.705]
    expected_p[1, [1, 6]] = [1.0, -1.0]
    expected_p[2, 4] = 1.0
    np.testing.assert_array_equal(p, expected_p)
    np.testing.assert_array_equal(q, [0.05, 0.03, 0.02])
    confidences = np.array([0.8, 1.0, 0.4])  # None -> default_view_confidence
    view_var = np.array([row @ sigma @ row for row in expected_p])
    np.testing.assert_allclose(
        np.diag(omega), 0.05 * view_var / (confidences * 0.7 + EPS), rtol=1e-14
    )
    np.testing.assert_array_equal(omega, np.diag(np.diag(omega)))


def test_low_regime_clarity_widens_omega() -> None:
    sigma, _ = hl_inputs()
    bl = BlackLitterman()
    views = [europe_view(True, 0.8), canada_view()]
    _, _, omega_unclear = bl.build_views(views, HL_NAMES, 0.2, covariance=sigma)
    _, _, omega_clear = bl.build_views(views, HL_NAMES, 0.9, covariance=sigma)
    assert np.all(np.diag(omega_unclear) > np.diag(omega_clear))
    conf = np.array([0.8, 1.0])
    np.testing.assert_allclose(
        np.diag(omega_unclear) / np.diag(omega_clear),
        (0.9 * conf + EPS) / (0.2 * conf + EPS),
        rtol=1e-13,
    )


def test_default_confidence_used_for_none() -> None:
    sigma, _ = hl_inputs()
    bl = BlackLitterman(BlackLittermanConfig(default_view_confidence=0.3))
    _, _, omega_none = bl.build_views([AgentView("UK", 0.04)], HL_NAMES, covariance=sigma)
    _, _, omega_03 = bl.build_views([AgentView("UK", 0.04, 0.3)], HL_NAMES, covariance=sigma)
    np.testing.assert_array_equal(omega_none, omega_03)


# ---------------------------------------------------------------------------------------------
# Posterior: hand-checkable cases
# ---------------------------------------------------------------------------------------------


def test_single_absolute_view_diagonal_covariance_hand_formula() -> None:
    # Diagonal Sigma, one view on asset j: mu_j = pi_j + tau s2 / (tau s2 + omega) (Q - pi_j)
    # with omega = tau s2 / (c r + eps), i.e. a shrink factor (c r + eps) / (1 + c r + eps);
    # every other asset is untouched.
    names = ["A", "B", "C"]
    variances = np.array([0.04, 0.09, 0.0225])
    sigma = np.diag(variances)
    w = np.array([0.2, 0.5, 0.3])
    bl = BlackLitterman()
    for confidence, clarity in [(1.0, 1.0), (0.6, 0.5), (0.05, 1.0)]:
        res = bl.optimize([AgentView("B", 0.15, confidence, "s")], sigma, w, names, clarity)
        pi = 2.5 * variances * w
        cr = confidence * clarity
        factor = (cr + EPS) / (1.0 + cr + EPS)
        mu = res["posterior_returns"]
        assert mu["A"] == res["equilibrium_returns"]["A"]
        assert mu["C"] == res["equilibrium_returns"]["C"]
        assert math.isclose(mu["B"], pi[1] + factor * (0.15 - pi[1]), rel_tol=1e-13)
        # Sigma_BL = Sigma + M; for B: M = tau s2 - (tau s2)^2 / (tau s2 + omega)
        ts2 = 0.05 * 0.09
        omega = ts2 / (cr + EPS)
        m_b = ts2 - ts2**2 / (ts2 + omega)
        expected_cov = (1.0 + 0.05) * sigma
        expected_cov[1, 1] = 0.09 + m_b
        np.testing.assert_allclose(res["posterior_covariance"], expected_cov, rtol=1e-14)


def test_posterior_moves_toward_view_with_confidence() -> None:
    sigma, w = hl_inputs()
    bl = BlackLitterman()
    view_p = np.zeros(7)
    view_p[[3, 2, 5]] = [1.0, -0.295, -0.705]
    pi = bl.compute_equilibrium_returns(sigma, w)
    gaps = []
    for confidence in [0.0, 0.01, 0.2, 0.5, 0.9, 1.0]:
        res = bl.optimize([europe_view(False, confidence)], sigma, w, HL_NAMES)
        mu = np.array([res["posterior_returns"][n] for n in HL_NAMES])
        gaps.append(abs(view_p @ mu - 0.05))
        if confidence == 0.0:
            # Omega = tau p Sigma p' / 1e-8: the view is ignored in practice.
            np.testing.assert_allclose(mu, pi, rtol=0, atol=1e-9)
    assert gaps[0] == pytest.approx(abs(view_p @ pi - 0.05), rel=1e-6)
    assert all(a > b for a, b in itertools.pairwise(gaps))
    # Confidence 1: the view portfolio moves half-way (tau p S p' / (tau p S p' + omega) = 1/2).
    assert gaps[-1] == pytest.approx(0.5 * gaps[0], rel=1e-7)


def test_low_clarity_keeps_posterior_near_equilibrium() -> None:
    sigma, w = hl_inputs()
    bl = BlackLitterman()
    views = [europe_view(True, 1.0), canada_view()]
    shift_clear = bl.optimize(views, sigma, w, HL_NAMES, 0.9)["view_contributions"].sum(axis=0)
    shift_unclear = bl.optimize(views, sigma, w, HL_NAMES, 0.2)["view_contributions"].sum(axis=0)
    assert np.linalg.norm(shift_unclear) < 0.5 * np.linalg.norm(shift_clear)


def test_relative_view_symmetric_assets() -> None:
    # Two identical uncorrelated assets and a long A / short B view: A and B move by equal and
    # opposite amounts, C not at all. Spread: tau p S p' / (tau p S p' + omega) = 1/2 for c=1.
    names = ["A", "B", "C"]
    sigma = 0.04 * np.eye(3)
    w = np.array([0.4, 0.4, 0.2])
    res = BlackLitterman().optimize(
        [AgentView({"A": 1.0, "B": -1.0}, 0.02, 1.0, "ls")], sigma, w, names
    )
    pi = res["equilibrium_returns"]
    mu = res["posterior_returns"]
    assert pi["A"] == pi["B"]
    shift_a, shift_b = mu["A"] - pi["A"], mu["B"] - pi["B"]
    assert shift_a == pytest.approx(-shift_b, rel=1e-14)
    assert mu["C"] == pi["C"]
    factor = (1.0 + EPS) / (2.0 + EPS)
    assert mu["A"] - mu["B"] == pytest.approx(factor * 0.02, rel=1e-12)


def test_no_views_returns_equilibrium_and_inflated_covariance() -> None:
    sigma, w = hl_inputs()
    bl = BlackLitterman()
    pi = bl.compute_equilibrium_returns(sigma, w)
    mu, sigma_bl = bl.posterior_returns(pi, sigma, np.zeros((0, 7)), np.zeros(0), np.zeros((0, 0)))
    np.testing.assert_array_equal(mu, pi)
    np.testing.assert_array_equal(sigma_bl, (1.0 + 0.05) * sigma)
    res = bl.optimize([], sigma, w, HL_NAMES, 0.3)
    assert res["posterior_returns"] == res["equilibrium_returns"]
    np.testing.assert_array_equal(res["posterior_covariance"], 1.05 * sigma)
    assert res["view_contributions"].shape == (0, 7)
    assert res["view_sources"] == []
    assert res["regime_clarity"] == 0.3
    p, q, omega = bl.build_views([], HL_NAMES, covariance=sigma)
    assert p.shape == (0, 7) and q.shape == (0,) and omega.shape == (0, 0)


# ---------------------------------------------------------------------------------------------
# He and Litterman (1999)
# ---------------------------------------------------------------------------------------------


def test_he_litterman_equilibrium_returns_table2() -> None:
    sigma, w = hl_inputs()
    pi = BlackLitterman(BlackLittermanConfig(2.5, 0.05)).compute_equilibrium_returns(sigma, w)
    assert np.all(np.abs(100.0 * pi - HL_EQUILIBRIUM_PCT) <= HL_ROUNDING_PCT)


@pytest.mark.parametrize("exact_cap_ratio", [False, True])
def test_he_litterman_table4_posterior_returns(exact_cap_ratio: bool) -> None:
    sigma, w = hl_inputs()
    bl = BlackLitterman(BlackLittermanConfig(risk_aversion=2.5, tau=0.05))
    view = europe_view(exact_cap_ratio, confidence=1.0)
    # The paper sets omega / tau = p Sigma p' (printed 0.021): confidence 1 at clarity 1.
    _, _, omega = bl.build_views([view], HL_NAMES, 1.0, covariance=sigma)
    assert round(omega[0, 0] / 0.05, 3) == 0.021
    res = bl.optimize([view], sigma, w, HL_NAMES, regime_clarity=1.0)
    mu = np.array([res["posterior_returns"][n] for n in HL_NAMES])
    assert np.all(np.abs(100.0 * mu - HL_TABLE4_MU_PCT) <= HL_ROUNDING_PCT)


def test_he_litterman_table4_optimal_weights() -> None:
    # w* = (delta Sigma_BL)^-1 mu_BL (the paper's unconstrained optimum) checks Sigma_BL too.
    # The printed weights need the exact cap ratio 5.2/17.6 (the printed -0.295 gives -3.95
    # for France, just outside the rounding of -4.0).
    sigma, w = hl_inputs()
    res = BlackLitterman().optimize([europe_view(True, 1.0)], sigma, w, HL_NAMES)
    mu = np.array([res["posterior_returns"][n] for n in HL_NAMES])
    w_star = optimal_weights(mu, res["posterior_covariance"], 2.5)
    assert np.all(np.abs(100.0 * w_star - HL_TABLE4_WSTAR_PCT) <= HL_ROUNDING_PCT)
    # He-Litterman: w* - w_eq / (1 + tau) is proportional to the view portfolio p.
    deviation = w_star - w / 1.05
    np.testing.assert_allclose(deviation[[0, 1, 4, 6]], 0.0, atol=1e-12)


def test_he_litterman_table5_two_views() -> None:
    sigma, w = hl_inputs()
    bl = BlackLitterman()
    res = bl.optimize([europe_view(True, 1.0), canada_view()], sigma, w, HL_NAMES)
    mu = np.array([res["posterior_returns"][n] for n in HL_NAMES])
    assert np.all(np.abs(100.0 * mu - HL_TABLE5_MU_PCT) <= HL_ROUNDING_PCT)
    w_star = optimal_weights(mu, res["posterior_covariance"], 2.5)
    assert np.all(np.abs(100.0 * w_star - HL_TABLE5_WSTAR_PCT) <= HL_ROUNDING_PCT)
    assert res["view_sources"] == ["view1", "view2"]


# ---------------------------------------------------------------------------------------------
# Posterior: algebraic properties over random inputs
# ---------------------------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_assets=st.integers(1, 8),
    n_views=st.integers(1, 5),
    tau=st.sampled_from([0.01, 0.05, 0.5]),
)
def test_both_posterior_forms_agree(seed: int, n_assets: int, n_views: int, tau: float) -> None:
    sigma, pi, p, q, omega = random_problem(seed, n_assets, n_views)
    bl = BlackLitterman(BlackLittermanConfig(tau=tau))
    mu, sigma_bl = bl.posterior_returns(pi, sigma, p, q, omega)
    mu_ref, sigma_ref = textbook_posterior(pi, sigma, p, q, omega, tau)
    np.testing.assert_allclose(mu, mu_ref, rtol=1e-8, atol=1e-11)
    np.testing.assert_allclose(sigma_bl, sigma_ref, rtol=1e-8, atol=1e-12)
    np.testing.assert_array_equal(sigma_bl, sigma_bl.T)


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_assets=st.integers(1, 8), n_views=st.integers(0, 5))
def test_contributions_add_up_and_match_gain(seed: int, n_assets: int, n_views: int) -> None:
    sigma, pi, p, q, omega = random_problem(seed, n_assets, n_views)
    tau = 0.05
    mu, sigma_bl, contrib = bl_posterior_arrays(pi, sigma, p, q, np.diag(omega), tau)
    assert contrib.shape == (n_views, n_assets)
    np.testing.assert_allclose(contrib.sum(axis=0), mu - pi, rtol=0, atol=1e-14)
    if n_views:
        gain = tau * sigma @ p.T @ np.linalg.inv(p @ (tau * sigma) @ p.T + omega)
        expected = (gain * (q - p @ pi)).T  # [k, j] = K[j, k] * surprise_k
        np.testing.assert_allclose(contrib, expected, rtol=1e-8, atol=1e-13)
    mu2, sigma_bl2 = BlackLitterman().posterior_returns(pi, sigma, p, q, omega)
    np.testing.assert_array_equal(mu, mu2)
    np.testing.assert_array_equal(sigma_bl, sigma_bl2)


def test_optimize_matches_array_path_and_contributions() -> None:
    sigma, w = hl_inputs()
    bl = BlackLitterman(BlackLittermanConfig(default_view_confidence=0.6))
    views = [europe_view(True, 0.7), canada_view(), AgentView("JPN", -0.01, None, "jp")]
    res = bl.optimize(views, sigma, w, HL_NAMES, 0.8)
    p, q, omega = bl.build_views(views, HL_NAMES, 0.8, covariance=sigma)
    pi = bl.compute_equilibrium_returns(sigma, w)
    mu, sigma_bl, contrib = bl_posterior_arrays(pi, sigma, p, q, np.diag(omega), 0.05)
    assert list(res["posterior_returns"]) == HL_NAMES
    np.testing.assert_array_equal([res["posterior_returns"][n] for n in HL_NAMES], mu)
    np.testing.assert_array_equal([res["equilibrium_returns"][n] for n in HL_NAMES], pi)
    np.testing.assert_array_equal(res["posterior_covariance"], sigma_bl)
    np.testing.assert_array_equal(res["view_contributions"], contrib)
    np.testing.assert_allclose(contrib.sum(axis=0), mu - pi, rtol=0, atol=1e-15)
    assert res["view_sources"] == ["view1", "view2", "jp"]
    # The posterior covariance is a valid covariance larger than Sigma, smaller than (1+tau)Sigma
    assert np.linalg.eigvalsh(res["posterior_covariance"] - sigma).min() > 0
    assert np.linalg.eigvalsh(1.05 * sigma - res["posterior_covariance"]).min() > -1e-15


def test_singular_prior_covariance_is_accepted() -> None:
    # PSD but singular Sigma (two perfectly correlated assets): the Woodbury form needs no
    # inverse of Sigma, so the posterior exists.
    vol = np.array([0.2, 0.2, 0.1])
    corr = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    sigma = np.outer(vol, vol) * corr
    res = BlackLitterman().optimize(
        [AgentView("A", 0.1, 1.0, "a")], sigma, np.array([0.3, 0.3, 0.4]), ["A", "B", "C"]
    )
    mu = res["posterior_returns"]
    assert mu["A"] == pytest.approx(mu["B"], rel=1e-12)  # identical assets move together
    assert mu["C"] == res["equilibrium_returns"]["C"]


def test_non_diagonal_omega_accepted_by_posterior_returns() -> None:
    sigma, pi, p, q, _ = random_problem(7, 5, 2)
    omega = np.array([[0.002, 0.0005], [0.0005, 0.001]])
    mu, sigma_bl = BlackLitterman().posterior_returns(pi, sigma, p, q, omega)
    mu_ref, sigma_ref = textbook_posterior(pi, sigma, p, q, omega, 0.05)
    np.testing.assert_allclose(mu, mu_ref, rtol=1e-9)
    np.testing.assert_allclose(sigma_bl, sigma_ref, rtol=1e-9)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------

GOOD_SIGMA = np.array([[0.04, 0.01], [0.01, 0.09]])
GOOD_W = np.array([0.6, 0.4])
NAMES2 = ["A", "B"]


@pytest.mark.parametrize(
    ("covariance", "fragment"),
    [
        (np.ones((2, 3)), "covariance must be square, got shape (2, 3)"),
        (np.ones(2), "covariance must be 2-D, got shape (2,)"),
        (np.array([[0.04, 0.01], [0.02, 0.09]]), "covariance must be symmetric"),
        (np.array([[0.04, 0.1], [0.1, 0.09]]), "covariance must be positive semi-definite"),
        (np.array([[0.04, np.nan], [np.nan, 0.09]]), "got nan at index (0, 1)"),
        (np.array([[0.04, 0.0], [0.0, np.inf]]), "got inf at index (1, 1)"),
        (np.zeros((0, 0)), "at least one asset"),
        ([["a", "b"], ["c", "d"]], "covariance must be numeric"),
    ],
)
def test_bad_covariance(covariance, fragment: str) -> None:
    with pytest.raises(OptimizationError) as info:
        BlackLitterman().optimize([], covariance, GOOD_W, NAMES2)
    assert fragment in str(info.value)


def test_symmetry_tolerance_is_relative() -> None:
    tiny = GOOD_SIGMA.copy()
    tiny[0, 1] += 1e-12  # 1e-12 / 0.09 < 1e-8: accepted and symmetrized
    out = validate_covariance(tiny)
    np.testing.assert_array_equal(out, out.T)
    big = GOOD_SIGMA.copy()
    big[0, 1] += 1e-8
    with pytest.raises(OptimizationError, match=r"covariance\[0, 1\] = 0\.01000001"):
        validate_covariance(big)


def test_slightly_negative_eigenvalue_within_tolerance_is_accepted() -> None:
    # Rank-1 matrix computed in floating point: smallest eigenvalue ~ -1e-18, accepted.
    v = np.array([0.1, 0.2, 0.3])
    validate_covariance(np.outer(v, v))
    with pytest.raises(OptimizationError, match="smallest eigenvalue"):
        validate_covariance(np.outer(v, v) - 1e-6 * np.eye(3))


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (
            lambda bl: bl.optimize([], GOOD_SIGMA, np.array([1.0, 0.0, 0.0]), NAMES2),
            "market_weights has 3 entries but the covariance is 2x2",
        ),
        (
            lambda bl: bl.optimize([], GOOD_SIGMA, np.array([1.0, np.nan]), NAMES2),
            "market_weights must be finite (no NaN or inf), got nan at index (1,)",
        ),
        (
            lambda bl: bl.compute_equilibrium_returns(GOOD_SIGMA, [[0.5, 0.5]]),
            "market_weights must be 1-D, got shape (1, 2)",
        ),
        (
            lambda bl: bl.optimize([AgentView("A", 0.1)], GOOD_SIGMA, GOOD_W, NAMES2, 1.5),
            "regime_clarity must be in [0, 1], got 1.5",
        ),
        (
            lambda bl: bl.optimize([AgentView("A", 0.1)], GOOD_SIGMA, GOOD_W, NAMES2, -0.2),
            "regime_clarity must be in [0, 1], got -0.2",
        ),
        (
            lambda bl: bl.build_views([], NAMES2, math.nan, covariance=GOOD_SIGMA),
            "regime_clarity must be in [0, 1], got nan",
        ),
        (
            lambda bl: bl.optimize([AgentView("ZZZ", 0.1, 0.5, "s9")], GOOD_SIGMA, GOOD_W, NAMES2),
            "views[0] (source='s9') refers to unknown instrument 'ZZZ'; known instruments: "
            "['A', 'B']",
        ),
        (
            lambda bl: bl.optimize(
                [AgentView("A", 0.1), AgentView({"A": 1, "Q": -1}, 0.0, 1.0, "rel")],
                GOOD_SIGMA,
                GOOD_W,
                NAMES2,
            ),
            "views[1] (source='rel') refers to unknown instrument 'Q'",
        ),
        (
            lambda bl: bl.optimize([AgentView("A", 0.1)], GOOD_SIGMA, GOOD_W, ["A", "A"]),
            "instrument_names contains 'A' more than once",
        ),
        (
            lambda bl: bl.optimize([], GOOD_SIGMA, GOOD_W, ["A"]),
            "instrument_names has 1 names but the covariance is 2x2",
        ),
        (
            lambda bl: bl.optimize([], GOOD_SIGMA, GOOD_W, "AB"),
            "instrument_names must be a sequence of names, got the string 'AB'",
        ),
        (
            lambda bl: bl.optimize(AgentView("A", 0.1), GOOD_SIGMA, GOOD_W, NAMES2),
            "views must be a sequence of AgentView, got a single view",
        ),
        (
            lambda bl: bl.optimize([("A", 0.1)], GOOD_SIGMA, GOOD_W, NAMES2),
            "views[0] must be an AgentView, got ('A', 0.1)",
        ),
        (
            lambda bl: bl.optimize([AgentView("A", 0.1)], np.diag([0.0, 0.04]), GOOD_W, NAMES2),
            "views[0] (source='') has a view portfolio with zero prior variance",
        ),
        (
            lambda bl: bl.posterior_returns(
                np.zeros(2), GOOD_SIGMA, np.ones((1, 3)), np.zeros(1), np.eye(1)
            ),
            "P must have 2 columns (one per asset), got shape (1, 3)",
        ),
        (
            lambda bl: bl.posterior_returns(
                np.zeros(2), GOOD_SIGMA, np.ones((1, 2)), np.zeros(2), np.eye(1)
            ),
            "Q must have one entry per view (1), got shape (2,)",
        ),
        (
            lambda bl: bl.posterior_returns(
                np.zeros(2), GOOD_SIGMA, np.ones((1, 2)), [np.nan], np.eye(1)
            ),
            "Q must be finite (no NaN or inf), got nan at index (0,)",
        ),
        (
            lambda bl: bl.posterior_returns(
                np.zeros(2), GOOD_SIGMA, np.ones((1, 2)), np.zeros(1), np.eye(2)
            ),
            "Omega must be 1x1 (one row per view), got shape (2, 2)",
        ),
        (
            lambda bl: bl.posterior_returns(
                np.zeros(2), GOOD_SIGMA, np.ones((2, 2)), np.zeros(2), -np.eye(2)
            ),
            "Omega must be positive semi-definite",
        ),
        (
            lambda bl: bl.posterior_returns(
                np.zeros(3), GOOD_SIGMA, np.ones((1, 2)), np.zeros(1), np.eye(1)
            ),
            "equilibrium has 3 entries but the covariance is 2x2",
        ),
        (
            lambda bl: bl.posterior_returns(
                np.zeros(2),
                np.diag([0.0, 0.04]),
                np.array([[1.0, 0.0]]),
                np.zeros(1),
                np.zeros((1, 1)),
            ),
            "P tau Sigma P' + Omega is not positive definite",
        ),
    ],
)
def test_bad_input_messages(call, fragment: str) -> None:
    with pytest.raises(OptimizationError) as info:
        call(BlackLitterman())
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_build_views_requires_covariance_keyword() -> None:
    with pytest.raises(TypeError):
        BlackLitterman().build_views([], NAMES2, 1.0)  # type: ignore[call-arg]
    with pytest.raises(OptimizationError, match="must be a BlackLittermanConfig"):
        BlackLitterman({"tau": 0.05})  # type: ignore[arg-type]
