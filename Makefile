# runwire — the two commands: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install lint typecheck pytest browser migrate bench clean lock

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): requirements.lock requirements-dev.lock pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --require-hashes -r requirements.lock -r requirements-dev.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

## Start the server on the embedded default (SQLite + in-process bus + builtin model).
run: install
	$(VENV)/bin/runwire migrate
	$(VENV)/bin/runwire serve --host $(HOST) --port $(PORT)

migrate: install
	$(VENV)/bin/runwire migrate

## Every check: lint, types, the whole test suite (real server, real browser).
test: install browser
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy --strict src
	$(VENV)/bin/pytest

lint: install
	$(VENV)/bin/ruff check src tests

typecheck: install
	$(VENV)/bin/mypy --strict src

pytest: install
	$(VENV)/bin/pytest

## Debian chromium for the browser tests (installed when missing; needs root).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "chromium missing: installing Debian's chromium with apt-get"; \
	  (apt-get install -y --no-install-recommends chromium || (apt-get update && apt-get install -y --no-install-recommends chromium)); }

## Regenerate the lock files (needs uv: pip install uv).
lock:
	uv pip compile --generate-hashes --python-version 3.11 requirements.in -o requirements.lock
	uv pip compile --generate-hashes --python-version 3.11 requirements-dev.in -o requirements-dev.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
