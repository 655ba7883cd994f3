"""YAML config loader: the shipped example, every error path, inference and round trips."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import math
import pickle
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from portfolio.config import (
    BacktestConfig,
    DataSettings,
    MetricsSettings,
    OptimizerSettings,
    RebalanceSettings,
    StrategySpec,
    default_config_path,
    infer_strategy_kind,
    load_config,
    parse_config,
)
from portfolio.contracts import CostModel, StrategyAllocation
from portfolio.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "config" / "portfolio.yaml"
TOP_KEYS = (
    "mode, portfolio, strategies, costs, rebalance, execution, metrics, data, risk_adjusted, "
    "black_litterman, optimizer, sizing, regime"
)


def _base() -> dict[str, Any]:
    """The shipped YAML as a plain mapping (fresh copy for each mutation)."""
    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    return copy.deepcopy(data)


def _load(tmp_path: Path, data: Any, name: str = "cfg.yaml") -> BacktestConfig:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return load_config(path)


def _error(tmp_path: Path, data: Any) -> str:
    """Load ``data`` from a file and return the ConfigError message without the file prefix."""
    path = tmp_path / "cfg.yaml"
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, data)
    message = str(info.value)
    prefix = f"{path}: "
    assert message.startswith(prefix), message
    return message[len(prefix) :]


# ----------------------------------------------------------------------------- shipped example


def test_shipped_config_loads() -> None:
    cfg = load_config(SHIPPED)
    assert cfg.source == str(SHIPPED)
    assert cfg.mode == "sleeves"
    p = cfg.portfolio
    assert p.portfolio_id == "multi_strategy_v1"
    assert p.total_capital == 50000.0
    assert p.rebalance_threshold == 0.05
    assert p.rebalance_frequency_hours == 24.0
    assert p.allocations == (
        StrategyAllocation("trendline_break_v1", 0.40, 10000.0, 30000.0, 1.0),
        StrategyAllocation("rsi_tema_bb_v1", 0.35, 10000.0, 25000.0, 0.8),
        StrategyAllocation("momentum_v1", 0.25, 5000.0, 20000.0, 1.2),
    )
    assert {sid: s.kind for sid, s in cfg.strategies.items()} == {
        "trendline_break_v1": "trendline_break",
        "rsi_tema_bb_v1": "rsi_tema_bb",
        "momentum_v1": "momentum",
    }
    assert dict(cfg.strategies["momentum_v1"].params) == {"top_k": 5}
    assert dict(cfg.strategies["trendline_break_v1"].params) == {"exit_band": 0.03}
    assert cfg.costs == CostModel(1.0, 0.0, 1.0, 2.0)
    assert cfg.rebalance == RebalanceSettings(
        drift_band="relative",
        calendar="month_end",
        min_trade_value=10.0,
        lot_size=1.0,
        netting=True,
        max_leverage=1.0,
    )
    assert cfg.execution.lag == 1
    # Sections the example leaves out take their documented defaults.
    assert cfg.data == DataSettings()
    assert cfg.optimizer == OptimizerSettings()
    assert cfg.risk_adjusted.enabled is False


def test_default_config_path_points_at_the_example() -> None:
    path = default_config_path()
    assert path.is_file()
    assert path.read_bytes() == SHIPPED.read_bytes()


def test_config_module_does_not_import_backtest() -> None:
    code = (
        "import sys, portfolio.config; "
        "print(any(m.split('.')[0] == 'backtest' for m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "False"


def test_spec_example_message_with_relative_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _base()
    data["portfolio"]["allocations"][1]["target_weight"] = 1.5
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "portfolio.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config("config/portfolio.yaml")
    assert str(info.value) == (
        "config/portfolio.yaml: portfolio.allocations[1].target_weight: must be in [0, 1], got 1.5"
    )


# ----------------------------------------------------------------------------- error messages


def _set(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set ``a.b[1].c`` in ``data`` (creating missing sections)."""
    parts = re.findall(r"[^.\[\]]+|\[\d+\]", path)
    node: Any = data
    for part in parts[:-1]:
        if part.startswith("["):
            node = node[int(part[1:-1])]
        else:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
    last = parts[-1]
    if last.startswith("["):
        node[int(last[1:-1])] = value
    else:
        node[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            "portfolio.allocations[1].target_weight",
            1.5,
            "portfolio.allocations[1].target_weight: must be in [0, 1], got 1.5",
        ),
        (
            "portfolio.allocations[0].min_capital",
            40000.0,
            "portfolio.allocations[0].min_capital: must be <= max_capital (30000.0), got 40000.0",
        ),
        (
            "portfolio.allocations[2].strategy_id",
            "trendline_break_v1",
            "portfolio.allocations[2].strategy_id: duplicate strategy id 'trendline_break_v1' "
            "(also at portfolio.allocations[0])",
        ),
        (
            "portfolio.allocations[0].foo",
            1,
            "portfolio.allocations[0].foo: unknown key; allowed keys: strategy_id, "
            "target_weight, min_capital, max_capital, risk_multiplier",
        ),
        (
            "portfolio.total_capital",
            "lots",
            "portfolio.total_capital: must be a number, got str 'lots'",
        ),
        (
            "portfolio.total_capital",
            True,
            "portfolio.total_capital: must be a number, got bool True",
        ),
        ("portfolio.total_capital", -5, "portfolio.total_capital: must be > 0, got -5"),
        (
            "portfolio.rebalance_frequency_hours",
            0,
            "portfolio.rebalance_frequency_hours: must be > 0, got 0",
        ),
        ("portfolio.id", "", "portfolio.id: must be a non-empty string, got ''"),
        (
            "portfolio.allocations",
            "all",
            "portfolio.allocations: must be a list, got str 'all'",
        ),
        ("portfolio.allocations", [], "portfolio.allocations: must list at least one strategy"),
        ("foo", 1, f"foo: unknown key; allowed keys: {TOP_KEYS}"),
        (
            "rebalance.drift",
            "relative",
            "rebalance.drift: unknown key; allowed keys: drift_band, calendar, every_n_bars, "
            "dates, min_trade_value, lot_size, netting, max_leverage",
        ),
        ("mode", "turbo", "mode: must be one of 'sleeves', 'black_litterman', got 'turbo'"),
        (
            "rebalance.calendar",
            "weekly",
            "rebalance.calendar: must be one of 'none', 'month_end', 'every_n_bars', 'dates', "
            "got 'weekly'",
        ),
        (
            "rebalance.dates",
            ["2020-01-31", "2020-02-30"],
            "rebalance.dates[1]: must be an ISO date (YYYY-MM-DD), got str '2020-02-30'",
        ),
        (
            "rebalance.dates",
            "2020-01-31",
            "rebalance.dates: must be a list of ISO dates, got str '2020-01-31'",
        ),
        (
            "rebalance.calendar",
            "dates",
            "rebalance.dates: must list at least one date when calendar is 'dates'",
        ),
        ("rebalance.every_n_bars", 0, "rebalance.every_n_bars: must be an integer >= 1, got 0"),
        (
            "rebalance.netting",
            "yes",
            "rebalance.netting: must be a boolean (true/false), got str 'yes'",
        ),
        ("rebalance.max_leverage", 0.5, "rebalance.max_leverage: must be >= 1, got 0.5"),
        ("rebalance.lot_size", -1.0, "rebalance.lot_size: must be >= 0, got -1.0"),
        ("execution.lag", 1.5, "execution.lag: must be an integer, got float 1.5"),
        ("execution.lag", -1, "execution.lag: must be an integer >= 0, got -1"),
        ("costs.commission_bps", "1bp", "costs.commission_bps: must be a number, got str '1bp'"),
        ("costs.slippage_bps", -2.0, "costs.slippage_bps: must be >= 0, got -2.0"),
        ("costs", [1, 2], "costs: must be a mapping, got list [1, 2]"),
        ("data.align", "outer", "data.align: must be one of 'intersection', 'union', got 'outer'"),
        (
            "data.start",
            "yesterday",
            "data.start: must be an ISO date (YYYY-MM-DD), got str 'yesterday'",
        ),
        ("data.ffill_limit", -1, "data.ffill_limit: must be an integer >= 0, got -1"),
        (
            "black_litterman.default_view_confidence",
            1.2,
            "black_litterman.default_view_confidence: must be in [0, 1], got 1.2",
        ),
        ("black_litterman.tau", 0, "black_litterman.tau: must be > 0, got 0"),
        (
            "black_litterman.market_weights",
            {"AAPL": 0.5, "MSFT": 0.4},
            "black_litterman.market_weights: weights must sum to 1 (tolerance 1e-9), got 0.9",
        ),
        (
            "black_litterman.market_weights",
            {"AAPL": 1.5, "MSFT": -0.5},
            "black_litterman.market_weights.MSFT: must be >= 0, got -0.5",
        ),
        (
            "optimizer.solver",
            "cvx",
            "optimizer.solver: must be one of 'fast', 'slsqp', got 'cvx'",
        ),
        ("optimizer.max_leverage", 0, "optimizer.max_leverage: must be > 0, got 0"),
        (
            "optimizer.min_weight",
            0.5,
            "optimizer.min_weight: must be <= max_weight (0.25), got 0.5",
        ),
        ("sizing.kelly_fraction", 0.0, "sizing.kelly_fraction: must be in (0, 1], got 0.0"),
        (
            "sizing.method",
            "martingale",
            "sizing.method: must be one of 'none', 'vol_target', 'kelly', 'risk_budget', "
            "got 'martingale'",
        ),
        ("regime.window", 49, "regime.window: must be an integer >= 50, got 49"),
        (
            "regime.method",
            "series",
            "regime.series: is required when method is 'series', got None",
        ),
        (
            "risk_adjusted",
            "on",
            "risk_adjusted: must be true/false or a mapping, got str 'on'",
        ),
        (
            "risk_adjusted.lookback_period_days",
            1,
            "risk_adjusted.lookback_period_days: must be an integer >= 2, got 1",
        ),
        (
            "strategies.momentum_v1.params",
            [1],
            "strategies.momentum_v1.params: must be a mapping of parameter name -> value, "
            "got list [1]",
        ),
        (
            "strategies.momentum_v1.kind",
            "",
            "strategies.momentum_v1.kind: must be a non-empty string, got ''",
        ),
        (
            "strategies.momentum_v1.universe",
            ["AAPL", "AAPL"],
            "strategies.momentum_v1.universe[1]: duplicate asset 'AAPL'",
        ),
        (
            "strategies.momentum_v1.window",
            5,
            "strategies.momentum_v1.window: unknown key; allowed keys: kind, params, universe",
        ),
        (
            "strategies.mean_reversion_v2",
            {"kind": "mean_reversion"},
            "strategies.mean_reversion_v2: not referenced by any portfolio.allocations entry "
            "(allocated: trendline_break_v1, rsi_tema_bb_v1, momentum_v1)",
        ),
    ],
)
def test_invalid_entry_messages(tmp_path: Path, path: str, value: Any, message: str) -> None:
    assert _error(tmp_path, _set(_base(), path, value)) == message


