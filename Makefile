# The two commands of the README: `make run` (install, then the quickstart sweep and its final run)
# and `make test` (install if needed, then every test).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install run test bench-smoke lint
install: $(VENV)/.installed

# editable_mode=compat: the project's directory on sys.path (a .pth line), not setuptools' import hook, which
# Python asks only after every sys.path entry: a directory named sweep where a driver or a Ray worker runs
# (an experiment directory, say) would then be imported as an empty namespace package instead of this one.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]" --config-settings editable_mode=compat
	touch $@

run: install
	$(VENV)/bin/sweep run search_spaces/quickstart.yaml --final

# Two pytest workers, a test file each at a time, the heaviest first (tests/conftest.py orders them): much of a
# sweep's time is waiting (Ray's and its workers' starts), which the other worker fills. `pytest -n 0` runs
# them one after the other.
test: install
	$(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder

# Each benchmark's --smoke-test on small inputs, checked for what it promises (not its timings): ~5 min on 2 cores.
bench-smoke: install
	$(PY) -m pytest benchmarks/test_smoke.py

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
