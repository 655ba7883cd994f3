"""Tests for portfolio.position_sizer: lot rounding, unit sizing, vol/Kelly/VaR-budget weights."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portfolio.errors import ConfigError, DataError
from portfolio.position_sizer import (
    PositionSizer,
    round_to_lot_array_nb,
    round_to_lot_nb,
)
from portfolio.risk import VaRCalculator

LOGGER = "portfolio.position_sizer"


# ----------------------------------------------------------------------------- lot rounding


@pytest.mark.parametrize(
    ("units", "lot", "expected"),
    [
        (157.0, 10.0, 150.0),
        (159.99, 10.0, 150.0),
        (-157.0, 10.0, -150.0),  # toward zero, never a bigger short
        (-159.99, 10.0, -150.0),
        (9.99, 10.0, 0.0),
        (-9.99, 10.0, 0.0),
        (30.0, 10.0, 30.0),
        (2.75, 0.5, 2.5),
        (-2.75, 0.5, -2.5),
    ],
)
def test_round_to_lot_toward_zero(units: float, lot: float, expected: float) -> None:
    assert round_to_lot_nb(units, lot) == expected


def test_round_to_lot_zero_is_positive_zero() -> None:
    out = round_to_lot_nb(-0.5, 1.0)
    assert out == 0.0
    assert math.copysign(1.0, out) == 1.0


def test_round_to_lot_fractional_when_lot_zero() -> None:
    assert round_to_lot_nb(2.345678, 0.0) == 2.345678
    assert round_to_lot_nb(-2.345678, 0.0) == -2.345678


def test_round_to_lot_keeps_exact_multiples() -> None:
    # 0.3 / 0.1 == 2.9999999999999996 in binary floating point: a naive floor loses a lot.
    assert 0.3 / 0.1 < 3.0
    assert math.floor(0.3 / 0.1) == 2
    assert round_to_lot_nb(0.3, 0.1) == 3 * 0.1
    assert round_to_lot_nb(-0.3, 0.1) == -3 * 0.1
    assert round_to_lot_nb(0.3 / 0.1, 1.0) == 3.0
    # Exact multiples at a large lot count, where the absolute tolerance alone is too small.
    units = 3e7 * 0.1
    assert round_to_lot_nb(units, 0.1) == math.floor(units / 0.1 + 0.5) * 0.1


def test_round_to_lot_below_tolerance_still_floors() -> None:
    assert round_to_lot_nb(2.999999, 1.0) == 2.0
    assert round_to_lot_nb(2.9999999, 1.0) == 2.0


def test_round_to_lot_huge_counts_are_exact() -> None:
    assert round_to_lot_nb(1e20, 1.0) == 1e20
    assert round_to_lot_nb(-1e17, 1.0) == -1e17


def test_round_to_lot_non_finite_passthrough() -> None:
    assert math.isnan(round_to_lot_nb(math.nan, 1.0))
    assert round_to_lot_nb(math.inf, 1.0) == math.inf


@settings(max_examples=200, deadline=None)
@given(
    units=st.floats(-1e9, 1e9, allow_nan=False),
    lot=st.sampled_from([0.01, 0.1, 1.0, 5.0, 100.0]),
)
def test_round_to_lot_properties(units: float, lot: float) -> None:
    out = round_to_lot_nb(units, lot)
    n = out / lot
    assert abs(n - round(n)) <= 1e-6 * max(1.0, abs(n))  # a whole number of lots
    assert out == 0.0 or math.copysign(1.0, out) == math.copysign(1.0, units)
    assert abs(out) <= abs(units) * (1 + 1e-14) + 1e-9 * lot  # never beyond the input
    assert abs(units) - abs(out) < lot * (1 + 1e-9)  # less than one lot is dropped


def test_round_to_lot_array_matches_scalar() -> None:
    units = np.array([157.0, -157.0, 0.3, -0.05, 0.0, 1e9 + 0.5])
    out = round_to_lot_array_nb(units, 0.1)
    assert out.dtype == np.float64
    assert out.tolist() == [round_to_lot_nb(u, 0.1) for u in units]
    assert round_to_lot_array_nb(units, 0.0).tolist() == units.tolist()


# ----------------------------------------------------------------------------- units


def test_position_size_basic_and_multiplier() -> None:
    ps = PositionSizer(lot_size=1.0, risk_multipliers={"mom": 2.0, "off": 0.0})
    assert ps.calculate_position_size("x", "AAPL", 1000.0, 33.0) == 30.0  # 30.3 -> 30
    assert ps.calculate_position_size("mom", "AAPL", 1000.0, 33.0) == 60.0  # 60.6 -> 60
    assert ps.calculate_position_size("off", "AAPL", 1000.0, 33.0) == 0.0
    lots = PositionSizer(lot_size=100.0)
    assert lots.calculate_position_size("x", "AAPL", 10_000.0, 33.0) == 300.0  # 303.03


def test_position_size_fractional() -> None:
    ps = PositionSizer(lot_size=0.0)
    assert ps.calculate_position_size("x", "AAPL", 1000.0, 32.0) == 31.25


def test_position_size_zero_capital() -> None:
    assert PositionSizer().calculate_position_size("x", "AAPL", 0.0, 10.0) == 0.0


def test_position_size_negative_capital_is_short_toward_zero() -> None:
    assert PositionSizer().calculate_position_size("x", "AAPL", -1000.0, 33.0) == -30.0


def test_position_size_huge_price_gives_zero() -> None:
    assert PositionSizer().calculate_position_size("x", "BRK", 1000.0, 1e12) == 0.0


def test_position_size_huge_capital_no_overflow() -> None:
    out = PositionSizer().calculate_position_size("x", "PENNY", 1e15, 0.01)
    assert out == 1e17
    with pytest.raises(DataError, match="overflows"):
        PositionSizer().calculate_position_size("x", "PENNY", 1e300, 1e-10)


@pytest.mark.parametrize("price", [0.0, -5.0, math.nan, math.inf, -math.inf])
def test_position_size_bad_price(price: float) -> None:
    with pytest.raises(ValueError, match="AAPL") as exc:
        PositionSizer().calculate_position_size("x", "AAPL", 1000.0, price)
    assert repr(price) in str(exc.value)


def test_position_size_bad_capital() -> None:
    with pytest.raises(DataError, match="allocated_capital"):
        PositionSizer().calculate_position_size("x", "AAPL", math.nan, 10.0)


def test_apply_risk_multiplier() -> None:
    ps = PositionSizer(risk_multipliers={"a": 0.5})
    assert ps.apply_risk_multiplier("a", 10.0) == 5.0
    assert ps.apply_risk_multiplier("b", -10.0) == -10.0
    with pytest.raises(DataError):
        ps.apply_risk_multiplier("a", math.nan)


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"lot_size": -1.0}, "lot_size"),
        ({"lot_size": math.nan}, "lot_size"),
        ({"target_vol": 0.0}, "target_vol"),
        ({"target_vol": math.inf}, "target_vol"),
        ({"max_position": 0.0}, "max_position"),
        ({"max_position": -0.1}, "max_position"),
        ({"kelly_fraction": 0.0}, "kelly_fraction"),
        ({"kelly_fraction": 1.5}, "kelly_fraction"),
        ({"soft_limit_conviction": 1.1}, "soft_limit_conviction"),
        ({"soft_limit_factor": 0.9}, "soft_limit_factor"),
        ({"lot_size": True}, "lot_size"),
        ({"target_vol": "0.1"}, "target_vol"),
        ({"risk_multipliers": {"a": -1.0}}, "risk_multipliers"),
        ({"risk_multipliers": {1: 1.0}}, "risk_multipliers"),
        ({"risk_multipliers": [("a", 1.0)]}, "risk_multipliers"),
    ],
)
def test_config_validation(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        PositionSizer(**kwargs)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- weights


def test_vol_target_ratio() -> None:
    assert PositionSizer(max_position=1.0).vol_target_size(0.20) == 0.5
    assert PositionSizer(target_vol=0.15, max_position=1.0).vol_target_size(0.30) == 0.5


def test_vol_target_clamps_to_max_position() -> None:
    ps = PositionSizer(max_position=0.25)
    assert ps.vol_target_size(0.05) == 0.25  # 0.10 / 0.05 = 2.0 -> capped
    assert ps.vol_target_size(0.40) == 0.25  # exactly at the cap
    assert ps.vol_target_size(0.80) == 0.125


@pytest.mark.parametrize("vol", [0.0, -0.1, math.nan, math.inf])
def test_vol_target_bad_vol(vol: float) -> None:
    with pytest.raises(DataError, match="instrument_vol"):
        PositionSizer().vol_target_size(vol)


def test_half_kelly_is_half_of_full_kelly() -> None:
    full = PositionSizer(kelly_fraction=1.0, max_position=10.0)
    half = PositionSizer(max_position=10.0)  # default kelly_fraction 0.5
    mu, var = 0.0625, 0.25  # binary fractions: mu / var = 0.25 exactly
    assert full.fractional_kelly_size(mu, var) == 0.25
    assert half.fractional_kelly_size(mu, var) == 0.5 * full.fractional_kelly_size(mu, var)


def test_kelly_negative_return_is_short() -> None:
    ps = PositionSizer(max_position=1.0)
    assert ps.fractional_kelly_size(-0.0625, 0.25) == -0.125


def test_kelly_clamps_both_sides() -> None:
    ps = PositionSizer(max_position=0.25)
    assert ps.fractional_kelly_size(0.5, 0.04) == 0.25  # raw 6.25
    assert ps.fractional_kelly_size(-0.5, 0.04) == -0.25


def test_kelly_period_invariant() -> None:
    ps = PositionSizer(max_position=10.0)
    mu_d, var_d = 0.0004, 0.0001
    daily = ps.fractional_kelly_size(mu_d, var_d)
    annual = ps.fractional_kelly_size(252 * mu_d, 252 * var_d)
    assert daily == pytest.approx(annual, rel=1e-14)
    assert daily == pytest.approx(0.5 * 4.0, rel=1e-14)


@pytest.mark.parametrize(("mu", "var"), [(0.1, 0.0), (0.1, -0.01), (math.nan, 0.1)])
def test_kelly_bad_inputs(mu: float, var: float) -> None:
    with pytest.raises(DataError):
        PositionSizer().fractional_kelly_size(mu, var)


def test_risk_budget_proportional_to_component_var() -> None:
    w = np.array([0.5, 0.3, 0.2])
    cov = np.array([[0.04, 0.006, 0.0], [0.006, 0.09, -0.01], [0.0, -0.01, 0.0225]])
    calc = VaRCalculator(0.99)
    cvar = calc.component_var(w, cov)
    total = calc.portfolio_parametric_var(w, cov)
    ps = PositionSizer(max_position=1.0)
    budget = 0.8
    sizes = np.array([ps.risk_budget_size(budget, c, total) for c in cvar])
    np.testing.assert_allclose(sizes, budget * cvar / total, rtol=1e-15)
    # Proportional: size ratios equal component-VaR ratios, and the budget is spread exactly.
    assert sizes[0] / sizes[1] == pytest.approx(cvar[0] / cvar[1], rel=1e-14)
    assert sizes.sum() == pytest.approx(budget, rel=1e-12)


def test_risk_budget_clamps_and_validates() -> None:
    ps = PositionSizer(max_position=0.25)
    assert ps.risk_budget_size(1.0, 0.6, 1.0) == 0.25
    assert ps.risk_budget_size(1.0, -0.6, 1.0) == -0.25  # a hedge: negative share of VaR
    assert ps.risk_budget_size(1.0, 0.1, 0.5) == 0.2
    with pytest.raises(DataError, match="total_var"):
        ps.risk_budget_size(1.0, 0.1, 0.0)
    with pytest.raises(DataError, match="total_risk_budget"):
        ps.risk_budget_size(-1.0, 0.1, 1.0)


# ----------------------------------------------------------------------------- soft limits


def test_soft_limit_high_conviction_exceeds_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    ps = PositionSizer(max_position=0.25)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        out = ps.size_portfolio(
            {"A": {"vol": 0.05, "conviction": 0.9}, "B": {"vol": 0.35, "conviction": 0.9}},
            "vol_target",
        )
    assert out["A"] == 0.25 * 1.2  # raw 2.0, soft cap 1.2 x max_position
    assert out["B"] == 0.10 / 0.35  # 0.2857 > 0.25 allowed, below the soft cap
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == LOGGER]
    assert len(warned) == 2
    assert "'A'" in warned[0].getMessage()


def test_soft_limit_low_conviction_hard_cap_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    ps = PositionSizer(max_position=0.25)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        out = ps.size_portfolio(
            {
                "A": {"vol": 0.05, "conviction": 0.5},
                "B": {"vol": 0.05, "conviction": 0.8},  # not *above* the threshold
                "C": {"vol": 0.05},
            },
            "vol_target",
        )
    assert out == {"A": 0.25, "B": 0.25, "C": 0.25}
    assert not [r for r in caplog.records if r.name == LOGGER]


def test_soft_limit_no_warning_when_within_max(caplog: pytest.LogCaptureFixture) -> None:
    ps = PositionSizer(max_position=0.25)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        out = ps.size_portfolio({"A": {"vol": 0.8, "conviction": 0.95}}, "vol_target")
    assert out == {"A": 0.125}
    assert not caplog.records


def test_size_portfolio_kelly_and_risk_budget() -> None:
    ps = PositionSizer(max_position=0.25)
    kelly = ps.size_portfolio(
        {
            "up": {"expected_return": 0.0625, "variance": 0.25},
            "down": {"expected_return": -0.5, "variance": 0.04, "conviction": 1.0},
        },
        "kelly",
    )
    assert kelly == {"up": 0.125, "down": -0.25 * 1.2}
    budget = PositionSizer(max_position=1.0).size_portfolio(
        {
            "a": {"component_var": 0.01, "total_var": 0.04},
            "b": {"component_var": 0.03, "total_var": 0.04, "risk_budget": 0.5},
        },
        "risk_budget",
    )
    assert budget["a"] == 0.25  # default budget 1.0 * 0.01 / 0.04
    assert budget["b"] == pytest.approx(0.375, rel=1e-15)  # 0.5 * 0.03 / 0.04


def test_size_portfolio_errors() -> None:
    ps = PositionSizer()
    with pytest.raises(ConfigError, match="method"):
        ps.size_portfolio({"A": {"vol": 0.1}}, "equal")  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"'A'.*'vol'"):
        ps.size_portfolio({"A": {"variance": 0.1}}, "vol_target")
    with pytest.raises(DataError, match="unknown keys"):
        ps.size_portfolio({"A": {"vol": 0.1, "volatility": 0.1}}, "vol_target")
    with pytest.raises(DataError, match="conviction"):
        ps.size_portfolio({"A": {"vol": 0.1, "conviction": 1.5}}, "vol_target")
    with pytest.raises(DataError, match="'A'"):
        ps.size_portfolio({"A": {"vol": 0.0}}, "vol_target")


# ----------------------------------------------------------------------------- vectorized


def test_scale_weights_matches_size_portfolio() -> None:
    ps = PositionSizer(max_position=0.25)
    vols = np.array([0.05, 0.2, 0.35, 0.8])
    conv = np.array([0.9, 0.0, 0.95, 0.5])
    out = ps.scale_weights(np.ones(4), "vol_target", vols=vols, conviction=conv)
    ref = ps.size_portfolio(
        {
            str(i): {"vol": v, "conviction": c}
            for i, (v, c) in enumerate(zip(vols, conv, strict=True))
        },
        "vol_target",
    )
    assert out.tolist() == list(ref.values())

    mu = np.array([0.5, -0.5, 0.0625, -0.0625])
    var = np.array([0.04, 0.04, 0.25, 0.25])
    out = ps.scale_weights(np.ones(4), "kelly", expected_returns=mu, variances=var, conviction=conv)
    ref = ps.size_portfolio(
        {
            str(i): {"expected_return": m, "variance": v, "conviction": c}
            for i, (m, v, c) in enumerate(zip(mu, var, conv, strict=True))
        },
        "kelly",
    )
    assert out.tolist() == list(ref.values())

    cv = np.array([0.02, 0.01, -0.005, 0.015])
    out = ps.scale_weights(np.ones(4), "risk_budget", component_var=cv, total_var=0.04)
    ref = ps.size_portfolio(
        {str(i): {"component_var": c, "total_var": 0.04} for i, c in enumerate(cv)}, "risk_budget"
    )
    assert out.tolist() == list(ref.values())


def test_scale_weights_signals_2d_and_nan() -> None:
    ps = PositionSizer(max_position=1.0)
    weights = np.array([[1.0, -1.0, 0.0], [0.5, 1.0, 1.0]])
    vols = np.array([[0.2, 0.4, np.nan], [0.1, np.nan, 0.05]])
    out = ps.scale_weights(weights, "vol_target", vols=vols)
    expected = np.array([[0.5, -0.25, 0.0], [0.5, np.nan, 1.0]])
    np.testing.assert_array_equal(out, expected)
    # total_var broadcast per row.
    out = ps.scale_weights(
        np.ones((2, 2)),
        "risk_budget",
        component_var=np.array([[0.01, 0.03], [0.02, 0.02]]),
        total_var=np.array([[0.04], [0.08]]),
    )
    np.testing.assert_array_equal(out, np.array([[0.25, 0.75], [0.25, 0.25]]))


def test_scale_weights_warns_and_validates(caplog: pytest.LogCaptureFixture) -> None:
    ps = PositionSizer(max_position=0.25)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        out = ps.scale_weights(
            np.ones(2), "vol_target", vols=np.array([0.05, 0.05]), conviction=0.9
        )
    assert out.tolist() == [0.25 * 1.2, 0.25 * 1.2]
    assert len([r for r in caplog.records if r.name == LOGGER]) == 1
    with pytest.raises(DataError, match=r"vols must be > 0.*index 1"):
        ps.scale_weights(np.ones(2), "vol_target", vols=np.array([0.1, 0.0]))
    with pytest.raises(DataError, match="needs 'vols'"):
        ps.scale_weights(np.ones(2), "vol_target")
    with pytest.raises(DataError, match="broadcast"):
        ps.scale_weights(np.ones(2), "vol_target", vols=np.ones(3))
    with pytest.raises(DataError, match="conviction"):
        ps.scale_weights(np.ones(2), "vol_target", vols=np.ones(2), conviction=1.5)
    with pytest.raises(ConfigError, match="method"):
        ps.scale_weights(np.ones(2), "bogus", vols=np.ones(2))  # type: ignore[arg-type]
