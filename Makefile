# The two commands (see README): `make demo` installs and runs the chain once;
# `make test` installs and runs the test suite. Both create .venv on first use.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint fuzz up bench clean

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

# -ra: every skipped test says why it did not run (no datasets folder, no PostgreSQL URL).
PYTEST_ARGS ?= -q -ra

test: install lint
	bash scripts/install-chromium.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Lint and types (pyproject.toml): the import layers themselves are a test (tests/test_layers.py).
lint: install
	$(BIN)/ruff check chainkeeper tests benchmarks
	$(BIN)/mypy

# The outside probe, kept (issue 15): schemathesis against a real server, in its own venv
# (its pins are not ours); fails on any 5xx or response outside the OpenAPI document.
FUZZ_VENV := .venv-fuzz
FUZZ_ARGS ?= --max-time 300

$(FUZZ_VENV)/.installed:
	test -x $(FUZZ_VENV)/bin/python || $(PYTHON) -m venv $(FUZZ_VENV)
	$(FUZZ_VENV)/bin/python -m pip install -q schemathesis==4.32.5
	touch $@

fuzz: install $(FUZZ_VENV)/.installed
	$(BIN)/python scripts/fuzz_api.py $(FUZZ_ARGS)

bench: install
	$(BIN)/python -m pip install -q -e ".[bench]"
	$(BIN)/python benchmarks/train_banking77.py
	$(BIN)/python benchmarks/ledger.py

clean:
	rm -rf $(VENV) $(FUZZ_VENV) .chainkeeper .pytest_cache .schemathesis
