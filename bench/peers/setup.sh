#!/usr/bin/env bash
# Create .venv-peers (Evidently for bench/drift.py's comparison); `make bench-peers` runs this.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
if [ ! -x .venv-peers/bin/python ]; then
    "$PY" -m venv .venv-peers
fi
.venv-peers/bin/python -m pip install --quiet --upgrade pip
.venv-peers/bin/python -m pip install --quiet -r bench/peers/requirements.txt
.venv-peers/bin/python -c "import evidently, pandas; print('evidently', evidently.__version__, 'pandas', pandas.__version__)"
