#!/usr/bin/env bash
# The test command: set up .venv if needed, then lint, type-check and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/ruff check .
.venv/bin/mypy --strict client deploy
.venv/bin/mypy trainer exporter
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
