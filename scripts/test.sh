#!/usr/bin/env bash
# Install what the tests need (scripts/bootstrap.sh) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec "${EDITCOLLAPSE_VENV:-.venv}/bin/python" -m pytest "$@"
