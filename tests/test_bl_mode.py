"""End-to-end tests of ``mode: black_litterman`` (:mod:`backtest.bl_mode`).

Runs use short slices of the embedded S&P 500 panel (2005-2008, or a few months for the slow
SLSQP reference) and either ``regime: {method: none}`` or a cheap HMM (``min_history: 252``,
``refit_every: 63``) where the regime is part of what is tested. Every expected value is derived
independently of the module under test: the Black-Litterman posterior from the textbook
precision form of He and Litterman (1999) (``bl_mode`` uses the Woodbury form), the covariance
from :func:`portfolio.covariance.covariance_at` (the two-pass reference, not the running-sum path),
the gate from its documented rule re-implemented in numpy, the book's return from the prices.

Bugs found while writing them are pinned by regression tests at the end of the file.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import backtest.bl_mode as bl_mode
from backtest.bl_mode import (
    BL_ACCOUNT,
    EQUILIBRIUM,
    VIEW_EPS,
    black_litterman_targets,
    contribution_summary,
    smooth_views,
)
from backtest.data import PricePanel, load_default_index, load_default_panel
from backtest.portfolio_engine import PortfolioBacktestEngine
from backtest.portfolio_runner import main
from backtest.result import PortfolioBacktestResult
from backtest.strategies import Strategy, StrategyViews, create_strategy
from portfolio.config import (
    BacktestConfig,
    BLSettings,
    OptimizerSettings,
    RegimeSettings,
    SizingSettings,
    load_config,
    parse_config,
)
from portfolio.contracts import PortfolioConfig, StrategyAllocation
from portfolio.covariance import covariance_at, ewma_covariance_path
from portfolio.errors import ConfigError, DataError

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "portfolio_bl.yaml"
START, END = "2005-01-01", "2008-12-31"
SIDS = ["momentum_v1", "trendline_break_v1", "rsi_tema_bb_v1"]
CAPITAL = 1_000_000.0
#: The regime model on an asset column, so that a change of the panel reaches it.
HMM_REGIME: dict[str, Any] = {
    "method": "hmm",
    "market": "XOM",
    "min_history": 252,
    "refit_every": 63,
}
NO_REGIME: dict[str, Any] = {"method": "none"}
REL = 1e-9
Targets = dict[str, np.ndarray]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def bl_config(**sections: Any) -> BacktestConfig:
    """The example book (3 strategies, costs) with some sections replaced."""
    doc: dict[str, Any] = {
        "mode": "black_litterman",
        "portfolio": {
            "id": "bl_test",
            "total_capital": CAPITAL,
            "allocations": [
                {"strategy_id": "momentum_v1", "target_weight": 0.4},
                {"strategy_id": "trendline_break_v1", "target_weight": 0.3},
                {"strategy_id": "rsi_tema_bb_v1", "target_weight": 0.3},
            ],
        },
        "strategies": {
            "momentum_v1": {"kind": "momentum", "params": {"top_k": 5}},
            "trendline_break_v1": {"kind": "trendline_break", "params": {}},
            "rsi_tema_bb_v1": {"kind": "rsi_tema_bb", "params": {}},
        },
        "costs": {"commission_bps": 1.0, "commission_min": 1.0, "slippage_bps": 2.0},
        "rebalance": {"lot_size": 1.0, "min_trade_value": 100.0},
        "regime": NO_REGIME,
    }
    base_dir = sections.pop("base_dir", None)
    doc.update(sections)
    return parse_config(doc, base_dir=base_dir)


def build_engine(
    config: BacktestConfig,
    prices: PricePanel | pd.DataFrame,
    *,
    market_series: pd.Series | None = None,
    clarity: pd.Series | None = None,
    journal_dir: Path | None = None,
) -> PortfolioBacktestEngine:
    """The engine ``from_config`` builds, plus the constructor-only overrides."""
    strategies = {
        sid: create_strategy(sid, spec.kind, spec.params, spec.universe)
        for sid, spec in config.strategies.items()
    }
    return PortfolioBacktestEngine(
        config.portfolio,
        strategies,
        journal_dir,
        prices=prices,
        costs=config.costs,
        execution_lag=config.execution.lag,
        rebalance=config.rebalance,
        mode="black_litterman",
        black_litterman=config.black_litterman,
        optimizer=config.optimizer,
        sizing=config.sizing,
        regime=config.regime,
        market_series=market_series,
        clarity=clarity,
    )


def run_capturing(engine: PortfolioBacktestEngine) -> tuple[PortfolioBacktestResult, Targets]:
    """``engine.run()`` and the per-close arrays the run itself used (computed once)."""
    captured: Targets = {}
    original = bl_mode.black_litterman_targets

    def spy(eng: PortfolioBacktestEngine) -> Targets:
        out = original(eng)
        captured.update(out)
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bl_mode, "black_litterman_targets", spy)
        result = engine.run()
    return result, captured


def held_targets(tg: Targets) -> np.ndarray:
    """Last traded candidate row at every close (zeros before the first trade), by pandas."""
    cand = pd.DataFrame(tg["candidates"]).where(pd.Series(tg["trade"]), np.nan)
    return cand.ffill().fillna(0.0).to_numpy()


def asset_returns(prices: pd.DataFrame) -> np.ndarray:
    """Simple close-to-close returns, 0 where undefined (first bar, not listed)."""
    p = prices.to_numpy(dtype=np.float64)
    r = np.zeros_like(p)
    with np.errstate(invalid="ignore"):
        r[1:] = p[1:] / p[:-1] - 1.0
    return np.nan_to_num(r, nan=0.0)


def textbook_posterior(
    sigma: np.ndarray,
    w_mkt: np.ndarray,
    views: list[tuple[int, float, float]],
    clarity: float,
    delta: float,
    tau: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """He and Litterman (1999), precision form, absolute views ``(asset, Q, confidence)``.

    ``pi = delta Sigma w``, ``Omega_kk = tau Sigma_aa / (c_k r + eps)``,
    ``M = [(tau Sigma)^-1 + P' Omega^-1 P]^-1``, ``mu = M [(tau Sigma)^-1 pi + P' Omega^-1 Q]``,
    ``Sigma_BL = Sigma + M``.
    """
    pi = delta * sigma @ w_mkt
    prec = np.linalg.inv(tau * sigma)
    rhs = prec @ pi
    for a, q, c in views:
        omega = tau * sigma[a, a] / (c * clarity + VIEW_EPS)
        prec[a, a] += 1.0 / omega
        rhs[a] += q / omega
    m = np.linalg.inv(prec)
    m = 0.5 * (m + m.T)
    return pi, m @ rhs, sigma + m


def views_at(
    engine: PortfolioBacktestEngine, t: int, assets: np.ndarray
) -> list[tuple[int, float, float]]:
    """Finite views of every strategy at close ``t``, positions within ``assets``."""
    out = []
    prices = engine.panel.prices
    for strat in engine.strategies.values():
        v = strat.views(prices)
        er = v.expected_returns.to_numpy()[t, assets]
        cf = v.confidence.to_numpy()[t, assets]
        out += [
            (i, float(er[i]), float(cf[i]))
            for i in range(assets.size)
            if math.isfinite(er[i]) and math.isfinite(cf[i])
        ]
    return out


def reference_covariance(panel: PricePanel, t: int, bl: BLSettings) -> np.ndarray:
    return covariance_at(
        panel.returns().to_numpy(),
        t,
        halflife=bl.halflife,
        min_history=bl.min_history,
        shrinkage=bl.shrinkage,
    )


def objective(w: np.ndarray, mu: np.ndarray, sigma: np.ndarray, gamma: float) -> float:
    """The optimizer's objective ``0.5 w' Sigma w - (1 / gamma) mu' w``."""
    return float(0.5 * w @ sigma @ w - mu @ w / gamma)


