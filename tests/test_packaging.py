"""The wheel ships what a non-editable install needs, and the runner works from it.

Builds the wheel (hatchling, no build isolation, so no network), checks that the embedded data,
its license and the default configuration are inside, installs it into a scratch folder and
runs the main job from there, away from the source tree.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("hatchling")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    (built,) = out.glob("portfolio_backtest-*.whl")
    return built


def test_wheel_contains_data_license_and_config(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "backtest/datasets/sp500_20_stocks.csv.gz",
        "backtest/datasets/sp500_index.csv.gz",
        "backtest/datasets/LICENSE-skfolio-data.txt",
        "backtest/config/portfolio.yaml",
        "backtest/kernel.py",
        "portfolio/rebalance_nb.py",
        "backtest/templates/portfolio_report.html.j2",
        "backtest/templates/_macros.html.j2",
        "backtest/templates/_style.css.j2",
        "backtest/templates/_black_litterman.html.j2",
    ):
        assert needed in names, needed
    assert not any(n.startswith("tests/") for n in names)


def test_runner_from_a_non_editable_install(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
         str(wheel)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run(
        [sys.executable, "-c", "import backtest; print(backtest.__file__)"],
        cwd=work, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    assert where.stdout.strip().startswith(str(target))
    run = subprocess.run(
        [sys.executable, "-m", "backtest.portfolio_runner", "--start", "2021-01-01",
         "--out", "out", "--no-progress"],
        check=False, cwd=work, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "multi_strategy_v1" in run.stdout
    assert (work / "out" / "metrics.csv").is_file()
    # The report renders from the templates inside the wheel (no repository next to it).
    report = work / "var" / "backtest" / "portfolio_multi_strategy_v1_report.html"
    assert report.is_file() and "<table" in report.read_text(encoding="utf-8")
