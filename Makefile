# The two commands of README's quick start, each preparing what it needs in .venv:
#   make demo    the main job: installs requirements.txt only, runs the CPU demo
#   make test    installs the test extra (requirements-test.txt) and runs the tests in two
#                worker processes (pytest-xdist; one test file per worker at a time)
# DEMO_DIR=... changes the demo's run directory.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR ?= /tmp/reczero_demo

.PHONY: demo test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Each stamp records that its requirements file is installed (reinstalled when it changes).
$(VENV)/.main-installed: requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

$(VENV)/.test-installed: requirements-test.txt $(VENV)/.main-installed
	$(BIN)/python -m pip install -q -r requirements-test.txt
	touch $@

demo: $(VENV)/.main-installed
	$(BIN)/python -m reczero_jax.main --config configs/demo.py --config.workdir=$(DEMO_DIR)

test: $(VENV)/.test-installed
	$(BIN)/python -m pytest -q -n 2 --dist loadfile tests
