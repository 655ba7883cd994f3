"""Allocation: clamped targets with redistribution, unallocated cash, drift, rebalance trigger."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from portfolio.allocation import UNALLOCATED, AllocationCalculator, allocate_capital, drift_nb
from portfolio.contracts import PortfolioConfig, StrategyAllocation
from portfolio.errors import ConfigError

INF = math.inf


def _config(
    weights: list[float],
    mins: list[float] | None = None,
    maxs: list[float] | None = None,
    threshold: float = 0.05,
) -> PortfolioConfig:
    n = len(weights)
    mins = mins or [0.0] * n
    maxs = maxs or [INF] * n
    allocs = tuple(
        StrategyAllocation(f"s{i}", w, lo, hi)
        for i, (w, lo, hi) in enumerate(zip(weights, mins, maxs, strict=True))
    )
    return PortfolioConfig("p", 100000.0, allocs, rebalance_threshold=threshold)


# The shipped example: weights .40/.35/.25, mins 10k/10k/5k, caps 30k/25k/20k.
EXAMPLE = _config([0.40, 0.35, 0.25], [10000.0, 10000.0, 5000.0], [30000.0, 25000.0, 20000.0])


def _targets(config: PortfolioConfig, equity: float) -> dict[str, float]:
    # Equity is the sum of current capital; put it all in the first sleeve.
    return AllocationCalculator(config).calculate_targets({"s0": equity})


# ----------------------------------------------------------------------------- hand examples


def test_all_caps_reached_leaves_unallocated_cash() -> None:
    # 100000 * (.4, .35, .25) = 40000/35000/25000, all above the caps 30000/25000/20000;
    # 100000 - 75000 = 25000 cannot be placed.
    assert _targets(EXAMPLE, 100000.0) == {
        "s0": 30000.0,
        "s1": 25000.0,
        "s2": 20000.0,
        UNALLOCATED: 25000.0,
    }


def test_unclamped_targets_are_weight_times_equity() -> None:
    # 50000 * (.4, .35, .25) = 20000/17500/12500, all inside their bounds.
    assert _targets(EXAMPLE, 50000.0) == {"s0": 20000.0, "s1": 17500.0, "s2": 12500.0}


def test_excess_above_a_cap_goes_to_the_others_pro_rata() -> None:
    # Raw 50000/30000/20000; s0 capped at 40000, its 10000 excess split .3 : .2 -> +6000/+4000.
    config = _config([0.5, 0.3, 0.2], maxs=[40000.0, INF, INF])
    assert _targets(config, 100000.0) == {"s0": 40000.0, "s1": 36000.0, "s2": 24000.0}


def test_redistribution_cascades() -> None:
    # Raw 60000/36000/24000: s0 capped at 40000 (+20000 to share), s1 then gets
    # 36000 + 20000 * .3/.5 = 48000 > 40000 and is capped too; s2 takes the rest:
    # 120000 - 40000 - 40000 = 40000.
    config = _config([0.5, 0.3, 0.2], maxs=[40000.0, 40000.0, INF])
    assert _targets(config, 120000.0) == {"s0": 40000.0, "s1": 40000.0, "s2": 40000.0}


def test_minimum_pulls_capital_from_the_others() -> None:
    # Raw 90000/10000; s1 raised to its minimum 20000, s0 gives up the 10000: 80000.
    config = _config([0.9, 0.1], mins=[0.0, 20000.0])
    assert _targets(config, 100000.0) == {"s0": 80000.0, "s1": 20000.0}


def test_equity_below_sum_of_minimums_scales_minimums() -> None:
    # Minimums sum to 25000 > 20000: each gets min * 20000/25000 = min * 0.8.
    assert _targets(EXAMPLE, 20000.0) == {"s0": 8000.0, "s1": 8000.0, "s2": 4000.0}
    # Exactly at the sum of minimums: the minimums themselves.
    assert _targets(EXAMPLE, 25000.0) == {"s0": 10000.0, "s1": 10000.0, "s2": 5000.0}


def test_zero_weight_sleeve_gets_its_minimum_only() -> None:
    config = _config([1.0, 0.0], mins=[0.0, 5000.0])
    assert _targets(config, 100000.0) == {"s0": 95000.0, "s1": 5000.0}
    capped = _config([1.0, 0.0], mins=[0.0, 5000.0], maxs=[50000.0, INF])
    assert _targets(capped, 100000.0) == {"s0": 50000.0, "s1": 5000.0, UNALLOCATED: 45000.0}
    # Below the sum of minimums it is scaled like the rest (only s1 has a minimum).
    assert _targets(_config([1.0, 0.0], mins=[0.0, 5000.0]), 4000.0) == {"s0": 0.0, "s1": 4000.0}


def test_non_positive_equity() -> None:
    assert _targets(EXAMPLE, 0.0) == {"s0": 0.0, "s1": 0.0, "s2": 0.0}
    assert _targets(EXAMPLE, -100.0) == {"s0": 0.0, "s1": 0.0, "s2": 0.0, UNALLOCATED: -100.0}


def test_current_allocations_mapping_rules() -> None:
    calc = AllocationCalculator(EXAMPLE)
    # Equity is the sum over sleeves (+ any unallocated reserve); missing sleeves count as 0.
    assert calc.calculate_targets({"s0": 30000.0, "s2": 10000.0, UNALLOCATED: 10000.0}) == {
        "s0": 20000.0,
        "s1": 17500.0,
        "s2": 12500.0,
    }
    with pytest.raises(ConfigError, match=r"^unknown strategy 'zz' in current allocations"):
        calc.calculate_targets({"zz": 1.0})
    with pytest.raises(ConfigError, match="drift_band must be one of"):
        AllocationCalculator(EXAMPLE, drift_band="sideways")  # type: ignore[arg-type]


def test_arrays_are_read_only() -> None:
    calc = AllocationCalculator(EXAMPLE)
    np.testing.assert_array_equal(calc.weights, [0.40, 0.35, 0.25])
    np.testing.assert_array_equal(calc.min_capital, [10000.0, 10000.0, 5000.0])
    np.testing.assert_array_equal(calc.max_capital, [30000.0, 25000.0, 20000.0])
    with pytest.raises(ValueError, match="read-only"):
        calc.weights[0] = 1.0


# ----------------------------------------------------------------------------- properties


def _naive_upper_only(equity: float, w: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Literal "clamp, redistribute pro rata, repeat" for caps only (min = 0): an oracle."""
    n = len(w)
    capped = np.zeros(n, dtype=bool)
    t = np.zeros(n)
    for _ in range(n + 1):
        rest = equity - hi[capped].sum()
        wf = w[~capped].sum()
        t = np.where(capped, hi, rest * w / wf if wf > 0 else 0.0)
        over = (~capped) & (t > hi)
        if not over.any():
            break
        capped |= over
    return t