def test_weights_not_summing_to_one(tmp_path: Path) -> None:
    data = _base()
    data["portfolio"]["allocations"][2]["target_weight"] = 0.2
    assert _error(tmp_path, data) == (
        "portfolio.allocations: target weights must sum to 1 (tolerance 1e-9), got 0.95 "
        "(trendline_break_v1=0.4, rsi_tema_bb_v1=0.35, momentum_v1=0.2)"
    )


def test_missing_required_entries(tmp_path: Path) -> None:
    data = _base()
    del data["portfolio"]
    assert _error(tmp_path, data) == "portfolio: required section is missing"
    data = _base()
    del data["portfolio"]["total_capital"]
    assert _error(tmp_path, data) == "portfolio.total_capital: required key is missing"
    data = _base()
    del data["portfolio"]["allocations"][0]["target_weight"]
    assert _error(tmp_path, data) == (
        "portfolio.allocations[0].target_weight: required key is missing"
    )


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("mode: sleeves\nportfolio:\n  id: [unclosed\n  total_capital: 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: invalid YAML at line ")
    line = int(re.search(r"at line (\d+)", message).group(1))  # type: ignore[union-attr]
    assert 3 <= line <= 5


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    text = SHIPPED.read_text(encoding="utf-8") + "\nexecution:\n  lag: 0\n"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: invalid YAML at line ")
    assert str(info.value).endswith("found duplicate key 'execution'")


