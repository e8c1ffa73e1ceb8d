# The two commands a newcomer needs: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast bench bench-peers lint keras-index clean

install: $(STAMP)

# Reinstall only when the dependency list changes; the package itself is installed editable.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: install
	$(BIN)/mlcli train configs/digits.yaml --force --output runs/demo
	$(BIN)/mlcli evaluate runs/demo

# The suite runs in PYTEST_WORKERS processes (pytest-xdist; CI's machine has 2 cores), one test file
# per process at a time (--dist loadfile: a file's module-scoped fixtures, such as a model trained once,
# are built once). `make test PYTEST_WORKERS=0` runs it serially in one process; PYTEST_ARGS adds
# pytest options, e.g. `make test PYTEST_ARGS="--durations=40"`.
PYTEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile

test: install
	$(PYTEST) $(PYTEST_ARGS)

# Everything but the slow end-to-end tests, for a quick local loop.
test-fast: install
	$(PYTEST) -m "not slow" $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/run.py

# Optional, not part of `make bench`: mlcli beside plain Keras and LightningCLI (CPU torch), which is
# installed into its own environment, bench/.peers-venv, the first time (bench/peers/install.sh).
PEERS_VENV := bench/.peers-venv
$(PEERS_VENV)/.installed: bench/peers/install.sh
	PYTHON=$(PYTHON) sh bench/peers/install.sh $(PEERS_VENV)
	touch $@

bench-peers: install $(PEERS_VENV)/.installed
	$(BIN)/python bench/peers/peers_run.py --peers-python $(PEERS_VENV)/bin/python

lint: install
	$(BIN)/ruff check mlcli tests bench

# After upgrading Keras: rewrite the index of its API that `mlcli validate` checks configs against
# without importing TensorFlow (tests/test_keras_index.py fails until this is run).
keras-index: install
	$(BIN)/python -m mlcli.config.keras_index_build

clean:
	rm -rf $(VENV) $(PEERS_VENV) runs .pytest_cache
