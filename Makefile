# runwire — the two commands: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install lint typecheck pytest tools migrate bench clean lock screenshot

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
test: install tools
	$(VENV)/bin/ruff check src tests examples
	$(VENV)/bin/mypy --strict src
	$(VENV)/bin/pytest

lint: install
	$(VENV)/bin/ruff check src tests examples

typecheck: install
	$(VENV)/bin/mypy --strict src

pytest: install
	$(VENV)/bin/pytest

## Debian tools the tests drive: chromium (browser tests), promtool (alert rules).
## Installed with apt-get when missing (needs root).
tools:
	@for pair in chromium:chromium promtool:prometheus; do \
	  cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 && continue; \
	  echo "$$cmd missing: installing Debian's $$pkg with apt-get"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$pkg \
	    || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$pkg; }; \
	done

## The README's screenshot, taken by the browser test from the real page.
screenshot: install tools
	RUNWIRE_SCREENSHOT=docs/screenshot.png $(VENV)/bin/pytest -q tests/test_web.py -k token_url

## Regenerate the lock files (needs uv: pip install uv).
lock:
	uv pip compile --generate-hashes --python-version 3.11 requirements.in -o requirements.lock
	uv pip compile --generate-hashes --python-version 3.11 requirements-dev.in -o requirements-dev.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