def test_missing_file_directory_and_bad_top_level(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="^" + re.escape(f"{missing}: file not found") + "$"):
        load_config(missing)
    with pytest.raises(ConfigError, match=re.escape("is a directory, not a file")):
        load_config(tmp_path)
    path = tmp_path / "cfg.yaml"
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, [1, 2])
    assert str(info.value) == f"{path}: top level must be a mapping, got list [1, 2]"
    path.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: top level must be a mapping, got an empty document"


def test_parse_config_uses_source_in_messages() -> None:
    data = _base()
    data["mode"] = 3
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert str(info.value) == "<dict>: mode: must be one of 'sleeves', 'black_litterman', got 3"
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="run.yaml")
    assert str(info.value).startswith("run.yaml: mode: ")


# ----------------------------------------------------------------------------- semantics


def test_kind_inference_from_id() -> None:
    assert infer_strategy_kind("trendline_break_v1") == "trendline_break"
    assert infer_strategy_kind("momentum_v12") == "momentum"
    assert infer_strategy_kind("momentum") == "momentum"
    assert infer_strategy_kind("v2_model_v3") == "v2_model"
    assert infer_strategy_kind("model_v") == "model_v"
    data = _base()
    del data["strategies"]["trendline_break_v1"]  # no entry at all
    del data["strategies"]["rsi_tema_bb_v1"]["kind"]  # entry without kind
    cfg = parse_config(data)
    assert cfg.strategies["trendline_break_v1"] == StrategySpec(
        "trendline_break_v1", "trendline_break", {}, None
    )
    assert cfg.strategies["rsi_tema_bb_v1"].kind == "rsi_tema_bb"
    assert cfg.strategies["momentum_v1"].kind == "momentum"
    del data["strategies"]
    cfg = parse_config(data)
    assert list(cfg.strategies) == ["trendline_break_v1", "rsi_tema_bb_v1", "momentum_v1"]
    assert cfg.strategies["momentum_v1"].params == {}


