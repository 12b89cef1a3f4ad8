#!/usr/bin/env bash
# The test command: set up .venv if needed, then lint, type-check and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# Prometheus' promtool checks the rules and a real Prometheus scrapes a real Triton in the tests.
if ! command -v promtool >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "tuneship: installing Prometheus (Debian package) for the monitoring tests ..."
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      prometheus >/dev/null
  else
    echo "tuneship: promtool not found and cannot apt-get install prometheus here; monitoring tests will skip" >&2
  fi
fi
# A real PostgreSQL for the feedback store's PostgreSQL path (the server binaries; the tests start their own).
if ! command -v initdb >/dev/null 2>&1 && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "tuneship: installing PostgreSQL (Debian package) for the feedback-store tests ..."
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      postgresql >/dev/null
  else
    echo "tuneship: PostgreSQL not found and cannot apt-get install it here; its store test will skip" >&2
  fi
fi
.venv/bin/ruff check .
bash scripts/typecheck.sh
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
