"""``mode: black_litterman``: views -> BL posterior -> optimizer -> sizing -> gate -> the pass.

Every per-close quantity is computed before the accounting pass, from data up to that close:

1. **Views.** Each strategy's :meth:`views` gives, per close and asset, an annualized expected
   return and a confidence in [0, 1] (see each strategy's docstring), optionally smoothed by a
   causal EWMA (``view_halflife``). Each finite pair is one absolute view ``P = e_asset``,
   ``Q = expected return``.
2. **Covariance** per close from past simple returns only (EWMA or rolling, shrunk toward the
   diagonal so it stays positive definite, annualized; :mod:`portfolio.covariance`). An asset
   takes part at a close once it has ``min_history`` returns and an annualized volatility of at
   least 1% (a stale quote would look riskless to the optimizer).
3. **Regime clarity** per close: a causal two-state Gaussian HMM on the market series (the
   S&P 500 index by default), forward-filtered only (:mod:`portfolio.regime`), or a user series.
4. **Black-Litterman** (He and Litterman 1999): ``pi = delta * Sigma @ w_mkt`` (market weights
   from the config, else equal weights over the listed assets);
   ``Omega_kk = tau * Sigma_aa / (confidence_k * clarity + eps)``; posterior ``mu_BL``,
   ``Sigma_BL`` and each view's contribution ``K[:, k] * (Q_k - (P pi)_k)``, which add up
   exactly to ``mu_BL - pi``.
5. **Optimizer**: ``min 0.5 w' Sigma_BL w - lambda mu_BL' w`` with ``lambda = 1 / gamma``
   (``optimizer.risk_aversion``) under the box, budget, gross
   leverage and optional return target (:mod:`portfolio.portfolio_optimizer`, the jitted solver,
   warm-started from the previous close; a close where it does not converge is re-solved with
   SLSQP and a warning is logged).
6. **Sizing** (optional): :meth:`portfolio.position_sizer.PositionSizer.scale_weights` with the
   per-asset volatility ``sqrt(diag Sigma)``; what sizing removes stays in cash.
7. **Gate**: :func:`portfolio.portfolio_optimizer.should_rebalance` decides whether the book
   trades at this close. The "current weights" it compares with are the last traded target
   drifted with the asset returns since then (``w_i * (1 + r_i) / (1 + w . r)``): a function of
   data and of earlier gate decisions only, so the whole path is known before the pass (fills,
   costs and lot rounding make the real weights differ slightly; the pass records the real ones).
   The "signal change" is ``max_i |mu_BL,i(t) - mu_BL,i(last trade)|`` (annualized).
8. The accounting pass executes the gated target rows as one account (``black_litterman``).

Steps 4-7 run in one jitted loop over closes (no Python loop over bars); the rare SLSQP fallback
returns to Python for that close only.

Attribution
-----------
At each traded close the target weight of asset ``j`` is split among the prior and the
strategies in proportion to their signed part of the posterior mean:
``part_s,j = w_j * c_s,j / mu_j`` where ``c_s,j`` is the sum of the contributions of strategy
``s``'s views to asset ``j`` and the ``equilibrium`` part is ``w_j * pi_j / mu_j``; since
``mu_j = pi_j + sum_s c_s,j`` the parts add up to ``w_j`` exactly (up to rounding). A strategy
whose views pulled against the position gets a part of the opposite sign. Where the sources
largely cancel (``|mu_j| < 0.25 * (|pi_j| + sum_s |c_s,j|)``, or ``|mu_j| < 1e-6``) the signed
shares would be huge offsetting numbers, so the split uses absolute sizes instead
(``|c_s,j| / (|pi_j| + sum |c|)``); every part is thus at most ``4 |w_j|``. Between traded
closes the split of the last traded target is held.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numba import njit

from backtest.kernel import SimulationOutput
from backtest.result import PortfolioBacktestResult, build_result
from portfolio.black_litterman import bl_posterior_nb
from portfolio.contracts import PortfolioConfig, StrategyAllocation
from portfolio.covariance import ewma_covariance_path, rolling_covariance_path
from portfolio.errors import ConfigError, OptimizationError
from portfolio.portfolio_optimizer import (
    OptimizationConstraints,
    PortfolioOptimizer,
    should_rebalance_nb,
    solve_fast,
)
from portfolio.position_sizer import PositionSizer

if TYPE_CHECKING:
    from backtest.data import PricePanel
    from backtest.portfolio_engine import PortfolioBacktestEngine

__all__ = [
    "BL_ACCOUNT",
    "EQUILIBRIUM",
    "contribution_summary",
    "run_black_litterman",
    "smooth_views",
]

logger = logging.getLogger(__name__)

#: Name of the single account that holds the optimized book.
BL_ACCOUNT = "black_litterman"
#: Name of the prior's part in the attribution.
EQUILIBRIUM = "equilibrium"
#: Below this |mu_BL| (annualized) the attribution splits by absolute contributions.
ATTRIBUTION_MIN_MU = 1e-6
#: ... and also where |mu_BL| is below this share of |pi| + sum |c| (sources largely cancel).
ATTRIBUTION_MIN_NET_SHARE = 0.25
#: Keeps Omega finite when confidence * clarity is 0 (then the view is ignored in effect).
VIEW_EPS = 1e-8
#: Annualized variance below which an asset is treated as a stale quote (1% volatility).
MIN_VARIANCE = 1e-4
_SOLVER_TOL = 1e-10
_SOLVER_MAX_ITER = 20_000


@njit(cache=True)
def box_feasible_nb(n: int, lo: float, hi: float, budget: float, max_leverage: float) -> bool:
    """Whether ``n`` weights in ``[lo, hi]`` can sum to ``budget`` (NaN = free) with gross <= cap.

    The smallest gross exposure the box allows is ``n * min |w|`` over ``[lo, hi]`` (0 when the
    box contains 0); with a budget, ``sum |w| >= |budget|`` as well.
    """
    if n == 0 or lo > hi:
        return False
    if not math.isnan(budget) and (n * lo > budget or n * hi < budget):
        return False
    min_abs = 0.0 if lo <= 0.0 <= hi else min(abs(lo), abs(hi))
    need = n * min_abs
    if not math.isnan(budget):
        need = max(need, abs(budget))
    return need <= max_leverage * (1.0 + 1e-12)


def _check_box_feasible(n: int, lo: float, hi: float, budget: float, max_leverage: float) -> None:
    """Up-front: even with every asset of the panel the constraints cannot be met."""
    if not box_feasible_nb(n, lo, hi, budget, max_leverage):
        raise ConfigError(
            f"optimizer: {n} assets with weights in [{lo}, {hi}] cannot meet budget {budget} "
            f"with gross leverage <= {max_leverage}; widen min_weight/max_weight or change "
            "budget/max_leverage"
        )


@njit(cache=True)
def bl_close_nb(
    t: int,
    cov: np.ndarray,
    valid: np.ndarray,
    er: np.ndarray,
    conf: np.ndarray,
    clarity: np.ndarray,
    mkt_w: np.ndarray,
    delta: float,
    tau: float,
    lo: float,
    hi: float,
    budget: float,
    max_leverage: float,
    out_mu: np.ndarray,
    out_pi: np.ndarray,
    out_contrib: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Black-Litterman posterior at close ``t`` over its valid assets (step 4 of the module).

    Parameters
    ----------
    t : int
        The close.
    cov : ndarray, shape (T, A, A)
        Annualized covariance per close (NaN before enough history).
    valid : ndarray of bool, shape (T, A)
        Asset is listed and has a covariance row at the close.
    er, conf : ndarray, shape (K, T, A)
        Views of the K strategies: annualized expected return and confidence (NaN = no view).
    clarity : ndarray, shape (T,)
        Regime clarity in [0, 1].
    mkt_w : ndarray, shape (A,)
        Market weights; all NaN means equal weights over the valid assets.
    delta, tau : float
        Risk aversion of the equilibrium and prior uncertainty scale.
    lo, hi, budget, max_leverage : float
        Weight bounds, budget (NaN = none) and gross cap: a close whose valid assets cannot meet
        them (:func:`box_feasible_nb`) gets no candidate.
    out_mu, out_pi : ndarray, shape (T, A)
        Row ``t`` written: posterior and prior means (0 where not valid).
    out_contrib : ndarray, shape (T, K, A)
        Row ``t`` written: each strategy's summed view contributions to ``mu_BL - pi``.

    Returns
    -------
    idx : ndarray of int64, shape (n,)
        Valid assets (empty = no candidate at this close).
    sigma_bl : ndarray, shape (n, n)
        Posterior covariance over ``idx``.
    """
    n_a = valid.shape[1]
    n_k = er.shape[0]
    for a in range(n_a):
        out_mu[t, a] = 0.0
        out_pi[t, a] = 0.0
        for k in range(n_k):
            out_contrib[t, k, a] = 0.0
    idx = np.flatnonzero(valid[t])
    n = idx.shape[0]
    if n == 0 or not box_feasible_nb(n, lo, hi, budget, max_leverage):
        return idx[:0], np.zeros((0, 0))
    sig = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            sig[i, j] = cov[t, idx[i], idx[j]]
    wm = np.empty(n)
    total = 0.0
    for i in range(n):
        v = mkt_w[idx[i]]
        wm[i] = v if math.isfinite(v) else 0.0
        total += wm[i]
    for i in range(n):
        wm[i] = wm[i] / total if total > 0.0 else 1.0 / n
    pi = delta * (sig @ wm)
    view_asset = np.empty(n_k * n, dtype=np.int64)
    view_src = np.empty(n_k * n, dtype=np.int64)
    view_q = np.empty(n_k * n)
    view_om = np.empty(n_k * n)
    nv = 0
    for k in range(n_k):
        for i in range(n):
            q = er[k, t, idx[i]]
            c = conf[k, t, idx[i]]
            if math.isfinite(q) and math.isfinite(c):
                view_asset[nv] = i
                view_src[nv] = k
                view_q[nv] = q
                view_om[nv] = tau * sig[i, i] / (c * clarity[t] + VIEW_EPS)
                nv += 1
    p = np.zeros((nv, n))
    for v in range(nv):
        p[v, view_asset[v]] = 1.0
    mu, sigma_bl, contrib = bl_posterior_nb(
        pi, sig, p, view_q[:nv].copy(), np.diag(view_om[:nv]), tau
    )
    for i in range(n):
        out_mu[t, idx[i]] = mu[i]
        out_pi[t, idx[i]] = pi[i]
    for v in range(nv):
        for i in range(n):
            out_contrib[t, view_src[v], idx[i]] += contrib[v, i]
    return idx, sigma_bl