def test_strategy_spec_fields() -> None:
    data = _base()
    data["strategies"]["momentum_v1"] = {
        "kind": "momentum",
        "params": {"top_k": 3, "windows": [20, 60]},
        "universe": ["AAPL", "MSFT"],
    }
    spec = parse_config(data).strategies["momentum_v1"]
    assert spec.universe == ("AAPL", "MSFT")
    assert dict(spec.params) == {"top_k": 3, "windows": [20, 60]}
    with pytest.raises(TypeError):
        spec.params["top_k"] = 4  # type: ignore[index]
    # The spec copied the params: the caller's dict can change without affecting it.
    data["strategies"]["momentum_v1"]["params"]["windows"].append(120)
    assert spec.params["windows"] == [20, 60]


def test_optional_sections_and_normalization(tmp_path: Path) -> None:
    prices = tmp_path / "prices.csv"
    prices.write_text("Date,A\n2020-01-02,1\n", encoding="utf-8")
    text = SHIPPED.read_text(encoding="utf-8") + (
        "data: {prices: prices.csv, start: 2020-01-02, end: '2021-06-30', align: union}\n"
    )
    text = text.replace(
        "calendar: month_end", "calendar: dates\n  dates: [2020-03-31, '2020-01-31', 2020-03-31]"
    )
    text += "risk_adjusted: {lookback_period_days: 60}\n"
    text += "optimizer: {long_only: true}\n"
    text += "black_litterman: {market_weights: {AAPL: 0.75, MSFT: 0.25}, halflife: 21}\n"
    path = tmp_path / "full.yaml"
    path.write_text(text, encoding="utf-8")
    cfg = load_config(path)
    assert cfg.data.prices == prices.resolve()
    assert cfg.data.start == "2020-01-02" and cfg.data.end == "2021-06-30"
    assert cfg.data.align == "union"
    assert cfg.rebalance.calendar == "dates"
    assert cfg.rebalance.dates == ("2020-01-31", "2020-03-31")  # sorted, unique, normalized
    assert cfg.risk_adjusted.enabled is True  # a mapping switches it on
    assert cfg.risk_adjusted.lookback_period_days == 60
    assert cfg.optimizer.long_only is True and cfg.optimizer.min_weight == 0.0
    assert dict(cfg.black_litterman.market_weights or {}) == {"AAPL": 0.75, "MSFT": 0.25}
    assert cfg.black_litterman.halflife == 21.0


def test_risk_adjusted_bool_forms() -> None:
    data = _base()
    data["risk_adjusted"] = True
    assert parse_config(data).risk_adjusted.enabled is True
    data["risk_adjusted"] = {"enabled": False, "adjustment_sensitivity": 0.5}
    ra = parse_config(data).risk_adjusted
    assert ra.enabled is False and ra.adjustment_sensitivity == 0.5


def test_data_paths_are_resolved_and_must_exist(tmp_path: Path) -> None:
    data = _base()
    data["data"] = {"prices": "sub/p.csv"}
    assert _error(tmp_path, data).startswith("data.prices: file not found: 'sub/p.csv' (resolved")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "p.csv").write_text("Date,A\n", encoding="utf-8")
    cfg = _load(tmp_path, data)
    assert cfg.data.prices == (tmp_path / "sub" / "p.csv").resolve()
    # parse_config resolves against base_dir.
    cfg2 = parse_config(data, base_dir=tmp_path)
    assert cfg2.data.prices == cfg.data.prices


def test_data_end_before_start(tmp_path: Path) -> None:
    data = _base()
    data["data"] = {"start": "2021-01-01", "end": "2020-12-31"}
    assert (
        _error(tmp_path, data) == "data.end: must be on or after start (2021-01-01), got 2020-12-31"
    )


def test_max_capital_null_means_no_cap() -> None:
    data = _base()
    data["portfolio"]["allocations"][0]["max_capital"] = None
    cfg = parse_config(data)
    assert cfg.portfolio.allocations[0].max_capital == math.inf
    assert cfg.to_dict()["portfolio"]["allocations"][0]["max_capital"] is None


