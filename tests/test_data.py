"""Tests for backtest.data: loading, validation, alignment, slicing and the embedded panel.

Expected frames are written out by hand from the tiny inputs; the embedded-data facts (8313
rows, 20 tickers, 1990-01-02 .. 2022-12-28) come from backtest/datasets/README-data.md and are
cross-checked against a plain ``pandas.read_csv`` of the same file.
"""

from __future__ import annotations

import gzip
import importlib.resources
import re
import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backtest import data as data_mod
from backtest.data import PricePanel, load_default_index, load_default_panel, load_prices
from portfolio.errors import ConfigError, DataError

NAN = np.nan


def _frame(dates: list[str], **cols: list[float]) -> pd.DataFrame:
    """Expected panel frame: float64, DatetimeIndex 'date' in ns, no freq."""
    index = pd.DatetimeIndex(pd.to_datetime(dates), name="date").as_unit("ns")
    return pd.DataFrame({k: np.asarray(v, dtype=np.float64) for k, v in cols.items()}, index=index)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


BASIC_CSV = "Date,AAA,BBB\n2020-01-01,1.0,10\n2020-01-02,2.0,20\n2020-01-03,4.0,30\n"
BASIC = _frame(
    ["2020-01-01", "2020-01-02", "2020-01-03"], AAA=[1.0, 2.0, 4.0], BBB=[10.0, 20.0, 30.0]
)


def _raises(match_parts: list[str]) -> AbstractContextManager[Any]:
    """Expect a DataError whose message contains every part (in any order)."""
    pattern = "".join(f"(?=.*{re.escape(p)})" for p in match_parts)
    return pytest.raises(DataError, match=re.compile(pattern, re.S))


# ---------------------------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------------------------


