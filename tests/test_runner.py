"""End-to-end tests of the command line ``python -m backtest.portfolio_runner``.

Most runs call :func:`backtest.portfolio_runner.main` in-process (fast, output captured); one
test starts a real interpreter to prove the module entry point and its exit codes. Every run uses
a short date range of the embedded data.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

import backtest.io
from backtest.portfolio_runner import format_metrics, main
from portfolio.config import default_config_path
from portfolio.contracts import PortfolioSnapshot

RANGE = ["--start", "2015-01-01", "--end", "2016-12-31"]
SIDS = ["trendline_break_v1", "rsi_tema_bb_v1", "momentum_v1"]
CSV_FILES = {
    "equity.csv", "strategy_equity.csv", "allocations.csv", "target_allocations.csv",
    "drift.csv", "weights.csv", "positions.csv", "cash.csv", "trades.csv", "rebalances.csv",
    "costs.csv", "metrics.csv", "comparison.csv", "standalone_equity.csv",
}  # fmt: skip


def run_main(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` with stdout/stderr captured (usable from module-scoped fixtures).

    Without ``--report`` the run gets ``--no-report``, so in-process runs never write into the
    working directory (the default report path is tested in a real process below).
    """
    if "--report" not in argv and "--no-report" not in argv and "--help" not in argv:
        argv = [*argv, "--no-report"]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: --help, unknown option
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def read_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def default_yaml() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(default_config_path().read_text(encoding="utf-8"))
    return loaded