# ----------------------------------------------------------------------------- round trip & hash


def test_to_dict_round_trip(tmp_path: Path) -> None:
    cfg = load_config(SHIPPED)
    data = cfg.to_dict()
    assert parse_config(data, source=cfg.source) == cfg
    # Through YAML text and a file too: equal apart from the source.
    reloaded = _load(tmp_path, data)
    assert reloaded.to_dict() == data
    assert reloaded.config_hash() == cfg.config_hash()
    assert dataclasses.replace(reloaded, source=cfg.source) == cfg


def test_round_trip_with_every_section(tmp_path: Path) -> None:
    (tmp_path / "clarity.csv").write_text("Date,clarity\n2020-01-02,0.5\n", encoding="utf-8")
    data = _base()
    data.update(
        {
            "mode": "black_litterman",
            "data": {"start": "2001-01-01", "ffill_limit": 0},
            "risk_adjusted": {"enabled": True, "lookback_period_days": 10},
            "black_litterman": {"market_weights": {"A": 0.5, "B": 0.5}, "covariance": "rolling"},
            "optimizer": {"target_return": 0.1, "budget": None, "solver": "slsqp"},
            "sizing": {"method": "kelly", "kelly_fraction": 1.0},
            "regime": {"method": "series", "series": "clarity.csv", "refit": "rolling"},
        }
    )
    data["rebalance"]["dates"] = [dt.date(2020, 1, 31)]
    cfg = parse_config(data, source="x.yaml", base_dir=tmp_path)
    assert cfg.regime.series == (tmp_path / "clarity.csv").resolve()
    assert cfg.optimizer.budget is None and cfg.optimizer.target_return == 0.1
    assert parse_config(cfg.to_dict(), source="x.yaml") == cfg


def test_config_pickles_and_deep_copies() -> None:
    # Workers of a process pool receive the config by pickling.
    cfg = load_config(SHIPPED)
    for clone in (pickle.loads(pickle.dumps(cfg)), copy.deepcopy(cfg)):
        assert clone == cfg
        assert clone.config_hash() == cfg.config_hash()
        assert clone.strategies["momentum_v1"].params == {"top_k": 5}


def test_config_hash() -> None:
    cfg = load_config(SHIPPED)
    digest = cfg.config_hash()
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert parse_config(cfg.to_dict(), source="elsewhere").config_hash() == digest
    data = cfg.to_dict()
    data["costs"]["slippage_bps"] = 3.0
    assert parse_config(data).config_hash() != digest


def test_settings_dataclasses_validate_directly() -> None:
    with pytest.raises(ConfigError, match=r"^RebalanceSettings\.lot_size must be >= 0, got -1$"):
        RebalanceSettings(lot_size=-1)
    with pytest.raises(ConfigError, match=re.escape("RebalanceSettings.dates[0] must be an ISO")):
        RebalanceSettings(dates=("31/01/2020",))
    assert OptimizerSettings(long_only=True, min_weight=-0.5).min_weight == 0.0
    assert OptimizerSettings(long_only=True, min_weight=0.1).min_weight == 0.1
    with pytest.raises(ConfigError, match=r"^StrategySpec\.kind must be a non-empty string"):
        StrategySpec("a_v1", "")
    with pytest.raises(ConfigError, match=r"^BacktestConfig\.strategies lacks a spec"):
        BacktestConfig(mode="sleeves", portfolio=load_config(SHIPPED).portfolio, strategies={})


def test_metrics_section_defaults_values_and_errors() -> None:
    base = {
        "portfolio": {
            "id": "m",
            "total_capital": 1000.0,
            "allocations": [{"strategy_id": "momentum_v1", "target_weight": 1.0}],
        }
    }
    assert parse_config(base).metrics == MetricsSettings(periods_per_year=252, rf_annual=0.0)
    cfg = parse_config({**base, "metrics": {"periods_per_year": 52, "rf_annual": 0.02}})
    assert cfg.metrics == MetricsSettings(periods_per_year=52, rf_annual=0.02)
    assert parse_config(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match=r"metrics\.rf_annual: must be in \(-1, 1\), got 2"):
        parse_config({**base, "metrics": {"rf_annual": 2}})
    with pytest.raises(ConfigError, match=r"metrics\.periods_per_year"):
        parse_config({**base, "metrics": {"periods_per_year": 0}})
    with pytest.raises(ConfigError, match=r"metrics\.sharpe"):
        parse_config({**base, "metrics": {"sharpe": 1}})
