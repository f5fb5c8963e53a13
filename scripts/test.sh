#!/usr/bin/env bash
# Install what the tests need (scripts/bootstrap.sh), check lint, format and the layer contracts,
# then run the test suite. Arguments go to pytest; `--fast` runs the fast subset instead of the whole
# suite (unit tests on tiny models: no SmolLM2, nothing marked slow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bin="${EDITCOLLAPSE_VENV:-.venv}/bin"
"$bin/ruff" check --quiet .
"$bin/ruff" format --check --quiet .
layers=$("$bin/lint-imports" --no-cache 2>&1) || { echo "$layers" >&2; exit 1; }
if [ "${1:-}" = "--fast" ]; then
    shift
    set -- -m "not slow and not smollm2" "$@"
fi
exec "$bin/python" -m pytest "$@"