@njit(cache=True)
def bl_candidates_nb(
    cov: np.ndarray,
    valid: np.ndarray,
    er: np.ndarray,
    conf: np.ndarray,
    clarity: np.ndarray,
    mkt_w: np.ndarray,
    delta: float,
    tau: float,
    lam: float,
    lo: float,
    hi: float,
    budget: float,
    max_leverage: float,
    target_return: float,
    t_start: int,
    w_prev: np.ndarray,
    out_w: np.ndarray,
    out_mu: np.ndarray,
    out_pi: np.ndarray,
    out_contrib: np.ndarray,
    out_ok: np.ndarray,
) -> int:
    """Per-close posterior (:func:`bl_close_nb`) and fast optimization from ``t_start`` on.

    ``w_prev`` (shape (A,)) is the warm start, updated in place; ``out_w`` (T, A) receives the
    candidate weights and ``out_ok`` (T,) whether a candidate exists. Returns the first close
    whose fast solve did not converge (the caller re-solves it with SLSQP), or -1.
    """
    n_t, n_a = valid.shape
    for t in range(t_start, n_t):
        out_ok[t] = False
        for a in range(n_a):
            out_w[t, a] = 0.0
        idx, sigma_bl = bl_close_nb(
            t, cov, valid, er, conf, clarity, mkt_w, delta, tau, lo, hi, budget, max_leverage,
            out_mu, out_pi, out_contrib,
        )  # fmt: skip
        n = idx.shape[0]
        if n == 0:
            continue
        mu = np.empty(n)
        w0 = np.empty(n)
        for i in range(n):
            mu[i] = out_mu[t, idx[i]]
            w0[i] = w_prev[idx[i]]
        w, conv = solve_fast(
            mu, sigma_bl, lam, np.full(n, lo), np.full(n, hi), budget, max_leverage,
            target_return, w0, _SOLVER_TOL, _SOLVER_MAX_ITER,
        )  # fmt: skip
        if not conv:
            return t
        for a in range(n_a):
            w_prev[a] = 0.0
        for i in range(n):
            out_w[t, idx[i]] = w[i]
            w_prev[idx[i]] = w[i]
        out_ok[t] = True
    return -1


