# runwire — the two commands: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
JS := clients/js
JS_STAMP := $(JS)/node_modules/.installed
WEB_BUNDLE := src/runwire/web/static/index.html
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install lint typecheck pytest tools migrate bench clean lock screenshot web js-test agui-client

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): requirements.lock requirements-dev.lock pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --require-hashes -r requirements.lock -r requirements-dev.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

## Start the server on the embedded default (SQLite + in-process bus + builtin model).
## The chat page ships built inside the package; it is built here only when missing.
run: install $(WEB_BUNDLE)
	$(VENV)/bin/runwire migrate
	$(VENV)/bin/runwire serve --host $(HOST) --port $(PORT)

migrate: install
	$(VENV)/bin/runwire migrate

## Every check: lint, types, the JS packages' tests and bundle check, the whole test
## suite (real server, real browser).
test: install tools js-test agui-client
	$(VENV)/bin/ruff check src tests examples
	$(VENV)/bin/mypy --strict src
	$(VENV)/bin/pytest

lint: install
	$(VENV)/bin/ruff check src tests examples

typecheck: install
	$(VENV)/bin/mypy --strict src

pytest: install
	$(VENV)/bin/pytest

## The JavaScript workspace (clients/js): locked install, then the chat page's bundle.
$(JS_STAMP): $(JS)/package-lock.json $(JS)/package.json
	cd $(JS) && npm ci --no-audit --no-fund --loglevel=error
	touch $(JS_STAMP)

$(WEB_BUNDLE):
	$(MAKE) web

## Rebuild the chat page into src/runwire/web/static (commit the result).
web: $(JS_STAMP)
	cd $(JS) && npm run --silent build

## Client types, the packages' publishable build (dist/: ESM + .d.ts), unit tests (vitest)
## and the committed bundle matching the sources.
js-test: $(JS_STAMP)
	cd $(JS) && npm run --silent typecheck
	cd $(JS) && npm run --silent build:packages
	cd $(JS) && npm test --silent
	cd $(JS) && npm run --silent check-bundle

## The official AG-UI client (npm @ag-ui/client, locked) that tests/test_agui.py drives.
AGUI := tests/agui
AGUI_STAMP := $(AGUI)/node_modules/.installed
$(AGUI_STAMP): $(AGUI)/package-lock.json $(AGUI)/package.json
	cd $(AGUI) && npm ci --no-audit --no-fund --loglevel=error
	touch $(AGUI_STAMP)

agui-client: $(AGUI_STAMP)

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

## The README's screenshots (dark: docs/screenshot.png, light: docs/screenshot-light.png), taken by the browser test from the real page.
screenshot: install tools
	RUNWIRE_SCREENSHOT=docs/screenshot.png $(VENV)/bin/pytest -q tests/test_web.py -k token_url

## Regenerate the lock files (needs uv: pip install uv).
lock:
	uv pip compile --generate-hashes --python-version 3.11 requirements.in -o requirements.lock
	uv pip compile --generate-hashes --python-version 3.11 requirements-dev.in -o requirements-dev.lock

## Benchmarks: the table in docs/performance.md (+ the PNG), a few minutes, loopback only.
## Bench tools and the LangGraph peer live in their own venvs under benchmarks/, each from
## its own hash-pinned lock; a peer that can't be installed is reported in the table.
BENCH := benchmarks
BENCH_STAMP := $(BENCH)/.venv/.installed
PEER_STAMP := $(BENCH)/.venv-langgraph/.installed

$(BENCH_STAMP): $(BENCH)/requirements.lock
	$(PYTHON) -m venv $(BENCH)/.venv
	$(BENCH)/.venv/bin/python -m pip install --quiet --require-hashes -r $(BENCH)/requirements.lock
	touch $@

$(PEER_STAMP): $(BENCH)/langgraph/requirements.lock
	@if $(PYTHON) -m venv $(BENCH)/.venv-langgraph && \
	  $(BENCH)/.venv-langgraph/bin/python -m pip install --quiet --require-hashes \
	    -r $(BENCH)/langgraph/requirements.lock; then touch $@; \
	else echo "LangGraph peer not installed: the table will say so"; \
	  rm -rf $(BENCH)/.venv-langgraph; fi

bench: install $(BENCH_STAMP) $(PEER_STAMP)
	ulimit -n 16384 2>/dev/null || ulimit -n $$(ulimit -Hn); \
	  $(PY) -m benchmarks.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
