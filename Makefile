# Two commands matter: `make render` and `make test`. Both set up .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: render test tools bench bench-fleet bench-flux check clean e2e e2e-tools lint flux-diff

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

## render: write k8s/<stack>/ for every stack from Pulumi.<stack>.yaml (no Pulumi CLI needed)
render: $(STAMP)
	$(BIN)/ksecrets export

## check: fail when k8s/ is not what `make render` writes
check: $(STAMP)
	$(BIN)/ksecrets export --check

## lint: ruff (lint rules and formatting in pyproject.toml) and mypy on ksecrets, components and policy
LINT_STAMP := $(VENV)/.lint-installed
$(LINT_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test,lint]'
	touch $(LINT_STAMP)

lint: $(LINT_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## tools: the offline oracles the tests use (promtool; kubectl comes from the machine)
tools:
	bash .ci/tools.sh

## test: the whole suite against the real oracles, on every core (pytest-xdist; TEST_WORKERS=0 runs
## it in one process), printing the 25 slowest tests. --dist worksteal: idle workers take queued
## tests from busy ones (a few tests take a minute). Each worker starts its own PostgreSQL server
## (tests/jobs/rotate/conftest.py), so the tests naming fixed roles never share one.
## Bytecode: the suite starts Python hundreds of times (`python -m ksecrets` from tests, and from git
## as merge driver, textconv and hooks) and pytest rewrites every test module in each worker. With
## PYTHONDONTWRITEBYTECODE set (this machine sets it) all of that compiled from source every time;
## the run keeps its bytecode under .venv/pycache instead (PYTHONPYCACHEPREFIX: nothing is written
## beside the sources), as a pip-installed ksecrets has it.
TEST_WORKERS ?= auto
test: $(STAMP) tools
	PATH="$(CURDIR)/.tools/bin:$$PATH" PYTHONDONTWRITEBYTECODE= PYTHONPYCACHEPREFIX="$${PYTHONPYCACHEPREFIX:-$(CURDIR)/$(VENV)/pycache}" \
	  $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal --durations=25

## e2e-tools: build the real upstream programs from their pinned Go modules (tools/) into
## $${XDG_CACHE_HOME:-~/.cache}/k8s-secrets/e2e, keyed by version; builds only what is missing
e2e-tools:
	$(PY) tools/build.py

## e2e: the real-component suite (tests/e2e): API server, controllers, Vault, Pulumi engine
e2e: $(STAMP) tools e2e-tools
	PATH="$(CURDIR)/.tools/bin:$$PATH" $(BIN)/python -m pytest -q -m e2e tests/e2e

## bench: print the benchmark tables quoted in README.md
bench: $(STAMP)
	$(BIN)/python bench/export.py
	$(BIN)/python bench/seal.py
	$(BIN)/python bench/startup.py

## bench-fleet: 1, 10 and 50 clusters x 200 apps: export, verify, drift, report, seal --env, reseal (about 12 min)
bench-fleet: $(STAMP)
	$(BIN)/python bench/fleet.py

## bench-flux: the real Flux controllers on a stack of 10, 100 and 1000 apps beside kubectl (needs e2e-tools)
bench-flux: $(STAMP) e2e-tools
	$(BIN)/python bench/flux.py

## flux-diff: Flux's own preview of STACK's two layers against the cluster of the current kubeconfig
## (`flux diff kustomization` with the exported sync/ Kustomization: Flux's build, labels and field
## manager, a server-side dry run); fails when something would change. FLUX: the flux CLI.
STACK ?= staging
FLUX ?= flux
flux-diff:
	@rc=0; for layer in infrastructure apps; do \
	  $(FLUX) diff kustomization $(STACK)-$$layer --path k8s/$(STACK)/$$layer \
	    --kustomization-file k8s/$(STACK)/sync/kustomization-$(STACK)-$$layer.yaml --progress-bar=false || rc=$$?; \
	done; exit $$rc

clean:
	rm -rf $(VENV) .tools .pytest_cache
