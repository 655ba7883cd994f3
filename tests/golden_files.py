"""Golden outputs of the shipped configurations: produce them, compare them, update them.

The golden files in ``tests/golden/<case>/`` are small committed outputs of the example
configurations on fixed windows of the embedded data (see :data:`CASES`). ``tests/test_golden.py``
compares a fresh run with them; ``make golden-update`` rewrites them and prints, per file, what
changed, so that a deliberate change is reviewed and never hidden::

    make golden-update                        # or, from the repository root:
    python tests/golden_files.py update       # (needs the package importable, e.g. installed)
    python -m tests.golden_files update
    python tests/golden_files.py check        # compare only; exit status 1 on a difference
    PB_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py   # the old way, still supported

What is stored, per case (``sleeves`` and ``black_litterman`` mode):

``summary.json``
    Window, bar count, assets, accounts, data hash, counts of trades and rebalances (by level and
    reason), total costs and netting savings, final equity.
``equity.csv``
    Daily book equity and cash.
``allocations.csv``
    Daily capital per account (the strategy sleeves plus the ``unallocated`` reserve).
``strategy_equity.csv``
    Daily time-weighted value of each sleeve.
``weights.csv``
    Asset weights of the book at the last bar of each month (the daily table is 20 columns
    wide; month ends keep the file small while every daily change still shows in the equity,
    the allocations and the trades).
``trades.csv``
    Every fill, keyed by (timestamp, strategy, asset): units, commission, slippage, netted.
    ``price`` and ``notional`` are left out (they are 40 % of the file): the price of a fill is
    the close of its asset at its timestamp (the data is pinned by ``data_hash``) and the notional
    is ``|units| * price``; ``tests/test_golden.py`` asserts both, bit for bit, on every fresh
    run, so nothing is lost.
``rebalances.csv``
    Every decision, keyed by (timestamp, level, strategy): reason and fill date.
``metrics.csv``
    The result's metrics table; ``comparison.csv`` (sleeves mode) the in-portfolio versus
    standalone metrics.

Comparison rules: labels (dates, strategy ids, assets), strings, booleans, integers in JSON and
the row and column sets are compared exactly; floats to :data:`RTOL` relative, with an absolute
floor only for the columns named in each table's ``atol`` (each one justified where it is set).
Floats are written with ``%.17g`` (JSON with Python's shortest round-trip ``repr``) and parsed
with :class:`float`, so a file read back gives the same bits that were written.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from backtest.io import atomic_write_bytes
from backtest.portfolio_engine import PortfolioBacktestEngine
from backtest.result import RESERVE, PortfolioBacktestResult
from portfolio.config import load_config

__all__ = [
    "CASES",
    "GOLDEN_DIR",
    "RTOL",
    "Change",
    "FileDiff",
    "GoldenCase",
    "GoldenTable",
    "check",
    "diff_table",
    "main",
    "produce",
    "render",
    "run_case",
    "stale_files",
    "update",
]

#: Repository root (this file is ``tests/golden_files.py``).
REPO = Path(__file__).resolve().parents[1]
#: Where the golden files live: one folder per case.
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
#: Relative tolerance for floats: far above run-to-run noise (runs on one machine are
#: bit-identical) and far below any change of behaviour (one share more moves an equity path
#: by ~1e-5 relative).
RTOL = 1e-10
#: ``%.17g`` prints 17 significant digits: enough for every double to read back bit for bit.
FLOAT_FORMAT = "%.17g"
#: Files in the golden folder that are documentation, not outputs.
DOC_FILES = frozenset({"README.md"})
#: How many of the largest changes a diff lists.
N_LARGEST = 5


@dataclass(frozen=True)
class GoldenCase:
    """One shipped configuration on one fixed window of the embedded data.

    Attributes
    ----------
    name : str
        Folder name under ``tests/golden/``.
    config : str
        Path of the YAML file, relative to the repository root.
    start, end : str
        Inclusive window (ISO dates) cut from the embedded 1990-2022 panel.
    files : tuple of str
        The golden files of this case (fixed up front so the tests can be parametrized).
    """

    name: str
    config: str
    start: str
    end: str
    files: tuple[str, ...]


_COMMON_FILES = (
    "summary.json",
    "equity.csv",
    "allocations.csv",
    "strategy_equity.csv",
    "weights.csv",
    "trades.csv",
    "rebalances.csv",
    "metrics.csv",
)

#: The golden cases. 2019-2020 holds a calm year and the 2020 crash: in sleeves mode 24 month
#: ends, 10 drift rebalances, ~2500 fills (some netted); in black_litterman mode ~2100 fills and a
#: regime model that starts fitting after its 252-bar minimum history, in 2020.
CASES: tuple[GoldenCase, ...] = (
    GoldenCase(
        "sleeves_2019_2020",
        "config/portfolio.yaml",
        "2019-01-01",
        "2020-12-31",
        (*_COMMON_FILES, "comparison.csv"),
    ),
    GoldenCase(
        "black_litterman_2019_2020",
        "config/portfolio_bl.yaml",
        "2019-01-01",
        "2020-12-31",
        _COMMON_FILES,
    ),
)


@dataclass(frozen=True, eq=False)
class GoldenTable:
    """The expected content of one golden file, produced from a fresh run.

    Attributes
    ----------
    filename : str
        ``<name>.csv`` or ``<name>.json``.
    text : str
        The exact file content.
    n_index : int
        CSV: number of leading label columns (0 for JSON).
    float_columns : frozenset of str
        CSV columns compared to :data:`RTOL` (every other column exactly).
    atol : mapping of str -> float
        Absolute floors per column (CSV) or key (JSON), for values that are legitimately ~0.
    """

    filename: str
    text: str
    n_index: int = 0
    float_columns: frozenset[str] = frozenset()
    atol: Mapping[str, float] = field(default_factory=dict)

    @property
    def is_json(self) -> bool:
        """Whether the file is a JSON document (else a CSV table)."""
        return self.filename.endswith(".json")


# ---------------------------------------------------------------------------------- producing
@functools.cache
def run_case(case: GoldenCase) -> PortfolioBacktestResult:
    """Run one golden case from its YAML file, on its window of the embedded data (cached).

    Parameters
    ----------
    case : GoldenCase

    Returns
    -------
    PortfolioBacktestResult
        Cached per process: callers must not modify its frames.
    """
    cfg = load_config(REPO / case.config)
    return PortfolioBacktestEngine.from_config(cfg, start=case.start, end=case.end).run()


def _csv_table(
    filename: str, frame: pd.DataFrame, atol: Mapping[str, float] | None = None
) -> GoldenTable:
    if frame.index.has_duplicates:
        # Rows are matched by label; a repeated label gets its occurrence number appended.
        names = list(frame.index.names)
        frame = frame.reset_index()
        frame["occurrence"] = frame.groupby(names, sort=False).cumcount()
        frame = frame.set_index([*names, "occurrence"])
    if any(n is None for n in frame.index.names):
        raise ValueError(f"{filename}: every index level needs a name (it is the CSV header)")
    floats = frozenset(str(c) for c in frame.columns if pd.api.types.is_float_dtype(frame[c]))
    text = frame.to_csv(float_format=FLOAT_FORMAT, lineterminator="\n")
    return GoldenTable(filename, text, frame.index.nlevels, floats, dict(atol or {}))


def _month_ends(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows at the last bar of each calendar month (and the last bar of the window)."""
    months = pd.DatetimeIndex(frame.index).to_period("M")
    last = np.append(months[1:] != months[:-1], True)
    return frame.loc[last]