@njit(cache=True)
def bl_gate_nb(
    cand: np.ndarray,
    ok: np.ndarray,
    mu: np.ndarray,
    returns: np.ndarray,
    signal_threshold: float,
    drift_threshold: float,
) -> np.ndarray:
    """Which closes trade (step 7): ``should_rebalance`` against the drifted last target.

    Parameters
    ----------
    cand : ndarray, shape (T, A)
        Candidate target weights (after sizing).
    ok : ndarray of bool, shape (T,)
        A candidate exists.
    mu : ndarray, shape (T, A)
        Posterior means (annualized) for the signal change.
    returns : ndarray, shape (T, A)
        Simple returns from close t-1 to t (NaN treated as 0: unlisted assets are not held).
    signal_threshold, drift_threshold : float
        Gate thresholds.

    Returns
    -------
    ndarray of bool, shape (T,)
    """
    n_t, n_a = cand.shape
    trade = np.zeros(n_t, dtype=np.bool_)
    cur = np.zeros(n_a)
    last_mu = np.zeros(n_a)
    have_last = False
    for t in range(n_t):
        growth = 1.0
        for a in range(n_a):
            r = returns[t, a]
            if math.isfinite(r) and cur[a] != 0.0:
                growth += cur[a] * r
                cur[a] *= 1.0 + r
        if growth > 0.0:
            for a in range(n_a):
                cur[a] /= growth
        if not ok[t]:
            continue
        change = math.inf
        if have_last:
            change = 0.0
            for a in range(n_a):
                d = abs(mu[t, a] - last_mu[a])
                change = max(change, d)
        if should_rebalance_nb(cur, cand[t], change, signal_threshold, drift_threshold):
            trade[t] = True
            for a in range(n_a):
                cur[a] = cand[t, a]
                last_mu[a] = mu[t, a]
            have_last = True
    return trade


