# The two commands a user needs:  `make repro` (whole pipeline on the embedded sample)
# and `make test` (the test suite). Both build their own virtual environment first.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed

# Stage commands in dvc.yaml call `python`: make it the environment's interpreter.
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONHASHSEED := 0

.DEFAULT_GOAL := help
.PHONY: help install data repro test lint clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $@

install: $(STAMP)  ## create .venv and install the project with pinned dependencies

data: $(STAMP)  ## fetch the embedded sample (data/) from the repository's own DVC remote
	$(BIN)/dvc pull --quiet data.dvc

repro: data  ## run the whole DVC pipeline on the embedded sample
	$(BIN)/dvc repro
	$(BIN)/bonexray compare
	@echo "report: plots/report.html (opens offline); headline metrics: dvc metrics show; every table: dvc metrics show -R metrics"

test: data  ## run the test suite (unit tests + end-to-end `dvc repro` in a temporary clone)
	$(BIN)/python -m pytest

lint:  $(STAMP)  ## ruff
	$(BIN)/ruff check src stages tests benchmarks
	$(BIN)/ruff format --check src stages tests benchmarks

clean:  ## remove the environment and pipeline outputs (keeps data/ and the DVC cache)
	rm -rf $(VENV) artifacts
