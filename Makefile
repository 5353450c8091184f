# The two commands of the README: `make run` (install, then the quickstart sweep and its final run)
# and `make test` (install if needed, then every test).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install run test lint
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

run: install
	$(PY) -m sweep run search_spaces/quickstart.yaml --final

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
