"""Command line: ``python -m backtest.portfolio_runner``.

Runs the portfolio described by a YAML file (default: the shipped ``config/portfolio.yaml``) on a
price file (default: the embedded 20-stock S&P 500 panel), prints the metrics table and writes
the result tables as CSV. Exit codes: 0 success, 2 bad usage or bad input (one line on stderr, no
traceback), 1 an unexpected internal error.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from portfolio.errors import PortfolioBacktestError

__all__ = ["build_parser", "format_metrics", "main"]

logger = logging.getLogger(__name__)


class _ArgumentParser(argparse.ArgumentParser):
    """argparse with our exit convention: one line on stderr, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The runner's argument parser (every option has a default)."""
    p = _ArgumentParser(
        prog="python -m backtest.portfolio_runner",
        description=(
            "Backtest a multi-strategy portfolio (capital sleeves or Black-Litterman) on daily "
            "closes, print the metrics and write the result tables as CSV."
        ),
    )
    p.add_argument(
        "--portfolio-config",
        metavar="PATH",
        default=None,
        help="portfolio YAML (default: the shipped config/portfolio.yaml)",
    )
    p.add_argument(
        "--prices",
        metavar="PATH",
        default=None,
        help="closes as CSV, CSV.gz or Parquet: a Date column then one column per asset "
        "(default: the config's data.prices, else the embedded S&P 500 sample, 1990-2022)",
    )
    p.add_argument("--start", metavar="DATE", default=None, help="first date, YYYY-MM-DD")
    p.add_argument("--end", metavar="DATE", default=None, help="last date, YYYY-MM-DD")
    p.add_argument(
        "--journal-dir",
        metavar="DIR",
        default=None,
        help="also journal snapshots and trades as NDJSON into DIR",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        default="results",
        help="folder for the result CSVs and manifest.json (default: ./results)",
    )
    report = p.add_mutually_exclusive_group()
    report.add_argument(
        "--report",
        metavar="PATH",
        default=None,
        help="HTML report path (default: var/backtest/portfolio_<id>_report.html); its numbers "
        "as CSV/JSON and manifest.json go to the folder of the same name beside it",
    )
    report.add_argument("--no-report", action="store_true", help="do not write the HTML report")
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    return p


def format_metrics(metrics: pd.DataFrame) -> str:
    """Render the metrics table for the terminal (percentages where they read better)."""
    pct = {"total_return", "cagr", "annual_volatility", "max_drawdown", "turnover"}
    rows = []
    for name, row in metrics.iterrows():
        cells: dict[str, str] = {}
        for col_key, val in row.items():
            col = str(col_key)
            if col in pct:
                cells[col] = f"{val * 100:,.2f}%"
            elif col == "max_drawdown_duration":
                cells[col] = f"{val:,.0f}"
            elif col == "total_costs":
                cells[col] = f"{val:,.2f}"
            else:
                cells[col] = f"{val:,.3f}"
        rows.append(pd.Series(cells, name=name))
    return pd.DataFrame(rows).to_string()


def _parse_date(value: str | None, option: str) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        return pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise PortfolioBacktestError(f"{option}: not a date: {value!r} ({exc})") from None


def run(args: argparse.Namespace) -> int:
    """Execute a parsed command line; raises project errors for bad input."""
    from backtest.portfolio_engine import PortfolioBacktestEngine
    from portfolio.config import default_config_path, load_config

    start = _parse_date(args.start, "--start")
    end = _parse_date(args.end, "--end")
    if start is not None and end is not None and start > end:
        raise PortfolioBacktestError(f"--start {args.start} is after --end {args.end}")
    if args.report is not None and Path(args.report).suffix.lower() not in (".html", ".htm"):
        raise PortfolioBacktestError(f"--report: expected a .html path, got {args.report!r}")
    cfg_path = Path(args.portfolio_config) if args.portfolio_config else default_config_path()
    config = load_config(cfg_path)
    if args.prices is not None and not Path(args.prices).is_file():
        raise PortfolioBacktestError(f"--prices: no such file: {args.prices}")
    show_progress = (not args.no_progress) and sys.stderr.isatty()
    t0 = time.perf_counter()
    engine = PortfolioBacktestEngine.from_config(
        config,
        prices=args.prices,
        start=start,
        end=end,
        journal_dir=args.journal_dir,
        show_progress=show_progress,
    )
    result = engine.run()
    elapsed = time.perf_counter() - t0
    written = result.write_csv(args.out)
    m = result.manifest
    print(
        f"portfolio {m['portfolio_id']} ({m['mode']}): {m['start']} .. {m['end']}, "
        f"{m['n_bars']} bars x {len(m['assets'])} assets, lag {m['execution_lag']}, "
        f"rf_annual {m['rf_annual']}, periods_per_year {m['periods_per_year']}"
    )
    print(format_metrics(result.metrics))
    if not result.comparison.empty:
        print("\nin portfolio vs standalone (each strategy alone with its target capital):")
        print(result.comparison.to_string(float_format=lambda v: f"{v:,.4f}"))
    if result.strategy_attribution is not None:
        from backtest.bl_mode import contribution_summary

        print("\nper-strategy contribution (black_litterman attribution):")
        print(contribution_summary(result).to_string(float_format=lambda v: f"{v:,.4f}"))
    final = result.allocations.iloc[-1]
    print(
        "\nfinal capital per account: "
        + ", ".join(f"{name} {value:,.2f}" for name, value in final.items())
    )
    print(
        f"trades {len(result.trades)}, rebalance decisions {len(result.rebalances)}, "
        f"costs {result.total_costs:,.2f}, saved by netting {result.total_netting_saved:,.2f}, "
        f"final equity {result.equity.iloc[-1]:,.2f}"
    )
    print(f"wrote {len(written)} files to {Path(args.out)} in {elapsed:.2f} s")
    if not args.no_report:
        from backtest.report import default_report_path, write_report

        t1 = time.perf_counter()
        path = Path(args.report) if args.report else default_report_path(result)
        files = write_report(result, path)
        print(
            f"report {files[0]} ({files[0].stat().st_size / 1e6:.2f} MB) and {len(files) - 1} "
            f"data files in {files[0].with_suffix('')} in {time.perf_counter() - t1:.2f} s"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return run(args)
    except PortfolioBacktestError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except OSError as exc:  # unreadable file, permission, disk full: the user's environment
        sys.stderr.write(f"error: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
