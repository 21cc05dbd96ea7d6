# The two commands (see README): `make demo` installs and runs the chain once;
# `make test` installs and runs the test suite. Both create .venv on first use.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test up bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# Pinned: 2.13.0 is the CPU build; a plain `torch` would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev,postgres]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/chainkeeper quickstart $(ARGS)

up: install
	$(BIN)/chainkeeper up $(ARGS)

test: install
	bash scripts/install-chromium.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m pip install -q -e ".[bench]"
	$(BIN)/python benchmarks/train_banking77.py
	$(BIN)/python benchmarks/ledger.py

clean:
	rm -rf $(VENV) .chainkeeper .pytest_cache
