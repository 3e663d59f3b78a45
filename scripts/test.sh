#!/usr/bin/env bash
# The test command: set-up, lint, type check, then the whole suite against real PostgreSQL,
# PgBouncer and moto's server, all started by the tests. Extra arguments go to pytest
# (e.g. --run-slow for the long experiments).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff"; .venv/bin/ruff check .
echo "== mypy"; .venv/bin/mypy
echo "== infra (terraform fmt, checkov)"; bash scripts/check-infra.sh
echo "== pytest"; .venv/bin/python -m pytest -p no:cacheprovider -q "$@"
