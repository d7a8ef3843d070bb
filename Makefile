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

demo: $(STAMP)
	$(BIN)/wxtransfer demo

bench: $(STAMP)
	bash scripts/system-deps.sh nginx-light:nginx curl:curl aria2:aria2c
	$(BIN)/python -c 'from tests.servers.tus import ensure_node_packages as e; e()'
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info
