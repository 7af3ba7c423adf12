# dokuei — the two commands the README promises, and the checks behind them.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint typecheck unit bench clean

setup:
	./scripts/setup.sh

demo: setup
	$(VENV)/bin/dokuei demo

test: setup lint typecheck unit

lint:
	$(VENV)/bin/ruff check .

typecheck:
	$(VENV)/bin/mypy

unit:
	$(PY) -m pytest -q -p no:cacheprovider

bench: setup
	$(PY) bench/bench_foundation.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
