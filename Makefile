# The two commands a newcomer needs: `make demo` and `make test`.
# Both bootstrap everything on a fresh Debian machine first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench bootstrap clean

demo: $(STAMP)
	$(BIN)/gatekiosk demo

test: $(STAMP) lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/decode_real.py

bootstrap: $(STAMP)

$(STAMP): pyproject.toml deploy/dev-bootstrap.sh
	PYTHON="$(PYTHON)" VENV="$(VENV)" sh deploy/dev-bootstrap.sh
	touch $@

clean:
	rm -rf $(VENV) demo-data .pytest_cache .mypy_cache .ruff_cache
