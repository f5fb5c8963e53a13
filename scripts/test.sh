#!/usr/bin/env bash
# Install what the tests need (scripts/bootstrap.sh), check lint, format and the layer contracts,
# then run the test suite. Arguments go to pytest; `--fast` runs the fast subset instead of the whole
# suite (unit tests on tiny models: no SmolLM2, nothing marked slow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# The analysis report's browser test (marked slow) drives Debian's chromium: unless --fast, install it
# when it is missing and we can (root, apt-get; about 30 s). Quietly, and never failing the suite:
# without it that test skips.
if [ "${1:-}" != "--fast" ] && [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium)
    "${apt[@]}" >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && "${apt[@]}" >/dev/null 2>&1; } \
        || echo "test.sh: could not install chromium; the report's browser test will skip" >&2
fi
bin="${EDITCOLLAPSE_VENV:-.venv}/bin"
"$bin/ruff" check --quiet .
"$bin/ruff" format --check --quiet .
layers=$("$bin/lint-imports" --no-cache 2>&1) || { echo "$layers" >&2; exit 1; }
if [ "${1:-}" = "--fast" ]; then
    shift
    set -- -m "not slow and not smollm2" "$@"
fi
exec "$bin/python" -m pytest "$@"
