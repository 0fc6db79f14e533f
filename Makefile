# tandem: run `make help` for the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
export TANDEM_LAB_DIR ?= $(CURDIR)/.lab
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
# The product's distributions (each directory's pyproject.toml) and the development package.
PRODUCT := . node-agent operator
PROJECTS := $(PRODUCT) lab
wheel = dist/$(subst -,_,$(shell sed -n 's/^name = "\(.*\)"/\1/p' $(1)/pyproject.toml))-$(VERSION)-py3-none-any.whl
PRODUCT_WHEELS := $(foreach p,$(PRODUCT),$(call wheel,$(p)))
WHEELS := $(foreach p,$(PROJECTS),$(call wheel,$(p)))

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

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
lint: ## ruff (lint and format), mypy and the CRD drift check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m tandem.cli gen-crds --check

.PHONY: test
test: setup lint ## everything CI runs (installing what it needs first): lint, then unit, API-server, lab and end-to-end tests
	$(PY) -m pytest tests

.PHONY: test-unit test-apiserver test-lab test-e2e
test-unit: ## only the unit tier: pure logic, no servers (needs the venv: make setup once)
	$(PY) -m pytest tests/unit

test-apiserver: setup ## only the API-server tier: the real kube-apiserver and etcd, the operator
	$(PY) -m pytest tests/integration

test-lab: setup ## only the lab tier: drivers against real PostgreSQL, drbdadm, namespaces, nodes
	$(PY) -m pytest tests/lab

test-e2e: setup ## only the end-to-end tier: whole scenarios on the lab's node machines
	$(PY) -m pytest tests/e2e

.PHONY: bench
bench: ## the driver benchmarks and the DRBD stand-in's data path (JSON in bench/results/)
	mkdir -p bench/results
	for b in addresses postgres drbd; do $(PY) -m bench.$$b --json bench/results/$$b.json || exit 1; done

.PHONY: package
package: ## build the wheels of tandem, tandem-agent, tandem-operator and tandem-lab into dist/ (no network)
	rm -f $(WHEELS)
	for p in $(PROJECTS); do $(PY) -m build --wheel --no-isolation --outdir dist $$p >/dev/null && rm -rf $$p/build || exit 1; done
	$(PY) scripts/check-wheel.py $(WHEELS)

.PHONY: wheelhouse
wheelhouse: package ## the product's wheels (not tandem-lab) and every dependency's wheel in dist/wheelhouse/ (for hosts without PyPI)
	rm -rf dist/wheelhouse
	$(VENV)/bin/pip wheel -q --disable-pip-version-check --wheel-dir dist/wheelhouse $(PRODUCT_WHEELS)

.PHONY: image
image: wheelhouse ## the OCI image tandem:$(VERSION) as dist/tandem-$(VERSION).oci.tar (podman)
	bash scripts/build-image.sh $(VERSION)

.PHONY: lab-image
lab-image: wheelhouse ## the image plus the development package tandem-lab, for the lab's DaemonSet: dist/tandem-lab-$(VERSION).oci.tar
	bash scripts/build-image.sh $(VERSION) --lab
