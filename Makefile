# Set-up for a fresh machine: `make demo` and `make test` need nothing but python3 (3.11 or 3.12).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint format bench clean lock

# The venv is rebuilt only when the lock file or the project metadata change.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$$(grep '^uv==' requirements.lock)"
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/npl demo

test: $(STAMP)
	$(BIN)/pytest -n 2

# Everything, slow tests included.
test-all: $(STAMP)
	$(BIN)/pytest -n 2 -m ""

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks docs/tutorials
	$(BIN)/ruff format --check src tests benchmarks docs/tutorials
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks docs/tutorials
	$(BIN)/ruff format src tests benchmarks docs/tutorials

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py --out benchmarks/results.md

# Re-resolve the pinned dependencies after editing pyproject.toml.
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