def check_feasible(tg: Targets, opt: OptimizerSettings, tol: float = 1e-7) -> None:
    ok = tg["ok"]
    cand = tg["candidates"][ok]
    assert cand.min() >= opt.min_weight - tol
    assert cand.max() <= opt.max_weight + tol
    assert np.abs(cand).sum(axis=1).max() <= opt.max_leverage + tol
    if opt.budget is not None:
        np.testing.assert_allclose(cand.sum(axis=1), opt.budget, rtol=0, atol=tol)
    assert not tg["candidates"][~ok].any()


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def panel() -> PricePanel:
    return load_default_panel().slice(START, END)


@pytest.fixture(scope="module")
def short_panel() -> PricePanel:
    """83 closes, 53 of them with a candidate (``min_history: 30``): for the slow SLSQP."""
    return load_default_panel().slice("2008-01-01", "2008-04-30")


SHORT_BL: dict[str, Any] = {"min_history": 30}


@pytest.fixture(scope="module")
def hmm_run(panel: PricePanel) -> tuple[PortfolioBacktestEngine, PortfolioBacktestResult, Targets]:
    """The book with costs, lot rounding and the HMM regime on XOM, built with ``from_config``."""
    engine = PortfolioBacktestEngine.from_config(bl_config(regime=HMM_REGIME), prices=panel)
    result, tg = run_capturing(engine)
    return engine, result, tg


@pytest.fixture(scope="module")
def frictionless_run(
    panel: PricePanel,
) -> tuple[PortfolioBacktestEngine, PortfolioBacktestResult, Targets]:
    """No costs, fractional units, no minimum trade: the pass executes targets exactly."""
    cfg = bl_config(costs={}, rebalance={"lot_size": 0.0, "min_trade_value": 0.0})
    engine = PortfolioBacktestEngine.from_config(cfg, prices=panel)
    result, tg = run_capturing(engine)
    return engine, result, tg


@pytest.fixture(scope="module")
def fast_short(short_panel: PricePanel) -> Targets:
    engine = PortfolioBacktestEngine.from_config(
        bl_config(black_litterman=SHORT_BL), prices=short_panel
    )
    return black_litterman_targets(engine)


# --------------------------------------------------------------------------------------------
# running end to end
# --------------------------------------------------------------------------------------------


def test_from_config_runs_one_book(hmm_run: Any, panel: PricePanel) -> None:
    _, result, tg = hmm_run
    trade = tg["trade"]
    assert result.manifest["mode"] == "black_litterman"
    assert result.manifest["traded_closes"] == int(trade.sum())
    assert result.manifest["strategies"] == SIDS
    assert BL_ACCOUNT in result.allocations.columns
    # One decision per traded close, at that close, filled at the next one (lag 1).
    assert list(result.rebalances["timestamp"]) == list(panel.index[trade])
    fills = result.rebalances["fill_timestamp"].dropna()
    decided = np.flatnonzero(trade)
    assert list(fills) == list(panel.index[decided[decided + 1 < panel.n_bars] + 1])
    assert set(result.trades["timestamp"]) <= set(fills)
    assert trade.sum() > 100  # the 2005-2008 book trades often: the checks below have substance
    assert np.isfinite(result.equity.to_numpy()).all()
    assert result.equity.iloc[0] == CAPITAL  # nothing trades on the first bar
    # The HMM on XOM: clarity 1 before its first fit (252 returns), then in [0.5, 1].
    clarity = tg["clarity"]
    assert (clarity[:253] == 1.0).all()
    assert clarity[253:].min() >= 0.5 and clarity[253:].max() <= 1.0
    assert clarity[253:].std() > 0.01


