#!/usr/bin/env bash
# Resolve pyproject.toml's dependencies afresh in a scratch environment and write requirements.lock,
# the versions scripts/bootstrap.sh installs. Run the test suite on the new lock before committing it.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
EDITCOLLAPSE_VENV="$scratch/venv" EDITCOLLAPSE_UNLOCKED=1 bash scripts/bootstrap.sh
{
    echo "# The verified environment: every package of \`.[dev]\` at the version the test suite passed with."
    echo "# scripts/bootstrap.sh installs with \`-c requirements.lock\`; scripts/lock.sh regenerates it (see docs/contributing.md)."
    "$scratch/venv/bin/pip" freeze --exclude-editable | sed 's/+cpu$//'  # the CPU wheel's local label: see bootstrap.sh
} > requirements.lock
echo "wrote requirements.lock ($(grep -vc '^#' requirements.lock) packages)"
