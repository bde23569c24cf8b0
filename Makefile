# The two commands a newcomer types: `make search` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast search clean-venv

# `make search` names its search after the time it starts; SEARCH_ARGS adds options (e.g. --trials 10).
ifndef SEARCH_NAME
SEARCH_NAME := demo-$(shell date +%Y%m%d-%H%M%S)
endif
SEARCH_ARGS ?=

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

# The demo search: embedded synthetic COCO-format data (made on first use), real Model Garden RetinaNet proxy
# trainings on a local Ray cluster, the PPO controller, 6 trials; then the best architectures and an export of the
# best one as Model Garden files under runs/$(SEARCH_NAME)/export.
search: setup
	$(PY) -m nas.cli search --preset demo --name $(SEARCH_NAME) --top 0 $(SEARCH_ARGS)
	$(PY) -m nas.cli top --search $(SEARCH_NAME) -k 5
	$(PY) -m nas.cli export best --search $(SEARCH_NAME) --out runs/$(SEARCH_NAME)/export --force

clean-venv:
	rm -rf $(VENV)
