# Two entry points: `make run` (set up and serve) and `make test` (set up and check everything).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LINTED := gateway tests bench profiles

.PHONY: run test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

run: $(VENV)/.installed
	$(BIN)/gateway serve

test: $(VENV)/.installed
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/mypy
	$(BIN)/gateway check-mappings
	GATEWAY_TEST_POSTGRES_URL="$$(scripts/ensure-postgres.sh)" $(BIN)/pytest

bench: $(VENV)/.installed
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
