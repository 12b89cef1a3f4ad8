#!/usr/bin/env bash
# mypy and the import contracts on the `tuneship` import package. Its stages keep their folders at the top level and setuptools maps
# them under `tuneship` (an import hook that mypy cannot follow), so mypy reads the same files through a view
# of symlinks in build/typecheck/ laid out as the installed package is.
set -euo pipefail
cd "$(dirname "$0")/.."
VIEW=build/typecheck/tuneship
rm -rf build/typecheck && mkdir -p "$VIEW"
for entry in tuneship/*; do ln -s "$PWD/$entry" "$VIEW/"; done
for stage in trainer exporter client deploy tuning search datacheck monitor api serving; do ln -s "$PWD/$stage" "$VIEW/$stage"; done
export MYPYPATH="$PWD/build/typecheck"
MYPY="${MYPY:-.venv/bin/mypy}"
# Strict where services import us (the client) and where the server runs (deploy, the dispatcher).
# One cache per run: the two runs' flags differ, and a shared cache is rebuilt by each (about 80 s instead of a few).
# The two runs share nothing, so they run side by side (each is one process: a clean checkout's CI has two cores);
# each one's report is printed whole when both are done.
LOGS=$(mktemp -d)
trap 'rm -rf "$LOGS"' EXIT
"$MYPY" --cache-dir .mypy_cache/strict --strict -m tuneship -m tuneship.cli -p tuneship.client -p tuneship.deploy \
  -p tuneship.api -p tuneship.serving > "$LOGS/strict" 2>&1 & STRICT=$!
"$MYPY" --cache-dir .mypy_cache/stages -p tuneship.trainer -p tuneship.exporter -p tuneship.tuning -p tuneship.search -p tuneship.datacheck -p tuneship.monitor \
  > "$LOGS/stages" 2>&1 & STAGES=$!
status=0
wait "$STRICT" || status=1
wait "$STAGES" || status=1
cat "$LOGS/strict" "$LOGS/stages"
[[ $status -eq 0 ]] || exit 1
# The stage rules (pyproject.toml's [tool.importlinter] contracts), on the same view: import-linter finds the
# stages under tuneship/ there as the installed package has them.
(cd build/typecheck && PYTHONPATH="$PWD" "${LINT_IMPORTS:-../../.venv/bin/lint-imports}" --no-cache ../../pyproject.toml \
  | sed -n '/^Contracts/,$p')