def _market_series(engine: PortfolioBacktestEngine) -> pd.Series:
    """The market series for the regime model, on the panel's calendar (never back-filled)."""
    if engine.market_series is not None:
        series = engine.market_series
    else:
        market = engine.regime_settings.market
        if market == "index":
            from backtest.data import load_default_index

            series = load_default_index()
        elif market in engine.panel.assets:
            series = engine.panel.prices[market]
        else:
            raise ConfigError(
                f"regime.market: {market!r} is neither 'index' nor an asset of the panel "
                f"({engine.panel.source})"
            )
    aligned = series.reindex(engine.panel.index, method="ffill")
    if aligned.notna().sum() < 2:
        raise ConfigError(
            "regime.market: the market series does not overlap the price panel's dates "
            f"({engine.panel.index[0].date()} .. {engine.panel.index[-1].date()})"
        )
    # Dates before the market series starts stay NaN -> leading NaN returns, dropped by the model.
    first = aligned.first_valid_index()
    return aligned.loc[first:]


def regime_clarity_path(engine: PortfolioBacktestEngine) -> np.ndarray:
    """Regime clarity per close (1.0 = no discount) from the engine's regime settings."""
    n_t = engine.panel.n_bars
    if engine.clarity is not None:
        c = engine.clarity.reindex(engine.panel.index, method="ffill").fillna(1.0)
        values = c.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values) | (values < 0.0) | (values > 1.0)
        if bad.any():
            t = int(np.argmax(bad))
            raise ConfigError(
                f"clarity: values must be in [0, 1], got {float(values[t])} at "
                f"{engine.panel.index[t].date()}"
            )
        return values
    rs = engine.regime_settings
    if rs.method == "none":
        return np.ones(n_t)
    if rs.method == "series":
        from portfolio.regime import load_clarity_series

        if rs.series is None:
            raise ConfigError("regime.series: a path is required when regime.method is 'series'")
        return load_clarity_series(rs.series, engine.panel.index).to_numpy(dtype=np.float64)
    from portfolio.regime import causal_regime_clarity

    market = _market_series(engine)
    clarity = causal_regime_clarity(
        market,
        input_kind="prices",
        refit=rs.refit,  # type: ignore[arg-type]
        refit_every=rs.refit_every,
        window=rs.window,
        min_history=rs.min_history,
        fill_value=1.0,
    )
    return clarity.reindex(engine.panel.index).fillna(1.0).to_numpy(dtype=np.float64)


