# Inside Track: `make up` runs the whole local system, `make test` runs every test.
# Everything is installed by these targets: a venv in .venv, Kafka jars and FerretDB in
# ~/.cache/insidetrack (cached after the first run).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: up down test chaos venv provision browser bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed (set PYTHON=/path/to/python3.11)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@mkdir -p var/log
	@echo "Installing Python packages into $(VENV) (log: var/log/pip.log) ..."
	@( $(BIN)/python -m pip install --disable-pip-version-check --upgrade pip && \
	   $(BIN)/python -m pip install --disable-pip-version-check -e '.[dev]' ) > var/log/pip.log 2>&1 \
	   || { tail -30 var/log/pip.log; echo "pip install failed (full log: var/log/pip.log)"; exit 1; }
	@rm -f $(VENV)/.installed-* && touch $@

provision: venv
	$(BIN)/insidetrack infra provision

up: venv
	$(BIN)/insidetrack up

down: venv
	$(BIN)/insidetrack down

# The browser test drives Debian's chromium (no browser download): install it if missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing Debian's chromium for the browser test (log: var/log/apt.log) ..."; mkdir -p var/log; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } > var/log/apt.log 2>&1 \
	      || { tail -20 var/log/apt.log; exit 1; }; \
	  else echo "chromium is missing: install Debian's chromium package (apt-get install chromium)"; exit 1; fi; }

# pytest exits 5 when it collected no test: make treats that as a failure, as it should.
test: provision browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The slow fault suite (docs/reliability.md): kills, broker and database outages, several
# processes per service. Sizes: CHAOS_EVENTS (20000), CHAOS_STREAM_EVENTS, CHAOS_LOAD; patience:
# CHAOS_TIMEOUT_S. Like `test`, it fails when it collects no test (pytest exits 5).
chaos: provision
	$(BIN)/python -m pytest -m chaos tests/integration/chaos $(PYTEST_ARGS)

# Benchmarks are not tests: they print figures and write bench/results/<time>.json.
# BENCH_SCALE=full adds the 100k-event and 100k-people runs.
bench: provision
	$(BIN)/python bench/run.py

clean: down
	rm -rf var