@st.composite
def _problem(draw: st.DrawFn) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(1, 8))
    raw = np.array(draw(st.lists(st.integers(0, 100), min_size=n, max_size=n)), dtype=float)
    assume(raw.sum() > 0)
    w = raw / raw.sum()
    lo = np.array(draw(st.lists(st.floats(0.0, 50000.0), min_size=n, max_size=n)))
    span = draw(st.lists(st.one_of(st.just(INF), st.floats(0.0, 100000.0)), min_size=n, max_size=n))
    hi = lo + np.array(span)
    equity = draw(st.floats(1.0, 600000.0))
    return equity, w, lo, hi


@settings(max_examples=300, deadline=None)
@given(_problem())
def test_allocate_capital_properties(
    problem: tuple[float, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    equity, w, lo, hi = problem
    t, unallocated = allocate_capital(equity, w, lo, hi)
    tol = 1e-9 * max(equity, 1.0)
    # The books balance.
    assert abs(t.sum() + unallocated - equity) <= tol
    assert unallocated >= 0.0
    if equity <= lo.sum():
        np.testing.assert_allclose(t, lo * (equity / lo.sum()), rtol=1e-12)
        return
    # Within bounds; zero-weight sleeves at their minimum.
    assert np.all(t >= lo - tol) and np.all(t <= hi + tol)
    assert np.all(t[w == 0] == lo[w == 0])
    if unallocated > 0.0:
        np.testing.assert_array_equal(t[w > 0], hi[w > 0])
        return
    # Fixed point of the redistribution: every free sleeve holds the same multiple lam of its
    # weight, sleeves at a cap would want more (lam*w >= hi) and sleeves at a minimum less.
    pos = w > 0
    free = pos & (t > lo + tol) & (t < hi - tol)
    if free.any():
        lam = t[free] / w[free]
        np.testing.assert_allclose(lam, lam[0], rtol=1e-9)
        lam0 = lam[0]
        # Sleeves with lo == hi are fixed either way and say nothing about lam.
        boxed = pos & ~free & (hi - lo > tol)
        at_hi = boxed & (np.abs(t - hi) <= tol)
        at_lo = boxed & (np.abs(t - lo) <= tol)
        assert np.all(at_hi | at_lo | ~boxed)
        assert np.all(lam0 * w[at_hi] >= hi[at_hi] - tol)
        assert np.all(lam0 * w[at_lo] <= lo[at_lo] + tol)


@settings(max_examples=200, deadline=None)
@given(_problem())
def test_allocate_capital_matches_naive_iteration_with_caps_only(
    problem: tuple[float, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    equity, w, lo, hi = problem
    hi = hi - lo  # caps only, minimums zero
    lo = np.zeros_like(lo)
    assume(np.all(w > 0))
    assume(equity < hi.sum())  # otherwise unallocated cash, tested elsewhere
    t, unallocated = allocate_capital(equity, w, lo, hi)
    assert unallocated == 0.0
    np.testing.assert_allclose(t, _naive_upper_only(equity, w, hi), rtol=1e-9, atol=1e-6)


# ----------------------------------------------------------------------------- drift


def test_relative_drift_and_zero_target() -> None:
    # Weights .75/.25/0, equity 100000 -> targets 75000/25000/0.
    config = _config([0.75, 0.25, 0.0])
    calc = AllocationCalculator(config)
    current = {"s0": 60000.0, "s1": 30000.0, "s2": 10000.0}
    assert calc.calculate_targets(current) == {"s0": 75000.0, "s1": 25000.0, "s2": 0.0}
    drift = calc.calculate_drift(current)
    assert drift == {
        "s0": (60000.0 - 75000.0) / 75000.0,  # -0.2
        "s1": (30000.0 - 25000.0) / 25000.0,  # +0.2
        "s2": 10000.0 / 100000.0,  # zero target: weight drift 0.1
    }
    assert drift["s0"] == -0.2 and drift["s1"] == 0.2 and drift["s2"] == 0.1


def test_absolute_drift() -> None:
    calc = AllocationCalculator(_config([0.75, 0.25, 0.0]), drift_band="absolute")
    drift = calc.calculate_drift({"s0": 60000.0, "s1": 30000.0, "s2": 10000.0})
    assert drift == {"s0": -0.15, "s1": 0.05, "s2": 0.1}


def test_drift_nb_directly() -> None:
    cur = np.array([50.0, 30.0, 20.0])
    tgt = np.array([40.0, 40.0, 0.0])
    np.testing.assert_array_equal(drift_nb(cur, tgt, 100.0, True), [0.25, -0.25, 0.2])
    np.testing.assert_array_equal(drift_nb(cur, tgt, 100.0, False), [0.1, -0.1, 0.2])
    np.testing.assert_array_equal(drift_nb(cur, tgt, 0.0, True), [0.0, 0.0, 0.0])


def test_needs_rebalance_is_strict() -> None:
    calc = AllocationCalculator(_config([0.5, 0.5], threshold=0.05))
    assert calc.needs_rebalance({"s0": 0.05, "s1": -0.05}) is False
    assert calc.needs_rebalance({"s0": 0.0, "s1": -0.0500001}) is True
    assert calc.needs_rebalance({"s0": 0.0500001, "s1": 0.0}) is True
    assert calc.needs_rebalance({}) is False
    assert calc.needs_rebalance({"s0": math.nan}) is True
    zero = AllocationCalculator(_config([0.5, 0.5], threshold=0.0))
    assert zero.needs_rebalance({"s0": 0.0, "s1": 0.0}) is False
    assert zero.needs_rebalance({"s0": 1e-12, "s1": 0.0}) is True


def test_drift_feeds_needs_rebalance() -> None:
    calc = AllocationCalculator(EXAMPLE)
    on_target = {"s0": 20000.0, "s1": 17500.0, "s2": 12500.0}
    assert calc.calculate_drift(on_target) == {"s0": 0.0, "s1": 0.0, "s2": 0.0}
    assert calc.needs_rebalance(calc.calculate_drift(on_target)) is False
    # Move 2000 from s2 to s0: equity unchanged; s2 drifts by -2000/12500 = -0.16.
    moved = {"s0": 22000.0, "s1": 17500.0, "s2": 10500.0}
    drift = calc.calculate_drift(moved)
    assert drift["s2"] == -2000.0 / 12500.0
    assert calc.needs_rebalance(drift) is True