def _views(engine: PortfolioBacktestEngine) -> tuple[np.ndarray, np.ndarray]:
    prices = engine.panel.prices
    default_confidence = float(engine.bl_settings.default_view_confidence)
    n_k = len(engine.strategies)
    er = np.full((n_k, engine.panel.n_bars, engine.panel.n_assets), np.nan)
    conf = np.full_like(er, np.nan)
    for k, (sid, strat) in enumerate(engine.strategies.items()):
        v = strat.views(prices)
        for name, frame in (("expected_returns", v.expected_returns), ("confidence", v.confidence)):
            if not frame.index.equals(prices.index) or list(frame.columns) != list(prices.columns):
                raise ConfigError(
                    f"strategies.{sid}: views().{name} must have the panel's index and columns"
                )
        er[k] = v.expected_returns.to_numpy(dtype=np.float64)
        c = v.confidence.to_numpy(dtype=np.float64)
        # A view without a confidence gets the configured default (BLSettings).
        c = np.where(np.isfinite(er[k]) & np.isnan(c), default_confidence, c)
        bad = np.isfinite(c) & ((c < 0.0) | (c > 1.0))
        if bad.any():
            t, a = np.argwhere(bad)[0]
            raise ConfigError(
                f"strategies.{sid}: view confidence must be in [0, 1], got {float(c[t, a])} for "
                f"{prices.columns[a]} at {prices.index[t].date()}"
            )
        conf[k] = c
    halflife = engine.bl_settings.view_halflife
    if halflife is not None:
        er, conf = smooth_views(er, conf, halflife)
    return er, conf


def smooth_views(
    er: np.ndarray, conf: np.ndarray, halflife: float
) -> tuple[np.ndarray, np.ndarray]:
    """Causal EWMA of each strategy's views (``black_litterman.view_halflife``).

    Parameters
    ----------
    er, conf : ndarray, shape (K, T, A)
        Expected returns and confidences; NaN = no view.
    halflife : float
        Half-life in bars.

    Returns
    -------
    (er, conf) : ndarrays, shape (K, T, A)
        The exponentially weighted mean of the views stated up to each bar (NaN bars skipped,
        pandas ``ewm(halflife, ignore_na=True)``), kept only where the strategy states a view at
        that bar: smoothing never invents a view, and never reads a later bar.
    """
    out_er = np.empty_like(er)
    out_conf = np.empty_like(conf)
    for k in range(er.shape[0]):  # a handful of strategies, each smoothed vectorized over time
        has = np.isfinite(er[k]) & np.isfinite(conf[k])
        for src, dst in ((er[k], out_er[k]), (conf[k], out_conf[k])):
            frame = pd.DataFrame(np.where(has, src, np.nan))
            smooth = frame.ewm(halflife=halflife, ignore_na=True).mean().to_numpy()
            dst[:] = np.where(has, smooth, np.nan)
    return out_er, out_conf


def _covariance(engine: PortfolioBacktestEngine, returns: np.ndarray) -> np.ndarray:
    bl = engine.bl_settings
    if bl.covariance == "ewma":
        return ewma_covariance_path(
            returns,
            halflife=bl.halflife,
            min_history=bl.min_history,
            shrinkage=bl.shrinkage,
            periods_per_year=engine.settings.periods_per_year,
        )
    return rolling_covariance_path(
        returns,
        lookback=bl.lookback,
        min_history=bl.min_history,
        shrinkage=bl.shrinkage,
        periods_per_year=engine.settings.periods_per_year,
    )


