"""Tests for portfolio.risk_adjusted: Sharpe/drawdown tilts, bounds, class vs jitted kernel."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portfolio.errors import ConfigError, DataError
from portfolio.risk_adjusted import (
    RiskAdjustedAllocator,
    project_to_bounds_nb,
    risk_adjusted_weights_nb,
    strategy_scores_nb,
)


@dataclass(frozen=True)
class _Alloc:
    strategy_id: str
    target_weight: float
    min_capital: float = 0.0
    max_capital: float | None = None


@dataclass(frozen=True)
class _Config:
    total_capital: float
    allocations: tuple[_Alloc, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class _Allocator:
    config: _Config


def _allocator(
    ids: list[str],
    total: float = 1_000_000.0,
    mins: dict[str, float] | None = None,
    maxs: dict[str, float] | None = None,
) -> _Allocator:
    mins = mins or {}
    maxs = maxs or {}
    allocs = tuple(_Alloc(s, 1.0 / len(ids), mins.get(s, 0.0), maxs.get(s)) for s in ids)
    return _Allocator(_Config(total, allocs))


def _frame(cols: dict[str, list[float] | np.ndarray]) -> pd.DataFrame:
    n = len(next(iter(cols.values())))
    return pd.DataFrame(cols, index=pd.bdate_range("2021-01-04", periods=n))


def _reference(window: pd.DataFrame, base: pd.Series, k: float) -> pd.Series:
    """The documented rule written independently with pandas (no bounds binding)."""
    n = len(window)
    if n < 2:
        return base
    sd = window.std(ddof=1)
    mean = window.mean()
    wealth = (1 + window).cumprod()
    peak = np.maximum(wealth.max(), 1.0)
    dd = 1 - wealth.iloc[-1] / peak
    valid = sd > 1e-12
    sharpe = mean[valid] / sd[valid]
    z = pd.Series(0.0, index=window.columns)
    if valid.sum() >= 2 and sharpe.std(ddof=0) > 1e-12:
        z[valid] = ((sharpe - sharpe.mean()) / sharpe.std(ddof=0)).clip(-3, 3)
    pen = pd.Series(0.0, index=window.columns)
    pen[valid] = (dd[valid] / (sd[valid] * math.sqrt(n))).clip(0, 3)
    t = base * np.exp(k * (z - pen))
    return t / t.sum()


# Deterministic sleeves, 30 rows: alternating +a / -b patterns.
def _alternating(up: float, down: float, n: int = 30) -> list[float]:
    return [up if i % 2 == 0 else -down for i in range(n)]


def test_higher_sharpe_gets_more_than_base() -> None:
    hist = _frame(
        {
            "good": _alternating(0.012, 0.008),  # mean +0.002
            "flat": _alternating(0.008, 0.008),  # mean 0
            "bad": _alternating(0.004, 0.008),  # mean -0.002
        }
    )
    base = {"good": 0.4, "flat": 0.35, "bad": 0.25}
    ra = RiskAdjustedAllocator(_allocator(list(base)), 30, 0.1)
    out = ra.calculate_adjusted_allocations(hist, base)
    assert out["good"] > base["good"]
    assert out["bad"] < base["bad"]
    assert sum(out.values()) == pytest.approx(1.0, abs=1e-12)
    ref = _reference(hist, pd.Series(base), 0.1)
    for s in base:
        assert out[s] == pytest.approx(ref[s], rel=1e-12)


def test_deep_drawdown_gets_less_than_base() -> None:
    # Same returns, different order -> identical Sharpe ratios (no Sharpe tilt). "late" ends in a
    # deep drawdown, "early" lost first and has recovered to a new high.
    rets = [0.01] * 20 + [-0.03] * 5
    hist = _frame({"late": rets, "early": rets[::-1]})
    assert hist["late"].std() == pytest.approx(hist["early"].std(), rel=1e-12)
    base = {"late": 0.5, "early": 0.5}
    out = RiskAdjustedAllocator(_allocator(list(base)), 25, 0.5).calculate_adjusted_allocations(
        hist, base
    )
    assert out["late"] < 0.5 < out["early"]
    # Reference: only the drawdown penalty acts.
    sd = hist["late"].std(ddof=1)
    wealth = np.cumprod(1 + np.array(rets))
    dd = 1 - wealth[-1] / max(1.0, wealth.max())
    pen = min(dd / (sd * 5.0), 3.0)
    expected_late = 1.0 / (1.0 + math.exp(0.5 * pen))
    assert out["late"] == pytest.approx(expected_late, rel=1e-12)


def test_min_max_bounds_respected() -> None:
    hist = _frame(
        {
            "a": _alternating(0.014, 0.006, 40),  # mean +0.004
            "b": _alternating(0.010, 0.010, 40),  # mean 0
            "c": _alternating(0.006, 0.014, 40),  # mean -0.004
        }
    )
    base = {"a": 0.4, "b": 0.3, "c": 0.3}
    total = 2_000_000.0
    free = RiskAdjustedAllocator(_allocator(list(base), total), 40, 1.0)
    unbounded = free.calculate_adjusted_allocations(hist, base)
    assert unbounded["a"] > 0.45
    assert unbounded["c"] < 0.25
    alloc = _allocator(list(base), total, mins={"c": 0.25 * total}, maxs={"a": 0.45 * total})
    out = RiskAdjustedAllocator(alloc, 40, 1.0).calculate_adjusted_allocations(hist, base)
    assert out["a"] == pytest.approx(0.45, abs=1e-15)
    assert out["c"] == pytest.approx(0.25, abs=1e-15)
    assert out["b"] == pytest.approx(0.30, abs=1e-12)
    assert sum(out.values()) == pytest.approx(1.0, abs=1e-12)
    # A different total capital changes the bounds (the same capital is a bigger weight).
    out_small = RiskAdjustedAllocator(alloc, 40, 1.0).calculate_adjusted_allocations(
        hist, base, total_capital=4_000_000.0
    )
    assert out_small["a"] == pytest.approx(min(unbounded["a"], 0.225), abs=1e-15)


def test_all_losing_tilts_relatively() -> None:
    hist = _frame(
        {
            "mild": _alternating(0.006, 0.008),  # mean -0.001
            "worse": _alternating(0.004, 0.008),  # mean -0.002
            "worst": _alternating(0.0, 0.008),  # mean -0.004
        }
    )
    base = {"mild": 1 / 3, "worse": 1 / 3, "worst": 1 / 3}
    out = RiskAdjustedAllocator(_allocator(list(base)), 30, 0.2).calculate_adjusted_allocations(
        hist, base
    )
    assert sum(out.values()) == pytest.approx(1.0, abs=1e-12)
    assert out["mild"] > 1 / 3 > out["worst"]
    assert all(np.isfinite(v) for v in out.values())


def test_constant_history_no_tilt_no_nan() -> None:
    hist = _frame({"a": [0.001] * 30, "b": [-0.002] * 30, "c": [0.0] * 30})
    base = {"a": 0.5, "b": 0.3, "c": 0.2}
    out = RiskAdjustedAllocator(_allocator(list(base)), 30, 0.5).calculate_adjusted_allocations(
        hist, base
    )
    assert out == base
    # One constant sleeve among noisy ones: finite weights, the constant one has no own tilt.
    rng = np.random.default_rng(3)
    hist = _frame(
        {"a": rng.normal(0.002, 0.01, 30), "b": rng.normal(-0.002, 0.01, 30), "c": [0.0] * 30}
    )
    out = RiskAdjustedAllocator(_allocator(list(base)), 30, 0.5).calculate_adjusted_allocations(
        hist, base
    )
    assert all(np.isfinite(v) for v in out.values())
    assert sum(out.values()) == pytest.approx(1.0, abs=1e-12)
    ref = _reference(hist, pd.Series(base), 0.5)
    for s in base:
        assert out[s] == pytest.approx(ref[s], rel=1e-12)


@pytest.mark.parametrize("rows", [0, 1])
def test_short_history_returns_base_unchanged(rows: int) -> None:
    hist = (
        _frame({"a": [0.05] * rows, "b": [-0.05] * rows})
        if rows
        else pd.DataFrame({"a": [], "b": []}, index=pd.DatetimeIndex([]))
    )
    base = {"a": 0.7, "b": 0.3}
    out = RiskAdjustedAllocator(_allocator(list(base)), 30, 1.0).calculate_adjusted_allocations(
        hist, base
    )
    assert out == base


def test_zero_sensitivity_returns_base() -> None:
    rng = np.random.default_rng(11)
    hist = _frame({"a": rng.normal(0.0, 0.01, 30), "b": rng.normal(0.0, 0.02, 30)})
    base = {"a": 0.6, "b": 0.4}
    out = RiskAdjustedAllocator(_allocator(list(base)), 30, 0.0).calculate_adjusted_allocations(
        hist, base
    )
    assert out == base


def test_only_trailing_window_is_used() -> None:
    rng = np.random.default_rng(5)
    data = rng.normal(0.0, 0.01, (60, 3))
    hist = pd.DataFrame(
        data, columns=["a", "b", "c"], index=pd.bdate_range("2020-01-01", periods=60)
    )
    base = {"a": 0.2, "b": 0.3, "c": 0.5}
    ra = RiskAdjustedAllocator(_allocator(list(base)), 20, 0.3)
    out = ra.calculate_adjusted_allocations(hist, base)
    changed = hist.copy()
    changed.iloc[:40] = rng.normal(0.05, 0.2, (40, 3))
    assert ra.calculate_adjusted_allocations(changed, base) == out
    ref = _reference(hist.iloc[-20:], pd.Series(base), 0.3)
    for s in base:
        assert out[s] == pytest.approx(ref[s], rel=1e-12)


def test_class_and_kernel_agree() -> None:
    rng = np.random.default_rng(42)
    data = rng.normal(0.0005, 0.01, (50, 4))
    ids = ["w", "x", "y", "z"]
    hist = pd.DataFrame(data, columns=ids, index=pd.bdate_range("2020-01-01", periods=50))
    base = {"w": 0.1, "x": 0.2, "y": 0.3, "z": 0.4}
    total = 1e6
    alloc = _allocator(ids, total, mins={"w": 0.12 * total}, maxs={"z": 0.38 * total})
    ra = RiskAdjustedAllocator(alloc, 30, 0.8)
    out = ra.calculate_adjusted_allocations(hist, base)
    lo = np.array([0.12, 0.0, 0.0, 0.0])
    hi = np.array([1.0, 1.0, 1.0, 0.38])
    nb = risk_adjusted_weights_nb(
        np.ascontiguousarray(data[-30:]), np.array(list(base.values())), 0.8, lo, hi
    )
    assert np.array_equal(np.array(list(out.values())), nb)


def test_real_data_sleeves() -> None:
    path = resources.files("backtest.datasets") / "sp500_20_stocks.csv.gz"
    with resources.as_file(path) as p:
        prices = pd.read_csv(p, parse_dates=["Date"], index_col="Date")
    rets = prices.iloc[:, :5].pct_change().iloc[1:]
    ids = list(rets.columns)
    base = dict.fromkeys(ids, 0.2)
    ra = RiskAdjustedAllocator(_allocator(ids), 60, 0.25)
    for end in (100, 2000, len(rets)):
        window = rets.iloc[:end].dropna()
        out = ra.calculate_adjusted_allocations(window, base)
        assert sum(out.values()) == pytest.approx(1.0, abs=1e-12)
        ref = _reference(window.iloc[-60:], pd.Series(base), 0.25)
        for s in ids:
            assert out[s] == pytest.approx(ref[s], rel=1e-12)


# ----------------------------------------------------------------------------- properties


@st.composite
def _cases(
    draw: st.DrawFn,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    n_s = draw(st.integers(1, 5))
    n_rows = draw(st.integers(0, 40))
    ret = st.floats(-0.2, 0.2, allow_nan=False, allow_subnormal=False)
    cols = []
    for _ in range(n_s):
        if draw(st.booleans()):
            cols.append(draw(st.lists(ret, min_size=n_rows, max_size=n_rows)))
        else:
            cols.append([draw(ret)] * n_rows)  # constant column
    window = np.array(cols, dtype=np.float64).T.reshape(n_rows, n_s)
    raw = np.array(draw(st.lists(st.floats(0.0, 1.0), min_size=n_s, max_size=n_s))) + 1e-3
    base = raw / raw.sum()
    fr_lo = np.array(draw(st.lists(st.floats(0.0, 1.0), min_size=n_s, max_size=n_s)))
    fr_hi = np.array(draw(st.lists(st.floats(0.0, 1.0), min_size=n_s, max_size=n_s)))
    lo = base * fr_lo  # base is feasible by construction
    hi = base + (1.0 - base) * fr_hi
    k = draw(st.floats(0.0, 5.0))
    return window, base, lo, hi, k


@settings(max_examples=150, deadline=None)
@given(_cases())
def test_class_sums_to_one_within_bounds(
    case: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float],
) -> None:
    window, base, lo, hi, k = case
    n_s = base.shape[0]
    ids = [f"s{i}" for i in range(n_s)]
    total = 1e6
    alloc = _Allocator(
        _Config(
            total,
            tuple(
                _Alloc(ids[i], float(base[i]), float(lo[i] * total), float(hi[i] * total))
                for i in range(n_s)
            ),
        )
    )
    hist = pd.DataFrame(
        window, columns=ids, index=pd.bdate_range("2020-01-01", periods=window.shape[0])
    )
    base_map = {ids[i]: float(base[i]) for i in range(n_s)}
    out = RiskAdjustedAllocator(alloc, 40, k).calculate_adjusted_allocations(hist, base_map)
    w = np.array(list(out.values()))
    assert np.isfinite(w).all()
    assert abs(w.sum() - 1.0) <= 1e-12
    lo_w = np.array([a.min_capital / total for a in alloc.config.allocations])
    hi_w = np.array([a.max_capital / total for a in alloc.config.allocations])
    assert (w >= lo_w - 1e-12).all()
    assert (w <= hi_w + 1e-12).all()
    # Agrees with the kernel called directly.
    nb = risk_adjusted_weights_nb(window, base, k, lo_w, hi_w)
    np.testing.assert_array_equal(w, nb)


@st.composite
def _projections(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(1, 6))
    t = np.array(draw(st.lists(st.floats(0.0, 10.0), min_size=n, max_size=n)))
    lo_raw = np.array(draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n)))
    lo = lo_raw / max(1.0, lo_raw.sum()) * draw(st.floats(0.0, 1.0))
    extra = np.array(draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n)))
    hi = np.minimum(lo + extra, 1.0)
    if hi.sum() < 1.0:  # make it feasible: widen the first upper bound
        hi[0] = min(1.0, hi[0] + (1.0 - hi.sum()))
    if hi.sum() < 1.0:
        hi[:] = 1.0
    return t, lo, hi


@settings(max_examples=300, deadline=None)
@given(_projections())
def test_projection_sums_to_one_and_is_proportional(
    case: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    t, lo, hi = case
    w = project_to_bounds_nb(t, lo, hi)
    assert abs(w.sum() - 1.0) <= 1e-12
    assert (w >= lo - 1e-12).all()
    assert (w <= hi + 1e-12).all()
    # Strategies strictly inside their bounds share one scale factor lambda = w_i / t_i.
    inner = (w > lo + 1e-9) & (w < hi - 1e-9) & (t > 1e-6)
    if inner.sum() >= 2:
        ratios = w[inner] / t[inner]
        assert ratios.max() - ratios.min() <= 1e-9 * ratios.max()


def test_scores_bounded_and_zero_for_short_or_constant() -> None:
    assert strategy_scores_nb(np.zeros((1, 3))).tolist() == [0.0, 0.0, 0.0]
    assert strategy_scores_nb(np.full((10, 2), 0.01)).tolist() == [0.0, 0.0]
    rng = np.random.default_rng(0)
    s = strategy_scores_nb(rng.normal(0.0, 0.05, (30, 8)) * np.linspace(0.1, 10, 8))
    assert (s >= -6.0).all()
    assert (s <= 3.0).all()
    with_nan = rng.normal(0.0, 0.01, (20, 3))
    with_nan[5, 1] = np.nan
    assert strategy_scores_nb(with_nan)[1] == 0.0


def test_kernel_unbounded_and_infeasible_bounds() -> None:
    rng = np.random.default_rng(9)
    window = rng.normal(0.0, 0.01, (30, 3))
    base = np.array([0.2, 0.3, 0.5])
    inf = np.full(3, np.inf)
    free = risk_adjusted_weights_nb(window, base, 0.4, np.zeros(3), inf)
    capped = risk_adjusted_weights_nb(window, base, 0.4, np.zeros(3), np.ones(3))
    np.testing.assert_array_equal(free, capped)
    # Minimums above 100% in total: sum to 1 wins, in proportion to the minimums.
    w = risk_adjusted_weights_nb(window, base, 0.4, np.array([0.6, 0.6, 0.3]), inf)
    np.testing.assert_allclose(w, [0.4, 0.4, 0.2], rtol=1e-15)
    # Maximums below 100% in total: rescaled caps.
    w = risk_adjusted_weights_nb(window, base, 0.4, np.zeros(3), np.array([0.1, 0.1, 0.2]))
    np.testing.assert_allclose(w, [0.25, 0.25, 0.5], rtol=1e-15)
    # A zero-weight strategy receives the rest only once the others are at their caps.
    w = project_to_bounds_nb(np.array([1.0, 0.0]), np.zeros(2), np.array([0.7, 1.0]))
    np.testing.assert_allclose(w, [0.7, 0.3], rtol=1e-15)
    w = project_to_bounds_nb(np.array([1.0, 0.0]), np.array([0.0, 0.1]), np.ones(2))
    np.testing.assert_allclose(w, [0.9, 0.1], rtol=1e-15)


# ----------------------------------------------------------------------------- validation


def test_validation_errors() -> None:
    ids = ["a", "b"]
    hist = _frame({"a": [0.01, -0.01, 0.02], "b": [0.0, 0.01, -0.01]})
    ra = RiskAdjustedAllocator(_allocator(ids), 30, 0.1)
    with pytest.raises(DataError, match="sum to 1"):
        ra.calculate_adjusted_allocations(hist, {"a": 0.5, "b": 0.6})
    with pytest.raises(DataError, match=r"base_allocations\['a'\].*1\.2"):
        ra.calculate_adjusted_allocations(hist, {"a": 1.2, "b": -0.2})
    with pytest.raises(DataError, match="'c'"):
        ra.calculate_adjusted_allocations(hist, {"a": 0.5, "c": 0.5})
    nan = hist.copy()
    nan.iloc[1, 1] = np.nan
    with pytest.raises(DataError, match=r"performance_history\['b'\].*2021-01-05"):
        ra.calculate_adjusted_allocations(nan, {"a": 0.5, "b": 0.5})
    with pytest.raises(DataError, match="increasing"):
        ra.calculate_adjusted_allocations(hist.iloc[::-1], {"a": 0.5, "b": 0.5})
    tight = RiskAdjustedAllocator(_allocator(ids, 100.0, maxs={"a": 30.0, "b": 30.0}), 30, 0.1)
    with pytest.raises(ConfigError, match="max_capital"):
        tight.calculate_adjusted_allocations(hist, {"a": 0.5, "b": 0.5})
    heavy = RiskAdjustedAllocator(_allocator(ids, 100.0, mins={"a": 60.0, "b": 60.0}), 30, 0.1)
    with pytest.raises(ConfigError, match="min_capital"):
        heavy.calculate_adjusted_allocations(hist, {"a": 0.5, "b": 0.5})
    with pytest.raises(ConfigError, match="total_capital"):
        ra.calculate_adjusted_allocations(hist, {"a": 0.5, "b": 0.5}, total_capital=0.0)
    with pytest.raises(ConfigError, match="lookback_period_days"):
        RiskAdjustedAllocator(_allocator(ids), 1, 0.1)
    with pytest.raises(ConfigError, match="adjustment_sensitivity"):
        RiskAdjustedAllocator(_allocator(ids), 30, -0.1)
    with pytest.raises(ConfigError, match="config"):
        RiskAdjustedAllocator(object(), 30, 0.1)
    with pytest.raises(ValueError, match="disagree"):
        risk_adjusted_weights_nb(np.zeros((3, 2)), np.array([1.0]), 0.1, np.zeros(1), np.ones(1))
    with pytest.raises(ValueError, match="sensitivity"):
        risk_adjusted_weights_nb(np.zeros((3, 1)), np.array([1.0]), -1.0, np.zeros(1), np.ones(1))