def test_example_config_spells_out_the_defaults() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.mode == "black_litterman"
    assert list(cfg.portfolio.strategy_ids) == SIDS
    # the defaults, except the views smoothed over about a month
    assert cfg.black_litterman == BLSettings(view_halflife=21.0)
    assert cfg.optimizer == OptimizerSettings()
    assert cfg.sizing == SizingSettings()
    assert cfg.regime == RegimeSettings()
    assert cfg.costs.commission_bps > 0 and cfg.costs.slippage_bps > 0


def test_cli_runs_the_example_and_prints_the_contribution_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "--portfolio-config",
        str(EXAMPLE),
        "--start",
        "2007-01-01",
        "--end",
        "2008-06-30",
        "--out",
        str(tmp_path / "out"),
        "--no-progress",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    # The same run in-process gives the table the CLI printed, row by row.
    engine = PortfolioBacktestEngine.from_config(
        load_config(EXAMPLE), start=pd.Timestamp("2007-01-01"), end=pd.Timestamp("2008-06-30")
    )
    summary = contribution_summary(engine.run())
    assert list(summary.index) == [EQUILIBRIUM, *SIDS]
    assert "per-strategy contribution (black_litterman attribution):" in out
    assert summary.to_string(float_format=lambda v: f"{v:,.4f}") in out
    assert (tmp_path / "out" / "strategy_attribution.csv").is_file()


# --------------------------------------------------------------------------------------------
# accounting, exposure, bounds
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["hmm_run", "frictionless_run"])
def test_book_accounting_identity(which: str, request: pytest.FixtureRequest) -> None:
    _, result, _ = request.getfixturevalue(which)
    pos = result.positions.to_numpy()
    px = result.prices.to_numpy()
    marked = np.where(pos != 0.0, pos * px, 0.0).sum(axis=1)
    equity = result.equity.to_numpy()
    np.testing.assert_allclose(result.cash.to_numpy() + marked, equity, rtol=REL, atol=0)
    assert result.total_costs > 0 if which == "hmm_run" else result.total_costs == 0


def test_frictionless_pass_executes_the_gated_targets(frictionless_run: Any) -> None:
    """Units filled at t+1 are ``target(t) * equity(t) / price(t)`` and are held until the next."""
    engine, result, tg = frictionless_run
    units = result.positions.to_numpy()
    px = np.nan_to_num(result.prices.to_numpy())
    eq = result.equity.to_numpy()
    traded = np.flatnonzero(tg["trade"])
    traded = traded[traded + 1 < len(eq)]
    for t in traded:
        w_decided = units[t + 1] * px[t] / eq[t]
        np.testing.assert_allclose(w_decided, tg["candidates"][t], rtol=0, atol=1e-9)
        # Gross exposure at the decision close is the optimizer's, within the cap.
        assert np.abs(w_decided).sum() <= engine.optimizer_settings.max_leverage + 1e-9
    fill_bars = np.zeros(len(eq), dtype=bool)
    fill_bars[traded + 1] = True
    moved = np.abs(np.diff(units, axis=0)).max(axis=1) > 0
    assert not (moved & ~fill_bars[1:]).any()


def test_gross_exposure_within_cap_at_decision_closes(hmm_run: Any) -> None:
    """With costs and whole shares, the held book marked at the decision close stays in the cap.

    ``result.weights`` itself can exceed ``max_leverage`` between the decision and the next one:
    the units are frozen at the decision close, and the -9 % day of the 3x book on 2008-01-23
    lifts its gross exposure to 3.34 of the smaller equity. That is drift, not a breach.
    """
    engine, result, tg = hmm_run
    units = result.positions.to_numpy()
    px = np.nan_to_num(result.prices.to_numpy())
    eq = result.equity.to_numpy()
    traded = np.flatnonzero(tg["trade"])
    traded = traded[traded + 1 < len(eq)]
    gross = np.abs(units[traded + 1] * px[traded]).sum(axis=1) / eq[traded]
    cap = engine.optimizer_settings.max_leverage
    assert gross.max() <= cap + 1e-3  # lot rounding of 20 positions of ~$150k, costs
    assert gross.max() > cap - 0.01  # the cap binds: the check has substance
    assert result.weights.abs().sum(axis=1).max() > cap  # see the docstring


def test_candidates_respect_the_optimizer_constraints(hmm_run: Any) -> None:
    engine, _, tg = hmm_run
    check_feasible(tg, engine.optimizer_settings)
    ok = tg["ok"]
    # An asset enters once it has min_history (60) returns: the first 60 closes have no candidate.
    assert not ok[:60].any() and ok[60:].all()


# --------------------------------------------------------------------------------------------
# Black-Litterman posterior and attribution
# --------------------------------------------------------------------------------------------


def test_view_contributions_add_up_to_the_posterior_shift(hmm_run: Any) -> None:
    _, _, tg = hmm_run
    np.testing.assert_allclose(tg["contrib"].sum(axis=1), tg["mu"] - tg["pi"], rtol=0, atol=1e-10)
    assert np.abs(tg["mu"] - tg["pi"]).max() > 0.05


