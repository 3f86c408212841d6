# Two entry points on a fresh clone: `make run` (the demo) and `make test` (lint + tests).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test install lint format bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# The package declares a range of torch versions (pyproject.toml); this machine's exact
# version is pinned here only. torch goes first: installing the package then keeps it
# (any looser spec here would pull the CUDA build). The dev extra brings the optional
# plotting and BM3D packages, so that the tests cover them.
TORCH_PIN := torch==2.13.0

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/filterscope demo --out demo_out

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts

test: lint
	$(VENV)/bin/pytest -q

format: $(STAMP)
	$(VENV)/bin/ruff format src tests benchmarks scripts
	$(VENV)/bin/ruff check --fix src tests benchmarks scripts

clean:
	rm -rf $(VENV) build dist src/*.egg-info