def black_litterman_targets(
    engine: PortfolioBacktestEngine,
) -> dict[str, np.ndarray]:
    """Steps 1-7 for the whole panel: candidate and gated target weights, posterior, parts.

    Returns
    -------
    dict of arrays
        ``candidates`` (T, A), ``trade`` (T,) bool, ``mu``/``pi`` (T, A), ``contrib`` (T, K, A),
        ``ok`` (T,) bool, ``valid`` (T, A) bool (optimizable asset), ``clarity`` (T,),
        ``confidence`` (K, T): each strategy's mean view
        confidence over the assets it states a view on (NaN where it states none).
    """
    panel = engine.panel
    bl = engine.bl_settings
    opt = engine.optimizer_settings
    returns = panel.returns().to_numpy(dtype=np.float64)
    cov = _covariance(engine, returns)
    # An asset is optimizable at a close when it is listed, its covariance row exists (enough
    # history) and it actually moved: a stale quote with near-zero variance would look riskless
    # to the optimizer (and make the view system numerically singular).
    variances = np.einsum("taa->ta", cov)
    # ... and it has min_history returns of its own (before that the covariance path holds a
    # placeholder variance for it).
    history = np.cumsum(np.isfinite(returns), axis=0)
    valid = (
        np.isfinite(cov).all(axis=2)
        & np.isfinite(panel.values())
        & (history >= bl.min_history)
        & (np.nan_to_num(variances, nan=0.0) > MIN_VARIANCE)
    )
    clarity = regime_clarity_path(engine)
    er, conf = _views(engine)
    mkt = np.full(panel.n_assets, np.nan)
    if bl.market_weights is not None:
        panel.require_assets(bl.market_weights, "black_litterman.market_weights")
        for a, name in enumerate(panel.assets):
            mkt[a] = float(bl.market_weights.get(name, 0.0))
    constraints = OptimizationConstraints(
        min_weight=opt.min_weight,
        max_weight=opt.max_weight,
        max_leverage=opt.max_leverage,
        target_return=opt.target_return,
        long_only=opt.long_only,
        budget=opt.budget,
    )
    lo = float(constraints.effective_min_weight)  # long_only raises a negative floor to 0
    hi = float(opt.max_weight)
    budget = math.nan if opt.budget is None else float(opt.budget)
    _check_box_feasible(panel.n_assets, lo, hi, budget, float(opt.max_leverage))
    target = math.nan if opt.target_return is None else float(opt.target_return)

    n_t, n_a = panel.n_bars, panel.n_assets
    n_k = er.shape[0]
    out_w = np.zeros((n_t, n_a))
    out_mu = np.zeros((n_t, n_a))
    out_pi = np.zeros((n_t, n_a))
    out_contrib = np.zeros((n_t, n_k, n_a))
    out_ok = np.zeros(n_t, dtype=bool)
    w_prev = np.zeros(n_a)
    slsqp = PortfolioOptimizer(constraints, return_weight=1.0 / opt.risk_aversion, solver="slsqp")
    args = (cov, valid, er, conf, clarity, mkt, bl.risk_aversion, bl.tau)
    n_fallback = 0

    def solve_slsqp(t: int) -> None:
        """One close with the reference solver (fallback, or ``solver: slsqp``)."""
        idx, sigma_bl = bl_close_nb(
            t, *args, lo, hi, budget, opt.max_leverage, out_mu, out_pi, out_contrib
        )
        out_w[t] = 0.0
        out_ok[t] = False
        if idx.size == 0:
            return
        names = [panel.assets[i] for i in idx]
        try:
            w = slsqp.optimize_array(out_mu[t, idx], sigma_bl, instrument_names=names)
        except OptimizationError as exc:
            logger.warning("no target at %s: %s", panel.index[t].date(), exc)
            return
        out_w[t, idx] = w
        w_prev[:] = 0.0
        w_prev[idx] = w
        out_ok[t] = True

    with engine._progress(n_t, "black-litterman") as bar:
        if opt.solver == "slsqp":
            # The reference solver is Python; this slow path loops over closes on purpose.
            for t in range(n_t):
                solve_slsqp(t)
                bar.update(1)
        else:
            t = 0
            while t < n_t:
                failed = bl_candidates_nb(
                    *args, 1.0 / opt.risk_aversion, lo, hi, budget, opt.max_leverage, target, t,
                    w_prev, out_w, out_mu, out_pi, out_contrib, out_ok,
                )  # fmt: skip
                if failed < 0:
                    bar.update(n_t - t)
                    break
                logger.warning(
                    "fast solver did not converge at %s; falling back to SLSQP",
                    panel.index[failed].date(),
                )
                n_fallback += 1
                solve_slsqp(failed)
                bar.update(failed + 1 - t)
                t = failed + 1

    n_skipped = int((valid.any(axis=1) & ~out_ok).sum())
    if n_skipped:
        logger.warning(
            "%d of %d closes with priced assets got no target (too few assets to meet the "
            "optimizer's box, budget and leverage, or an infeasible return target)",
            n_skipped,
            n_t,
        )
    cand = out_w.copy()
    sz = engine.sizing_settings
    if sz.method != "none":
        sizer = PositionSizer(
            target_vol=sz.target_vol, max_position=sz.max_position, kelly_fraction=sz.kelly_fraction
        )
        vols = np.sqrt(np.maximum(np.einsum("taa->ta", np.nan_to_num(cov)), 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            if sz.method == "vol_target":
                sized = sizer.scale_weights(
                    cand, "vol_target", vols=np.where(vols > 0, vols, np.nan)
                )
            elif sz.method == "kelly":
                sized = sizer.scale_weights(
                    np.sign(cand), "kelly", expected_returns=out_mu,
                    variances=np.where(vols > 0, vols**2, np.nan),
                )  # fmt: skip
            else:
                sized = sizer.scale_weights(
                    cand, "risk_budget", component_var=np.abs(cand) * vols,
                    total_var=np.maximum((np.abs(cand) * vols).sum(axis=1, keepdims=True), 1e-300),
                )  # fmt: skip
        cand = np.where(np.isfinite(sized), sized, 0.0)
    trade = bl_gate_nb(
        cand, out_ok, out_mu, np.nan_to_num(returns, nan=0.0), bl.signal_threshold,
        bl.drift_threshold,
    )  # fmt: skip
    if n_fallback:
        logger.warning("SLSQP fallback used at %d of %d closes", n_fallback, n_t)
    return {
        "candidates": cand,
        "trade": trade,
        "mu": out_mu,
        "pi": out_pi,
        "contrib": out_contrib,
        "ok": out_ok,
        "clarity": clarity,
        "confidence": _mean_confidence(er, conf),
        "valid": valid,
    }


def _mean_confidence(er: np.ndarray, conf: np.ndarray) -> np.ndarray:
    """Mean confidence of each strategy's stated views per close, shape (K, T); NaN = no view."""
    has = np.isfinite(er) & np.isfinite(conf)
    n = has.sum(axis=2)
    total = np.where(has, conf, 0.0).sum(axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, total / n, np.nan)


def run_black_litterman(engine: PortfolioBacktestEngine) -> PortfolioBacktestResult:
    """Run the whole ``black_litterman`` mode and wrap the result."""
    panel = engine.panel
    tg = black_litterman_targets(engine)
    trade = tg["trade"]
    weights = np.where(trade[:, None], tg["candidates"], 0.0)[None, :, :]
    has = trade[None, :]
    total = engine.config.total_capital
    book = StrategyAllocation(strategy_id=BL_ACCOUNT, target_weight=1.0)
    book_config = PortfolioConfig(
        portfolio_id=engine.config.portfolio_id,
        total_capital=total,
        allocations=(book,),
        rebalance_threshold=engine.config.rebalance_threshold,
        rebalance_frequency_hours=engine.config.rebalance_frequency_hours,
    )
    out: SimulationOutput = engine._simulate(
        weights, has, [book], total, portfolio_rebalancing=False,
        max_leverage=max(engine.optimizer_settings.max_leverage, 1.0),
    )  # fmt: skip
    attribution = strategy_attribution(
        tg["candidates"], trade, tg["pi"], tg["contrib"], list(engine.strategies), panel
    )
    return build_result(
        out,
        panel=panel,
        config=book_config,
        settings=engine.settings,
        standalone={},
        mode="black_litterman",
        config_hash=engine.config_hash,
        strategy_attribution=attribution,
        manifest_extra={
            "black_litterman": engine.bl_settings.to_dict(),
            "optimizer": engine.optimizer_settings.to_dict(),
            "sizing": engine.sizing_settings.to_dict(),
            "regime": engine.regime_settings.to_dict(),
            "strategies": list(engine.strategies),
            "traded_closes": int(trade.sum()),
        },
        bl_diagnostics={
            "pi": pd.DataFrame(
                np.where(tg["ok"][:, None] & tg["valid"], tg["pi"], np.nan),
                index=panel.index,
                columns=panel.assets,
            ),
            "mu": pd.DataFrame(
                np.where(tg["ok"][:, None] & tg["valid"], tg["mu"], np.nan),
                index=panel.index,
                columns=panel.assets,
            ),
            "confidence": pd.DataFrame(
                tg["confidence"].T, index=panel.index, columns=list(engine.strategies)
            ),
            "clarity": pd.DataFrame({"clarity": tg["clarity"]}, index=panel.index),
        },
    )


def strategy_attribution(
    candidates: np.ndarray,
    trade: np.ndarray,
    pi: np.ndarray,
    contrib: np.ndarray,
    strategy_ids: list[str],
    panel: PricePanel,
) -> pd.DataFrame:
    """Split each traded target weight among the prior and the strategies (module docstring).

    Returns
    -------
    DataFrame, shape (T, (K + 1) * A)
        Columns ``(source, asset)`` with sources ``equilibrium`` then each strategy; rows hold the
        split of the last traded target (zeros before the first trade). Summing over sources
        gives the target weight of each asset.
    """
    n_t = candidates.shape[0]
    mu = pi + contrib.sum(axis=1)  # (T, A), the posterior mean
    absc = np.abs(contrib)
    abs_den = np.abs(pi) + absc.sum(axis=1)
    # The signed split is well conditioned only when the sources do not largely cancel:
    # |parts| <= |w| / ATTRIBUTION_MIN_NET_SHARE.
    signed = (np.abs(mu) >= ATTRIBUTION_MIN_MU) & (
        np.abs(mu) >= ATTRIBUTION_MIN_NET_SHARE * abs_den
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        # Signed split: each source's share of mu_j (a bearish view gets a negative part of a
        # long). Where mu_j is ~0 the shares are undefined: split by absolute sizes instead.
        eq_share = np.where(signed, pi / mu, np.where(abs_den > 0.0, np.abs(pi) / abs_den, 1.0))
        s_share = np.where(
            signed[:, None, :],
            contrib / mu[:, None, :],
            np.where(abs_den[:, None, :] > 0.0, absc / abs_den[:, None, :], 0.0),
        )
    parts = np.concatenate(
        [(eq_share * candidates)[:, None, :], s_share * candidates[:, None, :]], axis=1
    )  # (T, K + 1, A)
    # Hold the split of the last traded target between trades (forward fill over rows).
    last = np.where(trade, np.arange(n_t), -1)
    last = np.maximum.accumulate(last)
    held = np.where((last >= 0)[:, None, None], parts[np.maximum(last, 0)], 0.0)
    cols = pd.MultiIndex.from_product(
        [[EQUILIBRIUM, *strategy_ids], panel.assets], names=["source", "asset"]
    )
    return pd.DataFrame(held.reshape(n_t, -1), index=panel.index, columns=cols)


def contribution_summary(result: PortfolioBacktestResult) -> pd.DataFrame:
    """Per-source contribution to the book's return, from :attr:`strategy_attribution`.

    ``contribution_s = sum_t sum_j part_s,j(t - 1 - lag) * r_j(t)``: the weight each source put
    on asset ``j`` in the target that was held over bar ``t`` (traded ``lag`` closes after it was
    decided) times the asset's simple return, summed arithmetically over bars (not compounded).
    ``annualized_contribution`` is the mean per bar times ``periods_per_year``. Also the average
    net and gross weight attributed to the source (the net weights add up to the book's). The
    contributions of all sources add up to the arithmetic sum of the target book's bar returns
    (before costs and lot rounding).
    """
    attr = result.strategy_attribution
    if attr is None:
        raise ValueError("this result has no strategy attribution (sleeves mode)")
    rets = result.prices.pct_change(fill_method=None).fillna(0.0)
    ppy = int(result.manifest.get("periods_per_year", 252))
    lag = int(result.manifest.get("execution_lag", 1))
    rows = {}
    for source in attr.columns.get_level_values(0).unique():
        part = attr[source]
        # A target traded at close t is held from close t + lag: it earns from t + lag + 1.
        held = part.shift(1 + lag).fillna(0.0)
        contrib = (held * rets[part.columns]).sum(axis=1)
        rows[source] = {
            "avg_net_weight": float(part.sum(axis=1).mean()),
            "avg_gross_weight": float(part.abs().sum(axis=1).mean()),
            "return_contribution": float(contrib.sum()),
            "annualized_contribution": float(contrib.mean() * ppy),
        }
    return pd.DataFrame.from_dict(rows, orient="index")
