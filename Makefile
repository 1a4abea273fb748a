# Two entry points for a fresh clone: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo demo-headless test lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip >/dev/null
	$(BIN)/python -m pip install -e ".[train,dashboard,postgres,line,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/inspector demo

demo-headless: $(STAMP)
	$(BIN)/inspector demo --no-dashboard

# The suite starts with the linter and the type checker (pyproject.toml configures both).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .demo
