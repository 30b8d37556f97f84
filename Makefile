# The README's commands. `make run` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help install run test test-deps lint typecheck unit integration tools clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON) (Python 3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: the CPU build of 2.13.0 (a bare `torch` would pull a CUDA build).
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip check
	touch $(STAMP)

install: $(STAMP)  ## create the virtualenv and install the project

run: $(STAMP)  ## the main job: `ecc demo` on an embedded broker with generated data
	$(BIN)/ecc demo $(ARGS)

lint: $(STAMP)  ## ruff (lint + format check)
	$(BIN)/ruff check streams learners models scenarios harness tests infra
	$(BIN)/ruff format --check streams learners models scenarios harness tests infra

typecheck: $(STAMP)  ## mypy on the packages
	$(BIN)/mypy

unit: $(STAMP)  ## unit tests and doctests only (no broker)
	$(BIN)/pytest -q tests/unit learners models scenarios

integration: $(STAMP)  ## integration tests only (real Tansu broker)
	$(BIN)/pytest -q tests/integration

# Tools the tests call: Prometheus and promtool, docker-compose (Debian packages), and the
# Grafana schema types with TypeScript (npm, pinned by infra/grafana/check/package-lock.json).
APT_GET := $(shell command -v sudo >/dev/null && [ "$$(id -u)" != 0 ] && echo sudo) apt-get
test-deps:  ## install what the tests need besides Python: prometheus, docker-compose, npm packages
	@missing=""; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (Debian packages)"; \
	  $(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq --no-install-recommends $$missing; \
	fi
	@test -x infra/grafana/check/node_modules/.bin/tsc || npm ci --prefix infra/grafana/check --no-audit --no-fund --silent

test: lint typecheck test-deps  ## lint, types, then every test (unit, doctests, integration, infra)
	$(BIN)/pytest -q -ra

tools:  ## the benchmarks' load generator: wrk (Debian package)
	@command -v wrk >/dev/null || { $(APT_GET) update -qq && $(APT_GET) install -y -qq wrk; }

clean:  ## remove the virtualenv, state and caches
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