def _summary(case: GoldenCase, result: PortfolioBacktestResult) -> dict[str, Any]:
    m = result.manifest
    rb = result.rebalances
    counts = rb.groupby(["level", "reason"]).size()
    by_reason = {f"{lv}/{rs}": int(n) for (lv, rs), n in zip(counts.index, counts, strict=True)}
    return {
        "case": case.name,
        "config": case.config,
        "mode": m["mode"],
        "portfolio_id": m["portfolio_id"],
        "start": m["start"],
        "end": m["end"],
        "n_bars": int(m["n_bars"]),
        "assets": list(m["assets"]),
        "accounts": [str(c) for c in result.allocations.columns],
        "data_hash": m["data_hash"],
        "execution_lag": int(m["execution_lag"]),
        "n_trades": len(result.trades),
        "n_trades_netted": int(result.trades["netted"].sum()),
        "n_rebalances": by_reason,
        "total_costs": result.total_costs,
        "total_netting_saved": result.total_netting_saved,
        "final_equity": float(result.equity.iloc[-1]),
    }


def _golden_trades(trades: pd.DataFrame) -> pd.DataFrame:
    return trades.drop(columns=["price", "notional"]).set_index(["timestamp", "strategy", "asset"])


@functools.cache
def produce(case: GoldenCase) -> dict[str, GoldenTable]:
    """Run a case and build the content of each of its golden files (cached per process).

    Parameters
    ----------
    case : GoldenCase

    Returns
    -------
    dict of filename -> GoldenTable
        Exactly ``case.files``.
    """
    r = run_case(case)
    capital = float(load_config(REPO / case.config).portfolio.total_capital)
    # The only absolute floors. Cash is a running sum of fills, each about the size of a
    # position, so its rounding error is a few ulp of the capital (~1e-11 for 5e4) however
    # little cash is left; after a sleeve spends nearly all of it (cents may remain) that error
    # is large relative to the cash, though not to the money involved. The floor applies the
    # relative tolerance to the capital. Same for the reserve: the equity minus capped sleeves.
    money_floor = RTOL * capital

    date_index = pd.DatetimeIndex(r.equity.index, name="date")
    equity = pd.DataFrame(
        {"equity": r.equity.to_numpy(), "cash": r.cash.to_numpy()}, index=date_index
    )
    allocations = r.allocations.set_axis(date_index, axis=0)
    strategy_equity = r.strategy_equity.set_axis(date_index, axis=0)
    weights = _month_ends(r.weights.set_axis(date_index, axis=0))
    trades = _golden_trades(r.trades)
    rebalances = r.rebalances.set_index(["timestamp", "level", "strategy"])[
        ["reason", "fill_timestamp"]
    ]
    metrics = r.metrics.rename_axis("name")

    tables = [
        GoldenTable(
            "summary.json",
            json.dumps(_summary(case, r), indent=2, sort_keys=True) + "\n",
        ),
        _csv_table("equity.csv", equity, {"cash": money_floor}),
        _csv_table("allocations.csv", allocations, {RESERVE: money_floor}),
        _csv_table("strategy_equity.csv", strategy_equity),
        _csv_table("weights.csv", weights),
        _csv_table("trades.csv", trades),
        _csv_table("rebalances.csv", rebalances),
        _csv_table("metrics.csv", metrics),
    ]
    if "comparison.csv" in case.files:
        tables.append(_csv_table("comparison.csv", r.comparison.rename_axis("strategy")))
    out = {t.filename: t for t in tables}
    if set(out) != set(case.files):
        raise ValueError(f"{case.name}: produced {sorted(out)}, expected {sorted(case.files)}")
    return out


