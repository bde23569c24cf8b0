# The two commands a newcomer types: `make search` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast search clean-venv

# Re-installs when pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

# Every test: fast unit tests, then the tf-, ray- and slow-marked ones.
test: setup
	$(PY) -m pytest

# The fast unit tests only (no TensorFlow, no Ray): seconds.
test-fast: setup
	$(PY) -m pytest -m "not slow and not tf and not ray"

clean-venv:
	rm -rf $(VENV)
