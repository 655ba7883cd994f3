# Developer tasks. `make install` once, then `make test`, `make lint type`, `make bench`.
PYTHON ?= python
SRC := backtest portfolio tests benchmarks

.PHONY: install run fmt lint type test golden-update bench bench-save clean

install:  ## editable install with the dev tools
	$(PYTHON) -m pip install -e ".[dev]"

run:  ## the main job on the embedded data
	$(PYTHON) -m backtest.portfolio_runner

fmt:  ## format and auto-fix
	$(PYTHON) -m ruff format $(SRC)
	$(PYTHON) -m ruff check --fix $(SRC)

lint:  ## ruff lint + format check
	$(PYTHON) -m ruff check $(SRC)
	$(PYTHON) -m ruff format --check $(SRC)

type:  ## mypy on the packages
	$(PYTHON) -m mypy

test:  ## the test suite
	$(PYTHON) -m pytest

# Run as a script with the repository root on PYTHONPATH: works without an install, and no other
# installed package named `tests` can shadow it. Same as PB_UPDATE_GOLDEN=1 with pytest.
golden-update:  ## rewrite tests/golden/ from fresh runs and print what changed, per file
	PYTHONPATH=.$${PYTHONPATH:+:$$PYTHONPATH} $(PYTHON) tests/golden_files.py update

bench:  ## speed goals: ratios against baselines measured in the same run (BLAS on one thread)
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PYTHON) -m pytest benchmarks --benchmark-enable --benchmark-columns=min,median,mean,rounds -p no:cacheprovider

clean:
	rm -rf results .pytest_cache .mypy_cache .ruff_cache .benchmarks build dist
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