@pytest.mark.parametrize("t", [60, 500, 1006])
def test_posterior_matches_the_textbook_formula(hmm_run: Any, t: int) -> None:
    engine, _, tg = hmm_run
    bl = engine.bl_settings
    sigma = reference_covariance(engine.panel, t, bl)
    assets = np.arange(engine.panel.n_assets)
    w_eq = np.full(assets.size, 1.0 / assets.size)
    views = views_at(engine, t, assets)
    assert len(views) > 20
    pi, mu, _ = textbook_posterior(sigma, w_eq, views, tg["clarity"][t], bl.risk_aversion, bl.tau)
    np.testing.assert_allclose(tg["pi"][t], pi, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(tg["mu"][t], mu, rtol=1e-8, atol=1e-10)


def test_attribution_sums_to_the_last_traded_target(hmm_run: Any) -> None:
    _, result, tg = hmm_run
    attr = result.strategy_attribution
    assert attr is not None
    assert list(attr.columns.get_level_values(0).unique()) == [EQUILIBRIUM, *SIDS]
    total = attr.T.groupby(level="asset", sort=False).sum().T
    assert list(total.columns) == list(result.prices.columns)
    np.testing.assert_allclose(total.to_numpy(), held_targets(tg), rtol=0, atol=1e-12)


def test_attribution_split_at_traded_closes(hmm_run: Any) -> None:
    """Signed ``w_j c_s,j / mu_j`` (equilibrium ``w_j pi_j / mu_j``); absolute split where the
    sources largely cancel (``|mu_j| < 0.25 (|pi_j| + sum |c|)``); every part within 4 |w_j|."""
    _, result, tg = hmm_run
    attr = result.strategy_attribution
    assert attr is not None
    branches = set()
    for t in np.flatnonzero(tg["trade"]):
        w, pi, c = tg["candidates"][t], tg["pi"][t], tg["contrib"][t]
        mu = pi + c.sum(axis=0)
        den = np.abs(pi) + np.abs(c).sum(axis=0)
        signed = (np.abs(mu) >= 1e-6) & (np.abs(mu) >= 0.25 * den)
        branches.update(set(signed[w != 0.0].tolist()))
        with np.errstate(divide="ignore", invalid="ignore"):
            eq = np.where(signed, w * pi / mu, w * np.abs(pi) / den)
            parts = [
                np.where(signed, w * c[k] / mu, w * np.abs(c[k]) / den) for k in range(len(SIDS))
            ]
        np.testing.assert_allclose(attr[EQUILIBRIUM].iloc[t], eq, rtol=1e-12, atol=1e-15)
        for k, sid in enumerate(SIDS):
            np.testing.assert_allclose(attr[sid].iloc[t], parts[k], rtol=1e-12, atol=1e-15)
        bound = 4.0 * np.tile(np.abs(w), len(SIDS) + 1) * (1 + 1e-12) + 1e-15
        assert (np.abs(attr.iloc[t].to_numpy()) <= bound).all()
    assert branches == {True, False}  # both the signed and the absolute split occur


def test_contribution_summary_adds_up_to_the_target_book_return(hmm_run: Any) -> None:
    _, result, tg = hmm_run
    summary = contribution_summary(result)
    r = asset_returns(result.prices)
    held = held_targets(tg)
    # the target traded at close t is held from t + lag (lag 1): it earns the return to t + 2
    book = float((held[:-2] * r[2:]).sum())
    assert summary["return_contribution"].sum() == pytest.approx(book, rel=1e-12, abs=1e-14)
    assert abs(book) > 0.05
    net = held.sum(axis=1).mean()
    assert summary["avg_net_weight"].sum() == pytest.approx(net, rel=1e-12, abs=1e-14)
    gross = np.abs(held).sum(axis=1).mean()
    assert summary["avg_gross_weight"].sum() >= gross * (1 - 1e-12)  # parts may offset


# --------------------------------------------------------------------------------------------
# no look-ahead
# --------------------------------------------------------------------------------------------


def perturbed_after(frame: pd.DataFrame | pd.Series, t: int, seed: int) -> Any:
    """Multiply every value after position ``t`` by a random factor in [0.7, 1.4]."""
    rng = np.random.default_rng(seed)
    values = frame.to_numpy(dtype=np.float64, copy=True)
    values[t + 1 :] *= rng.uniform(0.7, 1.4, size=values[t + 1 :].shape)
    if isinstance(frame, pd.Series):
        return pd.Series(values, index=frame.index, name=frame.name)
    return pd.DataFrame(values, index=frame.index, columns=frame.columns)


TARGET_KEYS = ("candidates", "trade", "mu", "pi", "contrib", "ok", "clarity")


def assert_same_up_to(
    t: int,
    base: tuple[PortfolioBacktestResult, Targets],
    other: tuple[PortfolioBacktestResult, Targets],
) -> None:
    (res_a, tg_a), (res_b, tg_b) = base, other
    for key in TARGET_KEYS:
        assert np.array_equal(tg_a[key][: t + 1], tg_b[key][: t + 1]), key
    index = res_a.equity.index
    cut = index[t]
    pd.testing.assert_series_equal(
        res_a.equity.iloc[: t + 1], res_b.equity.iloc[: t + 1], check_exact=True
    )
    pd.testing.assert_series_equal(
        res_a.cash.iloc[: t + 1], res_b.cash.iloc[: t + 1], check_exact=True
    )
    for name in ("positions", "weights", "strategy_attribution"):
        a, b = getattr(res_a, name), getattr(res_b, name)
        pd.testing.assert_frame_equal(a.iloc[: t + 1], b.iloc[: t + 1], check_exact=True)
    trades_a = res_a.trades[res_a.trades["timestamp"] <= cut].reset_index(drop=True)
    trades_b = res_b.trades[res_b.trades["timestamp"] <= cut].reset_index(drop=True)
    assert len(trades_a) > 0
    pd.testing.assert_frame_equal(trades_a, trades_b, check_exact=True)
    # The perturbation did reach the later closes, so the equality above is not vacuous.
    assert not np.array_equal(tg_a["candidates"][t + 1 :], tg_b["candidates"][t + 1 :])
    assert not np.array_equal(res_a.equity.iloc[t + 1 :], res_b.equity.iloc[t + 1 :])


@pytest.mark.parametrize("t", [300, 420, 800])
def test_no_look_ahead_prices_and_regime_on_an_asset(
    hmm_run: Any, panel: PricePanel, t: int
) -> None:
    """Views, covariance, HMM clarity (market = XOM), optimizer, gate and pass are causal.

    Cut 420 is inside a refit block of the HMM (refits every 63 returns from 252): the block's
    forward filter runs past the cut on the perturbed data.
    """
    _, result, tg = hmm_run
    cfg = bl_config(regime=HMM_REGIME)
    other = run_capturing(build_engine(cfg, perturbed_after(panel.prices, t, seed=t)))
    assert_same_up_to(t, (result, tg), other)
    assert not np.array_equal(tg["clarity"][t + 1 :], other[1]["clarity"][t + 1 :])


def test_no_look_ahead_with_a_user_market_series(panel: PricePanel) -> None:
    """``market_series`` (the S&P 500 here) perturbed together with the panel."""
    t = 520
    cfg = bl_config(regime={**HMM_REGIME, "market": "index"})
    index = load_default_index().loc[panel.index[0] : panel.index[-1]]
    base = run_capturing(build_engine(cfg, panel, market_series=index))
    other = run_capturing(
        build_engine(
            cfg,
            perturbed_after(panel.prices, t, seed=1),
            market_series=perturbed_after(index, t, seed=2),
        )
    )
    assert_same_up_to(t, base, other)
    assert not np.array_equal(base[1]["clarity"][t + 1 :], other[1]["clarity"][t + 1 :])


# --------------------------------------------------------------------------------------------
# solvers
# --------------------------------------------------------------------------------------------


def bl_sigma_at(engine: PortfolioBacktestEngine, t: int, tg: Targets) -> np.ndarray:
    """Posterior covariance at close ``t`` (all assets valid), from the textbook formula."""
    bl = engine.bl_settings
    sigma = reference_covariance(engine.panel, t, bl)
    assets = np.arange(engine.panel.n_assets)
    w_eq = np.full(assets.size, 1.0 / assets.size)
    views = views_at(engine, t, assets)
    _, mu, sigma_bl = textbook_posterior(
        sigma, w_eq, views, tg["clarity"][t], bl.risk_aversion, bl.tau
    )
    np.testing.assert_allclose(tg["mu"][t], mu, rtol=1e-8, atol=1e-10)
    return sigma_bl


def test_fast_solver_matches_slsqp(short_panel: PricePanel, fast_short: Targets) -> None:
    """Same feasible set, same optimum: SLSQP stops about 1e-5 away in weights (its ``ftol``).

    The weights agree to 1e-4, not 1e-5: at 6 of the 53 closes SLSQP stops 1.0-1.4e-5 away from
    the fast solution. Both are optimal to 1e-9 in the objective, and the fast solver's objective is
    never worse, so the difference is SLSQP's stopping point, not a different optimum.
    """
    cfg = bl_config(black_litterman=SHORT_BL, optimizer={"solver": "slsqp"})
    engine = PortfolioBacktestEngine.from_config(cfg, prices=short_panel)
    ref = black_litterman_targets(engine)
    fast = fast_short
    assert np.array_equal(ref["ok"], fast["ok"])
    assert 40 <= ref["ok"].sum() <= 70
    np.testing.assert_array_equal(ref["mu"], fast["mu"])
    check_feasible(ref, engine.optimizer_settings)
    np.testing.assert_allclose(ref["candidates"], fast["candidates"], rtol=0, atol=1e-4)
    gamma = engine.optimizer_settings.risk_aversion
    for t in np.flatnonzero(ref["ok"]).tolist():
        sigma_bl = bl_sigma_at(engine, t, ref)
        f_fast = objective(fast["candidates"][t], fast["mu"][t], sigma_bl, gamma)
        f_ref = objective(ref["candidates"][t], ref["mu"][t], sigma_bl, gamma)
        assert f_fast <= f_ref + 1e-12
        assert f_ref - f_fast <= 1e-9


def test_fallback_to_slsqp_logs_and_keeps_the_target(
    short_panel: PricePanel,
    fast_short: Targets,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One close whose fast solve "fails" is re-solved with SLSQP, with a warning."""
    original = bl_mode.bl_candidates_nb
    calls: list[int] = []

    def flaky(*args: Any) -> int:
        t_start, out_ok = args[14], args[20]
        calls.append(int(t_start))
        failed = original(*args)
        if len(calls) == 1:
            # Report the 10th close with a candidate as not converged.
            return int(np.flatnonzero(out_ok[t_start:])[9]) + t_start
        return int(failed)

    monkeypatch.setattr(bl_mode, "bl_candidates_nb", flaky)
    engine = PortfolioBacktestEngine.from_config(
        bl_config(black_litterman=SHORT_BL), prices=short_panel
    )
    with caplog.at_level(logging.WARNING, logger="backtest.bl_mode"):
        tg = black_litterman_targets(engine)
    t_fail = int(np.flatnonzero(fast_short["ok"])[9])
    assert calls == [0, t_fail + 1]
    messages = [r.getMessage() for r in caplog.records if r.name == "backtest.bl_mode"]
    day = short_panel.index[t_fail].date()
    assert f"fast solver did not converge at {day}; falling back to SLSQP" in messages
    assert f"SLSQP fallback used at 1 of {short_panel.n_bars} closes" in messages
    assert all(r.levelno == logging.WARNING for r in caplog.records)
    # The close still has a target, SLSQP's, objective-equivalent to the fast one.
    assert np.array_equal(tg["ok"], fast_short["ok"])
    check_feasible(tg, engine.optimizer_settings)
    np.testing.assert_allclose(
        tg["candidates"][t_fail], fast_short["candidates"][t_fail], rtol=0, atol=1e-4
    )
    sigma_bl = bl_sigma_at(engine, t_fail, tg)
    gamma = engine.optimizer_settings.risk_aversion
    f_fast = objective(fast_short["candidates"][t_fail], tg["mu"][t_fail], sigma_bl, gamma)
    f_ref = objective(tg["candidates"][t_fail], tg["mu"][t_fail], sigma_bl, gamma)
    assert abs(f_ref - f_fast) <= 1e-9
    # The other closes are the fast solutions (warm start aside).
    others = np.ones(short_panel.n_bars, dtype=bool)
    others[t_fail] = False
    np.testing.assert_allclose(
        tg["candidates"][others], fast_short["candidates"][others], rtol=0, atol=1e-7
    )


def test_infeasible_return_target_leaves_closes_without_target(
    short_panel: PricePanel, caplog: pytest.LogCaptureFixture
) -> None:
    """An unreachable ``target_return``: every close warns, none trades, the run completes."""
    cfg = bl_config(black_litterman=SHORT_BL, optimizer={"target_return": 5.0})
    engine = PortfolioBacktestEngine.from_config(cfg, prices=short_panel.slice(end="2008-03-15"))
    with caplog.at_level(logging.WARNING, logger="backtest.bl_mode"):
        result, tg = run_capturing(engine)
    n_closes = engine.panel.n_bars - SHORT_BL["min_history"]
    no_target = [r for r in caplog.records if r.getMessage().startswith("no target at ")]
    assert len(no_target) == n_closes
    assert "target_return=5.0 is infeasible" in no_target[0].getMessage()
    assert not tg["ok"].any() and not tg["trade"].any()
    assert result.trades.empty
    assert (result.equity == CAPITAL).all()


# --------------------------------------------------------------------------------------------
# regime clarity
# --------------------------------------------------------------------------------------------


def test_regime_clarity_from_a_user_series(panel: PricePanel, tmp_path: Path) -> None:
    """A CSV clarity of 0 from close 300 on: the views are ignored there (up to VIEW_EPS)."""
    start = 300
    pd.DataFrame({"Date": panel.index[start:].strftime("%Y-%m-%d"), "clarity": 0.0}).to_csv(
        tmp_path / "clarity.csv", index=False
    )
    cfg = bl_config(regime={"method": "series", "series": "clarity.csv"}, base_dir=tmp_path)
    tg = black_litterman_targets(PortfolioBacktestEngine.from_config(cfg, prices=panel))
    # Before the file's first date: 1.0 (no discount); from it on: the file's value.
    assert (tg["clarity"][:start] == 1.0).all() and (tg["clarity"][start:] == 0.0).all()
    shift = np.abs(tg["mu"] - tg["pi"]).max(axis=1)
    # Omega = tau Sigma_aa / 1e-8: each view moves mu by about 1e-8 of its surprise (|Q| <= 1).
    assert shift[start:].max() < 1e-6
    assert shift[start:].max() > 0.0
    assert shift[60:start].min() > 1e-3


def test_clarity_override_scales_the_views(panel: PricePanel) -> None:
    """Higher clarity, tighter views: the posterior is farther from equilibrium at every close."""
    cfg = bl_config(regime=HMM_REGIME)  # the override takes precedence over the HMM
    tgs = {}
    for c in (0.2, 0.9):
        clarity = pd.Series(c, index=panel.index)
        tgs[c] = black_litterman_targets(build_engine(cfg, panel, clarity=clarity))
        assert (tgs[c]["clarity"] == c).all()
    assert np.array_equal(tgs[0.2]["pi"], tgs[0.9]["pi"])
    assert np.array_equal(tgs[0.2]["ok"], tgs[0.9]["ok"])
    ok = tgs[0.2]["ok"]
    dist = {c: np.linalg.norm(tg["mu"] - tg["pi"], axis=1)[ok] for c, tg in tgs.items()}
    assert (dist[0.9] > dist[0.2]).all()


def test_clarity_override_out_of_range_is_a_config_error(panel: PricePanel) -> None:
    clarity = pd.Series(0.5, index=panel.index)
    clarity.iloc[10] = 1.5
    engine = build_engine(bl_config(), panel, clarity=clarity)
    day = panel.index[10].date()
    with pytest.raises(
        ConfigError, match=rf"^clarity: values must be in \[0, 1\], got .*1\.5.* at {day}$"
    ):
        black_litterman_targets(engine)


# --------------------------------------------------------------------------------------------
# sizing, gate, market weights
# --------------------------------------------------------------------------------------------


def test_vol_target_sizing(panel: PricePanel, frictionless_run: Any) -> None:
    """``clip(w * target_vol / sqrt(Sigma_aa), +-max_position)`` of the optimized weights."""
    _, _, unsized = frictionless_run
    sizing = {"method": "vol_target", "target_vol": 0.1, "max_position": 0.25}
    engine = PortfolioBacktestEngine.from_config(bl_config(sizing=sizing), prices=panel)
    result, tg = run_capturing(engine)
    bl = engine.bl_settings
    cov = ewma_covariance_path(
        panel.returns().to_numpy(), bl.halflife, bl.min_history, bl.shrinkage
    )
    vols = np.sqrt(np.nan_to_num(np.einsum("taa->ta", cov)))
    ok = tg["ok"]
    expected = np.clip(unsized["candidates"][ok] * 0.1 / vols[ok], -0.25, 0.25)
    np.testing.assert_allclose(tg["candidates"][ok], expected, rtol=1e-12, atol=1e-15)
    assert np.abs(tg["candidates"]).max() <= 0.25
    assert (np.abs(tg["candidates"]).max(axis=1)[ok] == 0.25).mean() < 1.0
    assert tg["trade"].any() and len(result.trades) > 0


def gate_reference(tg: Targets, returns: np.ndarray, signal: float, drift: float) -> np.ndarray:
    """The documented gate: drift the last traded target with the returns, compare."""
    n_t, n_a = tg["candidates"].shape
    trade = np.zeros(n_t, dtype=bool)
    cur = np.zeros(n_a)
    last_mu: np.ndarray | None = None
    for t in range(n_t):
        r = returns[t]
        cur = cur * (1.0 + r) / (1.0 + cur @ r)
        if not tg["ok"][t]:
            continue
        change = math.inf if last_mu is None else np.abs(tg["mu"][t] - last_mu).max()
        if change > signal or np.abs(cur - tg["candidates"][t]).max() > drift:
            trade[t] = True
            cur = tg["candidates"][t].copy()
            last_mu = tg["mu"][t]
    return trade


def test_gate_follows_its_rule(hmm_run: Any, panel: PricePanel) -> None:
    engine, _, tg = hmm_run
    bl = engine.bl_settings
    expected = gate_reference(
        tg, asset_returns(panel.prices), bl.signal_threshold, bl.drift_threshold
    )
    assert np.array_equal(tg["trade"], expected)
    assert 0 < tg["trade"].sum() < tg["ok"].sum()


def test_gate_huge_thresholds_trade_once(panel: PricePanel) -> None:
    bl = {"signal_threshold": 1e9, "drift_threshold": 1e9}
    engine = PortfolioBacktestEngine.from_config(bl_config(black_litterman=bl), prices=panel)
    result, tg = run_capturing(engine)
    first = int(np.argmax(tg["ok"]))
    assert np.flatnonzero(tg["trade"]).tolist() == [first]
    assert list(result.rebalances["timestamp"]) == [panel.index[first]]
    assert set(result.trades["timestamp"]) == {panel.index[first + 1]}
    attr = result.strategy_attribution
    assert attr is not None
    total = attr.T.groupby(level="asset", sort=False).sum().T.to_numpy()
    held = np.tile(tg["candidates"][first], (len(total) - first, 1))
    np.testing.assert_allclose(total[first:], held, rtol=0, atol=1e-12)


def test_gate_zero_thresholds_trade_every_close(panel: PricePanel) -> None:
    bl = {"signal_threshold": 0.0, "drift_threshold": 0.0}
    engine = PortfolioBacktestEngine.from_config(bl_config(black_litterman=bl), prices=panel)
    tg = black_litterman_targets(engine)
    assert tg["ok"].sum() > 900
    assert np.array_equal(tg["trade"], tg["ok"])


def equal_weight_config(**bl: Any) -> BacktestConfig:
    """One strategy without views (``equal_weight``): the posterior is the prior."""
    return parse_config(
        {
            "mode": "black_litterman",
            "portfolio": {
                "id": "prior_only",
                "total_capital": CAPITAL,
                "allocations": [{"strategy_id": "ew", "target_weight": 1.0}],
            },
            "strategies": {"ew": {"kind": "equal_weight"}},
            "regime": NO_REGIME,
            "black_litterman": bl,
        }
    )


@pytest.mark.parametrize(
    "market_weights", [{"XOM": 1.0}, {"XOM": 0.8, "AAPL": 0.2}, None], ids=["xom", "two", "equal"]
)
def test_market_weights_give_the_prior(
    panel: PricePanel, market_weights: dict[str, float] | None
) -> None:
    """``pi = delta * Sigma @ w_mkt``; with no views ``mu == pi`` exactly."""
    engine = PortfolioBacktestEngine.from_config(
        equal_weight_config(market_weights=market_weights), prices=panel
    )
    tg = black_litterman_targets(engine)
    assert not tg["contrib"].any()
    assert np.array_equal(tg["mu"], tg["pi"])
    w = np.full(panel.n_assets, 1.0 / panel.n_assets)
    if market_weights is not None:
        w = np.array([market_weights.get(a, 0.0) for a in panel.assets])
    for t in (60, 700):
        sigma = reference_covariance(panel, t, engine.bl_settings)
        np.testing.assert_allclose(tg["pi"][t], 2.5 * sigma @ w, rtol=1e-10, atol=1e-14)


# --------------------------------------------------------------------------------------------
# bad input and infeasible constraints
# --------------------------------------------------------------------------------------------


def test_regime_market_missing_asset_is_a_config_error(panel: PricePanel) -> None:
    cfg = bl_config(regime={**HMM_REGIME, "market": "NOPE"})
    engine = PortfolioBacktestEngine.from_config(cfg, prices=panel)
    with pytest.raises(ConfigError, match=r"^regime\.market: 'NOPE' is neither 'index' nor an"):
        engine.run()


def test_market_weights_missing_asset_is_named(panel: PricePanel) -> None:
    """A data error like a strategy universe naming a missing asset (``require_assets``)."""
    cfg = equal_weight_config(market_weights={"XOM": 0.5, "NOPE": 0.5})
    engine = PortfolioBacktestEngine.from_config(cfg, prices=panel)
    with pytest.raises(DataError, match=r"^black_litterman\.market_weights: asset\(s\) 'NOPE'"):
        engine.run()


def infeasible_box_engine(panel: PricePanel) -> PortfolioBacktestEngine:
    # 20 assets x max_weight 0.01 = 0.2 < budget 1: no close can have a target.
    cfg = bl_config(optimizer={"min_weight": -0.01, "max_weight": 0.01})
    return PortfolioBacktestEngine.from_config(cfg, prices=panel)


def test_infeasible_box_and_budget_is_an_upfront_config_error(panel: PricePanel) -> None:
    """Even with every asset the box cannot meet the budget: a ConfigError before any close."""
    with pytest.raises(
        ConfigError,
        match=r"optimizer: 20 assets with weights in \[-0\.01, 0\.01\] cannot meet budget 1\.0",
    ):
        black_litterman_targets(infeasible_box_engine(panel))


# --------------------------------------------------------------------------------------------
# bugs found while writing these tests, fixed since: kept as regression tests
# --------------------------------------------------------------------------------------------


def test_infeasible_box_and_budget_is_reported(
    panel: PricePanel, caplog: pytest.LogCaptureFixture
) -> None:
    engine = infeasible_box_engine(panel)
    with caplog.at_level(logging.WARNING):
        try:
            black_litterman_targets(engine)
        except ConfigError as exc:
            assert "optimizer" in str(exc)
            return
    assert any(r.levelno >= logging.WARNING for r in caplog.records)


def test_long_only_keeps_a_positive_min_weight(panel: PricePanel) -> None:
    cfg = bl_config(optimizer={"long_only": True, "min_weight": 0.02, "max_weight": 0.25})
    engine = PortfolioBacktestEngine.from_config(cfg, prices=panel)
    assert engine.optimizer_settings.min_weight == 0.02
    tg = black_litterman_targets(engine)
    assert tg["ok"].any()
    check_feasible(tg, engine.optimizer_settings)


def test_box_beyond_the_leverage_cap_is_a_config_error(panel: PricePanel) -> None:
    """20 x min_weight 0.2 = gross 4 > max_leverage 3: no portfolio can satisfy both."""
    opt = {"budget": None, "min_weight": 0.2, "max_weight": 0.25, "max_leverage": 3.0}
    engine = PortfolioBacktestEngine.from_config(bl_config(optimizer=opt), prices=panel)
    with pytest.raises(ConfigError, match=r"gross leverage <= 3\.0"):
        black_litterman_targets(engine)


@dataclass(frozen=True)
class ConstantViews:
    """A user strategy (not registered): the same view on every asset at every close."""

    strategy_id: str
    expected_return: float
    confidence: float  # NaN: the strategy gives no confidence
    universe: tuple[str, ...] | None = None

    def target_weights(self, prices: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(np.nan, index=prices.index, columns=prices.columns)

    def views(self, prices: pd.DataFrame) -> StrategyViews:
        def full(v: float) -> pd.DataFrame:
            return pd.DataFrame(v, index=prices.index, columns=prices.columns)

        return StrategyViews(full(self.expected_return), full(self.confidence))


def constant_views_targets(panel: PricePanel, confidence: float) -> Targets:
    strategy: Strategy = ConstantViews("user", 0.3, confidence)
    config = PortfolioConfig("user_book", CAPITAL, (StrategyAllocation("user", 1.0),))
    engine = PortfolioBacktestEngine(
        config,
        [strategy],
        prices=panel,
        mode="black_litterman",
        regime=RegimeSettings(method="none"),
    )
    return black_litterman_targets(engine)


def test_constant_views_with_confidence_move_the_posterior(short_panel: PricePanel) -> None:
    tg = constant_views_targets(short_panel, 0.5)
    ok = tg["ok"]
    assert ok.any()
    assert (tg["mu"][ok] > tg["pi"][ok]).all()  # Q = 0.3 is above every prior mean here
    assert (tg["pi"][ok] < 0.3).all()


def test_missing_confidence_uses_default_view_confidence(short_panel: PricePanel) -> None:
    given = constant_views_targets(short_panel, BLSettings().default_view_confidence)
    missing = constant_views_targets(short_panel, math.nan)
    np.testing.assert_allclose(missing["mu"], given["mu"], rtol=1e-12, atol=0)


def test_journal_is_written_in_black_litterman_mode(
    short_panel: PricePanel, tmp_path: Path
) -> None:
    engine = build_engine(bl_config(black_litterman=SHORT_BL), short_panel, journal_dir=tmp_path)
    engine.run()
    assert (tmp_path / "snapshots.ndjson").is_file()
    assert (tmp_path / "trades.ndjson").is_file()


def test_view_smoothing_is_a_causal_ewma_that_never_invents_views() -> None:
    rng = np.random.default_rng(5)
    er = rng.normal(0.0, 0.3, (2, 40, 3))
    conf = rng.uniform(0.0, 1.0, (2, 40, 3))
    er[0, :10, 1] = np.nan  # a late view
    er[1, 20:25, 2] = np.nan  # a gap
    s_er, s_conf = smooth_views(er, conf, 5.0)
    assert np.array_equal(np.isnan(s_er), np.isnan(er))  # no view where none is stated
    assert np.array_equal(np.isnan(s_conf), np.isnan(er))
    assert ((s_conf >= 0.0) | np.isnan(s_conf)).all() and (np.nan_to_num(s_conf) <= 1.0).all()
    # reference: the exponentially weighted mean of the stated views up to each bar
    alpha = 1.0 - 0.5 ** (1.0 / 5.0)
    for k in range(2):
        for a in range(3):
            num = den = 0.0
            for t in range(40):
                if np.isfinite(er[k, t, a]):
                    num = num * (1 - alpha) + er[k, t, a]
                    den = den * (1 - alpha) + 1.0
                    assert s_er[k, t, a] == pytest.approx(num / den, rel=1e-12)
    # causal: changing views after t leaves everything up to t unchanged
    er2 = er.copy()
    er2[:, 30:] += 1.0
    s2, _ = smooth_views(er2, conf, 5.0)
    np.testing.assert_array_equal(s2[:, :30], s_er[:, :30])
    assert not np.allclose(s2[:, 30:], s_er[:, 30:], equal_nan=True)


def test_view_smoothing_reduces_trading(panel: PricePanel) -> None:
    raw = black_litterman_targets(PortfolioBacktestEngine.from_config(bl_config(), prices=panel))
    smooth = black_litterman_targets(
        PortfolioBacktestEngine.from_config(
            bl_config(black_litterman={"view_halflife": 21.0}), prices=panel
        )
    )
    assert smooth["trade"].sum() < raw["trade"].sum()
