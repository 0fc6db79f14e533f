# tandem: run `make help` for the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export TANDEM_LAB_DIR ?= $(CURDIR)/.lab

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

.PHONY: setup
setup: ## install Debian packages, the Python venv and the Go-built control plane
	bash scripts/install-deps.sh

.PHONY: demo
demo: setup ## start the lab, install the CRDs and samples, show them with kubectl
	bash scripts/demo.sh

.PHONY: demo-down
demo-down: ## stop everything the demo started
	$(PY) -m tandem.cli lab down

.PHONY: crds
crds: ## regenerate crds/ from the typed models
	$(PY) -m tandem.cli gen-crds

.PHONY: lint
lint: ## ruff, mypy and the CRD drift check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m tandem.cli gen-crds --check

.PHONY: test
test: lint ## everything CI runs: lint, then unit, API-server and lab tests
	$(PY) -m pytest tests

.PHONY: bench
bench: ## the driver benchmarks (JSON in bench/results/)
	mkdir -p bench/results
	for b in addresses postgres; do $(PY) -m bench.$$b --json bench/results/$$b.json || exit 1; done