def write_yaml(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("default_run")
    out, journal = base / "out", base / "journal"
    report = base / "report" / "run.html"
    code, stdout, stderr = run_main(
        [*RANGE, "--out", str(out), "--journal-dir", str(journal), "--report", str(report)]
    )
    return {
        "code": code, "stdout": stdout, "stderr": stderr, "out": out, "journal": journal,
        "report": report,
    }  # fmt: skip


# -------------------------------------------------------------------------------- success


def test_default_run_prints_metrics_and_writes_tables(default_run: dict[str, Any]) -> None:
    assert default_run["code"] == 0, default_run["stderr"]
    assert default_run["stderr"] == ""
    stdout: str = default_run["stdout"]
    out: Path = default_run["out"]
    assert {p.name for p in out.iterdir()} == CSV_FILES | {"manifest.json"}

    header = stdout.splitlines()[0]
    assert header.startswith("portfolio multi_strategy_v1 (sleeves): 2015-01-02 .. 2016-12-30")
    # The metrics table: one row per curve, exactly the table metrics.csv holds.
    metrics = pd.read_csv(out / "metrics.csv", index_col=0)
    assert list(metrics.index) == ["portfolio", *SIDS]
    assert format_metrics(metrics) in stdout
    rows = [line.split()[0] for line in stdout.splitlines()[2:6]]
    assert rows == ["portfolio", *SIDS]

    equity = pd.read_csv(out / "equity.csv", index_col=0, parse_dates=True)["equity"]
    trades = pd.read_csv(out / "trades.csv", index_col=0)
    costs = pd.read_csv(out / "costs.csv", index_col=0, parse_dates=True)
    rebalances = pd.read_csv(out / "rebalances.csv", index_col=0)
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(equity) == manifest["n_bars"] == 504
    assert str(equity.index[0].date()) == manifest["start"] == "2015-01-02"
    assert str(equity.index[-1].date()) == manifest["end"] == "2016-12-30"
    summary = re.fullmatch(
        r"trades (\d+), rebalance decisions (\d+), costs ([\d,.]+), saved by netting ([\d,.]+), "
        r"final equity ([\d,.]+)",
        next(line for line in stdout.splitlines() if line.startswith("trades ")),
    )
    assert summary is not None
    assert int(summary[1]) == len(trades) > 0
    assert int(summary[2]) == len(rebalances) > 0
    assert summary[3] == f"{costs.to_numpy().sum():,.2f}"
    assert summary[5] == f"{equity.iloc[-1]:,.2f}"
    assert f"wrote {len(CSV_FILES) + 1} files to {out}" in stdout
    # Tables agree with one another.
    allocations = pd.read_csv(out / "allocations.csv", index_col=0, parse_dates=True)
    np.testing.assert_allclose(allocations.sum(axis=1), equity, rtol=1e-12)
    assert metrics.loc["portfolio", "total_return"] == pytest.approx(
        equity.iloc[-1] / 50_000.0 - 1.0, rel=1e-12
    )
    assert metrics.loc["portfolio", "total_costs"] == pytest.approx(costs.to_numpy().sum())
    comparison = pd.read_csv(out / "comparison.csv", index_col=0)
    assert list(comparison.index) == SIDS
    assert "in portfolio vs standalone" in stdout


def test_journal_matches_tables(default_run: dict[str, Any]) -> None:
    out: Path = default_run["out"]
    journal: Path = default_run["journal"]
    assert {p.name for p in journal.iterdir()} == {"snapshots.ndjson", "trades.ndjson"}
    equity = pd.read_csv(out / "equity.csv", index_col=0, parse_dates=True)["equity"]
    allocations = pd.read_csv(out / "allocations.csv", index_col=0, parse_dates=True)
    drift = pd.read_csv(out / "drift.csv", index_col=0, parse_dates=True)

    lines = (journal / "snapshots.ndjson").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(equity)
    snaps = [PortfolioSnapshot.from_dict(json.loads(line)) for line in lines]
    assert [s.timestamp_ns for s in snaps] == list(
        pd.DatetimeIndex(equity.index).as_unit("ns").asi8
    )
    assert all(s.portfolio_id == "multi_strategy_v1" for s in snaps)
    # Both files carry exact round trips of the same floats (JSON repr, CSV %.17g).
    np.testing.assert_array_equal([s.total_equity for s in snaps], equity.to_numpy())
    for sid in SIDS:
        np.testing.assert_array_equal(
            [s.strategy_allocations[sid] for s in snaps], allocations[sid].to_numpy()
        )
        np.testing.assert_array_equal(
            [s.drift_from_target[sid] for s in snaps], drift[sid].to_numpy()
        )
    need = [s.needs_rebalance for s in snaps]
    assert need == list((drift.abs() > 0.05).any(axis=1))

    trades_csv = pd.read_csv(out / "trades.csv", index_col=0)
    records = [
        json.loads(line)
        for line in (journal / "trades.ndjson").read_text(encoding="utf-8").splitlines()
    ]
    assert len(records) == len(trades_csv) > 0
    nd = pd.DataFrame(records)[list(trades_csv.columns)]
    pd.testing.assert_series_equal(
        pd.to_datetime(nd["timestamp"]), pd.to_datetime(trades_csv["timestamp"]),
        check_index=False,
    )  # fmt: skip
    for col in ("strategy", "asset", "netted"):
        assert list(nd[col]) == list(trades_csv[col])
    for col in ("units", "price", "notional", "commission", "slippage"):
        np.testing.assert_array_equal(nd[col].to_numpy(float), trades_csv[col].to_numpy(float))


def test_runs_are_byte_identical(default_run: dict[str, Any], tmp_path: Path) -> None:
    out, journal = tmp_path / "out", tmp_path / "journal"
    report = tmp_path / "report" / "run.html"
    code, _, stderr = run_main(
        [*RANGE, "--out", str(out), "--journal-dir", str(journal), "--report", str(report)]
    )
    assert code == 0, stderr
    first, second = read_bytes(default_run["out"]), read_bytes(out)
    assert sorted(first) == sorted(second)
    differing = [name for name in first if first[name] != second[name]]
    assert differing == []
    assert read_bytes(default_run["journal"]) == read_bytes(journal)
    # The HTML report and every file of numbers beside it: byte-identical too.
    assert report.read_bytes() == default_run["report"].read_bytes()
    assert read_bytes(report.with_suffix("")) == read_bytes(default_run["report"].with_suffix(""))


def test_prices_file_gives_the_same_run(default_run: dict[str, Any], tmp_path: Path) -> None:
    """--prices with the embedded closes written as CSV reproduces the embedded-data run."""
    from backtest.data import load_default_panel

    frame = load_default_panel().slice("2015-01-01", "2016-12-31").prices
    src = tmp_path / "closes.csv"
    frame.rename_axis("Date").to_csv(src, float_format="%.17g")
    out = tmp_path / "out"
    code, _, stderr = run_main(["--prices", str(src), "--out", str(out)])
    assert code == 0, stderr
    before, after = read_bytes(default_run["out"]), read_bytes(out)
    for name in CSV_FILES:
        assert after[name] == before[name], name
    manifest = json.loads(after["manifest.json"])
    assert manifest["data_source"] == str(src)


# -------------------------------------------------------------------------------- failures


def _bad_yaml_text(tmp: Path) -> list[str]:
    path = tmp / "broken.yaml"
    path.write_text("portfolio:\n  id: x\n  allocations: [unclosed\n", encoding="utf-8")
    return ["--portfolio-config", str(path)]


def _yaml_with(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        doc = default_yaml()
        change(doc)
        return ["--portfolio-config", str(write_yaml(tmp / "cfg.yaml", doc))]

    return build


def _negative_price_file(tmp: Path) -> list[str]:
    dates = pd.bdate_range("2015-01-01", periods=30)
    frame = pd.DataFrame(
        {"Date": dates.strftime("%Y-%m-%d"), "AAA": 10.0, "BBB": np.linspace(5.0, 8.0, 30)}
    )
    frame.loc[17, "BBB"] = -2.5
    path = tmp / "neg.csv"
    frame.to_csv(path, index=False)
    return ["--prices", str(path)]


def _set(path: tuple[str | int, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        node: Any = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


ERROR_CASES: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    "missing_config": (
        lambda tmp: ["--portfolio-config", str(tmp / "nope.yaml")],
        r"nope\.yaml: file not found",
    ),
    "yaml_syntax": (_bad_yaml_text, r"broken\.yaml: invalid YAML at line \d+, column \d+"),
    "unknown_key": (
        _yaml_with(_set(("rebalance", "bogus_key"), 1)),
        r"cfg\.yaml: rebalance\.bogus_key: unknown key",
    ),
    "weights_not_summing_to_1": (
        _yaml_with(_set(("portfolio", "allocations", 0, "target_weight"), 0.5)),
        r"cfg\.yaml: portfolio\.allocations: target weights must sum to 1 .*1\.1",
    ),
    "missing_prices_file": (
        lambda tmp: ["--prices", str(tmp / "nothere.csv")],
        r"--prices: no such file: .*nothere\.csv",
    ),
    "negative_price": (
        _negative_price_file,
        r"neg\.csv: column 'BBB' has a non-positive price -2\.5 on 2015-01-26",
    ),
    "bad_start": (lambda tmp: ["--start", "2015-13-45"], r"--start: not a date: '2015-13-45'"),
    "start_after_end": (
        lambda tmp: ["--start", "2016-01-01", "--end", "2015-01-01"],
        r"--start 2016-01-01 is after --end 2015-01-01",
    ),
    "no_data_in_range": (
        lambda tmp: ["--start", "2030-01-01", "--end", "2030-12-31"],
        r"no bars between start 2030-01-01 and end 2030-12-31",
    ),
    "unknown_strategy_kind": (
        _yaml_with(_set(("strategies", "momentum_v1", "kind"), "no_such_kind")),
        r"strategies\.momentum_v1\.kind: unknown strategy kind 'no_such_kind'",
    ),
    "report_not_html": (
        lambda tmp: ["--report", str(tmp / "report.pdf")],
        r"--report: expected a \.html path, got '.*report\.pdf'",
    ),
    "universe_missing_asset": (
        _yaml_with(_set(("strategies", "momentum_v1", "universe"), ["AAPL", "NOPE"])),
        r"strategies\.momentum_v1\.universe: asset\(s\) 'NOPE' not in the price panel",
    ),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_bad_input_exits_2_with_one_line(case: str, tmp_path: Path) -> None:
    build, pattern = ERROR_CASES[case]
    out, journal = tmp_path / "out", tmp_path / "journal"
    args = [*build(tmp_path), "--out", str(out), "--journal-dir", str(journal)]
    if "--start" not in args:
        args += RANGE
    code, stdout, stderr = run_main(args)
    assert code == 2
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in stderr
    assert re.search(pattern, lines[0]), lines[0]
    # Nothing written, nothing half-written.
    assert not out.exists() or list(out.iterdir()) == []
    assert not journal.exists() or list(journal.iterdir()) == []
    assert stdout == ""


def test_unknown_option_is_a_usage_error() -> None:
    code, stdout, stderr = run_main(["--bogus"])
    assert code == 2
    lines = stderr.splitlines()
    assert len(lines) == 1
    assert "unrecognized arguments: --bogus" in lines[0]
    assert stdout == ""


def test_help_exits_0() -> None:
    code, stdout, stderr = run_main(["--help"])
    assert code == 0
    assert stderr == ""
    for option in ("--portfolio-config", "--prices", "--start", "--end", "--journal-dir", "--out"):
        assert option in stdout


# ----------------------------------------------------------------------------- atomicity


def test_failed_rewrite_keeps_previous_files(
    default_run: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that dies halfway (disk full) leaves each file either old or new, never mixed."""
    out = tmp_path / "out"
    # An earlier good run of a different range, then a rerun that fails on its third file.
    code, _, err = run_main(["--start", "2016-01-01", "--end", "2016-06-30", "--out", str(out)])
    assert code == 0, err
    old = read_bytes(out)
    new = read_bytes(default_run["out"])  # what the rerun (default range) would write
    assert all(old[n] != new[n] for n in ("equity.csv", "trades.csv", "manifest.json"))

    real_write = backtest.io.atomic_write_bytes
    order: list[str] = []

    class HalfWriter:
        """File object that writes half of the data, then fails like a full disk."""

        def __init__(self, fh: Any) -> None:
            self._fh = fh

        def __enter__(self) -> HalfWriter:
            return self

        def __exit__(self, *exc: object) -> None:
            self._fh.close()

        def write(self, data: bytes) -> int:
            self._fh.write(data[: len(data) // 2])
            self._fh.flush()
            raise OSError(28, "No space left on device")

    class FailingOs:
        def __getattr__(self, name: str) -> Any:
            return getattr(os, name)

        def fdopen(self, fd: int, mode: str) -> Any:
            fh = os.fdopen(fd, mode)
            return HalfWriter(fh) if len(order) == 3 else fh

    def recording_write(path: str | os.PathLike[str], data: bytes) -> Path:
        order.append(Path(path).name)
        return real_write(path, data)

    monkeypatch.setattr(backtest.io, "os", FailingOs())
    monkeypatch.setattr(backtest.io, "atomic_write_bytes", recording_write)
    code, stdout, stderr = run_main([*RANGE, "--out", str(out)])
    monkeypatch.undo()

    assert code == 2
    assert stderr.splitlines() == ["error: [Errno 28] No space left on device"]
    assert len(order) == 3
    now = read_bytes(out)
    assert sorted(now) == sorted(old)  # no temporary file left behind
    for name in order[:2]:
        assert now[name] == new[name], name  # completed before the failure
    for name in set(old) - set(order[:2]):
        assert now[name] == old[name], name  # the failed file and every later one untouched
    assert stdout == ""


# ------------------------------------------------------------------------------ real process


def test_module_entry_point_exit_codes(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "backtest.portfolio_runner", "--no-progress"]
    ok = subprocess.run(
        [*cmd, "--start", "2016-01-01", "--end", "2016-12-31", "--out", str(tmp_path / "out")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "portfolio multi_strategy_v1 (sleeves): 2016-01-04 .. 2016-12-30" in ok.stdout
    assert (tmp_path / "out" / "equity.csv").is_file()
    assert not (tmp_path / "results").exists()  # --out honoured, nothing in the cwd
    # The report goes to its default place under the working directory, numbers beside it.
    report = tmp_path / "var" / "backtest" / "portfolio_multi_strategy_v1_report.html"
    assert report.is_file()
    assert f"report {Path('var/backtest/portfolio_multi_strategy_v1_report.html')}" in ok.stdout
    beside = report.with_suffix("")
    assert {p.name for p in beside.iterdir()} == {
        "metrics.csv", "monthly_returns.csv", "contributions_by_strategy.csv",
        "contributions_by_asset.csv", "rebalance_events.csv", "report.json", "manifest.json",
    }  # fmt: skip

    bad = subprocess.run(
        [*cmd, "--start", "2016-01-01", "--end", "2015-01-01", "--out", str(tmp_path / "bad")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == ["error: --start 2016-01-01 is after --end 2015-01-01"]
    assert bad.stdout == ""
    assert not (tmp_path / "bad").exists()