def test_csv_round_trip(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.csv", BASIC_CSV)
    panel = PricePanel.from_file(path)
    pd.testing.assert_frame_equal(panel.prices, BASIC)
    assert panel.source == str(path)
    assert panel.assets == ["AAA", "BBB"]
    assert panel.n_bars == 3
    assert panel.n_assets == 2
    assert panel.index.name == "date"
    assert panel.index.freq is None


def test_csv_first_column_is_date_when_no_date_header(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.csv", BASIC_CSV.replace("Date", "when"))
    pd.testing.assert_frame_equal(PricePanel.from_file(path).prices, BASIC)


def test_gzip_csv_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "p.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(BASIC_CSV)
    pd.testing.assert_frame_equal(PricePanel.from_file(path).prices, BASIC)
    # Detected from the gzip magic bytes, not only the suffix.
    other = tmp_path / "no_suffix"
    other.write_bytes(path.read_bytes())
    pd.testing.assert_frame_equal(PricePanel.from_file(other).prices, BASIC)


def test_parquet_round_trip(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    original = PricePanel.from_frame(BASIC)
    with_index = tmp_path / "p.parquet"
    original.prices.to_parquet(with_index)
    back = PricePanel.from_file(with_index)
    pd.testing.assert_frame_equal(back.prices, BASIC)
    assert back.content_hash() == original.content_hash()
    # Parquet with a Date column instead of an index, no telling suffix.
    with_column = tmp_path / "p.bin"
    BASIC.reset_index().rename(columns={"date": "Date"}).to_parquet(with_column, index=False)
    pd.testing.assert_frame_equal(PricePanel.from_file(with_column).prices, BASIC)


def test_parquet_without_pyarrow_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "p.parquet"
    path.write_bytes(b"PAR1 not really parquet")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` fail
    with _raises([str(path), "pyarrow"]):
        PricePanel.from_file(path)


def test_dataframe_round_trip_and_hash_across_formats(tmp_path: Path) -> None:
    from_frame = PricePanel.from_frame(BASIC)
    pd.testing.assert_frame_equal(from_frame.prices, BASIC)
    assert from_frame.source == "<DataFrame>"
    from_csv = PricePanel.from_file(_write(tmp_path, "p.csv", BASIC_CSV))
    assert from_frame.content_hash() == from_csv.content_hash()
    # A 'Date' column, a string index, integer prices and a us-resolution index all work.
    as_column = pd.DataFrame(
        {"Date": ["2020-01-01", "2020-01-02", "2020-01-03"], "AAA": [1, 2, 4], "BBB": [10, 20, 30]}
    )
    pd.testing.assert_frame_equal(PricePanel.from_frame(as_column).prices, BASIC)
    as_str_index = as_column.set_index("Date")
    pd.testing.assert_frame_equal(PricePanel.from_frame(as_str_index).prices, BASIC)
    us_index = BASIC.copy()
    us_index.index = us_index.index.as_unit("us")
    assert PricePanel.from_frame(us_index).content_hash() == from_frame.content_hash()


def test_constructor_copies_input() -> None:
    frame = BASIC.copy()
    panel = PricePanel(frame, "mine")
    frame.iloc[0, 0] = 99.0
    assert panel.prices.iloc[0, 0] == 1.0
    assert panel.source == "mine"


def test_panel_is_not_mutable_through_its_accessors() -> None:
    panel = PricePanel.from_frame(BASIC)
    before = panel.content_hash()
    view = panel.prices
    view.iloc[0, 0] = 123.0
    arr = panel.values()
    arr[:] = -1.0
    assert panel.prices.iloc[0, 0] == 1.0
    assert panel.content_hash() == before


def test_values_is_c_contiguous_float64_copy() -> None:
    panel = PricePanel.from_frame(BASIC)
    arr = panel.values()
    assert arr.dtype == np.float64
    assert arr.flags.c_contiguous
    assert arr.flags.writeable
    np.testing.assert_array_equal(arr, [[1.0, 10.0], [2.0, 20.0], [4.0, 30.0]])


def test_content_hash_depends_on_values_dates_and_names_not_source() -> None:
    base = PricePanel.from_frame(BASIC, "a").content_hash()
    assert PricePanel.from_frame(BASIC, "b").content_hash() == base
    changed = BASIC.copy()
    changed.iloc[2, 1] = 31.0
    assert PricePanel.from_frame(changed).content_hash() != base
    renamed = BASIC.rename(columns={"BBB": "CCC"})
    assert PricePanel.from_frame(renamed).content_hash() != base
    shifted = BASIC.copy()
    shifted.index = shifted.index + pd.Timedelta(days=1)
    assert PricePanel.from_frame(shifted).content_hash() != base
    assert re.fullmatch(r"[0-9a-f]{64}", base)


# ---------------------------------------------------------------------------------------------
# validation errors: file, column and first offending date in the message
# ---------------------------------------------------------------------------------------------

BAD_CSVS = {
    "zero": (
        "Date,AAA,BBB\n2020-01-01,1,2\n2020-01-02,1,0\n2020-01-03,1,-1\n",
        ["'BBB'", "2020-01-02", "non-positive", "0.0"],
    ),
    "negative": (
        "Date,AAA,BBB\n2020-01-01,1,2\n2020-01-02,-3,2\n",
        ["'AAA'", "2020-01-02", "non-positive", "-3.0"],
    ),
    "infinite": (
        "Date,AAA,BBB\n2020-01-01,1,2\n2020-01-02,1,2\n2020-01-03,inf,2\n",
        ["'AAA'", "2020-01-03", "non-finite", "inf"],
    ),
    "nan_gap": (
        "Date,AAA,BBB\n2020-01-01,1,2\n2020-01-02,,2\n2020-01-03,1,2\n",
        ["'AAA'", "2020-01-02", "NaN", "first valid price on 2020-01-01"],
    ),
    "nan_at_end": (
        "Date,AAA,BBB\n2020-01-01,1,2\n2020-01-02,1,2\n2020-01-03,1,\n",
        ["'BBB'", "2020-01-03", "NaN"],
    ),
    "duplicate_date": (
        "Date,AAA\n2020-01-01,1\n2020-01-02,1\n2020-01-02,1\n",
        ["'Date'", "duplicate date 2020-01-02"],
    ),
    "unsorted_dates": (
        "Date,AAA\n2020-01-01,1\n2020-01-03,1\n2020-01-02,1\n",
        ["'Date'", "not sorted", "2020-01-02", "2020-01-03"],
    ),
    "unparseable_date": (
        "Date,AAA\n2020-01-01,1\n2020-13-45,1\n",
        ["'Date'", "'2020-13-45'", "data row 2"],
    ),
    "missing_date": (
        "Date,AAA\n2020-01-01,1\n,1\n",
        ["'Date'", "missing date", "data row 2"],
    ),
    "non_numeric": (
        "Date,AAA,BBB\n2020-01-01,1,2\n2020-01-02,1,2\n2020-01-03,1,abc\n",
        ["'BBB'", "not numeric", "'abc'", "2020-01-03"],
    ),
    "header_only": ("Date,AAA\n", ["no rows"]),
    "no_assets": ("Date\n2020-01-01\n", ["no asset columns"]),
    "duplicate_header": ("Date,AAA,AAA\n2020-01-01,1,2\n", ["duplicate column 'AAA'"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CSVS))
def test_bad_csv_names_file_column_and_date(tmp_path: Path, case: str) -> None:
    text, parts = BAD_CSVS[case]
    path = _write(tmp_path, f"{case}.csv", text)
    with _raises([str(path), *parts]):
        PricePanel.from_file(path)


def test_first_offending_date_is_the_earliest_across_columns(tmp_path: Path) -> None:
    text = "Date,AAA,BBB\n2020-01-01,1,2\n2020-01-02,1,-2\n2020-01-03,-1,2\n"
    path = _write(tmp_path, "p.csv", text)
    with pytest.raises(DataError) as info:
        PricePanel.from_file(path)
    assert "'BBB'" in str(info.value)
    assert "2020-01-02" in str(info.value)
    assert "2020-01-03" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    with _raises([str(path), "not found"]):
        PricePanel.from_file(path)


def test_empty_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "empty.csv", "")
    with _raises([str(path), "empty"]):
        PricePanel.from_file(path)


def test_directory_is_not_a_price_file(tmp_path: Path) -> None:
    with _raises([str(tmp_path), "directory"]):
        PricePanel.from_file(tmp_path)


def test_frame_errors_name_the_label() -> None:
    bad = BASIC.copy()
    bad.iloc[1, 0] = 0.0
    with _raises(["<DataFrame>", "'AAA'", "2020-01-02"]):
        PricePanel.from_frame(bad)
    with _raises(["my-label", "'AAA'", "2020-01-02"]):
        PricePanel.from_frame(bad, "my-label")


def test_frame_non_numeric_and_bool_columns() -> None:
    obj = BASIC.astype(object)
    obj.iloc[2, 1] = "x"
    with _raises(["<DataFrame>", "'BBB'", "'x'", "2020-01-03"]):
        PricePanel.from_frame(obj)
    flags = BASIC.copy()
    flags["CCC"] = [True, False, True]
    with _raises(["<DataFrame>", "'CCC'", "not numeric"]):
        PricePanel.from_frame(flags)


def test_frame_index_errors() -> None:
    dup = BASIC.copy()
    dup.index = pd.DatetimeIndex(["2020-01-01", "2020-01-01", "2020-01-02"], name="date")
    with _raises(["<DataFrame>", "duplicate date 2020-01-01"]):
        PricePanel.from_frame(dup)
    nat = BASIC.copy()
    nat.index = pd.DatetimeIndex(["2020-01-01", None, "2020-01-02"])
    with _raises(["<DataFrame>", "missing date", "data row 2"]):
        PricePanel.from_frame(nat)
    ints = BASIC.reset_index(drop=True)
    with _raises(["<DataFrame>", "no dates"]):
        PricePanel.from_frame(ints)


def test_frame_column_name_errors() -> None:
    with _raises(["<DataFrame>", "duplicate asset column 'AAA'"]):
        PricePanel.from_frame(BASIC.set_axis(["AAA", "AAA"], axis=1))
    with _raises(["<DataFrame>", "non-empty strings", "0"]):
        PricePanel.from_frame(BASIC.set_axis([0, 1], axis=1))


def test_empty_frame_is_an_error() -> None:
    with _raises(["<DataFrame>", "empty"]):
        PricePanel.from_frame(BASIC.iloc[:0])
    with _raises(["<DataFrame>", "empty"]):
        PricePanel.from_frame(BASIC.iloc[:, :0])


def test_require_assets_names_context_and_missing_asset() -> None:
    panel = PricePanel.from_frame(BASIC, "prices.csv")
    panel.require_assets(["BBB", "AAA"], "strategies.momentum_v1.universe")
    with _raises(["strategies.momentum_v1.universe", "'ZZZ'", "prices.csv"]):
        panel.require_assets(["AAA", "ZZZ"], "strategies.momentum_v1.universe")


def test_select() -> None:
    panel = PricePanel.from_frame(BASIC)
    pd.testing.assert_frame_equal(panel.select(["BBB"]).prices, BASIC[["BBB"]])
    assert panel.select(["BBB", "AAA"]).assets == ["BBB", "AAA"]
    with _raises(["'ZZZ'"]):
        panel.select(["ZZZ"])
    with _raises(["'AAA'", "twice"]):
        panel.select(["AAA", "AAA"])
    with _raises(["at least one"]):
        panel.select([])


# ---------------------------------------------------------------------------------------------
# late listing
# ---------------------------------------------------------------------------------------------

LATE_CSV = (
    "Date,AAA,LATE,NEVER\n2020-01-01,1,,\n2020-01-02,2,,\n2020-01-03,4,5,\n2020-01-06,2,10,\n"
)


def test_late_starting_asset_is_allowed_and_not_tradable_before_listing(tmp_path: Path) -> None:
    panel = PricePanel.from_file(_write(tmp_path, "late.csv", LATE_CSV))
    expected = _frame(
        ["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-06"],
        AAA=[1, 2, 4, 2],
        LATE=[NAN, NAN, 5, 10],
        NEVER=[NAN, NAN, NAN, NAN],
    )
    pd.testing.assert_frame_equal(panel.prices, expected)
    first = panel.first_valid_positions()
    assert first.dtype == np.int64
    np.testing.assert_array_equal(first, [0, 2, 4])  # NEVER: n_bars
    mask = panel.tradable_mask()
    assert mask.dtype == np.bool_
    assert mask.shape == (4, 3)
    np.testing.assert_array_equal(
        mask, [[True, False, False], [True, False, False], [True, True, False], [True, True, False]]
    )
    # Returns: first row NaN; NaN up to and including the listing bar.
    expected_returns = _frame(
        ["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-06"],
        AAA=[NAN, 1.0, 1.0, -0.5],
        LATE=[NAN, NAN, NAN, 1.0],
        NEVER=[NAN, NAN, NAN, NAN],
    )
    pd.testing.assert_frame_equal(panel.returns(), expected_returns)


def test_bad_value_at_listing_bar_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.csv", "Date,AAA,LATE\n2020-01-01,1,\n2020-01-02,1,0\n")
    with _raises([str(path), "'LATE'", "2020-01-02", "non-positive"]):
        PricePanel.from_file(path)


# ---------------------------------------------------------------------------------------------
# slicing
# ---------------------------------------------------------------------------------------------


def test_slice_is_inclusive_and_accepts_str_timestamp_none() -> None:
    panel = PricePanel.from_frame(BASIC)
    pd.testing.assert_frame_equal(panel.slice("2020-01-02", "2020-01-03").prices, BASIC.iloc[1:])
    pd.testing.assert_frame_equal(
        panel.slice(pd.Timestamp("2020-01-01"), pd.Timestamp("2020-01-02")).prices, BASIC.iloc[:2]
    )
    pd.testing.assert_frame_equal(panel.slice(None, "2020-01-01").prices, BASIC.iloc[:1])
    pd.testing.assert_frame_equal(panel.slice("2020-01-03", None).prices, BASIC.iloc[2:])
    pd.testing.assert_frame_equal(panel.slice().prices, BASIC)
    # Bounds between bars select the bars inside.
    pd.testing.assert_frame_equal(
        panel.slice("2019-12-01", "2020-01-02 12:00").prices, BASIC.iloc[:2]
    )


def test_slice_errors() -> None:
    panel = PricePanel.from_frame(BASIC, "p.csv")
    with _raises(["p.csv", "start=", "'not-a-date'"]):
        panel.slice("not-a-date")
    with _raises(["p.csv", "end=", "'2020-02-30'"]):
        panel.slice(None, "2020-02-30")
    with _raises(["p.csv", "no bars", "2021-01-01"]):
        panel.slice("2021-01-01", "2021-12-31")
    with _raises(["p.csv", "after end"]):
        panel.slice("2020-01-03", "2020-01-01")


def test_load_prices_path_and_range(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.csv", BASIC_CSV)
    pd.testing.assert_frame_equal(load_prices(path).prices, BASIC)
    pd.testing.assert_frame_equal(load_prices(path, start="2020-01-02").prices, BASIC.iloc[1:])
    pd.testing.assert_frame_equal(load_prices(str(path), end="2020-01-02").prices, BASIC.iloc[:2])
    with _raises([str(tmp_path / "missing.csv"), "not found"]):
        load_prices(tmp_path / "missing.csv")


# ---------------------------------------------------------------------------------------------
# alignment
# ---------------------------------------------------------------------------------------------

A_CSV = "Date,a\n2020-01-01,1\n2020-01-02,2\n2020-01-03,3\n2020-01-05,5\n"
B_CSV = "Date,b\n2020-01-01,10\n2020-01-03,30\n2020-01-04,40\n2020-01-05,50\n"


def test_intersection_alignment(tmp_path: Path) -> None:
    a = _write(tmp_path, "a.csv", A_CSV)
    b = _write(tmp_path, "b.csv", B_CSV)
    panel = PricePanel.from_sources([a, b], align="intersection")
    expected = _frame(["2020-01-01", "2020-01-03", "2020-01-05"], a=[1, 3, 5], b=[10, 30, 50])
    pd.testing.assert_frame_equal(panel.prices, expected)
    assert panel.source == f"{a} + {b}"


def test_union_alignment_forward_fills_within_limit(tmp_path: Path) -> None:
    a = _write(tmp_path, "a.csv", A_CSV)
    b = _write(tmp_path, "b.csv", B_CSV)
    panel = PricePanel.from_sources([a, b], align="union", ffill_limit=1)
    days = ["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04", "2020-01-05"]
    expected = _frame(days, a=[1, 2, 3, 3, 5], b=[10, 10, 30, 40, 50])
    pd.testing.assert_frame_equal(panel.prices, expected)


def test_union_gap_longer_than_limit_is_an_error(tmp_path: Path) -> None:
    a = _write(tmp_path, "a.csv", A_CSV)
    b = _write(tmp_path, "b.csv", B_CSV)
    with _raises([str(a), "'a'", "2020-01-04", "ffill_limit=0"]):
        PricePanel.from_sources([a, b], align="union", ffill_limit=0)
    # 'c' lacks two consecutive dates of the union calendar (01-02, 01-03).
    c = _write(tmp_path, "c.csv", "Date,c\n2020-01-01,7\n2020-01-04,8\n")
    with _raises([str(c), "'c'", "2020-01-03", "ffill_limit=1"]):
        PricePanel.from_sources([a, c], align="union", ffill_limit=1)
    ok = PricePanel.from_sources([a, c], align="union", ffill_limit=2)
    days = ["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04", "2020-01-05"]
    pd.testing.assert_frame_equal(ok.prices, _frame(days, a=[1, 2, 3, 3, 5], c=[7, 7, 7, 8, 8]))


def test_union_never_back_fills_late_source() -> None:
    early = _frame(["2020-01-01", "2020-01-02", "2020-01-03"], x=[1, 2, 3])
    late = _frame(["2020-01-02", "2020-01-03"], y=[20, 30])
    panel = PricePanel.from_sources([early, late], align="union", ffill_limit=5)
    expected = _frame(["2020-01-01", "2020-01-02", "2020-01-03"], x=[1, 2, 3], y=[NAN, 20, 30])
    pd.testing.assert_frame_equal(panel.prices, expected)
    np.testing.assert_array_equal(panel.first_valid_positions(), [0, 1])
    assert panel.source == "<DataFrame #0> + <DataFrame #1>"


def test_from_sources_mixes_panels_frames_and_paths(tmp_path: Path) -> None:
    a = _write(tmp_path, "a.csv", A_CSV)
    b = PricePanel.from_file(_write(tmp_path, "b.csv", B_CSV))
    extra = _frame(["2020-01-01", "2020-01-05"], z=[7, 8])
    panel = PricePanel.from_sources([a, b, extra])
    expected = _frame(["2020-01-01", "2020-01-05"], a=[1, 5], b=[10, 50], z=[7, 8])
    pd.testing.assert_frame_equal(panel.prices, expected)


def test_column_clash_names_both_files(tmp_path: Path) -> None:
    a = _write(tmp_path, "a.csv", A_CSV)
    a2 = _write(tmp_path, "a2.csv", A_CSV)
    with _raises([str(a), str(a2), "'a'"]):
        PricePanel.from_sources([a, a2])


def test_empty_intersection_is_an_error(tmp_path: Path) -> None:
    a = _write(tmp_path, "a.csv", "Date,a\n2020-01-01,1\n")
    b = _write(tmp_path, "b.csv", "Date,b\n2020-01-02,1\n")
    with _raises([str(a), str(b), "no date is common"]):
        PricePanel.from_sources([a, b], align="intersection")


def test_source_errors_name_the_bad_file(tmp_path: Path) -> None:
    a = _write(tmp_path, "a.csv", A_CSV)
    bad = _write(tmp_path, "bad.csv", "Date,b\n2020-01-01,1\n2020-01-02,-1\n")
    with _raises([str(bad), "'b'", "2020-01-02"]):
        PricePanel.from_sources([a, bad], align="union")


def test_alignment_parameter_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="align='outer'"):
        PricePanel.from_sources([BASIC], align="outer")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="ffill_limit=-1"):
        PricePanel.from_sources([BASIC], align="union", ffill_limit=-1)
    with _raises(["no price sources"]):
        PricePanel.from_sources([])


# Property: union alignment never creates a value before a column's first valid date, keeps every
# observed price, and fails exactly when a post-listing run of missing dates exceeds the limit.
@st.composite
def _sources(draw: st.DrawFn) -> tuple[list[pd.DataFrame], int]:
    n_days = draw(st.integers(2, 12))
    days = pd.date_range("2021-03-01", periods=n_days, freq="D")
    frames = []
    for k in range(draw(st.integers(1, 3))):
        mask = draw(st.lists(st.booleans(), min_size=n_days, max_size=n_days))
        if not any(mask):
            mask[draw(st.integers(0, n_days - 1))] = True
        own = days[np.array(mask)]
        cols = {}
        for j in range(draw(st.integers(1, 2))):
            start = draw(st.integers(0, len(own)))  # == len(own): never listed
            vals = draw(
                st.lists(
                    st.floats(0.01, 1e6, allow_nan=False), min_size=len(own), max_size=len(own)
                )
            )
            cols[f"s{k}c{j}"] = [NAN] * start + vals[start:]
        frames.append(pd.DataFrame(cols, index=own))
    return frames, draw(st.integers(0, 4))


def _max_unobserved_run(frame: pd.DataFrame, col: str, calendar: pd.DatetimeIndex) -> int:
    """Longest run of calendar dates after the column's first valid date missing from frame."""
    valid = frame[col].dropna()
    if valid.empty:
        return 0
    longest = run = 0
    for day in calendar[calendar > valid.index[0]]:
        run = 0 if day in frame.index else run + 1
        longest = max(longest, run)
    return longest


@settings(max_examples=150, deadline=None)
@given(_sources())
def test_union_alignment_never_back_fills(case: tuple[list[pd.DataFrame], int]) -> None:
    frames, limit = case
    calendar = frames[0].index
    for f in frames[1:]:
        calendar = calendar.union(f.index)
    should_fail = any(
        _max_unobserved_run(f, c, calendar) > limit for f in frames for c in f.columns
    )
    if should_fail:
        with pytest.raises(DataError, match="ffill_limit"):
            PricePanel.from_sources(frames, align="union", ffill_limit=limit)
        return
    panel = PricePanel.from_sources(frames, align="union", ffill_limit=limit)
    out = panel.prices
    assert list(out.index) == list(calendar)
    for f in frames:
        for col in f.columns:
            valid = f[col].dropna()
            if valid.empty:
                assert out[col].isna().all()
                continue
            first = valid.index[0]
            assert out.loc[out.index < first, col].isna().all()
            # Every observed price is kept, and every later date carries the last observed one.
            np.testing.assert_array_equal(out.loc[valid.index, col].to_numpy(), valid.to_numpy())
            later = out.loc[out.index >= first, col]
            expected = valid.reindex(later.index, method="ffill")
            np.testing.assert_array_equal(later.to_numpy(), expected.to_numpy())


# ---------------------------------------------------------------------------------------------
# embedded data
# ---------------------------------------------------------------------------------------------

TICKERS = [
    *["AAPL", "AMD", "BAC", "BBY", "CVX", "GE", "HD", "JNJ", "JPM", "KO"],
    *["LLY", "MRK", "MSFT", "PEP", "PFE", "PG", "RRC", "UNH", "WMT", "XOM"],
]


def _read_embedded(name: str) -> pd.DataFrame:
    res = importlib.resources.files("backtest.datasets").joinpath(name)
    with res.open("rb") as fh:
        return pd.read_csv(fh, compression="gzip", index_col="Date", parse_dates=True)


def test_embedded_panel_shape_and_dates() -> None:
    panel = load_default_panel()
    assert (panel.n_bars, panel.n_assets) == (8313, 20)
    assert panel.assets == TICKERS
    assert panel.index[0] == pd.Timestamp("1990-01-02")
    assert panel.index[-1] == pd.Timestamp("2022-12-28")
    assert panel.index.is_monotonic_increasing
    assert panel.index.is_unique
    raw = _read_embedded("sp500_20_stocks.csv.gz")
    np.testing.assert_array_equal(panel.values(), raw.to_numpy(dtype=np.float64))
    assert panel.prices.loc["1990-01-02", "AAPL"] == 0.264  # first row of the CSV file
    np.testing.assert_array_equal(panel.first_valid_positions(), np.zeros(20, dtype=np.int64))


def test_embedded_index() -> None:
    index = load_default_index()
    assert index.name == "SP500"
    assert index.dtype == np.float64
    assert len(index) == 8313
    assert index.index.equals(load_default_panel().index)
    assert index.iloc[0] == 359.69  # first row of the CSV file
    raw = _read_embedded("sp500_index.csv.gz")["SP500"]
    np.testing.assert_array_equal(index.to_numpy(), raw.to_numpy())


def test_embedded_cache_cannot_be_mutated() -> None:
    index = load_default_index()
    index.iloc[0] = -1.0
    assert load_default_index().iloc[0] == 359.69
    prices = load_default_panel().prices
    prices.iloc[0, 0] = -1.0
    assert load_default_panel().prices.iloc[0, 0] == 0.264
    assert load_default_panel().values()[0, 0] == 0.264


def test_embedded_load_is_fast() -> None:
    data_mod._embedded_panel.cache_clear()
    t0 = time.perf_counter()
    panel = load_prices()
    elapsed = time.perf_counter() - t0
    assert panel.n_bars == 8313
    assert elapsed < 0.5, f"embedded panel took {elapsed:.3f} s to load"


def test_load_prices_default_with_range() -> None:
    panel = load_prices(None, start="2022-01-01", end="2022-12-31")
    assert panel.index[0] == pd.Timestamp("2022-01-03")
    assert panel.index[-1] == pd.Timestamp("2022-12-28")
    assert panel.n_assets == 20


def test_embedded_license_ships_beside_data() -> None:
    files = importlib.resources.files("backtest.datasets")
    assert "BSD" in files.joinpath("LICENSE-skfolio-data.txt").read_text()
