#!/usr/bin/env bash
# The test command: set up .venv if needed, then lint, type-check and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian packages some tests need, installed where missing (as root, as in CI); otherwise those tests skip.
need() {  # need PACKAGE PURPOSE COMMAND-TEST...
  local package=$1 purpose=$2; shift 2
  "$@" >/dev/null 2>&1 && return 0
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "tuneship: installing $package (Debian package) for $purpose ..."
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "$package" >/dev/null
  else
    echo "tuneship: $package not found and cannot apt-get install it here; $purpose will skip" >&2
  fi
}
debian_packages() {
  # Prometheus' promtool checks the rules and a real Prometheus scrapes a real Triton in the tests.
  need prometheus "the monitoring tests" command -v promtool
  # A real PostgreSQL for the feedback store's PostgreSQL path (the server binaries; the test starts its own).
  need postgresql "the feedback store's PostgreSQL test" \
    bash -c 'command -v initdb || compgen -G "/usr/lib/postgresql/*/bin/initdb"'
}
# apt and pip wait on downloads and disks, not on each other: side by side.
debian_packages & APT=$!
bash scripts/install.sh
wait "$APT"
.venv/bin/ruff check .
bash scripts/typecheck.sh
# The documentation site: a broken link, a missing anchor or a page left out of the navigation fails.
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet
# The whole suite runs on two workers (pytest-xdist), a module per worker at a time: its tests share their module's
# servers. With arguments (a lane, a file), pytest runs them as given.
if [[ $# -eq 0 ]]; then
  set -- -n "${TEST_WORKERS:-2}" --dist loadscope
fi
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