# ---------------------------------------------------------------------------------- comparing
@dataclass(frozen=True)
class Change:
    """One changed value: where, from what, to what."""

    label: str
    column: str
    old: str
    new: str
    abs_change: float = math.nan
    rel_change: float = math.nan

    def render(self) -> str:
        """One line: ``label / column: old -> new (abs ..., rel ...)``."""
        size = ""
        if not math.isnan(self.abs_change):
            size = f" (abs {self.abs_change:.3g}, rel {self.rel_change:.3g})"
        old, new = self.old or "(empty)", self.new or "(empty)"
        return f"{self.label} / {self.column}: {old} -> {new}{size}"


Status = Literal["unchanged", "changed", "new", "removed"]


@dataclass
class FileDiff:
    """What differs between a fresh output and its golden file.

    Attributes
    ----------
    path : str
        File path relative to the golden folder.
    status : {"unchanged", "changed", "new", "removed"}
        ``unchanged``: same bytes. ``new``: no golden file yet. ``removed``: a golden file no
        case produces any more.
    n_rows_old, n_rows_new : int
        Data rows (CSV) or leaf keys (JSON).
    rows_added, rows_removed : list of str
        Labels present only in the fresh output / only in the golden file.
    columns_added, columns_removed : list of str
    row_order_changed : bool
        Same labels in a different order.
    n_values : int
        Values compared (common rows x common columns).
    n_changed : int
        Values that differ at all.
    n_beyond : int
        Values that differ beyond the tolerance (floats) or at all (everything else).
    max_abs, max_rel : float
        Largest absolute / relative change among the floats (0 when none changed).
    max_abs_where, max_rel_where : str
        Label and column of those.
    largest : list of Change
        The few largest changes (exact mismatches first, then floats by relative change).
    """

    path: str
    status: Status
    n_rows_old: int = 0
    n_rows_new: int = 0
    rows_added: list[str] = field(default_factory=list)
    rows_removed: list[str] = field(default_factory=list)
    columns_added: list[str] = field(default_factory=list)
    columns_removed: list[str] = field(default_factory=list)
    row_order_changed: bool = False
    n_values: int = 0
    n_changed: int = 0
    n_beyond: int = 0
    max_abs: float = 0.0
    max_rel: float = 0.0
    max_abs_where: str = ""
    max_rel_where: str = ""
    largest: list[Change] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the fresh output matches the golden file within the tolerances."""
        if self.status == "unchanged":
            return True
        if self.status != "changed":
            return False
        return not (
            self.rows_added
            or self.rows_removed
            or self.columns_added
            or self.columns_removed
            or self.row_order_changed
            or self.n_beyond
        )

    @property
    def _rows(self) -> str:
        return "keys" if self.path.endswith(".json") else "rows"

    def render(self) -> str:
        """A readable multi-line summary of the difference."""
        if self.status == "unchanged":
            return f"{self.path}: unchanged"
        if self.status == "new":
            return f"{self.path}: NEW ({self.n_rows_new} {self._rows})"
        if self.status == "removed":
            return f"{self.path}: REMOVED (no case produces it; {self.n_rows_old} {self._rows})"
        parts = [f"{self.path}: CHANGED (golden -> fresh)"]
        rows = f"{self._rows} {self.n_rows_old} -> {self.n_rows_new}"
        if self.rows_added or self.rows_removed:
            rows += f" (+{len(self.rows_added)} added, -{len(self.rows_removed)} removed)"
        parts.append(rows)
        if self.row_order_changed:
            parts.append("row order changed")
        if self.columns_added:
            parts.append(f"columns added {self.columns_added}")
        if self.columns_removed:
            parts.append(f"columns removed {self.columns_removed}")
        parts.append(
            f"{self.n_changed} of {self.n_values} values changed "
            f"({self.n_beyond} beyond tolerance rtol {RTOL:g})"
        )
        if self.n_changed:
            parts.append(
                f"max abs change {self.max_abs:.3g} [{self.max_abs_where}], "
                f"max rel change {self.max_rel:.3g} [{self.max_rel_where}]"
            )
        lines = [parts[0] + " " + "; ".join(parts[1:])]
        lines += [f"    {c.render()}" for c in self.largest]
        for what, labels in (("added", self.rows_added), ("removed", self.rows_removed)):
            if labels:
                more = f" ... and {len(labels) - N_LARGEST} more" if len(labels) > N_LARGEST else ""
                lines.append(f"    {self._rows} {what}: {', '.join(labels[:N_LARGEST])}{more}")
        return "\n".join(lines)


def _label(key: Any) -> str:
    parts = key if isinstance(key, tuple) else (key,)
    return " ".join(str(p) if str(p) != "" else "-" for p in parts)


def _to_float(values: Iterable[Any]) -> np.ndarray:
    # Python's float() is correctly rounded, so "%.17g" text reads back to the written bits.
    return np.array(
        [math.nan if v is None or v == "" else float(v) for v in values], dtype=np.float64
    )


def _compare_values(
    labels: Sequence[str],
    column: str,
    old: Sequence[Any],
    new: Sequence[Any],
    *,
    is_float: bool,
    atol: float,
    diff: FileDiff,
    changes: list[Change],
) -> None:
    """Compare one column of aligned values; update ``diff`` counters and ``changes``."""
    diff.n_values += len(labels)
    if not is_float:
        for lab, o, n in zip(labels, old, new, strict=True):
            if o != n:
                diff.n_changed += 1
                diff.n_beyond += 1
                changes.append(Change(lab, column, str(o), str(n)))
        return
    a = _to_float(old)
    b = _to_float(new)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    if same.all():
        return
    with np.errstate(invalid="ignore", divide="ignore"):
        abs_ch = np.abs(b - a)
        rel_ch = np.where(a != 0.0, abs_ch / np.abs(a), np.inf)
        within = abs_ch <= atol + RTOL * np.abs(a)
    abs_ch = np.where(np.isnan(abs_ch), np.inf, abs_ch)
    rel_ch = np.where(np.isnan(rel_ch), np.inf, rel_ch)
    for i in np.flatnonzero(~same).tolist():
        diff.n_changed += 1
        diff.n_beyond += int(not within[i])
        where = f"{labels[i]} / {column}"
        if abs_ch[i] > diff.max_abs or not diff.max_abs_where:
            diff.max_abs, diff.max_abs_where = float(abs_ch[i]), where
        if rel_ch[i] > diff.max_rel or not diff.max_rel_where:
            diff.max_rel, diff.max_rel_where = float(rel_ch[i]), where
        changes.append(
            Change(labels[i], column, str(old[i]), str(new[i]), float(abs_ch[i]), float(rel_ch[i]))
        )


def _largest(changes: list[Change]) -> list[Change]:
    exact = [c for c in changes if math.isnan(c.abs_change)]
    floats = sorted(
        (c for c in changes if not math.isnan(c.abs_change)),
        key=lambda c: (c.rel_change, c.abs_change),
        reverse=True,
    )
    return (exact + floats)[:N_LARGEST]


def _diff_csv(table: GoldenTable, old_text: str, diff: FileDiff) -> None:
    def parse(text: str) -> pd.DataFrame:
        return pd.read_csv(
            io.StringIO(text),
            dtype=str,
            keep_default_na=False,
            index_col=list(range(table.n_index)),
        )

    old, new = parse(old_text), parse(table.text)
    old_labels = [_label(k) for k in old.index]
    new_labels = [_label(k) for k in new.index]
    old.index, new.index = pd.Index(old_labels), pd.Index(new_labels)
    diff.n_rows_old, diff.n_rows_new = len(old), len(new)
    old_set, new_set = set(old_labels), set(new_labels)
    diff.rows_added = [x for x in new_labels if x not in old_set]
    diff.rows_removed = [x for x in old_labels if x not in new_set]
    common_rows = [x for x in new_labels if x in old_set]
    diff.row_order_changed = common_rows != [x for x in old_labels if x in new_set]
    old_cols, new_cols = [str(c) for c in old.columns], [str(c) for c in new.columns]
    diff.columns_added = [c for c in new_cols if c not in old_cols]
    diff.columns_removed = [c for c in old_cols if c not in new_cols]
    changes: list[Change] = []
    if old.index.has_duplicates or new.index.has_duplicates:
        raise ValueError(f"{diff.path}: repeated row labels; cannot align rows")
    o_rows, n_rows = old.loc[common_rows], new.loc[common_rows]
    for col in (c for c in new_cols if c in old_cols):
        _compare_values(
            common_rows,
            col,
            o_rows[col].tolist(),
            n_rows[col].tolist(),
            is_float=col in table.float_columns,
            atol=float(table.atol.get(col, 0.0)),
            diff=diff,
            changes=changes,
        )
    diff.largest = _largest(changes)


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}/" if isinstance(v, dict) else f"{prefix}{k}"))
        return out
    return {prefix: obj}


def _diff_json(table: GoldenTable, old_text: str, diff: FileDiff) -> None:
    old, new = _flatten(json.loads(old_text)), _flatten(json.loads(table.text))
    diff.n_rows_old, diff.n_rows_new = len(old), len(new)
    diff.rows_added = [k for k in new if k not in old]
    diff.rows_removed = [k for k in old if k not in new]
    changes: list[Change] = []
    for key in (k for k in new if k in old):
        o, n = old[key], new[key]
        is_float = isinstance(n, float) and isinstance(o, float)
        _compare_values(
            [key],
            "value",
            [o if is_float else json.dumps(o)],
            [n if is_float else json.dumps(n)],
            is_float=is_float,
            atol=float(table.atol.get(key, 0.0)),
            diff=diff,
            changes=changes,
        )
    diff.largest = _largest(changes)


def _n_rows(filename: str, text: str) -> int:
    """Data rows of a CSV text (header excluded) or leaf keys of a JSON text."""
    if filename.endswith(".json"):
        try:
            return len(_flatten(json.loads(text)))
        except ValueError:
            return 0
    return max(text.count("\n") - 1, 0)


def _removed(path: Path, golden_dir: Path) -> FileDiff:
    text = path.read_text(encoding="utf-8", errors="replace")
    return FileDiff(
        str(path.relative_to(golden_dir)), "removed", n_rows_old=_n_rows(path.name, text)
    )


def diff_table(table: GoldenTable, path: Path, *, name: str | None = None) -> FileDiff:
    """Compare the fresh content of one golden file with the file on disk.

    Parameters
    ----------
    table : GoldenTable
        Fresh content.
    path : Path
        The golden file (may be missing).
    name : str, optional
        How to name the file in the diff (default: ``path`` relative to the golden folder).

    Returns
    -------
    FileDiff
        ``unchanged`` when the bytes are equal; otherwise the rows, columns and values that
        differ, with the tolerances of :data:`RTOL` and ``table.atol``.
    """
    if name is None:
        name = str(path.relative_to(GOLDEN_DIR)) if path.is_relative_to(GOLDEN_DIR) else str(path)
    if not path.exists():
        return FileDiff(name, "new", n_rows_new=_n_rows(path.name, table.text))
    old_text = path.read_text(encoding="utf-8")
    if old_text == table.text:
        return FileDiff(name, "unchanged")
    diff = FileDiff(name, "changed")
    if table.is_json:
        _diff_json(table, old_text, diff)
    else:
        _diff_csv(table, old_text, diff)
    return diff


def stale_files(expected: Iterable[Path], golden_dir: Path = GOLDEN_DIR) -> list[Path]:
    """Files in the golden folder that no case produces (documentation files excepted)."""
    keep = {p.resolve() for p in expected}
    if not golden_dir.exists():
        return []
    return sorted(
        p
        for p in golden_dir.rglob("*")
        if p.is_file() and p.name not in DOC_FILES and p.resolve() not in keep
    )


def _expected_paths(cases: Sequence[GoldenCase], golden_dir: Path) -> list[Path]:
    return [golden_dir / c.name / f for c in cases for f in c.files]


def check(cases: Sequence[GoldenCase] = CASES, golden_dir: Path = GOLDEN_DIR) -> list[FileDiff]:
    """Compare fresh runs of ``cases`` with the golden files; write nothing.

    Returns
    -------
    list of FileDiff
        One per expected file, plus one ``removed`` entry per stale file.
    """
    diffs = [
        diff_table(t, golden_dir / c.name / t.filename, name=f"{c.name}/{t.filename}")
        for c in cases
        for t in produce(c).values()
    ]
    diffs.extend(
        _removed(p, golden_dir) for p in stale_files(_expected_paths(cases, golden_dir), golden_dir)
    )
    return diffs


def update(cases: Sequence[GoldenCase] = CASES, golden_dir: Path = GOLDEN_DIR) -> list[FileDiff]:
    """Rewrite the golden files from fresh runs and return what changed.

    Files whose bytes would not change are not touched; files no case produces any more are
    deleted (and reported as ``removed``).

    Returns
    -------
    list of FileDiff
        The differences against the files as they were before the update.
    """
    diffs: list[FileDiff] = []
    for case in cases:
        for table in produce(case).values():
            path = golden_dir / case.name / table.filename
            d = diff_table(table, path, name=f"{case.name}/{table.filename}")
            if d.status != "unchanged":
                atomic_write_bytes(path, table.text.encode("utf-8"))
            diffs.append(d)
    for p in stale_files(_expected_paths(cases, golden_dir), golden_dir):
        diffs.append(_removed(p, golden_dir))
        p.unlink()
    for folder in sorted((f for f in golden_dir.rglob("*") if f.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    return diffs


def render(diffs: Sequence[FileDiff]) -> str:
    """All diffs, one block per file, and a closing count line."""
    counts: dict[str, int] = {}
    for d in diffs:
        counts[d.status] = counts.get(d.status, 0) + 1
    tally = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return "\n".join([*(d.render() for d in diffs), f"{len(diffs)} golden files: {tally}"])


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``update`` rewrites the golden files, ``check`` only compares.

    Returns
    -------
    int
        0 on success; 1 when ``check`` finds a difference beyond the tolerances.
    """
    parser = argparse.ArgumentParser(
        prog="python tests/golden_files.py",
        description="Produce, compare and update the golden outputs in tests/golden/.",
    )
    parser.add_argument(
        "command",
        choices=["update", "check"],
        help="update: rewrite the files and print what changed; check: compare only",
    )
    args = parser.parse_args(argv)
    if args.command == "update":
        print(render(update()))
        return 0
    diffs = check()
    print(render(diffs))
    return 0 if all(d.ok for d in diffs) else 1


if __name__ == "__main__":
    sys.exit(main())
