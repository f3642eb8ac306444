# Two commands on a fresh machine (only Python 3.10+, pip and make needed):
#   make demo   set up, then run the whole pipeline on the embedded local AWS
#   make test   set up, then build the package and test the installed wheel on every supported Airflow
PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_LINK_MODE := copy

.PHONY: setup demo test lint unit faults pytest airflow browser asl-validator clean
setup: $(VENV)/.synced

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

# The development environment: exactly what uv.lock says (Airflow, the amazon provider, moto, test
# tools) and this package in editable mode, compiled to bytecode once (not on every first run).
$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --all-extras --compile-bytecode --python $(PYTHON)
	$(VENV)/bin/python -m compileall -q plugins  # the editable package too (uv compiles site-packages only)
	touch $@

demo: setup
	$(VENV)/bin/xacct-map demo $(ARGS)

# The whole suite against the built wheel (uv.lock's versions) and the older Airflows' targets (TARGETS=newest
# for one; PYTEST_ADDOPTS="-k sensor" narrows the tests): scripts/compat_matrix.py, which runs the older
# targets beside the whole suite (their output in .venvs/<target>.log, printed at the end). The browser is
# best effort: where it cannot be installed, the UI test skips and says why.
test: lint asl-validator
	-@bash scripts/install-browser.sh
	$(VENV)/bin/python scripts/compat_matrix.py run $(TARGETS)

# ruff (lint, import order, format) and mypy, configured in pyproject.toml.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The fast tier in the development environment: tests/unit (no sockets, no servers; seconds).
# tests/integration uses moto and the synthetic S3 on loopback; tests/system the demo, the browser, compose
# and the installed package.
unit: setup
	$(VENV)/bin/python -m pytest tests/unit $(ARGS)

# The fault-injection tier: tests/faults (a fault proxy in front of the local AWS; each case's outcome, and the
# README's "Failure guarantees" table, which `python scripts/failure_table.py --write` regenerates).
faults: setup
	$(VENV)/bin/python -m pytest tests/faults $(ARGS)

# pytest in the development environment (editable install), e.g. make pytest ARGS="-k sensor".
pytest: setup
	$(VENV)/bin/python -m pytest $(ARGS)

# A real local Airflow 3 (UI http://127.0.0.1:8080, admin/admin) on the embedded local AWS; Ctrl-C stops it.
airflow: setup
	$(VENV)/bin/xacct-map airflow $(ARGS)

# The npm package asl-validator (pinned in scripts/asl-validator/package-lock.json), for
# tests/unit/test_asl.py: every state machine definition the code renders is checked with it (in CI the
# test fails when the validator is missing; elsewhere it skips and says why). Needs Node.js's npm.
asl-validator: scripts/asl-validator/node_modules/.bin/asl-validator

scripts/asl-validator/node_modules/.bin/asl-validator: scripts/asl-validator/package-lock.json
	@if command -v npm >/dev/null; then npm ci --prefix scripts/asl-validator --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: tests/unit/test_asl.py will skip (install Node.js to validate the ASL)"; fi

# Debian's chromium, for tests/system/test_ui_browser.py.
browser:
	bash scripts/install-browser.sh

clean:
	rm -rf $(TOOLS) $(VENV) .venvs dist .pytest_cache scripts/asl-validator/node_modules
