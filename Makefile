# Two entry points for a fresh clone: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo demo-headless test venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip >/dev/null
	$(BIN)/python -m pip install -e ".[train,dashboard,postgres,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/inspector demo

demo-headless: $(STAMP)
	$(BIN)/inspector demo --no-dashboard

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .demo
