PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo bench lint typecheck install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP)
	bash scripts/system-deps.sh curl:curl chromium:chromium chromium-driver:chromedriver nginx-light:nginx caddy:caddy
	$(BIN)/python -c 'from tests.servers.tus import ensure_node_packages as e; e()'
	$(MAKE) lint typecheck
	$(BIN)/pytest
	$(BIN)/python benchmarks/run.py --smoke
	$(BIN)/python benchmarks/inprocess.py wxtransfer-S1 --rounds 1 --count 20
	$(BIN)/python benchmarks/inprocess.py wxtransfer-D1 --rounds 1 --size-mib 4

# The demo installs only what it runs: the library with its cli and server extras.
DEMO_VENV := .venv-demo
DEMO_STAMP := $(DEMO_VENV)/.installed

$(DEMO_STAMP): pyproject.toml
	test -x $(DEMO_VENV)/bin/python || $(PY) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/pip install -q --upgrade pip
	$(DEMO_VENV)/bin/pip install -q -e '.[cli,server]'
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(DEMO_VENV)/bin/wxtransfer demo

bench: $(STAMP)
	bash scripts/system-deps.sh nginx-light:nginx curl:curl aria2:aria2c
	$(BIN)/python -c 'from tests.servers.tus import ensure_node_packages as e; e()'
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) $(DEMO_VENV) build dist src/*.egg-info
